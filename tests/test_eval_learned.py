"""From a results file's record back to the codec it was measured with, or a one-line error."""

from __future__ import annotations

import pytest

from trellic.errors import TrellicError
from trellic.eval.learned import codec_from_point, load_learned
from trellic.eval.results import Point

pytest.importorskip("trellic.codec", reason="trellic.codec (the learned codec) is missing")


def _point(load: dict, refine: dict | None = None, sha: str | None = None) -> Point:
    return Point("p", bpp=0.5, psnr_rgb=30.0, checkpoint_sha256=sha,
                 options={"load": load, "refine": refine})


def test_eval_records_rebuild_the_same_codec_with_refinement_as_recorded(tiny_weights):
    weights, loaded = tiny_weights
    load = {"model": str(weights), "quantizer": "usq", "lambda_t": None, "refine": 3}
    recorded = {"steps": 3, "lr": 0.02, "seed": 1}
    codec = codec_from_point(_point(load, recorded, loaded.sha256))
    # the recorded config, not only the steps; records before the modes were annealed bfloat16
    assert codec.describe()["refine"] == {**recorded, "anneal": True, "bfloat16": True,
                                          "linear_step": 0.0}
    assert codec_from_point(_point(load)).describe()["refine"] == {
        "steps": 3, "lr": 0.01, "seed": 0, "anneal": True, "bfloat16": True, "linear_step": 0.0}
    cheap = codec_from_point(_point({**load, "refine": "cheap"})).describe()["refine"]
    assert cheap["anneal"] is False and cheap["steps"] < 100
    plain = codec_from_point(_point({**load, "refine": 0}, None, loaded.sha256))
    assert plain.describe()["refine"] is None
    older = {key: value for key, value in load.items() if key != "refine"}  # v1 files
    assert codec_from_point(_point(older)).describe()["refine"] is None
    assert load_learned(str(weights), "tcq4").describe()["quantizer"]["kind"] == "tcq4"


@pytest.mark.parametrize(("change", "message"), [
    (None, "does not record how its model was loaded"),
    ({"model": 3}, "does not record how its model was loaded"),
    ({"steps": 2}, "unknown model-loading field(s) steps"),
    ({"quantizer": None}, "records no quantizer name"),
    ({"quantizer": "tcq5"}, "unknown quantizer 'tcq5'"),
    ({"lambda_t": "0.1"}, "lambda_t is not a number"),
    ({"refine": -2}, "refine is not a step count"),
    ({"refine": True}, "refine is not a step count"),
    ({"refine": "fast"}, "unknown refinement mode 'fast'"),
])
def test_malformed_records_are_one_line_errors(tiny_weights, change, message):
    weights, _ = tiny_weights
    load = None if change is None else {"model": str(weights), "quantizer": "usq", **change}
    with pytest.raises(TrellicError, match=message.replace("(", r"\(").replace(")", r"\)")):
        codec_from_point(_point(load))


def test_a_bad_recorded_refinement_config_is_refused(tiny_weights):
    weights, _ = tiny_weights
    load = {"model": str(weights), "quantizer": "usq", "refine": 2}
    with pytest.raises(TrellicError, match="bad refinement setting"):
        codec_from_point(_point(load, {"steps": 2, "lr": -1.0, "seed": 0}))
    with pytest.raises(TrellicError, match="bad refinement setting"):
        codec_from_point(_point(load, {"steps": 2, "momentum": 0.9}))


def test_weights_that_changed_since_the_measurement_are_refused(tiny_weights):
    weights, loaded = tiny_weights
    point = _point({"model": str(weights), "quantizer": "usq"}, sha="ab" * 32)
    with pytest.raises(TrellicError, match=f"changed since this curve was measured "
                                           f"\\(sha256 abababababab, now {loaded.sha256[:12]}"):
        codec_from_point(point)
