"""The eval, baseline, bdrate, plot and report commands, run in-process through trellic.cli."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from trellic.cli import main
from trellic.eval.results import (
    Dataset,
    ImageResult,
    Point,
    Results,
    read_results,
    write_results,
)

RATE = [0.12, 0.2, 0.31, 0.46, 0.66, 0.91]
PSNR = [27.7, 29.4, 31.1, 33.0, 35.0, 36.9]


def _curve(tmp_path, name, scale=1.0, points=6):
    results = Results(name=name, codec="reference", encoder="test", dataset=Dataset("kodak"),
                      points=[Point(f"p{i}", bpp=r * scale, psnr_rgb=p, ms_ssim_rgb=0.9 + i / 100)
                              for i, (r, p) in enumerate(zip(RATE, PSNR, strict=True))][:points])
    path = tmp_path / f"{name}.json"
    write_results(results, path)
    return str(path)


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:176, 0:200]
    base = np.stack([xx + yy, 2 * yy, 128 + 60 * np.sin(xx / 7)], axis=-1)
    images = tmp_path / "images"
    images.mkdir()
    for index in range(2):
        noisy = np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(noisy).save(images / f"img{index}.png")
    return images


def test_bdrate_prints_b_against_a(tmp_path, capsys):
    anchor, test = _curve(tmp_path, "A"), _curve(tmp_path, "B", scale=0.9)
    assert main(["bdrate", anchor, test]) == 0
    out = capsys.readouterr().out
    assert "B against A" in out and "BD-rate -10.00 %" in out
    assert main(["bdrate", anchor, test, "--method", "cubic", "--metric", "ms-ssim"]) == 0
    assert "BD-rate -10.00 %" in capsys.readouterr().out


def test_bdrate_errors_are_one_line_messages(tmp_path, capsys):
    anchor, short = _curve(tmp_path, "A"), _curve(tmp_path, "S", points=3)
    assert main(["bdrate", anchor, short]) == 1
    assert "at least 4" in capsys.readouterr().err
    assert main(["bdrate", anchor]) == 1
    assert "two curves" in capsys.readouterr().err


def test_bdrate_table_writes_markdown_once_without_force(tmp_path):
    files = [_curve(tmp_path, "A"), _curve(tmp_path, "B", scale=0.9)]
    out = tmp_path / "table.md"
    assert main(["bdrate", "--table", *files, "--reference", "mbt2018-mean", "-o", str(out)]) == 0
    text = out.read_text()
    assert "| A | +0.0 | -10.0 |" in text and "mbt2018-mean" in text and "CompressAI" in text
    assert main(["bdrate", "--table", *files, "-o", str(out)]) == 1
    assert main(["bdrate", "--table", *files, "-o", str(out), "--force"]) == 0


def test_baseline_command_writes_the_schema(folder, tmp_path):
    out = tmp_path / "jpeg.json"
    assert main(["baseline", str(folder), "--codec", "jpeg", "--quality", "10", "30", "50",
                 "70", "-o", str(out)]) == 0
    results = read_results(out)
    assert results.codec == "jpeg" and "libjpeg-turbo" in results.encoder
    assert results.dataset.files == ["img0.png", "img1.png"]
    assert [p.quality for p in results.points] == [10, 30, 50, 70]
    assert results.points[0].options["subsampling"] == "4:2:0"
    assert all(len(p.images) == 2 for p in results.points)
    assert results.git_commit and results.torch_version and results.wall_seconds is not None
    assert main(["baseline", str(folder), "--codec", "jpeg", "-o", str(out)]) == 1  # exists


def test_plot_and_report_render_curves_and_crops(folder, tmp_path):
    pytest.importorskip("matplotlib")
    jpeg, webp = tmp_path / "jpeg.json", tmp_path / "webp.json"
    for codec, out, qualities in (("jpeg", jpeg, ["5", "20", "40", "60"]),
                                  ("webp", webp, ["5", "20", "40", "60"])):
        assert main(["baseline", str(folder), "--codec", codec, "--quality", *qualities,
                     "-o", str(out)]) == 0
    png = tmp_path / "rd.png"
    assert main(["plot", str(jpeg), str(webp), "--reference", "vtm", "-o", str(png),
                 "--allow-mixed-images"]) == 0
    assert png.read_bytes().startswith(b"\x89PNG")
    page = tmp_path / "report.html"
    assert main(["report", str(jpeg), str(webp), "--reference", "mbt2018-mean",
                 "--anchor", "jpeg", "--image", str(folder / "img0.png"), "--crop", "8,8,64,64",
                 "-o", str(page), "--allow-mixed-images"]) == 0
    html = page.read_text()
    rows = html.count("<h3>Near ")
    assert rows == 2  # two target rates by default
    # plot, original, then a crop and an error map for jpeg and webp per row
    assert html.count("data:image/png;base64,") == 2 + rows * 2 * 2
    assert "Against the anchor <b>JPEG 4:2:0</b>" in html
    assert "Published curves have no reconstructions: mbt2018-mean" in html


def test_eval_runs_the_learned_codec_on_a_folder(folder, tmp_path, tiny_weights):
    pytest.importorskip("trellic.codec", reason="trellic.codec (the learned codec) is missing")
    weights, loaded = tiny_weights
    out = tmp_path / "trellic.json"
    assert main(["eval", str(folder), "--model", str(weights), "--quantizer", "usq",
                 "-o", str(out)]) == 0
    results = read_results(out)
    (point,) = results.points
    assert results.codec == "trellic" and point.checkpoint_sha256 == loaded.sha256
    assert point.quantizer["kind"] == "usq" and point.options["load"]["model"] == str(weights)
    assert point.estimated_bpp is not None and point.bpp > 0
    assert json.loads(out.read_text())["points"][0]["images"][0]["name"] == "img0.png"


def test_eval_refine_records_the_setting_and_rejects_negative_steps(folder, tmp_path,
                                                                    tiny_weights, capsys):
    pytest.importorskip("trellic.codec", reason="trellic.codec (the learned codec) is missing")
    weights, _ = tiny_weights
    out = tmp_path / "refined.json"
    argv = ["eval", str(folder), "--model", str(weights), "--quantizer", "tcq4", "-o", str(out)]
    assert main([*argv, "--refine", "2"]) == 0
    (point,) = read_results(out).points
    assert point.options["refine"] == {"steps": 2, "lr": 0.01, "seed": 0, "anneal": True,
                                       "bfloat16": False, "linear_step": 0.0}
    assert point.options["load"]["refine"] == 2 and point.bpp > 0
    assert main([*argv, "--refine", "cheap", "--force"]) == 0
    (point,) = read_results(out).points
    assert point.options["refine"]["anneal"] is False and point.options["load"]["refine"] == "cheap"
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--refine", "-1", "--force"])
    assert exit_info.value.code == 2
    assert ("argument --refine: must be one of linear, cheap, full or an integer in [0, inf), "
            "got -1"
            in capsys.readouterr().err)


def _measured(tmp_path, name, files, scale=1.0):
    """A measured curve (6 points) on the named images of dataset 'kodak'."""
    def images(i):
        bpp = RATE[i] * scale
        return [ImageResult(f, 768, 512, round(bpp * 768 * 512 / 8), bpp, PSNR[i],
                            0.9 + i / 100, 0.1, 0.01) for f in files]

    results = Results(name=name, codec="jpeg", encoder="test", dataset=Dataset("kodak", files),
                      points=[Point.from_images(f"q{i}", images(i)) for i in range(len(RATE))])
    path = tmp_path / f"{name}.json"
    write_results(results, path)
    return str(path)


def test_comparisons_across_image_sets_are_refused_unless_allowed(tmp_path, capsys,
                                                                  monkeypatch):
    """A 3-image curve against the 24-image published curve: bdrate, plot and report refuse."""
    pytest.importorskip("matplotlib")
    monkeypatch.setenv("TRELLIC_DATA", str(tmp_path))  # no kodak/ there: the report has no crops
    kodak = [f"kodim{i:02d}.png" for i in range(1, 25)]
    few = _measured(tmp_path, "few", kodak[:3])
    full = _measured(tmp_path, "full", kodak, scale=0.9)
    commands = {
        "bdrate": ["bdrate", few, "--reference", "mbt2018-mean"],
        "plot": ["plot", few, "--reference", "mbt2018-mean", "-o", str(tmp_path / "rd.png")],
        "report": ["report", few, "--reference", "mbt2018-mean", "-o", str(tmp_path / "r.html")],
    }
    for name, argv in commands.items():
        assert main(argv) == 1, name
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("trellic: error: curves measured on "
                                                      "different image sets: ")
        assert f"{few} has 3 images of kodak, reference:mbt2018-mean has 24 images" in err
        assert not (tmp_path / "rd.png").exists() and not (tmp_path / "r.html").exists()
    for name, argv in commands.items():
        assert main([*argv, "--allow-mixed-images"]) == 0, name
        err = capsys.readouterr().err
        assert "trellic: warning: curves measured on different image sets: " in err
    assert main(["bdrate", few, full]) == 1
    assert "(21 only in the second, e.g. kodim04.png)" in capsys.readouterr().err
    assert main(["bdrate", full, "--reference", "mbt2018-mean"]) == 0
    assert "warning" not in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["baseline", "D", "--codec", "avif", "--quality", "150"],
     "avif quality must be an integer in [0, 100], got 150"),
    (["baseline", "D", "--quality", "-5", "--codec", "jpeg"],
     "jpeg quality must be an integer in [1, 100], got -5"),
    (["baseline", "D", "--codec", "x265", "--quality", "52"], "x265 qp must be an integer in"),
    (["baseline", "D", "--codec", "webp", "--quality", "50", "50"], "quality is given twice"),
    (["baseline", "D", "--codec", "webp", "--quality", "5.5"], "not an integer: '5.5'"),
    (["baseline", "D", "--codec", "webp", "--workers", "0"], "argument --workers: must be in"),
    (["eval", "D", "--limit", "0"], "argument --limit: must be in [1, inf), got 0"),
    (["eval", "D", "--lambda-t", "nan"], "argument --lambda-t: must be a finite number"),
    (["eval", "D", "--lambda-t", "-1"], "argument --lambda-t: must be in [0, "),
    (["eval", "D", "--refine", "-1"], "argument --refine: must be one of linear, cheap, full"),
    (["eval", "D", "--refine", "fast"], "argument --refine: must be one of linear, cheap, full"),
    (["plot", "a.json", "--max-bpp", "0"], "argument --max-bpp: must be in [0.01, 32], got 0"),
    (["report", "a.json", "--max-bpp", "inf"], "argument --max-bpp: must be a finite number"),
    (["bdrate", "a.json", "--method", "linear"], "argument --method: invalid choice"),
])
def test_option_values_outside_their_domain_are_usage_errors(argv, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "-o", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_a_failing_sweep_keeps_the_points_it_finished(folder, tmp_path, monkeypatch, capsys):
    from trellic.errors import TrellicError
    from trellic.eval import baselines

    class Broken:
        def encode(self, image):
            raise TrellicError("encoder crashed")

    settings = baselines.settings("jpeg", [10, 30, 50])
    settings[2] = type(settings[2])("quality50", Broken, settings[2].fields)
    monkeypatch.setattr(baselines, "settings", lambda name, qualities: settings)
    out = tmp_path / "jpeg.json"
    assert main(["baseline", str(folder), "--codec", "jpeg", "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"encoder crashed (2 of 3 points finished, kept in {out})" in err
    assert [p.quality for p in read_results(out).points] == [10, 30]


def test_a_losslessly_coded_image_gives_a_finite_curve_and_a_warning(tmp_path, capsys):
    """An all-black image is lossless in JPEG: PSNR_MAX by the MSE floor, not inf."""
    from trellic.eval.metrics import PSNR_MAX

    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.zeros((176, 176, 3), np.uint8)).save(images / "black.png")
    out = tmp_path / "jpeg.json"
    assert main(["baseline", str(images), "--codec", "jpeg", "--quality", "20", "95",
                 "-o", str(out)]) == 0
    assert [p.psnr_rgb for p in read_results(out).points] == [PSNR_MAX, PSNR_MAX]
    assert "trellic: warning: black.png decoded identical to the original" in (
        capsys.readouterr().err)


def test_convert_results_writes_compressai_layout_and_back(tmp_path, capsys):
    source = _curve(tmp_path, "ours")
    out = tmp_path / "compressai.json"
    assert main(["convert-results", source, "--to", "compressai", "-o", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["name"] == "ours" and data["results"]["bpp"] == RATE
    assert data["results"]["psnr-rgb"] == PSNR
    back = tmp_path / "back.json"
    assert main(["convert-results", str(out), "--to", "trellic", "-o", str(back)]) == 0
    assert [p.psnr_rgb for p in read_results(back).points] == PSNR
    assert main(["convert-results", source, "--to", "compressai", "-o", str(out)]) == 1
    assert "exists" in capsys.readouterr().err
