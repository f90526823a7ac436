"""The eval, baseline, bdrate, plot and report commands, run in-process through trellic.cli."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from trellic.cli import main
from trellic.eval.results import Dataset, Point, Results, read_results, write_results

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
    assert main(["plot", str(jpeg), str(webp), "--reference", "vtm", "-o", str(png)]) == 0
    assert png.read_bytes().startswith(b"\x89PNG")
    page = tmp_path / "report.html"
    assert main(["report", str(jpeg), str(webp), "--reference", "mbt2018-mean",
                 "--anchor", "jpeg", "--image", str(folder / "img0.png"), "--crop", "8,8,64,64",
                 "-o", str(page)]) == 0
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
    argv = ["eval", str(folder), "--model", str(weights), "--quantizer", "usq", "-o", str(out)]
    assert main([*argv, "--refine", "2"]) == 0
    (point,) = read_results(out).points
    assert point.options["refine"] == {"steps": 2, "lr": 0.01, "seed": 0}
    assert point.options["load"]["refine"] == 2 and point.bpp > 0
    assert main([*argv, "--refine", "-1", "--force"]) == 1
    assert "--refine must be at least 0, got -1" in capsys.readouterr().err
