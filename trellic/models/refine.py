"""Encoder-side latent refinement: optimise one image's y and z for its own RD cost.

The analysis transform is amortised: one pass maps every image to latents that
are good on average, not the best ones for this image. With the decoder, the
hyperprior and the tables fixed, gradient descent on the image's own latents
lowers ``lambda * 255^2 * MSE + bpp`` further (Campos et al. 2019; Yang, Bamler,
Mandt 2020). Rounding has no gradient, so the full mode rounds the latents by
stochastic Gumbel annealing (SGA, Yang et al. 2020): each value goes to its
floor or its ceiling by a relaxed Bernoulli draw whose temperature anneals
towards hard rounding. The cheap mode takes a few deterministic steps on the
unrounded latents (the rate of a unit interval around each value): an
image-aware target for the search, at a few times the plain encoder's time.
The linearised mode puts the image into the search's distortion instead: one
backward pass through g_s gives the first-order term of the image's squared
error, which moves the search's target (:func:`linearised_shift`).
Everything goes through the latent codec's contract: its side latents z, its
``relaxed`` rate, and ``quantize`` for the true cost. The result is an
ordinary pair (y, z) for ``latent_codec.compress``, which then runs the real
quantizer (rounding, the RDOQ or the TCQ search): the bitstream and the
decoder do not change, only the encoder spends more time.

The refined latents are kept only when their true cost (the real quantizer,
the coder's integer tables, the decoded image) is lower than the plain
encoder's, so refinement never loses on the image it codes, whatever the
quantizer. The annealing noise comes from a seeded generator and the loop
runs single-threaded: the same image always gives the same file.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
from torch import Tensor
from tqdm import tqdm

from trellic.determinism import single_threaded
from trellic.errors import TrellicError
from trellic.models.model import CodecModel
from trellic.quant.base import Quantizer
from trellic.rd import rd_cost

TEMPERATURE_START = 0.5  # SGA's initial temperature (Yang et al. 2020)
ANNEAL = 8.0  # temperature falls by e^-8 over the run, to near-hard rounding
TEMPERATURE_FLOOR = 1e-3
EDGE = 1e-5  # keeps atanh finite at the grid points
CHEAP_STEPS = 5  # the cheap mode: a few unrounded float32 steps
CHEAP_LR = 0.1  # docs/quantization.md, runs d and e
PROBE_RMS = 12**-0.5  # the linearised mode's probe: the size of a rounding error
MAX_STEPS = 10_000  # 100x the full mode: hours on a large image; more is a mistake
PROGRESS_ALWAYS = "always"  # ``progress`` value: show the bar even when stderr is no terminal


@dataclass(frozen=True)
class RefineConfig:
    """Adam steps on (y, z), its peak learning rate (cosine decay), the noise seed,
    whether the latents are rounded by SGA (False: left unrounded, deterministic),
    whether the networks compute in bfloat16 (faster only on CPUs with bfloat16 units;
    trellic's modes stay float32, which is the same everywhere and 6x faster on AVX2),
    and the linearised step taken first, in units of the quantizer's measured
    ``linear_weight`` (0: none, 1: the measured step; :func:`linearised_shift`)."""

    steps: int = 100
    lr: float = 0.01
    seed: int = 0
    anneal: bool = True
    bfloat16: bool = False
    linear_step: float = 0.0

    def __post_init__(self):
        if not 0 <= self.steps <= MAX_STEPS or not self.lr > 0 or self.linear_step < 0:
            raise ValueError(f"refinement needs 0 <= steps <= {MAX_STEPS}, lr > 0, "
                             f"linear_step >= 0, got {self}")
        if not (self.steps or self.linear_step):
            raise ValueError(f"refinement needs steps >= 1 or a linear step, got {self}")


# The encoder modes of ``--refine``: measured in docs/quantization.md.
REFINE_MODES = {
    "linear": RefineConfig(steps=0, anneal=False, linear_step=1.0),
    "cheap": RefineConfig(steps=CHEAP_STEPS, lr=CHEAP_LR, anneal=False),
    "full": RefineConfig(),
}


def refine_config(option: str | int) -> RefineConfig | None:
    """``--refine``'s value: a mode name, a number of full-mode steps, or 0 (off)."""
    if isinstance(option, str):
        if option not in REFINE_MODES:
            raise TrellicError(f"unknown refinement mode {option!r}: expected one of "
                               f"{', '.join(REFINE_MODES)} or a number of steps")
        return REFINE_MODES[option]
    if option and not 0 < option <= MAX_STEPS:
        raise TrellicError(f"--refine takes at most {MAX_STEPS} steps, got {option}")
    return RefineConfig(steps=option) if option else None


def sga_round(v: Tensor, temperature: float, generator: torch.Generator) -> Tensor:
    """Relaxed stochastic rounding of v to floor(v) or floor(v) + 1, differentiable in v."""
    floor = torch.floor(v.detach())
    d = (v - floor).clamp(EDGE, 1 - EDGE)
    logit_up = (torch.atanh(d) - torch.atanh(1 - d)) / temperature
    u = torch.rand(v.shape, generator=generator).clamp(EDGE, 1 - EDGE)
    logistic = torch.log(u) - torch.log1p(-u)  # difference of two Gumbel draws
    return floor + torch.sigmoid((logit_up + logistic) / temperature)


def _relaxed_cost(model: CodecModel, x: Tensor, y: Tensor, z: Tensor,
                  valid: tuple[int, int], lmbda: float,
                  rounding: Callable[[Tensor], Tensor], bfloat16: bool) -> Tensor:
    """lambda * 255^2 * MSE + bpp of (y, z) with ``rounding`` in place of rounding.

    The networks compute in bfloat16 (autocast) if asked, the likelihoods in float32.
    """
    height, width = valid
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bfloat16):
        out = model.latent_codec.relaxed(y, z, rounding)
        x_hat = model.g_s(out.y_hat)
    bits = sum(-torch.log2(likelihood).sum() for likelihood in out.likelihoods.values())
    mse = torch.mean((x_hat.float() - x)[..., :height, :width] ** 2)
    return rd_cost(mse, bits / (height * width), lmbda)


def _unrounded(v: Tensor) -> Tensor:
    """The cheap mode's relaxation: no rounding at all."""
    return v


def linearised_shift(model: CodecModel, x: Tensor, y: Tensor,
                     valid: tuple[int, int]) -> Tensor:
    """The move of the search's target that makes its distortion the image's, to first order.

    Around y, quantizing to ``y + e`` costs the image (Gauss-Newton, squared error
    summed over the valid pixels, J the Jacobian of g_s at y)::

        D(y + e) ~ D(y) + g . e + |J e|^2,    g = dD/dy.

    The first-order term is what the latent metric misses: g_s's own error
    correlates with errors towards the mean (docs/quantization.md). Writing
    ``|J e|^2 ~ a |e|^2``, with ``a`` the image squared error per unit latent
    squared error along g (measured by one probe through g_s), and completing
    the square, ``a |e + g / 2a|^2`` is the search's own squared error to the
    target ``y - g / 2a``: the exact minimiser of the linearised distortion
    along g. A search from that target minimises the linearised image
    distortion plus ``a * lambda_t`` times the bits; how much of the move to
    take is the quantizer's measured ``linear_weight``.

    Args:
        x: (1, 3, H, W) padded image in [0, 1]; ``valid`` its (height, width).
        y: (1, M, h, w) latents.

    Returns:
        (1, M, h, w) shift ``-g / 2a`` to add to y.
    """
    height, width = valid
    y = y.detach().requires_grad_(True)
    with torch.enable_grad():
        x_hat = model.g_s(y)
        distortion = ((x_hat - x)[..., :height, :width] ** 2).sum()
        (gradient,) = torch.autograd.grad(distortion, [y])
    with torch.no_grad():
        # A probe along g as large as a rounding error (rms 1/sqrt(12)): the gain of J there.
        probe = gradient * (PROBE_RMS / gradient.square().mean().sqrt().clamp_min(1e-30))
        moved = model.g_s(y + probe) - x_hat
        gain = (moved[..., :height, :width] ** 2).sum() / probe.square().sum()
    return -gradient / (2 * gain.clamp_min(1e-30))


@torch.no_grad()
def true_cost(model: CodecModel, x: Tensor, y: Tensor, z: Tensor,
              valid: tuple[int, int], lmbda: float, quantizer: Quantizer,
              lambda_t: float | None) -> float:
    """lambda * 255^2 * MSE + bpp of what latent_codec.compress(y, side=z) would code and the
    decoder show."""
    height, width = valid
    quantized = model.latent_codec.quantize(y, quantizer, lambda_t, z)
    x_hat = model.g_s(quantized.y_hat).clamp(0, 1)
    mse = torch.mean((x_hat - x)[..., :height, :width] ** 2).item()
    return rd_cost(mse, quantized.estimated_bits / (height * width), lmbda)


def _descend(model: CodecModel, x: Tensor, y: Tensor, z: Tensor, valid: tuple[int, int],
             lmbda: float, config: RefineConfig,
             progress: bool | str) -> tuple[Tensor, Tensor]:
    """``config.steps`` Adam steps on (y, z) against the relaxed RD cost."""
    y = y.clone().requires_grad_(True)
    z = z.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([y, z], lr=config.lr)
    generator = torch.Generator().manual_seed(config.seed)
    steps = tqdm(range(config.steps), desc="refine", unit="step", file=sys.stderr,
                 leave=False, disable=not _show_progress(progress))
    for step in steps:
        fraction = step / config.steps
        temperature = max(TEMPERATURE_START * math.exp(-ANNEAL * fraction), TEMPERATURE_FLOOR)
        for group in optimizer.param_groups:
            group["lr"] = config.lr * 0.5 * (1 + math.cos(math.pi * fraction))
        rounding = partial(sga_round, temperature=temperature, generator=generator)
        with torch.enable_grad():
            cost = _relaxed_cost(model, x, y, z, valid, lmbda,
                                 rounding if config.anneal else _unrounded, config.bfloat16)
            # z: the side latents, empty (unused) for a codec without side information
            y.grad, z.grad = torch.autograd.grad(cost, [y, z], allow_unused=True,
                                                 materialize_grads=True)
        optimizer.step()
    return y.detach(), z.detach()


def _show_progress(progress: bool | str) -> bool:
    """True, when stderr is a terminal; PROGRESS_ALWAYS, always; False, never."""
    return progress == PROGRESS_ALWAYS or (bool(progress) and sys.stderr.isatty())


def refine_latents(model: CodecModel, x: Tensor, valid: tuple[int, int], lmbda: float,
                   quantizer: Quantizer, lambda_t: float | None = None,
                   config: RefineConfig = RefineConfig(),
                   progress: bool | str = False) -> tuple[Tensor, Tensor]:
    """Latents (y, side latents z) for one padded image x (1, 3, H, W) whose top-left
    ``valid`` is the image.

    lmbda: the RD trade-off to optimise (the model's training lambda).
    progress: a progress bar of the steps on stderr: True shows it when stderr is a
        terminal, ``PROGRESS_ALWAYS`` ("always", the CLI's -v) always, False never.
    """
    with single_threaded():
        with torch.no_grad():
            y_start = model.g_a(x)
            z_start = model.latent_codec.side_latents(y_start)
        y = y_start
        if config.linear_step:
            weight = config.linear_step * quantizer.linear_weight
            y = y + weight * linearised_shift(model, x, y, valid)
        y, z = _descend(model, x, y, z_start, valid, lmbda, config, progress)
        before = true_cost(model, x, y_start, z_start, valid, lmbda, quantizer, lambda_t)
        after = true_cost(model, x, y, z, valid, lmbda, quantizer, lambda_t)
    return (y, z) if after < before else (y_start, z_start)
