"""How closely the exact (integer) entropy-parameter path reproduces the float model's scales.

The decoder picks every table row from scales that h_s computes in fixed point
(:mod:`trellic.latent.integer_net`) so that files decode on every machine. That
path rounds: on a model whose h_s activations are small against the fixed
point's resolution (``2**-FRACTION_BITS``) the scales move, latents land on
other table rows and the y stream grows. The coder's own estimates
(``estimated_bpp``, the coder overhead) are measured against the integer
scales, so they cannot show this loss; :func:`scale_fidelity` measures it.

For each image: y = g_a(x), the z symbols the encoder codes, z_hat; then on the
same z_hat the float scales (``entropy_parameters``) and the integer path's
(``exact_scales``). The y residuals are rounded as USQ codes them, around the
means the coder uses, and costed under both scales: ideal bits
(-log2 of the Gaussian mass of each rounded residual's interval) and the
integer tables' bits (the rows each scale selects). For the channel-conditional
codec the slice loop runs in exact arithmetic, as the coder runs it, and each
slice's float scales are computed by the float networks on the same inputs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import Tensor

from trellic.entropy.gaussian import scale_levels
from trellic.io import image_to_tensor, pad_to_multiple
from trellic.quant.base import GaussianRate, Quantized

# The import warning's thresholds. A calibrated exact path should reproduce the float scales
# to well under a table step (the 64 log-spaced levels are ~10.6% apart): 1% mean relative
# error is a tenth of a step. The zoo's models sit at 0.1-0.5% rate loss; 0.5% of the y
# stream is the most an exact path may cost before the user is told.
SCALE_ERROR_TOLERANCE = 0.01
RATE_LOSS_TOLERANCE = 0.005
PROBE_SIZE = 256  # the import check's synthetic image, PROBE_SIZE x PROBE_SIZE


@dataclass(frozen=True)
class ScaleFidelity:
    """The integer scales against the float scales on the same z_hat, over a few images.

    mean_relative_error, max_relative_error: |s_int - s_float| / s_float over all latents.
    rows_changed: fraction of latents whose scale level (table row) differs.
    float_bits, integer_bits: ideal y-stream bits of the USQ-rounded residuals under the
        float and the integer scales; float_table_bits, integer_table_bits: the same under
        the integer coding tables (the rows each set of scales selects).
    rate_loss: integer_bits / float_bits - 1 (ideal); table_rate_loss likewise.
    latents: number of y latents measured; images: number of images.
    """

    mean_relative_error: float
    max_relative_error: float
    rows_changed: float
    float_bits: float
    integer_bits: float
    float_table_bits: float
    integer_table_bits: float
    latents: int
    images: int

    @property
    def rate_loss(self) -> float:
        return self.integer_bits / self.float_bits - 1.0 if self.float_bits > 0 else 0.0

    @property
    def table_rate_loss(self) -> float:
        if self.float_table_bits <= 0:
            return 0.0
        return self.integer_table_bits / self.float_table_bits - 1.0

    def exceeds_tolerance(
        self, scale_tolerance: float = SCALE_ERROR_TOLERANCE,
        rate_tolerance: float = RATE_LOSS_TOLERANCE,
    ) -> bool:
        """True when the scales or the ideal rate are not reproduced within tolerance."""
        return self.mean_relative_error > scale_tolerance or self.rate_loss > rate_tolerance

    def as_dict(self) -> dict:
        losses = {"rate_loss": self.rate_loss, "table_rate_loss": self.table_rate_loss}
        return {**asdict(self), **losses}


def warning_message(fidelity: ScaleFidelity) -> str | None:
    """The import warning (one line) if ``fidelity`` exceeds the tolerances, else None."""
    if not fidelity.exceeds_tolerance():
        return None
    return (
        f"the exact integer entropy path does not reproduce this model's scales: mean relative "
        f"scale error {fidelity.mean_relative_error:.2%} (max {fidelity.max_relative_error:.1%}, "
        f"tolerance {SCALE_ERROR_TOLERANCE:.0%}), {fidelity.rows_changed:.1%} of latents on "
        f"another table row, ideal y rate {fidelity.rate_loss:+.2%} against the float scales' "
        f"(tolerance +{RATE_LOSS_TOLERANCE:.1%}), measured on a synthetic {PROBE_SIZE}x"
        f"{PROBE_SIZE} image; files stay portable (docs/compressai.md)"
    )


def probe_fidelity(model) -> ScaleFidelity:
    """:func:`scale_fidelity` on the deterministic :func:`synthetic_probe` (what import checks)."""
    return scale_fidelity(model, [synthetic_probe(PROBE_SIZE, PROBE_SIZE)])


def synthetic_probe(height: int = 256, width: int = 256, seed: int = 26) -> np.ndarray:
    """A deterministic uint8 (H, W, 3) photo stand-in: smooth gradients plus texture.

    numpy's PCG64 with a fixed seed and elementwise float64 arithmetic: the same bytes on
    every machine.
    """
    rng = np.random.Generator(np.random.PCG64(seed))
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    base = np.stack(
        [
            40 + 150 * xx / width + 30 * np.sin(yy / 17.0),
            60 + 120 * yy / height + 25 * np.cos(xx / 11.0),
            128 + 70 * np.sin((xx + yy) / 23.0) * np.cos(xx / 31.0),
        ],
        axis=-1,
    )
    texture = rng.normal(0.0, 10.0, (height, width, 1)) + rng.normal(0.0, 4.0, base.shape)
    return np.clip(np.round(base + texture), 0, 255).astype(np.uint8)


def _scales_and_residuals(codec, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(float scales, integer scales, residuals y - means the coder rounds), all (1, M, h, w)."""
    z_hat = codec.entropy_bottleneck.dequantize(codec.side_symbols(y))
    if hasattr(codec, "exact_scales"):  # the (mean-)scale hyperprior
        _, float_scales = codec.entropy_parameters(z_hat)
        return float_scales, codec.exact_scales(z_hat), y - codec.decoded_means(z_hat)
    # The channel-conditional codec's scales depend on its decoded slices: measuring them
    # needs a hook into its slice loop (the composed latent-codec layer of issue 25).
    raise ValueError(f"{type(codec).__name__}: scale fidelity is measured for the "
                     "(mean-)scale hyperprior only")


@torch.no_grad()
def scale_fidelity(model, images: list[np.ndarray]) -> ScaleFidelity:
    """Compare the integer path's scales with the float model's on ``images`` (uint8 RGB).

    Supported: the latent codecs with ``exact_scales`` (mbt2018-mean,
    bmshj2018-hyperprior); others raise ValueError.
    """
    codec = model.latent_codec
    quantizer = model.quantizer("usq")
    rate = GaussianRate(quantizer)
    coding = codec.y_coding(quantizer)
    sums = {"err": 0.0, "rows": 0, "fb": 0.0, "ib": 0.0, "ft": 0.0, "it": 0.0}
    max_error, latents = 0.0, 0
    for image in images:
        x = pad_to_multiple(image_to_tensor(image), model.pad_multiple)
        y = model.g_a(x)
        float_scales, int_scales, residuals = _scales_and_residuals(codec, y)
        float_scales, int_scales = float_scales.double(), int_scales.double()
        error = (int_scales - float_scales).abs() / float_scales
        sums["err"] += float(error.sum())
        max_error = max(max_error, float(error.max()))
        table = codec.scale_table
        levels_f, levels_i = scale_levels(float_scales, table), scale_levels(int_scales, table)
        sums["rows"] += int((levels_f != levels_i).sum())
        k = torch.round(residuals.double() / quantizer.delta).to(torch.int64)
        quantized = Quantized(k, torch.zeros_like(k))
        sums["fb"] += float(rate.bits(k.double(), 0, float_scales).sum())
        sums["ib"] += float(rate.bits(k.double(), 0, int_scales).sum())
        sums["ft"] += float(coding.bits(quantized, float_scales).sum())
        sums["it"] += float(coding.bits(quantized, int_scales).sum())
        latents += k.numel()
    return ScaleFidelity(
        mean_relative_error=sums["err"] / max(latents, 1),
        max_relative_error=max_error,
        rows_changed=sums["rows"] / max(latents, 1),
        float_bits=sums["fb"],
        integer_bits=sums["ib"],
        float_table_bits=sums["ft"],
        integer_table_bits=sums["it"],
        latents=latents,
        images=len(images),
    )
