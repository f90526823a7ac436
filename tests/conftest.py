"""Shared fixtures: tiny models with non-trivial latents, synthetic images, data paths."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from trellic.models import CodecModel, ModelConfig
from trellic.paths import kodak_dir
from trellic.zoo import LoadedModel, save_model


def pytest_configure(config):
    """One intra-op thread per test process: the suite runs under xdist on 2 cores.

    ``TRELLIC_TEST_ONEDNN=off`` runs the whole suite with oneDNN disabled (plain ATen
    kernels), as ``ONEDNN_MAX_CPU_ISA=AVX2`` runs it with an older CPU's kernels: the
    suite must be green under every kernel set (docs/robustness.md).
    """
    torch.set_num_threads(1)
    if os.environ.get("TRELLIC_TEST_ONEDNN", "on") == "off":
        torch.backends.mkldnn.enabled = False


def make_tiny_model(
    seed: int = 0, gain: float = 30.0, architecture: str = "mbt2018-mean", M: int = 24
) -> CodecModel:
    """A random N=16 model whose latents are scaled up so indices are far from all-zero.

    The channel-conditional architecture gets non-zero slice corrections (a trained
    model's; they start at zero).
    """
    torch.manual_seed(seed)
    model = CodecModel(ModelConfig(architecture, N=16, M=M))
    codec = model.latent_codec
    with torch.no_grad():
        model.g_a[-1].weight.mul_(gain)
        codec.h_s[-1].bias[M:].fill_(2.0)  # scales ~2: several table rows in use
        corrections = ("mean_nets", "scale_nets", "lrp_nets")
        for net in (net for name in corrections for net in getattr(codec, name, ())):
            net[-1].weight.normal_(0.0, 0.05)
            net[-1].bias.normal_(0.0, 0.1)
    model.eval()
    model.update()
    return model


@pytest.fixture(scope="session")
def tiny_model() -> CodecModel:
    return make_tiny_model()


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory, tiny_model):
    """The tiny model saved as a weights file: (path, LoadedModel)."""
    path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    sha256 = save_model(tiny_model, path, {"training": {"lmbda": 0.01}})
    return path, LoadedModel(tiny_model, f"file:{sha256[:16]}", sha256, {})


@pytest.fixture(scope="session")
def tiny_channel_weights(tmp_path_factory):
    """A tiny channel-conditional (ms2020-channel) model as a weights file: (path, LoadedModel)."""
    model = make_tiny_model(architecture="ms2020-channel")
    path = tmp_path_factory.mktemp("weights") / "tiny-channel.safetensors"
    sha256 = save_model(model, path, {"training": {"lmbda": 0.01}})
    return path, LoadedModel(model, f"file:{sha256[:16]}", sha256, {})


def synthetic_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth gradient plus texture, uint8 (H, W, 3)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([xx * 3 + yy, yy * 2, 128 + 60 * np.sin(xx / 5.0)], axis=-1)
    return np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)


def kodak_images(count: int) -> list:
    folder = kodak_dir()
    files = sorted(folder.glob("kodim*.png"))[:count]
    if len(files) < count:
        pytest.skip(f"Kodak images not found in {folder} (set TRELLIC_DATA)")
    return files


def pytest_terminal_summary(terminalreporter):
    """One line naming every skipped check and why, grouped by reason, however many there are.

    Machine-dependent checks (float kernels, optional encoders, data) skip on some
    machines; this line makes what a green run did not prove visible in every log.
    """
    reasons: dict[str, int] = {}
    for report in terminalreporter.stats.get("skipped", []):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        reason = reason.removeprefix("Skipped: ")
        reasons[reason] = reasons.get(reason, 0) + 1
    if reasons:
        parts = [f"{count} x {reason}" for reason, count in
                 sorted(reasons.items(), key=lambda item: -item[1])]
        terminalreporter.write_line(
            f"trellic: skipped {sum(reasons.values())} checks: " + "; ".join(parts))
    else:
        terminalreporter.write_line("trellic: no check was skipped")
