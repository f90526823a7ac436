"""The results schema: write/read round trip, CompressAI files, references, safe writes."""

from __future__ import annotations

import json
import math
import os

import pytest

from trellic.errors import TrellicError
from trellic.eval.results import (
    SCHEMA_VERSION,
    Dataset,
    ImageResult,
    Point,
    Results,
    check_image_sets,
    read_reference,
    read_results,
    reference_names,
    to_compressai,
    write_results,
)


def _image(name, bpp, psnr):
    return ImageResult(name=name, width=768, height=512, bytes=round(bpp * 768 * 512 / 8),
                       bpp=bpp, psnr_rgb=psnr, ms_ssim_rgb=0.97, encode_seconds=0.1,
                       decode_seconds=0.01, estimated_bpp=bpp * 0.99)


def _results():
    points = [
        Point.from_images("m1", [_image("a.png", 0.5, 31.0), _image("b.png", 0.7, 33.0)],
                          model="m1", checkpoint_sha256="ab" * 32, lambda_=0.0067,
                          quantizer={"kind": "tcq8", "delta": 0.6, "lambda_t": 0.12},
                          options={"architecture": {"N": 128, "M": 192}}),
        Point.from_images("m0", [_image("a.png", 0.2, 28.0), _image("b.png", 0.3, 29.0)],
                          model="m0"),
    ]
    return Results(name="trellic tcq8", codec="trellic", encoder="trellic 0.1.0",
                   dataset=Dataset("kodak", ["a.png", "b.png"]), points=points,
                   device="cpu", torch_version="2.13.0", git_commit="abc", created="now")


def test_points_are_compressai_style_means_sorted_by_rate():
    results = _results()
    assert [p.label for p in results.points] == ["m0", "m1"]
    assert results.points[1].bpp == pytest.approx(0.6)
    assert results.points[1].psnr_rgb == pytest.approx(32.0)
    assert results.points[1].estimated_bpp == pytest.approx(0.6 * 0.99)


def test_schema_round_trips_through_a_file(tmp_path):
    results = _results()
    write_results(results, tmp_path / "r.json")
    raw = json.loads((tmp_path / "r.json").read_text())
    assert raw["schema"] == "trellic-results" and raw["schema_version"] == SCHEMA_VERSION
    assert raw["points"][1]["lambda"] == 0.0067
    assert read_results(tmp_path / "r.json") == results


def test_existing_outputs_are_kept_without_force(tmp_path):
    path = tmp_path / "r.json"
    path.write_text("first")
    with pytest.raises(TrellicError, match="--force"):
        write_results(_results(), path)
    assert path.read_text() == "first"
    write_results(_results(), path, force=True)
    assert read_results(path) == _results()
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temporary left behind
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # the usual mode, not mkstemp's 0600


def test_non_finite_values_are_refused(tmp_path):
    results = _results()
    results.points[0].psnr_rgb = math.inf
    with pytest.raises(TrellicError, match="non-finite"):
        write_results(results, tmp_path / "r.json")


def test_newer_schema_versions_and_foreign_json_are_refused(tmp_path):
    data = _results().to_dict()
    data["schema_version"] = SCHEMA_VERSION + 1
    (tmp_path / "new.json").write_text(json.dumps(data))
    with pytest.raises(TrellicError, match="not supported"):
        read_results(tmp_path / "new.json")
    (tmp_path / "other.json").write_text('{"hello": 1}')
    with pytest.raises(TrellicError, match="neither"):
        read_results(tmp_path / "other.json")
    with pytest.raises(TrellicError, match="not found"):
        read_results(tmp_path / "missing.json")


@pytest.mark.parametrize("psnr_key, ssim_key", [("psnr-rgb", "ms-ssim-rgb"), ("psnr", "ms-ssim")])
def test_compressai_results_files_are_read(tmp_path, psnr_key, ssim_key):
    data = {"name": "bmshj2018", "description": "Inference (ans)",
            "results": {"bpp": [0.3, 0.1, 0.2], psnr_key: [31.0, 27.0, 29.0],
                        ssim_key: [0.96, 0.92, 0.94], "encoding_time": [1, 1, 1]}}
    (tmp_path / "c.json").write_text(json.dumps(data))
    results = read_results(tmp_path / "c.json")
    assert results.codec == "reference" and results.name == "bmshj2018"
    assert [p.bpp for p in results.points] == [0.1, 0.2, 0.3]
    assert [p.psnr_rgb for p in results.points] == [27.0, 29.0, 31.0]
    assert results.points[0].ms_ssim_rgb == 0.92 and results.points[0].encode_seconds == 1


def test_results_export_to_compressai_layout_and_read_back(tmp_path):
    results = _results()
    data = to_compressai(results)
    # What compressai.utils.plot reads: name, results.bpp and results.<metric>, in pairs.
    assert data["name"] == "trellic tcq8" and data["results"]["bpp"] == [0.25, 0.6]
    assert data["results"]["psnr-rgb"] == [28.5, 32.0]
    assert data["results"]["ms-ssim-rgb"] == pytest.approx([0.97, 0.97])
    (tmp_path / "c.json").write_text(json.dumps(data))
    back = read_results(tmp_path / "c.json")
    for ours, theirs in zip(results.points, back.points, strict=True):
        assert (theirs.bpp, theirs.psnr_rgb, theirs.ms_ssim_rgb, theirs.decode_seconds) == (
            ours.bpp, ours.psnr_rgb, ours.ms_ssim_rgb, ours.decode_seconds)
    results.points[0].ms_ssim_rgb = None  # a column some point lacks is left out
    assert set(to_compressai(results)["results"]) == {
        "bpp", "psnr-rgb", "encoding_time", "decoding_time"}


def test_shipped_reference_curves_name_their_source():
    assert {"bmshj2018-hyperprior", "mbt2018-mean", "mbt2018", "vtm", "bpg"} <= set(
        reference_names())
    for name in reference_names():
        curve = read_reference(name)
        assert curve.codec == "reference" and "CompressAI" in curve.source
        assert len(curve.points) >= 6
    mbt = read_reference("mbt2018-mean")
    assert mbt.points[0].bpp == pytest.approx(0.12392171223958336)
    assert mbt.points[-1].psnr_rgb == pytest.approx(40.63331397919807)


def _on(dataset):
    return Results(name=dataset.name, codec="jpeg", encoder="e", dataset=dataset,
                   points=[Point("p", bpp=0.5, psnr_rgb=30.0)])


KODAK = [f"kodim{i:02d}.png" for i in range(1, 25)]


def test_curves_on_the_same_images_compare_silently():
    curves = [_on(Dataset("kodak", KODAK)), _on(Dataset("other-name", KODAK)),
              _on(Dataset("Kodak", KODAK)), read_reference("mbt2018-mean")]
    assert check_image_sets(curves, ["a", "b", "c", "reference:mbt2018-mean"]) == []


def test_curves_on_different_images_are_refused_naming_both_sets():
    few = _on(Dataset("kodak", KODAK[:3]))
    with pytest.raises(TrellicError, match=r"^curves measured on different image sets: "
                       r"few.json has 3 images of kodak, reference:mbt2018-mean has 24 "
                       r"images of kodak; use --allow-mixed-images"):
        check_image_sets([few, read_reference("mbt2018-mean")],
                         ["few.json", "reference:mbt2018-mean"])
    other = _on(Dataset("kodak", [*KODAK[:2], "kodim99.png"]))
    with pytest.raises(TrellicError, match=r"few.json has 3 images of kodak, other.json has 3 "
                       r"images of kodak \(1 only in the first, e.g. kodim03.png; 1 only in "
                       r"the second, e.g. kodim99.png\) \(and 1 more\)"):
        check_image_sets([few, other, _on(Dataset("clic", count=30))],
                         ["few.json", "other.json", "clic.json"])
    (warning,) = check_image_sets([few, read_reference("vtm")], ["few.json", "vtm"],
                                  allow_mixed=True)
    assert warning.startswith("curves measured on different image sets: few.json has 3")


def test_curves_without_an_image_set_are_compared_with_a_warning():
    unknown = _on(Dataset("unknown"))
    (warning,) = check_image_sets([unknown, read_reference("vtm")], ["c.json", "vtm"])
    assert warning == ("cannot check that the curves were measured on the same images: "
                       "c.json records no image set")
    assert check_image_sets([unknown], ["c.json"]) == []


def test_reference_curves_record_their_dataset_and_image_count(tmp_path):
    for name in reference_names():
        assert read_reference(name).dataset == Dataset("kodak", [], 24)
    counted = _on(Dataset("clic", count=30))
    write_results(counted, tmp_path / "c.json")
    assert read_results(tmp_path / "c.json").dataset.describe() == "30 images of clic"
