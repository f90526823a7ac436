"""Careless and unusual uses of eval, baseline, bdrate, plot, report and convert-results:
each ends in the documented result, a warning or one error line, never a hang or a
silently wrong file."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from tests.conftest import synthetic_image
from trellic.cli import build_parser, main
from trellic.eval.results import read_results

EVAL_COMMANDS = ("eval", "baseline", "bdrate", "plot", "report", "convert-results")


def _save(path, height=176, width=176, seed=0):
    Image.fromarray(synthetic_image(height, width, seed)).save(path)
    return path


@pytest.fixture
def folder(tmp_path):
    """Three images at the top, one more in a sub-folder."""
    images = tmp_path / "images"
    (images / "sub").mkdir(parents=True)
    for index, name in enumerate(("a.png", "b.png", "c.png", "sub/d.png")):
        _save(images / name, seed=index)
    return images


def _jpeg(folder, out, *extra):
    return main(["baseline", str(folder), "--codec", "jpeg", "--quality", "10", "30", "60", "90",
                 "-o", str(out), *extra])


@pytest.fixture
def curve(folder, tmp_path):
    """A JPEG curve (4 points) on the first two images of ``folder``."""
    out = tmp_path / "jpeg.json"
    assert _jpeg(folder, out, "--limit", "2") == 0
    return out


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("trellic: error: "), err
    return err


def test_limit_takes_the_first_images_and_never_descends_into_sub_folders(folder, tmp_path,
                                                                          tiny_weights):
    out = tmp_path / "limited.json"
    assert main(["baseline", str(folder), "--codec", "jpeg", "--quality", "50", "--limit", "2",
                 "-o", str(out)]) == 0
    assert read_results(out).dataset.files == ["a.png", "b.png"]
    assert main(["baseline", str(folder), "--codec", "jpeg", "--quality", "50", "--limit", "9",
                 "-o", str(out), "--force"]) == 0
    assert read_results(out).dataset.files == ["a.png", "b.png", "c.png"]
    weights, _ = tiny_weights
    assert main(["eval", str(folder), "--model", str(weights), "--limit", "1",
                 "-o", str(out), "--force"]) == 0
    assert read_results(out).dataset.files == ["a.png"]


def test_workers_beyond_the_tasks_are_capped_with_a_warning(tmp_path, capsys, monkeypatch):
    from trellic.eval import runner

    def no_pool(*args):  # 1000 spawned processes would never finish starting
        raise AssertionError("a worker pool was started for one task")

    monkeypatch.setattr(runner.multiprocessing, "get_context", no_pool)
    images = tmp_path / "one"
    images.mkdir()
    _save(images / "only.png")
    out = tmp_path / "jpeg.json"
    assert main(["baseline", str(images), "--codec", "jpeg", "--quality", "50",
                 "--workers", "1000", "-o", str(out)]) == 0
    assert "trellic: warning: --workers 1000 capped at 1 (1 image task(s)" in (
        capsys.readouterr().err)
    assert read_results(out).workers == 1


def test_worker_count_never_exceeds_the_usable_cpus():
    from trellic.argtypes import usable_cpus
    from trellic.eval.sweep import worker_count

    assert worker_count(1000, 10**6) == usable_cpus()
    assert worker_count(1, 10**6) == 1


@pytest.mark.parametrize("suffix, magic", [(".svg", b"<svg"), (".pdf", b"%PDF"),
                                           (".PNG", b"\x89PNG")])
def test_plot_writes_the_format_its_extension_names(curve, tmp_path, suffix, magic):
    pytest.importorskip("matplotlib")
    out = tmp_path / f"rd{suffix}"
    assert main(["plot", str(curve), "-o", str(out)]) == 0
    assert magic in out.read_bytes()[:400]


def test_plot_refuses_another_extension_before_reading_any_curve(tmp_path, capsys):
    out = tmp_path / "rd.txt"
    assert main(["plot", str(tmp_path / "missing.json"), "-o", str(out)]) == 1
    err = _one_error_line(capsys)
    assert "a plot is written as .png, .svg, .pdf" in err and "not .txt" in err
    assert not out.exists()


def test_report_refuses_a_named_image_that_is_missing(curve, tmp_path, capsys):
    out = tmp_path / "r.html"
    assert main(["report", str(curve), "--image", str(tmp_path / "nope.png"),
                 "-o", str(out)]) == 1
    assert "--image " in _one_error_line(capsys) and not out.exists()
    assert main(["report", str(curve), "--image", str(tmp_path), "-o", str(out)]) == 1
    assert "not a file" in _one_error_line(capsys)


def test_report_warns_when_the_crop_image_is_not_one_the_curves_measured(curve, tmp_path,
                                                                         capsys):
    pytest.importorskip("matplotlib")
    odd = _save(tmp_path / "odd.png", 200, 180, seed=7)
    out = tmp_path / "r.html"
    assert main(["report", str(curve), "--image", str(odd), "--crop", "0,0,32,32",
                 "--crop-bpp", "1.5", "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert "trellic: warning: odd.png is not among the images JPEG 4:2:0 was measured on" in err
    assert 'class="warning">Warning: odd.png is not among the images' in out.read_text()
    folder = tmp_path / "images"
    assert main(["report", str(curve), "--image", str(folder / "a.png"), "--crop", "0,0,32,32",
                 "--crop-bpp", "1.5", "-o", str(out), "--force"]) == 0
    assert "warning" not in capsys.readouterr().err


@pytest.mark.parametrize("command", ["plot", "report"])
@pytest.mark.parametrize("value", ["1e308", "0.001", "0"])
def test_max_bpp_is_bounded_to_a_sane_axis(command, value, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "a.json", "--max-bpp", value, "-o", str(tmp_path / "out.png")])
    assert exit_info.value.code == 2
    assert f"argument --max-bpp: must be in [0.01, 32], got {value}" in capsys.readouterr().err


def test_an_axis_below_every_point_is_a_warning(curve, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    assert main(["plot", str(curve), "--max-bpp", "0.01", "-o", str(tmp_path / "rd.png")]) == 0
    assert "trellic: warning: no point lies at or below --max-bpp 0.01" in (
        capsys.readouterr().err)


@pytest.fixture
def mixed(tmp_path):
    """A good image, a text file named like an image, and one too small for MS-SSIM."""
    images = tmp_path / "mixed"
    images.mkdir()
    _save(images / "good.png")
    (images / "zz.png").write_text("not an image")
    _save(images / "small.png", 65, 97)
    return images


def test_eval_checks_every_image_before_coding_and_names_the_bad_one(mixed, tmp_path,
                                                                     tiny_weights, capsys,
                                                                     monkeypatch):
    from trellic.eval import runner

    coded = []
    monkeypatch.setattr(runner, "evaluate_image", lambda *a: coded.append(a) or 1 / 0)
    weights, _ = tiny_weights
    out = tmp_path / "e.json"
    assert main(["eval", str(mixed), "--model", str(weights), "-o", str(out)]) == 1
    err = _one_error_line(capsys)
    assert "small.png: 97x65 is too small: MS-SSIM needs at least 161 pixels" in err
    assert "--skip-bad" in err
    (mixed / "small.png").unlink()
    assert main(["baseline", str(mixed), "--codec", "jpeg", "-o", str(out)]) == 1
    assert f"cannot read image {mixed / 'zz.png'}" in _one_error_line(capsys)
    assert not coded and not out.exists()


def test_skip_bad_leaves_bad_images_out_with_a_warning(mixed, tmp_path, tiny_weights, capsys):
    weights, _ = tiny_weights
    out = tmp_path / "e.json"
    assert main(["eval", str(mixed), "--model", str(weights), "--skip-bad", "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert "trellic: warning: skipped " in err and "small.png: 97x65" in err and "zz.png" in err
    assert read_results(out).dataset.files == ["good.png"]
    (mixed / "good.png").unlink()
    assert main(["eval", str(mixed), "--model", str(weights), "--skip-bad", "-o", str(out),
                 "--force"]) == 1
    assert "no usable image among 2" in _one_error_line(capsys)


def test_the_ms_ssim_size_error_names_the_file(tmp_path):
    from trellic.errors import TrellicError
    from trellic.eval.runner import evaluate_image

    class Identity:
        def encode(self, image):
            return image.tobytes()

        def decode(self, data):
            import numpy as np

            return np.frombuffer(data, np.uint8).reshape(65, 97, 3)

    small = _save(tmp_path / "small.png", 65, 97)
    with pytest.raises(TrellicError, match=r"small\.png: MS-SSIM needs images of at least 161"):
        evaluate_image(Identity(), small)


def test_report_without_image_or_data_skips_the_crops_with_a_warning(curve, tmp_path, capsys,
                                                                     monkeypatch):
    pytest.importorskip("matplotlib")
    from trellic import paths

    monkeypatch.delenv(paths.DATA_ENV, raising=False)
    monkeypatch.setattr(paths, "checkout", lambda: None)  # as installed from a wheel
    out = tmp_path / "r.html"
    assert main(["report", str(curve), "-o", str(out)]) == 0
    assert "trellic: warning: no crops: pass --image or set TRELLIC_DATA" in (
        capsys.readouterr().err)
    assert "no crops: pass --image or set TRELLIC_DATA" in out.read_text()
    monkeypatch.setenv(paths.DATA_ENV, str(tmp_path / "nowhere"))
    assert main(["report", str(curve), "-o", str(out), "--force"]) == 0
    assert "is not there; pass --image" in capsys.readouterr().err


def test_the_image_count_is_recorded_and_shown(curve, tmp_path):
    pytest.importorskip("matplotlib")
    from trellic.eval.plot import rd_figure

    assert json.loads(curve.read_text())["dataset"]["count"] == 2
    assert rd_figure([read_results(curve)])._suptitle.get_text() == (
        "Rate-distortion on images (2 images)")
    out = tmp_path / "r.html"
    assert main(["report", str(curve), "--image", str(tmp_path / "images" / "a.png"),
                 "--crop", "0,0,32,32", "--crop-bpp", "1.5", "-o", str(out)]) == 0
    assert "Dataset: images (2 images)." in out.read_text()


def test_eval_prints_a_json_summary_and_takes_a_thread_count(folder, tmp_path, tiny_weights,
                                                             capsys):
    import torch

    weights, _ = tiny_weights
    out = tmp_path / "e.json"
    before = torch.get_num_threads()
    assert main(["eval", str(folder), "--model", str(weights), "--limit", "2", "--threads", "1",
                 "--json", "-o", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["output"] == str(out) and summary["images"] == 2
    (point,) = summary["points"]
    assert point["checkpoint_sha256"] == read_results(out).points[0].checkpoint_sha256
    assert point["bpp"] == read_results(out).points[0].bpp and "images" not in point
    assert torch.get_num_threads() == before
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", str(folder), "--threads", "100000", "-o", str(out)])
    assert exit_info.value.code == 2
    assert "argument --threads: must be in [1, " in capsys.readouterr().err


def test_every_option_of_the_evaluation_commands_says_what_it_does():
    parser = build_parser()
    commands = next(action for action in parser._actions if action.dest == "command").choices
    for name in EVAL_COMMANDS:
        for action in commands[name]._actions:
            assert action.help, f"{name} {action.option_strings or action.dest} has no help"


@pytest.mark.parametrize("argv", [["bdrate", "{deep}", "{deep}"],
                                  ["convert-results", "{deep}", "--to", "trellic"],
                                  ["plot", "{deep}"], ["report", "{deep}"]])
def test_deeply_nested_results_json_is_one_error_line(argv, tmp_path, capsys):
    deep = tmp_path / "deep.json"
    deep.write_text('{"schema": "trellic-results", "points": ' + "[" * 100000 + "]" * 100000
                    + "}")
    argv = [str(deep) if arg == "{deep}" else arg for arg in argv]
    out = tmp_path / "out.png"
    assert main([*argv, "-o", str(out)]) == 1
    assert "nested too deeply" in _one_error_line(capsys) and not out.exists()
