"""Mean-scale hyperprior (Minnen, Balle, Toderici 2018, without the context model).

The topology of CompressAI's ``mbt2018-mean``::

    x -> g_a -> y ---------------------------------> quantizer(y - means, scales) -> k
               \\-> h_a -> z -> z_hat (factorized prior)                            |
                              \\-> h_s -> (means, scales) --------------------------'
    k -> dequantize -> r_hat + means = y_hat -> g_s -> x_hat

Typical workflow: train ``forward()`` with a quantizer's differentiable proxy
(loss = lambda * 255^2 * MSE + bpp), call ``update()`` to freeze the integer
coding tables, then ``compress()`` / ``decompress()`` for real bitstreams. The
encoder derives means and scales from the *decoded* z_hat through the same
code path as the decoder, so both see bit-identical probabilities.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch
from torch import Tensor, nn

from trellic.coding.range_coder import SymbolDecoder, SymbolEncoder
from trellic.entropy.factorized import FactorizedPrior
from trellic.entropy.gaussian import (
    TableRate,
    bound_scales,
    build_gaussian_tables,
    default_scale_table,
    scale_levels,
)
from trellic.entropy.tables import PmfTables
from trellic.models.gdn import GDN
from trellic.quant.base import ProxyKind, Quantizer
from trellic.quant.trellis import from_sequences, to_sequences

DOWNSCALE = 64  # g_a (x16) then h_a (x4): inputs are padded to a multiple of this.


@dataclass(frozen=True)
class ModelConfig:
    """Architecture: N channels in the transforms, M latent channels, TCQ step delta.

    prior_filters: hidden widths of the factorized prior's density network
    (trellic's models use (3, 3, 3); CompressAI's use (3, 3, 3, 3)).
    """

    N: int = 128
    M: int = 192
    tcq_delta: float = 0.6
    prior_filters: tuple[int, ...] = (3, 3, 3)

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        """Every field but ``prior_filters`` (absent from older files: the default) is required."""
        names = {f.name for f in fields(cls)}
        required = names - {"prior_filters"}
        if not required <= set(data) <= names:
            raise ValueError(f"model config keys {sorted(data)} != expected {sorted(names)}")
        if "prior_filters" in data:
            data = {**data, "prior_filters": tuple(data["prior_filters"])}
        return cls(**data)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ForwardOutput:
    """Training outputs: reconstruction (B, 3, H, W) and likelihoods of y and z."""

    x_hat: Tensor
    y_likelihoods: Tensor
    z_likelihoods: Tensor


@dataclass
class QuantizedLatents:
    """What the encoder decided: z symbols (B, N, H/64, W/64), y indices k (B, M, H/16, W/16)."""

    z_symbols: Tensor
    k: Tensor
    means: Tensor
    scales: Tensor


@dataclass
class CompressedLatents:
    """Coded streams and the latent grid they decode to."""

    z_stream: bytes
    y_stream: bytes
    latent_shape: tuple[int, int]  # (H/16, W/16) of the padded image
    estimated_bits: float


def _conv(cin: int, cout: int, kernel: int = 5, stride: int = 2) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2)


def _deconv(cin: int, cout: int, kernel: int = 5, stride: int = 2) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(
        cin, cout, kernel, stride=stride, padding=kernel // 2, output_padding=stride - 1
    )


@contextlib.contextmanager
def single_threaded():
    """Run a block with one intra-op thread so its floats never depend on the thread count.

    oneDNN convolutions block their work by thread count, so their last bits
    differ between 1 and 2 threads. compress() and decompress() therefore run
    single-threaded: the bytes and the decoded image never depend on torch's
    thread setting (measured: g_a 0.41 s, g_s 0.48 s at 768x512, N=128/M=192).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class MeanScaleHyperprior(nn.Module):
    """Mean-scale hyperprior with pluggable quantizers.

    Args:
        config: N (transform channels) and M (latent channels), TCQ delta.
    """

    def __init__(self, config: ModelConfig = ModelConfig()):
        super().__init__()
        self.config = config
        N, M = config.N, config.M
        self.g_a = nn.Sequential(
            _conv(3, N), GDN(N), _conv(N, N), GDN(N), _conv(N, N), GDN(N), _conv(N, M)
        )
        self.g_s = nn.Sequential(
            _deconv(M, N),
            GDN(N, inverse=True),
            _deconv(N, N),
            GDN(N, inverse=True),
            _deconv(N, N),
            GDN(N, inverse=True),
            _deconv(N, 3),
        )
        self.h_a = nn.Sequential(
            _conv(M, N, 3, 1),
            nn.LeakyReLU(inplace=True),
            _conv(N, N),
            nn.LeakyReLU(inplace=True),
            _conv(N, N),
        )
        self.h_s = nn.Sequential(
            _deconv(N, M),
            nn.LeakyReLU(inplace=True),
            _deconv(M, M * 3 // 2),
            nn.LeakyReLU(inplace=True),
            _conv(M * 3 // 2, M * 2, 3, 1),
        )
        self.entropy_bottleneck = FactorizedPrior(N, config.prior_filters)
        self.register_buffer("scale_table", default_scale_table())
        self.tables: dict[str, PmfTables] = {}

    # -- training -----------------------------------------------------------------
    def hyper_synthesis(self, z_hat: Tensor) -> tuple[Tensor, Tensor]:
        """z_hat (B, N, h, w) -> means, lower-bounded scales (B, M, 4h, 4w)."""
        means, scales = self.h_s(z_hat).chunk(2, dim=1)
        return means, bound_scales(scales)

    def forward(
        self, x: Tensor, quantizer: Quantizer, proxy: ProxyKind = ProxyKind.NOISE
    ) -> ForwardOutput:
        """Differentiable training pass. x (B, 3, H, W) in [0, 1], H and W multiples of 64."""
        y = self.g_a(x)
        z_tilde, z_likelihoods = self.entropy_bottleneck(self.h_a(y))
        means, scales = self.hyper_synthesis(z_tilde)
        r_tilde, y_likelihoods = quantizer.proxy(y - means, scales, proxy)
        x_hat = self.g_s(r_tilde + means)
        return ForwardOutput(x_hat, y_likelihoods, z_likelihoods)

    def aux_loss(self) -> Tensor:
        return self.entropy_bottleneck.aux_loss()

    # -- coding tables ------------------------------------------------------------
    @staticmethod
    def table_key(quantizer: Quantizer) -> str:
        """TCQ-4 and TCQ-8 share the sub-quantizers Q0/Q1, hence their tables."""
        return "usq" if quantizer.num_quantizers == 1 else "tcq"

    @torch.no_grad()
    def update(self) -> None:
        """Freeze the integer tables: z per channel, y per (quantizer id, scale level)."""
        from trellic.quant import make_quantizer

        self.tables = {
            "z": self.entropy_bottleneck.build_tables(),
            "usq": build_gaussian_tables(make_quantizer("usq"), self.scale_table),
            "tcq": build_gaussian_tables(
                make_quantizer("tcq4", self.config.tcq_delta), self.scale_table
            ),
        }

    def y_tables(self, quantizer: Quantizer) -> PmfTables:
        """The frozen integer tables that code y with this quantizer."""
        if not self.tables:
            raise RuntimeError("coding tables missing: call update() or load shipped weights")
        if quantizer.num_quantizers > 1 and abs(quantizer.delta - self.config.tcq_delta) > 1e-9:
            raise ValueError(
                f"this model's TCQ tables are for delta {self.config.tcq_delta}, "
                f"not {quantizer.delta}"
            )
        return self.tables[self.table_key(quantizer)]

    def _rows(self, quantizer_ids: Tensor, scales: Tensor) -> Tensor:
        return quantizer_ids * self.scale_table.numel() + scale_levels(scales, self.scale_table)

    # -- bitstreams ---------------------------------------------------------------
    @torch.no_grad()
    def quantize_latents(
        self, x: Tensor, quantizer: Quantizer, lambda_t: float | None = None
    ) -> QuantizedLatents:
        """The encoder's decisions with the real quantizer: what compress() codes."""
        return self.quantize_y(self.g_a(x), quantizer, lambda_t)

    @torch.no_grad()
    def quantize_y(
        self,
        y: Tensor,
        quantizer: Quantizer,
        lambda_t: float | None = None,
        z: Tensor | None = None,
    ) -> QuantizedLatents:
        """Quantize latents y (B, M, H/16, W/16): z symbols, then k given the decoded hyperprior.

        z: hyper-latents (B, N, H/64, W/64) before rounding; default h_a(y).
        """
        z_symbols = self.entropy_bottleneck.quantize(self.h_a(y) if z is None else z)
        means, scales = self.hyper_from_symbols(z_symbols)
        k = quantizer.quantize(y - means, scales, lambda_t, rate=self.rate_model(quantizer))
        return QuantizedLatents(z_symbols, k, means, scales)

    def rate_model(self, quantizer: Quantizer) -> TableRate:
        """The coder's exact code lengths, as the Viterbi's rate term."""
        return TableRate(self.y_tables(quantizer), self.scale_table)

    def hyper_from_symbols(self, z_symbols: Tensor) -> tuple[Tensor, Tensor]:
        """What the decoder derives from the z symbols: means and scales of y."""
        return self.hyper_synthesis(self.entropy_bottleneck.dequantize(z_symbols))

    @torch.no_grad()
    def compress(
        self, x: Tensor, quantizer: Quantizer, lambda_t: float | None = None
    ) -> CompressedLatents:
        """x (1, 3, H, W), H and W multiples of 64 -> coded z and y streams."""
        if x.shape[0] != 1:
            raise ValueError("compress codes one image at a time")
        with single_threaded():
            y = self.g_a(x)
        return self.compress_latents(y, quantizer, lambda_t)

    @torch.no_grad()
    def compress_latents(
        self,
        y: Tensor,
        quantizer: Quantizer,
        lambda_t: float | None = None,
        z: Tensor | None = None,
    ) -> CompressedLatents:
        """Code latents y (1, M, h, w) and hyper-latents z (default h_a(y)): compress() after g_a.

        Encoder-side latent optimisation (``trellic.models.refine``) enters here:
        any y and z give a valid bitstream for the unchanged decoder.
        """
        with single_threaded():
            latents = self.quantize_y(y, quantizer, lambda_t, z)
        z_tables, y_tables = self.tables["z"], self.y_tables(quantizer)

        z_rows = self._z_rows(latents.z_symbols.shape)
        z_encoder = SymbolEncoder(z_tables)
        z_encoder.encode_step(latents.z_symbols.numpy().ravel(), z_rows)

        rows = self._rows(quantizer.quantizer_ids(latents.k), latents.scales)
        y_encoder = SymbolEncoder(y_tables)
        for values, step_rows in _steps(quantizer, latents.k, rows):
            y_encoder.encode_step(values, step_rows)

        return CompressedLatents(
            z_encoder.finish(),
            y_encoder.finish(),
            tuple(latents.k.shape[-2:]),
            self.estimated_bits(latents, quantizer),
        )

    def estimated_bits(self, latents: QuantizedLatents, quantizer: Quantizer) -> float:
        """Code length of z symbols and y indices under the integer tables the coder uses."""
        z_rows = torch.from_numpy(self._z_rows(latents.z_symbols.shape))
        rows = self._rows(quantizer.quantizer_ids(latents.k), latents.scales)
        bits = self.tables["z"].bits(z_rows, latents.z_symbols.ravel()).sum()
        bits += self.y_tables(quantizer).bits(rows.ravel(), latents.k.ravel()).sum()
        return float(bits)

    def _z_rows(self, shape: torch.Size) -> np.ndarray:
        channels = np.arange(shape[1]).reshape(1, -1, 1, 1)
        return np.broadcast_to(channels, shape).ravel().copy()

    @torch.no_grad()
    def decode_latents(self, compressed: CompressedLatents, quantizer: Quantizer) -> Tensor:
        """Coded streams -> y_hat (1, M, H/16, W/16), replaying the trellis states."""
        with single_threaded():
            return self._decode_latents(compressed, quantizer)

    def _decode_latents(self, compressed: CompressedLatents, quantizer: Quantizer) -> Tensor:
        h, w = compressed.latent_shape
        z_shape = torch.Size((1, self.config.N, h // 4, w // 4))
        z_decoder = SymbolDecoder(compressed.z_stream, self.tables["z"])
        z_symbols = torch.from_numpy(z_decoder.decode_step(self._z_rows(z_shape))).view(z_shape)
        means, scales = self.hyper_from_symbols(z_symbols)
        y_decoder = SymbolDecoder(compressed.y_stream, self.y_tables(quantizer))
        levels = to_sequences(scale_levels(scales, self.scale_table))
        k = _decode_steps(quantizer, y_decoder, levels, self.scale_table.numel())
        return means + quantizer.dequantize(from_sequences(k, means.shape))

    @torch.no_grad()
    def decompress(self, compressed: CompressedLatents, quantizer: Quantizer) -> Tensor:
        """Coded streams -> x_hat (1, 3, H, W), unclamped."""
        y_hat = self.decode_latents(compressed, quantizer)
        with single_threaded():
            return self.g_s(y_hat)


def _steps(quantizer: Quantizer, k: Tensor, rows: Tensor):
    """Coding steps: one for USQ (no state), one per trellis position for TCQ."""
    if quantizer.trellis.num_states == 1:
        yield k.numpy().ravel(), rows.numpy().ravel()
        return
    k_seq, rows_seq = to_sequences(k).numpy(), to_sequences(rows).numpy()
    for t in range(k_seq.shape[1]):
        yield k_seq[:, t], rows_seq[:, t]


def _decode_steps(
    quantizer: Quantizer, decoder: SymbolDecoder, levels: Tensor, num_levels: int
) -> Tensor:
    """Decode indices (S, T) in lockstep, each step's rows chosen by the states reached."""
    levels = levels.numpy()
    if quantizer.trellis.num_states == 1:
        return torch.from_numpy(decoder.decode_step(levels.ravel()).reshape(levels.shape))
    next_state = quantizer.trellis.next_state_table().numpy()
    quantizer_of = quantizer.trellis.quantizer_table().numpy()
    state = np.zeros(levels.shape[0], dtype=np.int64)
    k = np.empty(levels.shape, dtype=np.int64)
    for t in range(levels.shape[1]):
        k[:, t] = decoder.decode_step(quantizer_of[state] * num_levels + levels[:, t])
        state = next_state[state, k[:, t] & 1]
    return torch.from_numpy(k)
