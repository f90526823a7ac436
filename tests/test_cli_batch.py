"""What a codec user expects of the command line: many files, stdin/stdout, --json, --threads,
a light start-up, quiet broken pipes, and the CLI's consistency with the modules it mirrors."""

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from tests.conftest import synthetic_image
from trellic.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def folder(tmp_path, monkeypatch):
    """tmp_path as the working folder, with images a.png, b.png, c.png in imgs/."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "imgs").mkdir()
    for seed, name in enumerate("abc"):
        Image.fromarray(synthetic_image(24 + 8 * seed, 40, seed=seed)).save(f"imgs/{name}.png")
    return tmp_path


def test_many_files_into_a_folder_next_to_inputs_and_back_with_one_model_load(
        folder, tiny_weights, monkeypatch, capsys):
    import trellic.codec

    loads = []
    real_load = trellic.codec.load_model
    monkeypatch.setattr(trellic.codec, "load_model",
                        lambda *a, **k: loads.append(a) or real_load(*a, **k))
    w = ["--model", str(tiny_weights[0])]
    assert main(["compress", "imgs/a.png", "imgs/b.png", "imgs/c.png", "-o", "out", *w]) == 0
    assert sorted(p.name for p in (folder / "out").iterdir()) == ["a.trl", "b.trl", "c.trl"]
    assert len(loads) == 1
    assert main(["compress", "imgs", "-o", "out2", "--jobs", "3", *w]) == 0  # a folder
    for name in "abc":
        assert (folder / f"out2/{name}.trl").read_bytes() == (
            folder / f"out/{name}.trl").read_bytes()
    assert main(["compress", "imgs/a.png", *w]) == 0  # default name next to the input
    assert (folder / "imgs/a.trl").read_bytes() == (folder / "out/a.trl").read_bytes()
    assert main(["compress", "imgs/a.png", "imgs/b.png", *w]) == 1  # two images: both inputs
    assert "imgs/a.png: output exists" in capsys.readouterr().err  # the other still written:
    assert (folder / "imgs/b.trl").read_bytes() == (folder / "out/b.trl").read_bytes()
    assert main(["decompress", "out", "-o", "dec", *w]) == 0
    assert sorted(p.name for p in (folder / "dec").iterdir()) == ["a.png", "b.png", "c.png"]
    assert main(["decompress", "imgs/a.trl", *w]) == 1  # imgs/a.png exists: no --force
    assert "output exists" in capsys.readouterr().err
    assert main(["decompress", "out/a.trl", "out/b.trl", *w]) == 0  # x.trl -> x.png
    assert Image.open(folder / "out/b.png").size == (40, 32)
    out = capsys.readouterr().out
    assert "out/a.trl -> out/a.png: 40x24" in out


def test_one_failing_file_is_named_and_the_others_are_written(folder, tiny_weights, capsys):
    (folder / "imgs/bad.png").write_bytes(b"not an image")
    argv = ["compress", "imgs", "-o", "out", "--model", str(tiny_weights[0]), "--jobs", "2"]
    assert main([*argv, "--json"]) == 1
    captured = capsys.readouterr()
    assert captured.err.startswith("trellic: error: imgs/bad.png: cannot read image")
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err
    assert sorted(p.name for p in (folder / "out").iterdir()) == ["a.trl", "b.trl", "c.trl"]
    records = [json.loads(line) for line in captured.out.splitlines()]
    assert [r["input"] for r in records] == [f"imgs/{n}.png" for n in ("a", "b", "bad", "c")]
    assert "cannot read image" in records[2]["error"]
    assert records[0]["output"] == "out/a.trl" and records[0]["bytes"] > 0
    assert {"bpp", "width", "height", "model", "quantizer", "lambda_t"} <= set(records[0])


def test_a_single_failing_file_gives_its_json_object_too(folder, capsys):
    (folder / "bad.trl").write_bytes(b"garbage")
    for argv in (["decompress", "bad.trl", "x.png"], ["info", "bad.trl"]):
        assert main([*argv, "--json"]) == 1
        captured = capsys.readouterr()
        (record,) = [json.loads(line) for line in captured.out.splitlines()]
        assert record["input"] == "bad.trl" and "not a trellic file" in record["error"]
        assert captured.err.count("\n") == 1


def test_an_output_that_is_an_input_is_refused_as_such_even_when_it_exists(folder):
    from trellic.errors import TrellicError
    from trellic.io import check_output

    with pytest.raises(TrellicError, match="output would replace an input"):  # not "--force"
        check_output(Path("imgs/a.png"), False, (Path("imgs/a.png"),))


@pytest.mark.parametrize("argv, message", [
    (["imgs/a.png", "imgs/a.jpg", "-o", "out"], "imgs/a.png and imgs/a.jpg would both write"),
    (["imgs", "-o", "o.trl"], "4 inputs need an output folder, and o.trl names a file"),
    (["imgs", "-o", "-"], "- (stdout) takes one input, got 4"),
    (["-", "imgs/a.png"], "- (stdin) must be the only input"),
    (["-"], "reading stdin needs an output"),
    (["imgs/a.png", "-o", "nowhere/deeper"], "output folder does not exist"),
    (["imgs/a.png", "-o", "/dev/zero", "--force"], "not a regular file"),
    (["imgs/a.png", "-o", "/dev/zero"], "not a regular file"),  # not "use --force"
    (["imgs/a.png", "new.png"], "new.png is named like an image: compress writes trellic files"),
    (["imgs/a.png", "o.trl", "--model", "ckpt.pth.tar"],
     "ckpt.pth.tar is a PyTorch checkpoint, not a trellic weights file: import it first"),
])
def test_impossible_plans_are_one_line_errors_before_any_coding(folder, capsys, argv, message):
    Image.fromarray(synthetic_image(16, 16)).save("imgs/a.jpg")
    assert main(["compress", *argv]) == 1
    err = capsys.readouterr().err
    assert err.startswith("trellic: error: ") and err.count("\n") == 1 and message in err, err
    assert not (folder / "out").exists() and not (folder / "o.trl").exists()


def test_stdin_and_stdout_and_dev_null(folder, tiny_weights, monkeypatch, capsysbinary):
    w = ["--model", str(tiny_weights[0])]
    assert main(["compress", "imgs/a.png", "a.trl", *w]) == 0
    reference = (folder / "a.trl").read_bytes()
    capsysbinary.readouterr()
    assert main(["compress", "imgs/a.png", "-", *w]) == 0  # stdout: the file, report on stderr
    captured = capsysbinary.readouterr()
    assert captured.out == reference and b"imgs/a.png -> -" in captured.err
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(
        (folder / "imgs/a.png").read_bytes())))
    assert main(["compress", "-", "s.trl", *w]) == 0
    assert (folder / "s.trl").read_bytes() == reference
    assert capsysbinary.readouterr().out.startswith(b"- -> s.trl: ")
    assert main(["decompress", "a.trl", "-", *w]) == 0
    png = capsysbinary.readouterr().out
    assert png.startswith(b"\x89PNG") and Image.open(io.BytesIO(png)).size == (40, 24)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(reference)))
    assert main(["decompress", "-", "d.png", *w]) == 0
    assert (folder / "d.png").read_bytes() == png
    assert main(["info", "-"]) == 1  # stdin was read: empty now
    assert b"stdin is empty" in capsysbinary.readouterr().err
    for command, source in (("compress", "imgs/a.png"), ("decompress", "a.trl")):
        assert main([command, source, os.devnull, *w]) == 0  # no --force needed
        assert main([command, source, "-o", os.devnull, *w]) == 0
    assert main(["compress", "imgs", "-o", os.devnull, *w]) == 0


def test_json_from_info_and_models(folder, tiny_weights, capsys):
    assert main(["compress", "imgs/a.png", "imgs/b.png", "--model", str(tiny_weights[0]),
                 "--quantizer", "tcq4"]) == 0
    capsys.readouterr()
    assert main(["info", "imgs/a.trl", "imgs/b.trl", "--json"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["input"] for r in records] == ["imgs/a.trl", "imgs/b.trl"]
    assert records[1]["quantizer"] == "tcq4" and (records[1]["width"], records[1]["height"]) == (
        40, 32)
    assert records[0]["file_bytes"] == (folder / "imgs/a.trl").stat().st_size
    assert main(["info", "imgs/a.trl", "imgs/a.png"]) == 1  # the bad one named, the rest shown
    captured = capsys.readouterr()
    assert "quantizer      tcq4" in captured.out
    assert captured.err == "trellic: error: imgs/a.png: not a trellic file (bad magic)\n"
    assert main(["models", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    default = next(m for m in listing["models"] if m["default"])
    assert default["name"] == listing["default"] and default["kodak"]["tcq4"]["lambda_t"] > 0


def test_models_table_names_the_lambda_t_of_its_tcq4_figures(capsys):
    from trellic.zoo import read_manifest

    manifest = read_manifest()
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "at lambda_t" in out.splitlines()[1]
    for name, entry in manifest["models"].items():
        line = next(row for row in out.splitlines() if row[2:].split(" ")[0] == name)
        assert line.split()[-1] == f"{entry['kodak']['tcq4']['lambda_t']:g}"


def test_threads_jobs_and_refine_bounds(folder, tiny_weights, capsys):
    w = ["--model", str(tiny_weights[0])]
    before = torch.get_num_threads()
    assert main(["compress", "imgs/a.png", "one.trl", "--threads", "1", *w]) == 0
    assert main(["decompress", "one.trl", "one.png", "--threads", "1", *w]) == 0
    assert torch.get_num_threads() == before
    assert main(["compress", "imgs", "-o", "j", "--jobs", "1000", "--refine", "2", *w]) == 0
    for bad in (["--threads", "100000"], ["--threads", "0"], ["--jobs", "0"],
                ["--refine", "10001"]):
        with pytest.raises(SystemExit) as exit_info:
            main(["compress", "imgs/a.png", "x.trl", *bad])
        assert exit_info.value.code == 2
    assert "must be in" in capsys.readouterr().err


def test_refinement_progress_bar_with_verbose_and_the_step_bound(folder, tiny_weights, capsys):
    from trellic.models.refine import MAX_STEPS, RefineConfig

    assert main(["compress", "imgs/a.png", "a.trl", "--model", str(tiny_weights[0]),
                 "--refine", "3", "-v"]) == 0  # stderr is no terminal here: -v shows it anyway
    assert "refine:" in capsys.readouterr().err
    with pytest.raises(ValueError, match="steps <= 10000"):
        RefineConfig(steps=MAX_STEPS + 1)


def test_lambda_t_with_usq_makes_the_rounding_rate_aware(folder, tiny_weights, capsys):
    """Finding 18 said --lambda-t has no effect with usq: it has (the 1-state search)."""
    w = ["--model", str(tiny_weights[0])]
    assert main(["compress", "imgs/a.png", "plain.trl", *w]) == 0
    assert main(["compress", "imgs/a.png", "aware.trl", "--lambda-t", "5", *w]) == 0
    assert "warning" not in capsys.readouterr().err
    plain, aware = (folder / "plain.trl").read_bytes(), (folder / "aware.trl").read_bytes()
    assert len(aware) < len(plain)
    assert main(["info", "aware.trl"]) == 0
    assert "quantizer      usq, delta 1, lambda_t 5" in capsys.readouterr().out


def test_concurrent_jobs_code_the_same_bytes(folder, tiny_weights):
    for name in "defg":
        Image.fromarray(synthetic_image(48, 64, seed=ord(name))).save(f"imgs/{name}.png")
    w = ["--model", str(tiny_weights[0]), "--quantizer", "tcq8"]
    assert main(["compress", "imgs", "-o", "one", "--jobs", "1", *w]) == 0
    assert main(["compress", "imgs", "-o", "many", "--jobs", "4", *w]) == 0
    for path in (folder / "one").iterdir():
        assert (folder / "many" / path.name).read_bytes() == path.read_bytes()
    assert main(["decompress", "many", "-o", "dec", "--jobs", "4", *w[:2]]) == 0
    assert main(["decompress", "one", "-o", "dec1", "--jobs", "1", *w[:2]]) == 0
    for path in (folder / "dec1").iterdir():
        assert (folder / "dec" / path.name).read_bytes() == path.read_bytes()


def _run(code: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=60)


def test_version_help_and_info_do_not_import_torch(tmp_path, tiny_weights):
    Image.fromarray(synthetic_image(16, 16)).save(tmp_path / "in.png")
    assert main(["compress", str(tmp_path / "in.png"), str(tmp_path / "a.trl"), "--model",
                 str(tiny_weights[0])]) == 0
    code = (
        "import sys\n"
        "from trellic.cli import main\n"
        "for argv in (['--version'], ['--help'], ['info', '--help']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit as e:\n"
        "        assert e.code == 0, e.code\n"
        "assert main(['info', 'a.trl']) == 0\n"
        "heavy = sorted(m for m in ('torch', 'numpy', 'PIL') if m in sys.modules)\n"
        "print('HEAVY', heavy)\n"
    )
    result = _run(code, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "trellic 0.1.0" in result.stdout and "quantizer      usq" in result.stdout
    assert "HEAVY []" in result.stdout


def test_a_closed_stdout_ends_quietly(tmp_path, tiny_weights, monkeypatch, capsys):
    import trellic.catalog

    def closed(args):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(trellic.catalog, "models", closed)
    assert main(["models"]) == 141
    assert capsys.readouterr().err == ""
    Image.fromarray(synthetic_image(16, 16)).save(tmp_path / "in.png")
    assert main(["compress", str(tmp_path / "in.png"), str(tmp_path / "a.trl"), "--model",
                 str(tiny_weights[0])]) == 0
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    reader = subprocess.Popen(  # `trellic info a.trl ... | head -0`
        [sys.executable, "-m", "trellic", "info", *["a.trl"] * 2000], cwd=tmp_path, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    reader.stdout.close()
    assert reader.wait(timeout=60) == 141
    assert reader.stderr.read() == b""


def test_the_command_table_matches_the_modules_and_every_option_has_help():
    import argparse

    from trellic.cli import COMMANDS, build_parser

    full = build_parser()
    action = next(a for a in full._actions if isinstance(a, argparse._SubParsersAction))
    assert list(action.choices) == list(COMMANDS), "update trellic.cli.COMMANDS"
    helps = {choice.dest: choice.help for choice in action._choices_actions}
    assert helps == {name: help_text for name, (_, help_text) in COMMANDS.items()}, (
        "trellic.cli.COMMANDS repeats each command's help line for `trellic --help`: update it")
    for name, parser in action.choices.items():  # every command's every option
        assert parser.description or name not in ("compress", "decompress", "info", "models")
        for option in parser._actions:
            assert option.help, f"trellic {name} {option.option_strings or option.dest}"
    assert "zoo name or weights path" in action.choices["decompress"].format_help()


def test_light_copies_agree_with_the_modules_they_mirror(tiny_weights):
    from trellic import commands, container_header
    from trellic.codec import Codec
    from trellic.coding import bitstream
    from trellic.models import refine
    from trellic.quant.registry import quantizer_names

    assert container_header.QUANTIZER_CODES == bitstream.QUANTIZER_CODES
    assert container_header.QUANTIZER_NAMES == quantizer_names()
    assert commands.REFINE_MODE_NAMES == tuple(refine.REFINE_MODES)
    assert commands.MAX_REFINE_STEPS == refine.MAX_STEPS
    data = Codec(tiny_weights[1], tiny_weights[1].model.quantizer("tcq4")).encode(
        synthetic_image(24, 40)).data
    container, header = bitstream.unpack(data), container_header.read_header(data)
    assert header.to_dict() | {"bpp": 0} == {
        **container.header.__dict__, "version": container.version, "bpp": 0,
        "z_bytes": len(container.z_stream), "y_bytes": len(container.y_stream),
        "header_bytes": container.header_bytes, "file_bytes": len(data)}
    with pytest.raises(bitstream.TruncatedFile, match="truncated file .*: cut.trl$"):
        container_header.read_header(data[:-9], "cut.trl")
