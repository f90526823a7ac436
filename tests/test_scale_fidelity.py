"""The exact scale path's fidelity to the float model: measured, and warned about at import."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import make_tiny_model, synthetic_image
from tests.test_interop_compressai import fixture_state, save_checkpoint
from trellic.cli import main
from trellic.interop.compressai import import_checkpoint
from trellic.latent.scale_fidelity import (
    SCALE_ERROR_TOLERANCE,
    probe_fidelity,
    scale_fidelity,
    synthetic_probe,
    warning_message,
)

IMAGES = [synthetic_image(64, 64, seed=1)]


def small_activations(model, gain: float = 1e-3, amplify: float = 30.0):
    """The same float scales (LeakyReLU is positively homogeneous) from h_s activations
    ``gain`` times smaller than the fixed point's resolution resolves; ``amplify`` first
    makes the scales depend strongly on those activations (the tiny model's are mostly bias)."""
    h_s, M = model.latent_codec.h_s, model.config.M
    with torch.no_grad():
        h_s[4].weight[M:].mul_(amplify)
        h_s[2].weight.mul_(gain)
        h_s[2].bias.mul_(gain)
        h_s[4].weight.div_(gain)
    model.update()
    return model


def test_a_tiny_models_exact_scales_track_its_float_scales():
    fidelity = scale_fidelity(make_tiny_model(), IMAGES)
    assert fidelity.images == 1 and fidelity.latents == 24 * 4 * 4
    assert fidelity.float_bits > 0 and fidelity.integer_bits > 0
    assert fidelity.float_table_bits > 0 and fidelity.integer_table_bits > 0
    assert np.isfinite(fidelity.mean_relative_error) and np.isfinite(fidelity.max_relative_error)
    assert 0 <= fidelity.mean_relative_error <= fidelity.max_relative_error < SCALE_ERROR_TOLERANCE
    assert 0 <= fidelity.rows_changed <= 0.05
    assert abs(fidelity.rate_loss) < 1e-3
    assert warning_message(fidelity) is None


def test_a_codec_without_an_exact_scale_path_is_refused():
    with pytest.raises(ValueError, match="measured for the \\(mean-\\)scale hyperprior only"):
        scale_fidelity(make_tiny_model(architecture="ms2020-channel"), IMAGES)


def test_the_scale_hyperprior_is_measured_too(tmp_path):
    checkpoint = _checkpoint("bmshj2018-hyperprior", tmp_path)
    model, _ = import_checkpoint(checkpoint, "bmshj2018-hyperprior")
    fidelity = scale_fidelity(model, IMAGES)
    assert np.isfinite(fidelity.mean_relative_error) and fidelity.integer_bits > 0


def test_activations_below_the_fixed_point_resolution_show_and_warn():
    reference = scale_fidelity(small_activations(make_tiny_model(), gain=1.0), IMAGES)
    degraded = scale_fidelity(small_activations(make_tiny_model()), IMAGES)
    # The float scales are the same model's: only the integer path lost precision.
    assert degraded.float_bits == pytest.approx(reference.float_bits, rel=1e-6)
    assert degraded.mean_relative_error > max(3 * reference.mean_relative_error,
                                              SCALE_ERROR_TOLERANCE)
    assert degraded.rows_changed > reference.rows_changed
    assert degraded.exceeds_tolerance()
    message = warning_message(degraded)
    assert message is not None and "mean relative scale error" in message
    assert f"{degraded.mean_relative_error:.2%}" in message


def test_the_probe_image_is_deterministic():
    probe = synthetic_probe()
    assert probe.shape == (256, 256, 3) and probe.dtype == np.uint8
    assert np.array_equal(probe, synthetic_probe())
    assert 20 < probe.std() < 80  # gradients and texture, not a flat image


def _checkpoint(arch: str, folder: Path, degrade: bool = False) -> Path:
    state = {k: v.clone() for k, v in fixture_state(arch).items()}
    if degrade:  # h_s's hidden activations 1000x smaller, its float output unchanged
        state["h_s.2.weight"] *= 1e-3
        state["h_s.2.bias"] *= 1e-3
        state["h_s.4.weight"] *= 1e3
    return save_checkpoint(folder / f"{arch}{'-small' if degrade else ''}.pth.tar", state)


def test_import_warns_when_the_exact_scales_miss_the_float_ones(tmp_path, capsys):
    weights = tmp_path / "clean.safetensors"
    checkpoint = _checkpoint("mbt2018-mean", tmp_path)
    assert main(["import-compressai", str(checkpoint), "--arch", "mbt2018-mean",
                 "-o", str(weights)]) == 0
    out, err = capsys.readouterr()
    reported = json.loads(out)["scale_fidelity"]
    model, _ = import_checkpoint(checkpoint, "mbt2018-mean")
    clean = probe_fidelity(model)
    assert reported["mean_relative_error"] == pytest.approx(clean.mean_relative_error, abs=1e-6)
    assert ("trellic: warning:" in err) == clean.exceeds_tolerance()

    degraded = _checkpoint("mbt2018-mean", tmp_path, degrade=True)
    assert main(["import-compressai", str(degraded), "--arch", "mbt2018-mean",
                 "-o", str(tmp_path / "small.safetensors")]) == 0
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.startswith("trellic: warning:")]
    assert len(lines) == 1 and "mean relative scale error" in lines[0]
    worse = json.loads(out)["scale_fidelity"]
    assert worse["mean_relative_error"] > max(clean.mean_relative_error, SCALE_ERROR_TOLERANCE)
