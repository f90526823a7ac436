"""A model's measured operating points (the manifest's ``operating_points``) are what the
codec uses when the caller gives no setting; explicit settings win; bad ones are clear errors."""

import json

import pytest

from tests.conftest import synthetic_image
from trellic.codec import Codec
from trellic.errors import TrellicError
from trellic.models.refine import refine_config
from trellic.quant.registry import quantizer_names
from trellic.zoo import load, read_manifest, save_model, sha256_of


@pytest.fixture()
def zoo(tmp_path, tiny_model):
    save_model(tiny_model, tmp_path / "tiny.safetensors", {"training": {"lmbda": 0.01}})

    def write(points):
        entry = {"file": "tiny.safetensors", "sha256": sha256_of(tmp_path / "tiny.safetensors")}
        if points is not None:
            entry["operating_points"] = points
        manifest = {"default": "tiny", "models": {"tiny": entry}}
        (tmp_path / "manifest.json").write_text(json.dumps(manifest))
        return tmp_path

    return write


def test_the_codec_takes_the_models_operating_point_unless_told_otherwise(zoo):
    folder = zoo({"tcq4": {"lambda_t": 0.05, "linear_weight": 0.3}, "rdoq": {"lambda_t": 0.02},
                  "tcq4+linear": {"lambda_t": 0.1, "linear_weight": 0.6}})
    loaded = load("tiny", weights_dir=folder)
    codec = Codec.load_from(loaded, "tcq4")
    assert (codec.lambda_t, codec.quantizer.linear_weight) == (0.05, 0.3)
    for mode, expected in (("linear", (0.1, 0.6)), ("cheap", (0.05, 0.3))):
        refined = Codec.load_from(loaded, "tcq4", refine=refine_config(mode))
        assert (refined.lambda_t, refined.quantizer.linear_weight) == expected, mode
    rdoq_linear = Codec.load_from(loaded, "rdoq", refine=refine_config("linear"))
    assert rdoq_linear.lambda_t == 0.02  # no +linear point: the plain one
    rdoq = Codec.load_from(loaded, "rdoq")
    assert rdoq.lambda_t == 0.02
    assert rdoq.quantizer.linear_weight == rdoq.quantizer.default_linear_weight
    assert Codec.load_from(loaded, "tcq4", lambda_t=0.2).lambda_t == 0.2
    usq = Codec.load_from(loaded, "usq")
    assert usq.lambda_t == 0.0

    # the file records the lambda_t it was searched with, and the point changes the search
    image = synthetic_image(40, 72, seed=5)
    default = Codec.load_from(load("tiny", weights_dir=zoo(None)), "tcq4")
    assert default.lambda_t == default.quantizer.default_lambda_t != 0.05
    assert codec.encode(image).data != default.encode(image).data
    assert codec.decode(codec.encode(image).data).shape == image.shape


@pytest.mark.parametrize("points", [[], {"tcq5": {"lambda_t": 1}}, {"usq+cheap": {}},
                                    {"usq": {"lambda_t": -1}},
                                    {"usq": {"speed": 1}}, {"usq": {"lambda_t": "0.1"}}])
def test_bad_operating_points_are_a_clear_error(zoo, points):
    with pytest.raises(TrellicError, match="bad operating_points"):
        load("tiny", weights_dir=zoo(points))


def test_shipped_operating_points_cover_every_quantizer_and_encoder():
    manifest = read_manifest()
    measured = [name for name, entry in manifest["models"].items() if "operating_points" in entry]
    base = [f"mbt-mean-n64-{rate}" for rate in ("l0018", "l0035", "l0067", "l013")]
    assert {manifest["default"], *base} <= set(measured)
    expected = {f"{q}{mode}" for q in quantizer_names() for mode in ("", "+linear")}
    for name in measured:
        points = load(name).operating_points
        assert set(points) == expected, name
        assert points["usq"]["lambda_t"] == 0 and points["rdoq"]["lambda_t"] > 0, name
        assert all(points[f"{q}+linear"]["linear_weight"] > 0 for q in quantizer_names()), name
