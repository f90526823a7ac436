"""The compress / decompress / info commands, called in-process as a user would."""

import numpy as np
import pytest
from PIL import Image

from tests.conftest import synthetic_image
from trellic.cli import main


@pytest.fixture()
def png(tmp_path):
    path = tmp_path / "in.png"
    Image.fromarray(synthetic_image(40, 72)).save(path)
    return path


@pytest.mark.parametrize("kind", ["usq", "tcq8"])
def test_compress_decompress_info_round_trip(tmp_path, png, tiny_weights, kind, capsys):
    weights = str(tiny_weights[0])
    trl, out = tmp_path / "a.trl", tmp_path / "a.png"
    assert (
        main(["compress", str(png), str(trl), "--model", weights, "--quantizer", kind, "-v"]) == 0
    )
    assert (
        main(["decompress", str(trl), str(out), "--model", weights, "--reference", str(png)]) == 0
    )
    assert "PSNR" in capsys.readouterr().out
    decoded = np.asarray(Image.open(out))
    assert decoded.shape == (40, 72, 3)
    assert main(["info", str(trl)]) == 0
    assert f"quantizer      {kind}" in capsys.readouterr().out


def test_existing_output_needs_force(tmp_path, png, tiny_weights, capsys):
    trl = tmp_path / "a.trl"
    trl.write_bytes(b"keep me")
    assert main(["compress", str(png), str(trl), "--model", str(tiny_weights[0])]) == 1
    assert trl.read_bytes() == b"keep me"
    assert "--force" in capsys.readouterr().err
    assert main(["compress", str(png), str(trl), "--model", str(tiny_weights[0]), "--force"]) == 0


@pytest.mark.parametrize(
    "argv_tail, message",
    [
        (["missing.png", "o.trl"], "file not found"),
        ([".", "o.trl"], "need an output folder, and o.trl names a file"),
        (["bad.png", "o.trl"], "cannot read image"),
        (["in.png", "o.trl", "--model", "nonexistent-model"], "unknown model"),
        (["in.png", "o.trl", "--model", "nowhere/w.safetensors"], "weights file not found"),
    ],
)
def test_compress_errors_are_one_line(tmp_path, png, monkeypatch, capsys, argv_tail, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.png").write_bytes(b"not an image")
    assert main(["compress", *argv_tail]) == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_corrupt_and_truncated_files_fail_cleanly(tmp_path, png, tiny_weights, capsys):
    weights = str(tiny_weights[0])
    trl = tmp_path / "a.trl"
    assert main(["compress", str(png), str(trl), "--model", weights, "--quantizer", "tcq4"]) == 0
    data = trl.read_bytes()
    cases = {
        "truncated": data[: len(data) // 2],
        "flipped": bytes([data[0] ^ 1]) + data[1:],
        "garbage": b"\x00" * 40,
    }
    for name, payload in cases.items():
        bad = tmp_path / f"{name}.trl"
        bad.write_bytes(payload)
        capsys.readouterr()
        assert (
            main(["decompress", str(bad), str(tmp_path / f"{name}.png"), "--model", weights]) == 1
        )
        err = capsys.readouterr().err
        assert err.startswith("trellic: error:") and err.count("\n") == 1, name
        assert not (tmp_path / f"{name}.png").exists()


def test_bad_option_value_is_a_usage_error(png, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["compress", str(png), "o.trl", "--lambda-t", "-1"])
    assert exit_info.value.code == 2


def _subparsers():
    import argparse

    from trellic.cli import build_parser

    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


def test_every_subcommand_help_shows_the_defaults():
    """Each option with a default (flags aside) says it in the --help text, in every command."""
    checked = 0
    for name, parser in _subparsers().items():
        formatter = parser._get_formatter()
        for action in parser._actions:
            if not action.option_strings or action.default is None or action.nargs == 0:
                continue
            text = formatter._format_action(action)
            assert "default" in text, f"trellic {name} {action.option_strings[0]}: {text}"
            checked += 1
    assert checked > 40
    help_text = _subparsers()["compress"].format_help()
    assert "(default: 0)" in help_text and "default: usq" in help_text


def test_models_lists_the_zoo_with_lambda_quantizer_size_and_kodak_numbers(capsys):
    from trellic.zoo import read_manifest

    manifest = read_manifest()
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name, entry in manifest["models"].items():
        line = next(row for row in out.splitlines() if row[2:].split(" ")[0] == name)
        assert line.startswith("* ") == (name == manifest["default"])
        assert f"{entry['lambda']:g}" in line and f"{entry['kodak']['usq']['bpp']:.4f}" in line
        assert f"{entry['kodak']['tcq4']['psnr_rgb']:.2f}" in line
        retrained = entry.get("retrain", {}).get("quantizer")
        assert (retrained or entry["quantizer_trained"]) in line
    assert "not in this folder" not in out


def test_models_marks_weights_files_that_are_not_there(tmp_path, monkeypatch, capsys, tiny_weights):
    import json

    from trellic.zoo import sha256_of

    (tmp_path / "tiny.safetensors").write_bytes(tiny_weights[0].read_bytes())
    entry = {"file": "tiny.safetensors", "sha256": sha256_of(tmp_path / "tiny.safetensors"),
             "lambda": 0.01, "quantizer_trained": "tcq4"}
    models = {"tiny": entry, "gone": {**entry, "file": "gone.safetensors", "lambda": None}}
    (tmp_path / "manifest.json").write_text(json.dumps({"default": "tiny", "models": models}))
    monkeypatch.setenv("TRELLIC_WEIGHTS", str(tmp_path))
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"weights folder {tmp_path}")
    tiny = next(line for line in lines if "tiny" in line).split()
    gone = next(line for line in lines if "gone" in line).split()
    assert tiny[:4] == ["*", "tiny", "0.01", "tcq4"] and float(tiny[4]) > 0
    assert gone[:4] == ["gone", "-", "tcq4", "-"]
    assert "1 of these weights files are not in this folder" in lines[-1]


def test_the_readme_python_snippet_runs_as_written(tmp_path, monkeypatch):
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    snippets = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    assert len(snippets) == 1
    monkeypatch.chdir(tmp_path)
    Image.fromarray(synthetic_image(48, 64)).save("photo.png")
    namespace = {}
    exec(compile(snippets[0], "README.md", "exec"), namespace)  # noqa: S102 - the project's own
    assert namespace["image_hat"].shape == namespace["image"].shape == (48, 64, 3)
