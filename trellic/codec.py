"""Images to trellic files and back: the model, the quantizer and the container together.

    image (H, W, 3) uint8 -> pad (model.pad_multiple) -> model.compress(quantizer) -> container
    container bytes -> validate -> model.decompress -> crop -> clamp, round -> uint8

``Codec`` is what the CLI, the evaluation runner and the benchmarks use.

Images above ``MAX_PIXELS`` are refused on both sides, before any transform
runs: the transforms are not tiled, and their peak memory grows linearly with
the pixel count (docs/robustness.md states the measured bound). A decoded image
that is not finite everywhere can only come from a corrupt stream (the encoder's
latents are finite), so it is an error rather than an image of clamped NaNs.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from trellic.coding import bitstream
from trellic.errors import TrellicError
from trellic.io import image_to_tensor, pad_to_multiple, tensor_to_image
from trellic.models.refine import RefineConfig, refine_latents
from trellic.quant.base import Quantizer
from trellic.zoo import LoadedModel, load_named, manifest_entry_of
from trellic.zoo import load as load_model

MAX_PIXELS = 25_000_000  # 5000 x 5000: ~5.5 GB peak RSS for N=64/M=96 (docs/robustness.md)


@dataclass
class EncodedImage:
    """A complete trellic file and the bits the model's tables predicted for its streams."""

    data: bytes
    estimated_bits: float


def _check_size(height: int, width: int) -> None:
    if height * width > MAX_PIXELS:
        raise TrellicError(
            f"image of {width}x{height} pixels exceeds the supported maximum of {MAX_PIXELS} pixels"
        )


class Codec:
    """A loaded model with a quantizer, ready to encode and decode images.

    lambda_t: the search's rate weight; None takes the model's measured operating
    point for this quantizer and encoder (``LoadedModel.operating_points``: the
    ``quantizer+linear`` entry when the refinement takes the linearised step, else the
    quantizer's), else the quantizer's default. The point also sets ``linear_weight``.
    refine: optimise each image's latents before coding (``trellic.models.refine``):
    a slower encoder, the same decoder and file format.
    device: where g_a and g_s run (a ``torch.device`` or its name, e.g. from
    ``trellic.device.resolve_device``). The latent codec (h_a, the entropy parameters,
    the search) and the entropy coder stay on the CPU, so the indices a file decodes to
    never depend on the device (docs/codec.md, "Devices"); the refinement runs on the CPU.
    transforms_dtype: the dtype g_a and g_s compute in (float32; float64 stands in, in
    the tests, for another device's float kernels).
    """

    def __init__(
        self,
        loaded: LoadedModel,
        quantizer: Quantizer,
        lambda_t: float | None = None,
        refine: RefineConfig | None = None,
        *,
        device: torch.device | str = "cpu",
        transforms_dtype: torch.dtype = torch.float32,
    ):
        self.loaded = loaded
        self.quantizer = quantizer
        self.refine = refine
        self.device = torch.device(device)
        self.transforms_dtype = transforms_dtype
        self._moved: dict[str, torch.nn.Module] = {}
        points = loaded.operating_points
        point = points.get(quantizer.kind, {})
        if refine is not None and refine.linear_step > 0:
            point = points.get(f"{quantizer.kind}+linear", point)
        quantizer.linear_weight = point.get("linear_weight", quantizer.linear_weight)
        if lambda_t is None:
            lambda_t = point.get("lambda_t", quantizer.default_lambda_t)
        self.lambda_t = float(lambda_t)
        if not 0 <= self.lambda_t < bitstream.MAX_LAMBDA_T:
            raise TrellicError(
                f"lambda_t must be in [0, {bitstream.MAX_LAMBDA_T:g}), got {lambda_t}"
            )
        delta = loaded.model.quantizer(quantizer.kind).delta
        if abs(quantizer.delta - delta) > 1e-9:
            raise TrellicError(
                f"model {loaded.model_id} codes {quantizer.kind} with delta {delta} only"
            )
        if refine is not None and "lmbda" not in loaded.info.get("training", {}):
            raise TrellicError(
                f"model {loaded.model_id} records no training lambda to refine latents for"
            )

    @classmethod
    def load(
        cls,
        model: str = "default",
        quantizer: str = "usq",
        lambda_t: float | None = None,
        refine: RefineConfig | None = None,
        *,
        device: torch.device | str = "cpu",
    ) -> Codec:
        return cls.load_from(load_model(model), quantizer, lambda_t, refine, device=device)

    @classmethod
    def load_from(
        cls,
        loaded: LoadedModel,
        quantizer: str = "usq",
        lambda_t: float | None = None,
        refine: RefineConfig | None = None,
        *,
        device: torch.device | str = "cpu",
    ) -> Codec:
        return cls(loaded, loaded.model.quantizer(quantizer), lambda_t, refine, device=device)

    # -- where the networks run -----------------------------------------------------------
    @property
    def _on_host(self) -> bool:
        """g_a and g_s are the model's own (CPU, float32): the path every file was made on."""
        return self.device.type == "cpu" and self.transforms_dtype == torch.float32

    def _network(self, name: str) -> torch.nn.Module:
        """The model's ``name`` (g_a, g_s) on this codec's device and dtype (a copy, made once:
        the loaded model, shared with other codecs, stays on the CPU)."""
        if name not in self._moved:
            network = copy.deepcopy(getattr(self.loaded.model, name))
            self._moved[name] = network.to(self.device, self.transforms_dtype).eval()
        return self._moved[name]

    @torch.no_grad()
    def _analysis(self, x: torch.Tensor) -> torch.Tensor:
        """g_a on the device: x (1, 3, H, W) CPU float32 -> y, CPU float32."""
        y = self._network("g_a")(x.to(self.device, self.transforms_dtype))
        return y.to("cpu", torch.float32)

    @torch.no_grad()
    def _synthesis(self, y_hat: torch.Tensor) -> torch.Tensor:
        """g_s on the device: decoded latents (CPU) -> x_hat, CPU float32."""
        if self._on_host:
            return self.loaded.model.synthesize(y_hat)
        y_hat = y_hat.to(self.device, self.transforms_dtype)
        x_hat = self._network("g_s")(y_hat.contiguous(memory_format=torch.channels_last))
        return x_hat.to("cpu", torch.float32)

    def describe(self) -> dict:
        training = self.loaded.info.get("training", {})
        return {
            "model": self.loaded.model_id,
            "checkpoint_sha256": self.loaded.sha256,
            "quantizer": {
                "kind": self.quantizer.kind,
                "delta": self.quantizer.delta,
                "lambda_t": self.lambda_t,
                "linear_weight": self.quantizer.linear_weight,
            },
            "lambda": training.get("lmbda"),
            "architecture": _architecture(self.loaded.model.config.to_dict()),
            "source": self.loaded.info.get("source"),  # an imported checkpoint (trellic.interop)
            "refine": None if self.refine is None else dataclasses.asdict(self.refine),
        }

    def encode(self, image: np.ndarray, progress: bool | str = False) -> EncodedImage:
        """uint8 (H, W, 3) RGB -> a complete trellic file.

        progress: the refinement's progress bar on stderr: True when stderr is a
        terminal, ``trellic.models.refine.PROGRESS_ALWAYS`` always, False never.
        """
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise TrellicError(
                f"expected a uint8 RGB image (H, W, 3), got {image.dtype} {image.shape}"
            )
        height, width = image.shape[:2]
        _check_size(height, width)
        model = self.loaded.model
        x = pad_to_multiple(image_to_tensor(image), model.pad_multiple)
        if self.refine is None and self._on_host:
            compressed = model.compress(x, self.quantizer, self.lambda_t)
        elif self.refine is None:  # g_a on the device, the latent codec on the CPU
            with torch.no_grad():
                compressed = model.latent_codec.compress(self._analysis(x), self.quantizer,
                                                         self.lambda_t)
        else:
            lmbda = self.loaded.info["training"]["lmbda"]
            y, side = refine_latents(model, x, (height, width), lmbda, self.quantizer,
                                     self.lambda_t, self.refine, progress)
            compressed = model.latent_codec.compress(y, self.quantizer, self.lambda_t, side)
        header = bitstream.Header(
            self.loaded.model_id,
            self.loaded.sha256,
            self.quantizer.kind,
            self.quantizer.delta,
            self.lambda_t,
            height,
            width,
        )
        data = bitstream.pack(header, *compressed.streams, compressed.checksum)
        return EncodedImage(data, compressed.estimated_bits)

    def _quantizer_for(self, header: bitstream.Header) -> Quantizer:
        """The header's quantizer with the model's exact delta (the header stores it as f32)."""
        quantizer = self.loaded.model.quantizer(header.quantizer)
        if abs(header.delta - quantizer.delta) > 1e-6 * quantizer.delta:
            raise TrellicError(
                f"file uses {quantizer.kind} delta {header.delta:g}; "
                f"this model codes {quantizer.delta:g}"
            )
        return quantizer

    def _decodes_files_of(self, sha_prefix: str) -> bool:
        """Whether a file naming weights ``sha_prefix`` was coded for these weights.

        Only the weights count, never the model id's label: the same weights by
        zoo name, by path or as a copy decode each other's files. A decoder-only
        retrained variant also decodes its source model's files (same encoder,
        hyperprior and tables, hence the same bitstreams).
        """
        info = self.loaded.info
        identities = list(self.loaded.identities)
        source = info.get("retrained_from")
        if isinstance(source, dict) and info.get("retrain", {}).get("part") == "decoder":
            identities.append(str(source.get("sha256", "")))
            aliases = source.get("aliases")
            if isinstance(aliases, list):  # the source's older identities
                identities.extend(str(alias) for alias in aliases)
            base = info.get("base", {})  # a shipped variant: its base's identities today
            if source.get("sha256") in base.get("identities", ()):
                identities.extend(base["identities"])
        return any(sha.startswith(sha_prefix) for sha in identities if sha)

    def decode_latents(self, data: bytes) -> tuple[torch.Tensor, bitstream.Header]:
        """A trellic file -> (y_hat (1, M, h, w), header); the file must name these weights.

        y_hat is the decoder's latents: the levels of the decoded indices (the same on
        every machine: the scales that pick table rows come from the integer path, and a
        desynchronised decode fails the file's symbols CRC) plus the means of the float
        h_s (their last bits follow the CPU's kernels).
        A decoder-only retrained variant also decodes the files of its source
        model: same encoder, hyperprior and tables, hence the same bitstreams.

        Raises:
            TrellicError: a file of other weights, a corrupt or oversized file.
        """
        container = bitstream.unpack(data)
        header = container.header
        if not self._decodes_files_of(header.weights_sha256):
            raise TrellicError(
                f"file was coded with model '{header.model_id}' (weights sha256 "
                f"{header.weights_sha256}...), not '{self.loaded.model_id}' (weights sha256 "
                f"{self.loaded.sha256[:16]}...): the weights differ"
            )
        _check_size(header.height, header.width)
        quantizer = self._quantizer_for(header)
        model = self.loaded.model
        streams = (container.z_stream, container.y_stream)
        try:
            y_hat = model.latent_codec.decompress(
                streams, model.latent_shape(header.height, header.width), quantizer,
                container.symbols_crc, container.version >= 2)
        except (ValueError, RuntimeError, OverflowError) as error:
            raise TrellicError(f"corrupt bitstream: {str(error).splitlines()[0]}") from None
        return y_hat, header

    def decode(self, data: bytes) -> np.ndarray:
        """A trellic file -> uint8 (H, W, 3) (see :meth:`decode_latents`)."""
        y_hat, header = self.decode_latents(data)
        x_hat = self._synthesis(y_hat)
        if not torch.isfinite(x_hat).all():
            raise TrellicError("corrupt bitstream: the decoded image is not finite")
        return tensor_to_image(x_hat[..., : header.height, : header.width])


def _architecture(config: dict) -> dict:
    """The model config as results record it: ``name`` and the sizes."""
    config.pop("version")
    return {"name": config.pop("architecture"), **config}


def codec_for_file(data: bytes, model: str | None = None, *,
                   device: torch.device | str = "cpu") -> Codec:
    """The codec that decodes ``data``: the model its header names, or ``model`` if given.

    A header names a shipped model only: it is looked up in the manifest, never
    opened as a path.
    """
    header = bitstream.unpack(data).header
    if model is not None:
        loaded = load_model(model)
    elif header.model_id.startswith("file:"):  # weights given by path: the zoo's, by content?
        name, _ = manifest_entry_of(header.weights_sha256)
        if name is None:
            raise TrellicError(
                f"file was coded with weights (sha256 {header.weights_sha256}...) that the "
                "weights folder does not hold: pass them with --model PATH"
            )
        loaded = load_named(name)
    else:
        loaded = load_named(header.model_id)
    return Codec.load_from(loaded, header.quantizer, header.lambda_t, device=device)
