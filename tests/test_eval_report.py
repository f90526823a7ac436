"""trellic report on what the project writes: eval output (refined or not), baselines, the zoo."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import make_tiny_model, synthetic_image
from trellic.cli import main
from trellic.zoo import save_model

pytest.importorskip("matplotlib")
pytest.importorskip("trellic.codec", reason="trellic.codec (the learned codec) is missing")

ROOT = Path(__file__).resolve().parents[1]
ZOO = sorted((ROOT / "docs" / "results").glob("zoo-*.json"))


def _captions(page: str) -> dict[str, list[str]]:
    """Figure title -> its captions, in page order."""
    found: dict[str, list[str]] = {}
    for title, caption in re.findall(r"<figcaption><b>(.*?)</b><br>(.*?)</figcaption>", page):
        found.setdefault(title, []).append(caption)
    return found


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    """A 2-image folder; trellic eval output of two tiny models, plain and refined (2 steps),
    and a JPEG sweep wide enough to overlap them."""
    root = tmp_path_factory.mktemp("measured")
    images = root / "images"
    images.mkdir()
    for index in range(2):
        Image.fromarray(synthetic_image(176, 200, seed=index)).save(images / f"img{index}.png")
    models = []
    for index, gain in enumerate((4.0, 30.0)):
        path = root / f"tiny{index}.safetensors"
        save_model(make_tiny_model(seed=index, gain=gain), path, {"training": {"lmbda": 0.01}})
        models += ["--model", str(path)]
    curves = {"plain": root / "plain.json", "refined": root / "refined.json",
              "jpeg": root / "jpeg.json"}
    assert main(["eval", str(images), *models, "-o", str(curves["plain"])]) == 0
    assert main(["eval", str(images), *models, "--refine", "2", "--name", "refined",
                 "-o", str(curves["refined"])]) == 0
    qualities = ["5", "15", "30", "50", "70", "85", "95", "100"]
    assert main(["baseline", str(images), "--codec", "jpeg", "--quality", *qualities,
                 "-o", str(curves["jpeg"])]) == 0
    return images, curves


def test_report_reruns_eval_points_plain_and_refined_beside_a_baseline(measured, tmp_path,
                                                                      capsys):
    images, curves = measured
    page = tmp_path / "report.html"
    assert main(["report", str(curves["plain"]), str(curves["refined"]), str(curves["jpeg"]),
                 "--reference", "mbt2018-mean", "--anchor", "jpeg", "--allow-mixed-images",
                 "--image", str(images / "img0.png"), "--crop", "0,0,32,32",
                 "-o", str(page)]) == 0
    error = capsys.readouterr().err
    assert "warning" in error and "report crops" not in error  # 2 images vs 24; no progress
    html = page.read_text()
    captions = _captions(html)
    rows = len(re.findall(r"<h3>Near ", html))
    assert rows >= 1
    for title in ("trellic usq", "refined", "JPEG 4:2:0"):
        assert len(captions[title]) == rows and all(" bpp, " in c for c in captions[title])
    # plot, original, then a crop and an error map per measured curve and row
    assert html.count("data:image/png;base64,") == 2 + rows * 3 * 2
    assert 'class="note"' not in html


def test_report_refuses_a_crop_rate_that_a_curve_does_not_reach(measured, tmp_path, capsys):
    images, curves = measured
    argv = ["report", str(curves["plain"]), str(curves["jpeg"]), "--image",
            str(images / "img0.png"), "-o", str(tmp_path / "r.html")]
    assert main([*argv, "--crop-bpp", "500"]) == 1
    error = capsys.readouterr().err
    assert error.startswith("trellic: error: crop rate 500 bpp is outside the rates every curve")
    assert "img0.png" in error and error.count("\n") == 1
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--crop-bpp", "-1"])
    assert exit_info.value.code == 2


def test_report_shows_a_note_instead_of_a_crop_when_the_weights_changed(measured, tmp_path):
    images, curves = measured
    data = json.loads(curves["plain"].read_text())
    for point in data["points"]:
        point["checkpoint_sha256"] = "0" * 64
    stale = tmp_path / "stale.json"
    stale.write_text(json.dumps(data))
    page = tmp_path / "report.html"
    assert main(["report", str(stale), str(curves["jpeg"]), "--image",
                 str(images / "img1.png"), "-o", str(page)]) == 0
    notes = re.findall(r'<div class="note">(.*?)</div>', page.read_text())
    assert notes and all("changed since this curve was measured (sha256 000000000000" in n
                         for n in notes)


def test_report_tables_every_point_and_every_image(measured, tmp_path, monkeypatch):
    images, curves = measured
    page = tmp_path / "report.html"
    monkeypatch.setenv("TRELLIC_DATA", str(tmp_path))  # no kodak/ there: no crops
    assert main(["report", str(curves["jpeg"]), str(curves["plain"]), "-o", str(page)]) == 0
    html = page.read_text()
    jpeg = json.loads(curves["jpeg"].read_text())
    for point in jpeg["points"]:
        row = (f"<tr><td>JPEG 4:2:0</td><td>{point['label']}</td><td>{point['bpp']:.4f}</td>"
               f"<td>{point['psnr_rgb']:.3f}</td><td>{point['ms_ssim_rgb']:.5f}</td>")
        assert row in html
    per_image = html.split("<h2>Per image</h2>")[1].split("</table>")[0]
    assert "against <b>JPEG 4:2:0</b>" in per_image
    assert re.findall(r"<tr><td>(img\d.png)</td>", per_image) == ["img0.png", "img1.png"]
    assert "no crops: the default crop image" in html


def test_report_shows_progress_on_a_terminal(measured, tmp_path, capsys, monkeypatch):
    images, curves = measured
    monkeypatch.setattr("sys.stderr.isatty", lambda: True)
    assert main(["report", str(curves["jpeg"]), str(curves["refined"]), "--image",
                 str(images / "img0.png"), "-o", str(tmp_path / "r.html")]) == 0
    error = capsys.readouterr().err
    assert "report crops:" in error and "refine:" in error  # the re-runs, and their steps


@pytest.mark.parametrize("paths", [
    [path for path in ZOO if "refine" not in path.stem] + [ROOT / "docs/results/v1/zoo-usq.json"],
    pytest.param([path for path in ZOO if "refine" in path.stem], marks=pytest.mark.slow),
], ids=["plain", "refined"])
def test_shipped_results_go_through_report_plot_and_bdrate(paths, tmp_path, capsys):
    """The zoo's curves (and an old one, measured on weights since replaced) are read by every
    command that reads results; crops on a small image keep the re-runs short (refined: 100
    steps per point, minutes on a shared CPU, hence slow)."""
    assert paths
    image = tmp_path / "small.png"
    Image.fromarray(synthetic_image(64, 64)).save(image)
    webp = str(ROOT / "docs" / "baselines" / "webp.json")
    files = [str(path) for path in paths]
    page = tmp_path / "report.html"
    assert main(["report", *files, webp, "--image", str(image), "-o", str(page)]) == 0
    html = page.read_text()
    captions = _captions(html)
    for path in paths:
        name = json.loads(path.read_text())["name"]
        if path.parent.name == "v1":
            assert f"<b>{name}</b><br>" in html and "changed since this curve was measured" in html
        else:
            assert captions[name] and all(" bpp, " in caption for caption in captions[name])
    assert main(["plot", *files, webp, "-o", str(tmp_path / "rd.png")]) == 0
    assert main(["bdrate", "--table", webp, *files]) == 0
    webp_row = next(line for line in capsys.readouterr().out.splitlines()
                    if line.startswith("| WebP |"))
    assert "n/a" not in webp_row and webp_row.count("|") == len(files) + 3
