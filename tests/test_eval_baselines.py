"""Classical baselines: every codec round-trips, quality orders the rate, tools are checked."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from trellic.errors import TrellicError
from trellic.eval import baselines
from trellic.eval.metrics import psnr

PILLOW = ["jpeg", "jpeg444", "webp", "avif", "avif420"]


def _image():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:96, 0:128]
    base = np.stack([xx + yy, 2 * yy, 128 + 60 * np.sin(xx / 7)], axis=-1)
    return np.clip(base + rng.normal(0, 10, base.shape), 0, 255).astype(np.uint8)


def _round_trip(name, quality):
    codec = baselines.make_codec(name, quality)
    data = codec.encode(_image())
    reconstruction = codec.decode(data)
    assert reconstruction.shape == _image().shape and reconstruction.dtype == np.uint8
    return len(data), psnr(_image(), reconstruction)


@pytest.mark.parametrize("name", PILLOW)
def test_pillow_baselines_round_trip_and_quality_orders_rate(name):
    qualities = baselines.BASELINES[name].qualities
    low_bytes, low_psnr = _round_trip(name, qualities[0])
    high_bytes, high_psnr = _round_trip(name, qualities[-1])
    assert low_bytes < high_bytes and low_psnr < high_psnr


def test_chroma_subsampling_is_what_the_name_says():
    assert baselines.BASELINES["jpeg"].options["subsampling"] == "4:2:0"
    assert baselines.BASELINES["jpeg444"].options["subsampling"] == "4:4:4"
    assert baselines.BASELINES["avif"].options["subsampling"] == "4:4:4"
    assert baselines.BASELINES["avif420"].options["subsampling"] == "4:2:0"
    assert _round_trip("jpeg", 50)[0] < _round_trip("jpeg444", 50)[0]


def test_sweeps_have_eight_to_twelve_points_with_their_settings():
    for name, baseline in baselines.BASELINES.items():
        assert 8 <= len(baseline.qualities) <= 12, name
    settings = baselines.settings("avif")
    assert settings[0].label == "quality4" and settings[0].fields["quality"] == 4
    assert settings[0].fields["options"]["speed"] == 4
    assert [s.fields["quality"] for s in baselines.settings("jpeg", [10, 20])] == [10, 20]


def test_encoder_versions_name_the_libraries():
    assert "libjpeg-turbo" in baselines.encoder_version("jpeg")
    assert "libwebp" in baselines.encoder_version("webp")
    assert "libavif" in baselines.encoder_version("avif")


@pytest.mark.parametrize("name, tool", [("jxl", "cjxl"), ("x265", "ffmpeg")])
def test_missing_tools_are_named(monkeypatch, name, tool):
    monkeypatch.setattr(shutil, "which", lambda command: None)
    with pytest.raises(TrellicError, match=f"not found: .*{tool}"):
        baselines.get_baseline(name)


@pytest.mark.parametrize("name", ["jxl", "x265"])
def test_tool_baselines_round_trip_when_installed(name):
    for tool in baselines.BASELINES[name].tools:
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not on PATH")
    qualities = baselines.BASELINES[name].qualities
    low_bytes, low_psnr = _round_trip(name, qualities[0])
    high_bytes, high_psnr = _round_trip(name, qualities[-1])
    assert low_bytes < high_bytes and 20 < low_psnr < high_psnr


def test_unknown_baselines_are_refused():
    with pytest.raises(TrellicError, match="unknown baseline"):
        baselines.get_baseline("gif")


@pytest.mark.parametrize("name", PILLOW)
def test_every_quality_in_range_is_accepted_and_none_outside(name):
    """The declared range is what the encoder accepts; outside it nothing reaches the codec."""
    low, high = baselines.BASELINES[name].quality_range
    for quality in (low, high):
        _round_trip(name, quality)
    for quality in (low - 1, high + 1):
        with pytest.raises(TrellicError, match=rf"{name} quality must be an integer in "
                           rf"\[{low}, {high}\], got {quality}"):
            baselines.make_codec(name, quality)
    with pytest.raises(TrellicError, match="given twice"):
        baselines.settings(name, [low, low])
    assert [s.fields["quality"] for s in baselines.settings(name)] == list(
        baselines.BASELINES[name].qualities)  # every default sweep is in range
