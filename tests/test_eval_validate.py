"""Results files are checked on read: every fault is one error naming the file and the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trellic.errors import TrellicError
from trellic.eval.results import (
    Dataset,
    ImageResult,
    Point,
    Results,
    read_results,
    write_results,
)

DOCS = Path(__file__).resolve().parents[1] / "docs"
GOOD = {"bpp": [0.1, 0.2, 0.4, 0.8], "psnr-rgb": [27.0, 29.5, 32.0, 34.6],
        "ms-ssim-rgb": [0.9, 0.94, 0.97, 0.985]}


def _compressai(tmp_path, **columns):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"name": "c", "results": {**GOOD, **columns}}))
    return path


@pytest.mark.parametrize("columns, message", [
    ({"ms-ssim-rgb": [10.0, 12.2, 15.2, 18.2]},
     r"results.ms-ssim-rgb\[0\] = 10 is outside \[0, 1\] \(MS-SSIM is linear, not in dB\)"),
    ({"ms-ssim-rgb": [0.9, 0.94]}, "results.ms-ssim-rgb has 2 values, results.bpp has 4"),
    ({"bpp": 0.5, "psnr-rgb": 30.0}, "results.bpp must be a list, got 0.5"),
    ({"psnr-rgb": [27.0, 29.0, 31.0, None]}, r"results.psnr-rgb\[3\] must be a number, got null"),
    ({"psnr-rgb": [27.0, 29.0, 31.0, True]}, r"results.psnr-rgb\[3\] must be a number, got True"),
    ({"psnr-rgb": [27.0, 29.0, 31.0, 400.0]}, r"results.psnr-rgb\[3\] = 400 is outside \[0, 120\]"),
    ({"bpp": [0.1, 0.0, 0.4, 0.8]}, r"results.bpp\[1\] = 0 is outside \(0, inf\]"),
    ({"bpp": [], "psnr-rgb": [], "ms-ssim-rgb": []}, "the curve has no points"),
    ({"encoding_time": [1, 1, -1, 1]}, r"results.encoding_time\[2\] = -1 is outside"),
])
def test_malformed_compressai_files_are_one_line_errors(tmp_path, columns, message):
    path = _compressai(tmp_path, **columns)
    with pytest.raises(TrellicError, match=f"^{path}: {message}"):
        read_results(path)


def test_nan_and_missing_psnr_in_compressai_files(tmp_path):
    path = tmp_path / "nan.json"
    path.write_text('{"results": {"bpp": [0.1, 0.2], "psnr": [NaN, 30.0]}}')
    with pytest.raises(TrellicError, match=r"results.psnr\[0\] must be finite, got nan"):
        read_results(path)
    path.write_text('{"results": {"bpp": [0.1, 0.2], "ms-ssim": [0.9, 0.95]}}')
    with pytest.raises(TrellicError, match="no PSNR column"):
        read_results(path)


def test_compressai_files_record_no_image_set(tmp_path):
    curve = read_results(_compressai(tmp_path))
    assert curve.dataset == Dataset("unknown") and curve.dataset.size() is None
    assert [p.ms_ssim_rgb for p in curve.points] == GOOD["ms-ssim-rgb"]


def _written(tmp_path) -> dict:
    images = [ImageResult(name, 200, 176, 900, 0.2, 30.0, 0.95, 0.1, 0.01)
              for name in ("a.png", "b.png")]
    results = Results(name="c", codec="jpeg", encoder="e",
                      dataset=Dataset("set", ["a.png", "b.png"]),
                      points=[Point.from_images("q1", images, quality=1)])
    write_results(results, tmp_path / "r.json")
    return json.loads((tmp_path / "r.json").read_text())


@pytest.mark.parametrize("change, message", [
    (lambda d: d["points"][0].update(ms_ssim_rgb=15.2),
     r"points\[0\].ms_ssim_rgb = 15.2 is outside \[0, 1\] \(MS-SSIM is linear, not in dB\)"),
    (lambda d: d["points"][0]["images"][1].update(width="200"),
     r"points\[0\].images\[1\].width must be an integer, got '200'"),
    (lambda d: d["points"][0]["images"][0].update(psnr_rgb=float("inf")),
     r"points\[0\].images\[0\].psnr_rgb must be finite"),
    (lambda d: d["points"][0].pop("bpp"), r"points\[0\] has no 'bpp'"),
    (lambda d: d["points"][0].update(psnr_db=30), r"points\[0\].psnr_db is not a field"),
    (lambda d: d.update(points=[]), "the curve has no points"),
    (lambda d: d.update(points={}), "points must be a list, got dict"),
    (lambda d: d["dataset"].update(count=3), "dataset.count is 3 but dataset.files has 2"),
    (lambda d: d["dataset"].update(files=["a.png", "c.png"]),
     r"points\[0\].images name other images than dataset.files"),
    (lambda d: d.update(workers=0), r"workers = 0 is outside \[1, inf\]"),
])
def test_malformed_trellic_files_name_the_field(tmp_path, change, message):
    data = _written(tmp_path)
    change(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(TrellicError, match=f"^{path}: {message}"):
        read_results(path)


def test_every_shipped_results_file_is_accepted():
    files = sorted([*DOCS.glob("results/**/*.json"), *DOCS.glob("baselines/*.json")])
    assert len(files) >= 10
    for path in files:
        curve = read_results(path)
        assert curve.dataset.size() == 24 and curve.points
