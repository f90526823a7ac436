"""Write the CompressAI conformance fixtures (tests/fixtures/compressai/) with CompressAI itself.

trellic never depends on CompressAI; this script runs once, in a scratch
environment outside the repository, and its outputs are committed:

    python3.11 -m venv "$VENV"    # VENV: any folder outside the repository
    "$VENV"/bin/pip install torch==2.13.0 numpy scipy tqdm einops pillow safetensors
    "$VENV"/bin/pip install --no-deps compressai==1.2.8 pytorch-msssim
    PYTHONPATH=$PWD "$VENV"/bin/python scripts/make_compressai_fixtures.py [--arch A]... [--force]

``--arch`` (repeatable; default: all ten) picks the architectures; a fixture
whose ``ARCH.safetensors`` already exists is not rewritten unless ``--force``
(its ``fixtures.json`` entry is kept, only the descriptive fields it lacks are
filled in from a rebuilt model whose keys and shapes must match the file's).
``--out DIR`` writes elsewhere (to check that a rerun repeats the files).

(torchvision, torch_geometric, pandas and requests are imported by CompressAI's
package but used by none of the code run here: ``_stub_unused_imports`` stands
in for them.) For each architecture it builds a tiny random-weight CompressAI
model (seeded), moves its parameters away from their initial values and writes
``ARCH.safetensors``.

The first two (``mbt2018-mean``, ``bmshj2018-hyperprior``; ``LEGACY``, files
kept byte for byte) were made as follows: GDN, entropy-bottleneck and
hyper-synthesis parameters moved away from their initial values, a few GDN
entries below their bound; then

- ``state.*``: the model's ``state_dict()`` after ``update()``, keys as
  CompressAI names them (tests derive the ``.pth.tar`` variants from it), less
  the 0.8 MB ``OMITTED`` table (its shape is in the JSON);
- ``expected.*``: for a fixed synthetic input ``x_u8`` (uint8, 3x64x128), the
  eval-mode (noise-free) forward: y, z, z_hat, means (mbt2018-mean), scales
  (h_s output before the lower bound), y_hat, x_hat and both likelihoods;
- ``expected.crop_y_hat``, ``expected.crop_x_hat_u8``: CompressAI's own
  compress -> decompress of a crop of a real image (``crop`` in the JSON: a path
  relative to ``TRELLIC_DATA`` and a box; its pixels are never stored), with
  y_hat as its decoder built it and x_hat rounded to 8 bits as trellic does.

The other eight (``SPECS``: factorized, serial-context, checkerboard and ELIC
models) are built from the registry name with the recorded constructor kwargs,
then perturbed (``_perturb_spec``): GDN and entropy bottlenecks as above; noise
on every convolution of the context networks (``context_prediction``,
``entropy_parameters``, ELIC's ``channel_context``); then, measured on the
synthetic input, g_a's last convolution scaled so that y has a std of 3, h_a's
so that z has 2.5, each context network's output scaled to the std of the
hyper-synthesis output (so neither dominates), the last layer of each
entropy-parameters network normalised per channel (scales: std 0.6 around
biases from -0.3 to 4.0, some under the 0.11 bound; means: std 1 around random
biases) and g_s's last layer set for a reconstruction around mid-grey. Last,
the entries of every masked convolution's weight that its mask zeroes are set to
noise (as in a training checkpoint: CompressAI applies the mask in forward, so
they do not change any output but an importer must apply the mask). Their files:

- ``state.*``: the ``state_dict()`` right after ``update()`` (before any
  forward, which would zero the masked entries), less every
  ``*gaussian_conditional._quantized_cdf`` table (``omitted_state_shapes``) and
  less ELIC's ``latent_codec.y.channel_context.yK.2.weight`` (128x224x5x5
  each, 2.9 MB: the 224 and 128 channels are hard-coded in CompressAI). Those
  are not random: ``generated_weight`` makes them from integers (exact on any
  machine; ``generated_state`` in the JSON gives each key's salt and exponent);
- ``expected.*``: the eval-mode forward ``model(x)`` on ``x_u8`` with the
  intermediates captured by hooks (``expected`` in each JSON entry describes
  every tensor), ``decoded_y_hat`` (compress -> decompress of ``x_u8``), and
  the crop's ``crop_y_hat`` (captured at g_s's input in decompress) and
  ``crop_x_hat_u8``.

``fixtures.json`` holds the small facts (class, constructor kwargs, seed,
versions, every state_dict key with its shape and dtype, aux loss, CompressAI's
stream sizes, encode and decode times on one thread, the decoded image's
sha256). Everything runs on one thread, as trellic's codec does, so the floats
are reproducible on machines whose kernels round alike: ``kernels`` in each
entry is the fingerprint of the machine that made it (the top-level one is the
two legacy fixtures').
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import time
import types
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from trellic.determinism import kernel_fingerprint
from trellic.io import image_to_tensor, read_image, tensor_to_image
from trellic.paths import data_root

OUT_DIR = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "compressai"
ARCHS = {"mbt2018-mean": (8, 12, 1), "bmshj2018-hyperprior": (8, 12, 2)}  # N, M, seed
LEGACY = tuple(ARCHS)
# CompressAI's y tables (64 x 3133 int32, 0.8 MB): derived data the importer ignores; tests put
# a zero tensor of the recorded shape in its place.
OMITTED = "gaussian_conditional._quantized_cdf"
CROP = {"path": "pypi_samples/coffee.png", "box": [96, 64, 224, 192]}  # left, top, right, bottom


@dataclass(frozen=True)
class Spec:
    """A fixture beyond the legacy two: registry name -> how to build and probe it."""

    family: str  # "factorized", "serial" (mbt2018 masked conv), "checkerboard", "elic"
    kwargs: dict
    seed: int
    crop_box: tuple | None = None  # a smaller crop where coding the default one is too slow


SPECS = {
    "bmshj2018-factorized": Spec("factorized", {"N": 8, "M": 12}, 3),
    "bmshj2018-factorized-relu": Spec("factorized", {"N": 8, "M": 12}, 4),
    "mbt2018": Spec("serial", {"N": 8, "M": 12}, 5),
    "cheng2020-anchor": Spec("serial", {"N": 8}, 6),  # M = N
    "cheng2020-attn": Spec("serial", {"N": 8}, 7),
    "cheng2020-anchor-checkerboard": Spec("checkerboard", {"N": 8}, 8),
    # Four uneven groups (CompressAI's default is [16, 16, 32, 64, M - 128]): with four,
    # Chandelier's channel context for the last group (first + most recent group) differs
    # from Official's (all previous groups).
    "elic2022-official": Spec("elic", {"N": 8, "M": 14, "groups": [2, 3, 4, 5]}, 9),
    "elic2022-chandelier": Spec("elic", {"N": 8, "M": 14, "groups": [2, 3, 4, 5]}, 10),
}
ALL_ARCHS = (*LEGACY, *SPECS)
# ELIC's 224 -> 128 channel-context convolutions (hard-coded widths, 2.9 MB each): generated.
GENERATED = re.compile(r"^latent_codec\.y\.channel_context\.y(\d+)\.2\.weight$")
GENERATED_EXPONENT = -13
GENERATED_RULE = (
    "i = arange(numel) (int64) + salt * 2**24; h = ((i >> 16) ^ i) * 0x45D9F3B & 0xFFFFFFFF; "
    "h = ((h >> 16) ^ h) * 0x45D9F3B & 0xFFFFFFFF; h = (h >> 16) ^ h; "
    "weight = (((h & 0xFF) - 128) as float32 * 2**exponent).reshape(shape)"
)
CONTEXT_NET = re.compile(r"(^|\.)(context_prediction|entropy_parameters|channel_context)(\.|$)")


def generated_weight(shape, salt: int, exponent: int = GENERATED_EXPONENT) -> torch.Tensor:
    """Integers from -128 to 127 times 2**exponent, from a 32-bit integer hash of the index.

    Exactly representable and exactly reproducible anywhere (integer arithmetic only),
    so the fixtures need not store these tensors (``GENERATED_RULE`` in words).
    """
    i = torch.arange(int(np.prod(shape)), dtype=torch.int64) + salt * 2**24
    h = (((i >> 16) ^ i) * 0x45D9F3B) & 0xFFFFFFFF
    h = (((h >> 16) ^ h) * 0x45D9F3B) & 0xFFFFFFFF
    h = (h >> 16) ^ h
    return (((h & 0xFF) - 128).to(torch.float32) * 2.0**exponent).reshape(shape)


def _stub_unused_imports() -> None:
    """Empty modules for the packages CompressAI imports at load time but this script never uses."""

    class _Unused:
        def __init__(self, *args, **kwargs):
            pass

    def stub(name: str, **attrs) -> types.ModuleType:
        module = types.ModuleType(name)
        module.__dict__.update(attrs)
        sys.modules[name] = module
        return module

    geometric = stub("torch_geometric")
    geometric.data = stub("torch_geometric.data", Data=_Unused)
    geometric.data.datapipes = stub(
        "torch_geometric.data.datapipes", functional_transform=lambda name: lambda cls: cls
    )
    geometric.transforms = stub("torch_geometric.transforms", BaseTransform=_Unused, Center=_Unused)
    stub("torchvision").transforms = stub("torchvision.transforms")
    stub("pandas")
    stub("requests")


def _perturb(model) -> None:
    """Move every parameter family off its initial value so the conversion is really exercised."""
    from compressai.layers import GDN

    generator = torch.Generator().manual_seed(1234)

    def noise(shape, std):
        return torch.randn(shape, generator=generator) * std

    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, GDN):
                c = module.beta.numel()
                beta = 0.5 + torch.rand(c, generator=generator) * 1.5
                gamma = 0.1 * torch.eye(c) + torch.rand(c, c, generator=generator) * 0.05
                module.beta.copy_(module.beta_reparam.init(beta))
                module.gamma.copy_(module.gamma_reparam.init(gamma))
                module.gamma[0, 1] = -0.01  # below the bound: clamped, as trellic must too
                module.beta[0] = 1e-4  # below sqrt(beta_min): clamped to beta_min
        eb = model.entropy_bottleneck
        for params, std in ((eb.matrices, 0.3), (eb.biases, 0.3), (eb.factors, 0.5)):
            for p in params:
                p.add_(noise(p.shape, std))
        eb._update_quantiles()  # tails and (non-integer) medians that fit the perturbed density
        model.g_a[-1].weight.mul_(8.0)  # latents of a few units: many non-zero indices
        model.h_a[-1].weight.mul_(6.0)  # hyper-latents of several units: z symbols not all 0
        model.g_s[-1].bias.add_(0.5)  # a reconstruction around mid-grey, mostly inside [0, 1]
        last = model.h_s[-2] if isinstance(model.h_s[-1], torch.nn.ReLU) else model.h_s[-1]
        last.weight.mul_(10.0)
        # Scales (CompressAI's first half) from under the 0.11 bound to ~4, means of a few units.
        last.bias[: model.M] = torch.linspace(-0.3, 4.0, model.M)
        last.bias[model.M :].add_(noise(last.bias[model.M :].shape, 2.0))


def _forward(model, x: torch.Tensor, arch: str) -> dict:
    """The eval-mode forward, step by step, with every intermediate the tests compare."""
    y = model.g_a(x)
    z = model.h_a(y) if arch == "mbt2018-mean" else model.h_a(torch.abs(y))
    z_hat, z_likelihoods = model.entropy_bottleneck(z)
    params = model.h_s(z_hat)
    if arch == "mbt2018-mean":
        scales, means = params.chunk(2, 1)
    else:
        scales, means = params, None
    y_hat, y_likelihoods = model.gaussian_conditional(y, scales, means=means)
    out = {
        "y": y,
        "z": z,
        "z_hat": z_hat,
        "scales": scales,
        "y_hat": y_hat,
        "x_hat": model.g_s(y_hat),
        "y_likelihoods": y_likelihoods,
        "z_likelihoods": z_likelihoods,
    }
    if means is not None:
        out["means"] = means
    reference = model(x)
    assert torch.equal(reference["x_hat"], out["x_hat"]), "step-by-step forward != model(x)"
    return out


def _real_decode(model, x: torch.Tensor) -> tuple[dict, torch.Tensor, torch.Tensor]:
    """CompressAI's compress -> decompress; y_hat is captured at g_s's input."""
    captured = {}
    hook = model.g_s.register_forward_pre_hook(lambda _, args: captured.update(y_hat=args[0]))
    compressed = model.compress(x)
    x_hat = model.decompress(compressed["strings"], compressed["shape"])["x_hat"]
    hook.remove()
    sizes = {
        "y_bytes": len(compressed["strings"][0][0]),
        "z_bytes": len(compressed["strings"][1][0]),
    }
    return sizes, captured["y_hat"].clone(), x_hat


def _synthetic_input() -> torch.Tensor:
    """uint8 (3, 64, 128): gradients, a sinusoid and seeded noise."""
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:64, 0:128]
    base = np.stack([xx * 2 + yy, yy * 3, 128 + 70 * np.sin(xx / 6.0)])
    return torch.from_numpy(np.clip(base + rng.normal(0, 10, base.shape), 0, 255).astype(np.uint8))


def make_fixture(arch: str, crop_pixels: np.ndarray, out_dir: Path = OUT_DIR) -> dict:
    from compressai.zoo.image import model_architectures

    N, M, seed = ARCHS[arch]
    torch.manual_seed(seed)
    model = model_architectures[arch](N, M)
    _perturb(model)
    model.eval()
    model.update(force=True)

    x_u8 = _synthetic_input()
    with torch.no_grad():
        expected = _forward(model, x_u8[None].float() / 255.0, arch)
        sizes, crop_y_hat, crop_x_hat = _real_decode(model, image_to_tensor(crop_pixels))
        crop_forward = _forward(model, image_to_tensor(crop_pixels), arch)
    crop_u8 = tensor_to_image(crop_x_hat)
    # CompressAI's decoder rebuilds exactly round(y - means) + means: what trellic's USQ decodes.
    assert torch.equal(crop_y_hat, crop_forward["y_hat"]), "decoded y_hat != forward y_hat"
    inside = float(((crop_u8 > 0) & (crop_u8 < 255)).mean())

    state = model.state_dict()
    omitted = {OMITTED: list(state.pop(OMITTED).shape)}
    tensors = {f"state.{k}": v.detach().contiguous() for k, v in state.items()}
    tensors.update({f"expected.{k}": v.detach().contiguous() for k, v in expected.items()})
    tensors["expected.x_u8"] = x_u8.contiguous()
    tensors["expected.crop_y_hat"] = crop_y_hat.contiguous()
    tensors["expected.crop_x_hat_u8"] = torch.from_numpy(crop_u8)
    save_file(tensors, str(out_dir / f"{arch}.safetensors"))
    return {
        "N": N,
        "M": M,
        "seed": seed,
        "aux_loss": float(model.aux_loss()),
        "omitted_state_shapes": omitted,
        "crop_streams": sizes,
        "crop_decoded_sha256": hashlib.sha256(crop_u8.tobytes()).hexdigest(),
        "crop_decoded_inside_fraction": round(inside, 4),
        "nonzero_crop_y_symbols": int((crop_y_hat != 0).sum()),
    }


# ---------------------------------------------------------------------------------------------
# The eight architectures beyond the legacy two.


class _Probe:
    """Forward hooks that keep clones of some modules' outputs (or inputs) over every call."""

    def __init__(self, model, outputs=(), inputs=()):
        self.outputs = {name: [] for name in outputs}
        self.inputs = {name: [] for name in inputs}
        self._hooks = []
        for name in outputs:
            hook = self._keep_output(self.outputs[name])
            self._hooks.append(model.get_submodule(name).register_forward_hook(hook))
        for name in inputs:
            hook = self._keep_inputs(self.inputs[name])
            self._hooks.append(model.get_submodule(name).register_forward_pre_hook(hook))

    @staticmethod
    def _keep_output(store):
        def hook(_module, _args, output):
            store.append(output.detach().clone() if torch.is_tensor(output) else output)

        return hook

    @staticmethod
    def _keep_inputs(store):
        def hook(_module, args):
            store.append(tuple(a.detach().clone() if torch.is_tensor(a) else a for a in args))

        return hook

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for hook in self._hooks:
            hook.remove()


def _last_conv_child(sequence: nn.Sequential) -> nn.Module:
    """The last convolution among a Sequential's children (a sub-pixel conv's own conv)."""
    for child in reversed(list(sequence)):
        if isinstance(child, (nn.Conv2d, nn.ConvTranspose2d)):
            return child
        if isinstance(child, nn.Sequential) and isinstance(child[0], nn.Conv2d):
            return child[0]
    raise ValueError("no convolution")


def _hyper_prefix(spec: Spec) -> str:
    return "" if spec.family == "serial" else "latent_codec.hyper."


def _groups(spec: Spec) -> list[int]:
    return list(spec.kwargs["groups"]) if spec.family == "elic" else []


def _context_layers(model, spec: Spec) -> list[tuple[str, str]]:
    """(layer to scale, module whose last output is measured) for every context network."""
    if spec.family == "serial":
        return [("context_prediction", "context_prediction")]
    if spec.family == "checkerboard":
        return [("latent_codec.y.context_prediction", "latent_codec.y.context_prediction")]
    if spec.family == "elic":
        pairs = []
        for k in range(len(_groups(spec))):
            spatial = f"latent_codec.y.latent_codec.y{k}.context_prediction"
            pairs.append((spatial, spatial))
            if k > 0:
                channel = f"latent_codec.y.channel_context.y{k}"
                pairs.append((f"{channel}.4", channel))
        return pairs
    return []


def _param_layers(model, spec: Spec) -> list[tuple[str, tuple[str, str]]]:
    """(last layer of an entropy-parameters network, CompressAI's chunk order of its output)."""
    if spec.family == "serial":
        return [("entropy_parameters.4", ("scales", "means"))]
    if spec.family == "checkerboard":
        return [("latent_codec.y.entropy_parameters.4", model.latent_codec["y"].y.chunks)]
    if spec.family == "elic":
        codecs = model.latent_codec["y"].latent_codec
        return [
            (f"latent_codec.y.latent_codec.y{k}.entropy_parameters.4", codecs[f"y{k}"].y.chunks)
            for k in range(len(_groups(spec)))
        ]
    return []


def _probe(model, x, outputs=(), inputs=()):
    with _Probe(model, outputs, inputs) as probe:
        result = model(x)
    return result, probe


def _scale_to_std(model, x, layer: nn.Module, probe_name: str, target: float, rounds: int = 3):
    """Scale a layer (weight and bias) until the probed module's last output has std ``target``."""
    for _ in range(rounds):
        _, probe = _probe(model, x, outputs=[probe_name])
        factor = target / float(probe.outputs[probe_name][-1].std())
        layer.weight.mul_(factor)
        layer.bias.mul_(factor)


def _normalise_params(model, x, name: str, chunks, means_bias: torch.Tensor) -> None:
    """Per output channel: scales std 0.6 around -0.3..4.0, means std 1 around ``means_bias``."""
    layer = model.get_submodule(name)
    _, probe = _probe(model, x, inputs=[name])
    with torch.no_grad():
        bias = layer.bias.view(1, -1, 1, 1)
        out = torch.cat([layer(args[0]) - bias for args in probe.inputs[name]])
    flat = out.transpose(0, 1).flatten(1)
    channels = out.shape[1] // 2
    scale_rows = slice(0, channels) if chunks[0] == "scales" else slice(channels, 2 * channels)
    mean_rows = slice(channels, 2 * channels) if chunks[0] == "scales" else slice(0, channels)
    factor = torch.empty(2 * channels)
    factor[scale_rows] = 0.6 / flat[scale_rows].std(dim=1)
    factor[mean_rows] = 1.0 / flat[mean_rows].std(dim=1)
    layer.weight.mul_(factor.view(-1, *([1] * (layer.weight.dim() - 1))))
    centre = flat.mean(dim=1) * factor
    layer.bias[scale_rows] = torch.linspace(-0.3, 4.0, channels) - centre[scale_rows]
    layer.bias[mean_rows] = means_bias - centre[mean_rows]


def _perturb_spec(model, spec: Spec, x: torch.Tensor) -> None:
    """Move every parameter family off its initial value (see the module docstring)."""
    from compressai.entropy_models import EntropyBottleneck
    from compressai.layers import GDN, MaskedConv2d

    generator = torch.Generator().manual_seed(1000 + spec.seed)

    def noise(shape, std):
        return torch.randn(shape, generator=generator) * std

    model.eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            match = GENERATED.match(name)
            if match:
                param.copy_(generated_weight(param.shape, int(match.group(1))))
        for module in model.modules():
            if isinstance(module, GDN):
                c = module.beta.numel()
                beta = 0.5 + torch.rand(c, generator=generator) * 1.5
                gamma = 0.1 * torch.eye(c) + torch.rand(c, c, generator=generator) * 0.05
                module.beta.copy_(module.beta_reparam.init(beta))
                module.gamma.copy_(module.gamma_reparam.init(gamma))
                module.gamma[0, 1] = -0.01  # below the bound: clamped
                module.beta[0] = 1e-4  # below sqrt(beta_min): clamped to beta_min
            if isinstance(module, EntropyBottleneck):
                families = ((module.matrices, 0.3), (module.biases, 0.3), (module.factors, 0.5))
                for params, std in families:
                    for p in params:
                        p.add_(noise(p.shape, std))
                module._update_quantiles()  # tails and (non-integer) medians that fit the density
        for name, module in model.named_modules():
            if isinstance(module, nn.Conv2d) and CONTEXT_NET.search(name):
                if GENERATED.match(f"{name}.weight"):
                    continue
                module.weight.add_(noise(module.weight.shape, float(module.weight.std())))
                module.bias.add_(noise(module.bias.shape, 0.1))

        _scale_to_std(model, x, _last_conv_child(model.g_a), "g_a", 3.0)  # y: a few units
        hyper = _hyper_prefix(spec)
        if spec.family != "factorized":
            h_a = model.get_submodule(f"{hyper}h_a")
            _scale_to_std(model, x, _last_conv_child(h_a), f"{hyper}h_a", 2.5)  # z: several units
        params = _param_layers(model, spec)
        means_bias = [noise(model.get_submodule(n).bias.numel() // 2, 1.0) for n, _ in params]
        for _ in range(2):  # checkerboard contexts depend on the means: settle them twice
            if spec.family == "factorized":
                break
            _, probe = _probe(model, x, outputs=[f"{hyper}h_s"])
            hyper_std = float(probe.outputs[f"{hyper}h_s"][-1].std())
            for layer_name, probe_name in _context_layers(model, spec):
                _scale_to_std(model, x, model.get_submodule(layer_name), probe_name, hyper_std, 2)
            for (name, chunks), bias in zip(params, means_bias, strict=True):
                _normalise_params(model, x, name, chunks, bias)

        last = _last_conv_child(model.g_s)  # a reconstruction around mid-grey
        for _ in range(2):
            x_hat = model(x)["x_hat"]
            factor = 0.12 / float(x_hat.std())
            last.weight.mul_(factor)
            last.bias.mul_(factor)
            last.bias.add_(0.5 - float(model(x)["x_hat"].mean()))

        for module in model.modules():  # what a training checkpoint holds where the mask is 0
            if isinstance(module, MaskedConv2d):
                module.weight.add_(noise(module.weight.shape, 0.2) * (1 - module.mask))


def _chunked(params: torch.Tensor, chunks) -> dict:
    first, second = params.chunk(2, 1)
    return dict(zip(chunks, (first.clone(), second.clone()), strict=True))


def _expected_forward(model, spec: Spec, x: torch.Tensor) -> tuple[dict, dict]:
    """model(x) in eval mode with its intermediates: tensors and a description of each."""
    hyper = _hyper_prefix(spec)
    outputs, inputs = ["g_a"], ["g_s"]
    if spec.family != "factorized":
        outputs += [f"{hyper}h_a", f"{hyper}h_s"]
        inputs += [f"{hyper}h_s"]
    if spec.family == "serial":
        outputs += ["context_prediction", "entropy_parameters"]
    if spec.family == "checkerboard":
        inputs += ["latent_codec.y.y"]
    groups = _groups(spec)
    for k in range(len(groups)):
        inputs.append(f"latent_codec.y.latent_codec.y{k}.y")
        if k > 0:
            outputs.append(f"latent_codec.y.channel_context.y{k}")
    result, probe = _probe(model, x, outputs, inputs)
    out = {"y": probe.outputs["g_a"][-1]}
    notes = {"x_u8": "the synthetic input (uint8, 3x64x128); x = x_u8 / 255",
             "y": "g_a(x)"}
    y_hat = probe.inputs["g_s"][-1][0]
    if spec.family == "serial":
        out["forward_y_hat"] = y_hat
        notes["forward_y_hat"] = (
            "what CompressAI's eval forward feeds to context_prediction and g_s: "
            "gaussian_conditional.quantize(y, 'dequantize') without means = round(y), "
            "NOT the decoder's round(y - means) + means (that is decoded_y_hat)")
    else:
        out["y_hat"] = y_hat
        notes["y_hat"] = {
            "factorized": "entropy_bottleneck eval forward: round(y - medians) + medians",
            "checkerboard": "twopass forward: anchors round(y - means) + means with the "
                            "context zeroed, then non-anchors with the anchors' context (STE); "
                            "what the decoder rebuilds",
            "elic": "per group, the checkerboard twopass y_hat (as for "
                    "cheng2020-anchor-checkerboard), groups concatenated",
        }[spec.family]
    if spec.family != "factorized":
        out["z"] = probe.outputs[f"{hyper}h_a"][-1]
        out["z_hat"] = probe.inputs[f"{hyper}h_s"][-1][0]
        out["hyper_params"] = probe.outputs[f"{hyper}h_s"][-1]
        notes.update(z="h_a(y)", z_hat="round(z - medians) + medians",
                     hyper_params="h_s(z_hat)")
    if spec.family == "serial":
        out["ctx_params"] = probe.outputs["context_prediction"][-1]
        out["gaussian_params"] = probe.outputs["entropy_parameters"][-1]
        out.update(_chunked(out["gaussian_params"], ("scales", "means")))
        notes.update(
            ctx_params="context_prediction(forward_y_hat) (masked 5x5 conv)",
            gaussian_params="entropy_parameters(cat(hyper_params, ctx_params)): (scales, means)",
            scales="first half of gaussian_params, before the 0.11 lower bound",
            means="second half of gaussian_params")
    if spec.family == "checkerboard":
        chunks = model.latent_codec["y"].y.chunks
        out["gaussian_params"] = probe.inputs["latent_codec.y.y"][-1][1]
        out.update(_chunked(out["gaussian_params"], chunks))
        notes["gaussian_params"] = (
            "entropy_parameters(cat(ctx, hyper_params)) per phase: anchors with ctx = 0, "
            "non-anchors with ctx = context_prediction(anchors' y_hat, non-anchors 0); "
            f"chunks {list(chunks)}")
        notes.update(scales="gaussian_params' scales half, before the 0.11 lower bound",
                     means="gaussian_params' means half")
    codecs = model.latent_codec["y"].latent_codec if groups else {}
    for k in range(len(groups)):
        chunks = codecs[f"y{k}"].y.chunks
        params = probe.inputs[f"latent_codec.y.latent_codec.y{k}.y"][-1][1]
        out[f"gaussian_params.y{k}"] = params
        for part, value in _chunked(params, chunks).items():
            out[f"{part}.y{k}"] = value
        if k > 0:
            out[f"channel_context.y{k}"] = probe.outputs[f"latent_codec.y.channel_context.y{k}"][-1]
    if groups:
        notes["gaussian_params.yK"] = (
            "group K's entropy_parameters(cat(spatial ctx, channel_context.yK, hyper_params)) "
            "(group 0: cat(spatial ctx, hyper_params)), per checkerboard phase as for "
            f"cheng2020-anchor-checkerboard; chunks {list(codecs['y0'].y.chunks)}")
        notes["scales.yK"] = "group K's scales, before the 0.11 lower bound"
        notes["means.yK"] = "group K's means"
        notes["channel_context.yK"] = (
            "channel_context.yK(" + ("cat(y_hat of group 0, y_hat of group K-1) for K > 1, "
                                     "y_hat of group 0 for K = 1"
                                     if type(model).__name__ == "Elic2022Chandelier"
                                     else "cat(y_hat of groups 0..K-1)") + ")")
    out["x_hat"] = result["x_hat"]
    notes["x_hat"] = ("model(x)['x_hat'] = g_s(forward_y_hat), not clamped"
                      if spec.family == "serial" else "model(x)['x_hat'] = g_s(y_hat), not clamped")
    for key, value in result["likelihoods"].items():
        out[f"{key}_likelihoods"] = value
        notes[f"{key}_likelihoods"] = f"model(x)['likelihoods']['{key}']"
    return out, notes


def _stream_names(spec: Spec) -> list[str]:
    if spec.family == "factorized":
        return ["y"]
    if spec.family == "serial":
        return ["y", "z"]
    if spec.family == "checkerboard":
        return ["y_anchor", "y_non_anchor", "z"]
    phases = ("anchor", "non_anchor")
    return [f"y{k}_{phase}" for k in range(len(_groups(spec))) for phase in phases] + ["z"]


def _code(model, spec: Spec, x: torch.Tensor, repeats: int = 3) -> dict:
    """CompressAI's compress -> decompress (timed, one thread); y_hat captured at g_s's input."""
    captured = []
    hook = model.g_s.register_forward_pre_hook(lambda _, args: captured.append(args[0].clone()))
    try:
        start = time.perf_counter()
        compressed = model.compress(x)
        encode = time.perf_counter() - start
        decode, x_hats = [], []
        for _ in range(repeats):
            start = time.perf_counter()
            x_hats.append(model.decompress(compressed["strings"], compressed["shape"])["x_hat"])
            decode.append(time.perf_counter() - start)
    finally:
        hook.remove()
    assert all(torch.equal(x_hats[0], other) for other in x_hats[1:]), "decode not repeatable"
    assert all(torch.equal(captured[0], other) for other in captured[1:])
    if "y_hat" in compressed:  # SimpleVAECompressionModel: the encoder's own y_hat
        assert torch.equal(compressed["y_hat"], captured[0]), "compress y_hat != decompress y_hat"
    names = _stream_names(spec)
    assert len(names) == len(compressed["strings"]), (names, len(compressed["strings"]))
    sizes = {f"{n}_bytes": len(s[0]) for n, s in zip(names, compressed["strings"], strict=True)}
    return {"sizes": sizes, "y_hat": captured[0], "x_hat": x_hats[0],
            "encode_seconds": round(encode, 4), "decode_seconds": round(min(decode), 4)}


def _build_spec_model(arch: str, spec: Spec, x: torch.Tensor):
    from compressai.registry import MODELS

    torch.manual_seed(spec.seed)
    model = MODELS[arch](**spec.kwargs)
    _perturb_spec(model, spec, x)
    model.eval()
    model.update(force=True)
    return model


def _omitted(key: str) -> bool:
    return key.endswith(OMITTED)


def _state_keys(state: dict) -> dict:
    return {k: {"shape": list(v.shape), "dtype": str(v.dtype).removeprefix("torch.")}
            for k, v in state.items()}


def _state_record(state: dict) -> tuple[dict, dict, dict]:
    """The stored tensors, the omitted tables' shapes and the generated tensors' recipes."""
    stored, omitted, generated = {}, {}, {}
    for key, value in state.items():
        match = GENERATED.match(key)
        if _omitted(key):
            omitted[key] = list(value.shape)
        elif match:
            salt = int(match.group(1))
            assert torch.equal(value, generated_weight(value.shape, salt)), key
            generated[key] = {"shape": list(value.shape), "dtype": "float32", "salt": salt,
                              "exponent": GENERATED_EXPONENT}
        else:
            stored[f"state.{key}"] = value.detach().contiguous()
    return stored, omitted, generated


def _crop_for(spec: Spec | None, image: np.ndarray) -> tuple[dict, np.ndarray]:
    box = list(spec.crop_box) if spec is not None and spec.crop_box else CROP["box"]
    left, top, right, bottom = box
    pixels = image[top:bottom, left:right]
    return {"path": CROP["path"], "box": box,
            "input_sha256": hashlib.sha256(pixels.tobytes()).hexdigest()}, pixels


def make_spec_fixture(arch: str, image: np.ndarray, out_dir: Path, write: bool) -> dict:
    """Build, perturb, run and (if ``write``) save one of ``SPECS``; returns its JSON entry."""
    from compressai.layers import MaskedConv2d

    spec = SPECS[arch]
    x_u8 = _synthetic_input()
    x = x_u8[None].float() / 255.0
    model = _build_spec_model(arch, spec, x)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}  # before any forward
    stored, omitted, generated = _state_record(state)
    entry = {
        "class": type(model).__name__,
        "kwargs": spec.kwargs,
        "N": spec.kwargs["N"],
        "M": spec.kwargs.get("M", spec.kwargs["N"]),
        **({"groups": list(spec.kwargs["groups"])} if "groups" in spec.kwargs else {}),
        "seed": spec.seed,
        "family": spec.family,
        "kernels": kernel_fingerprint(),
        "aux_loss": float(model.aux_loss().detach()),
        "omitted_state_shapes": omitted,
        **({"generated_state": generated, "generated_state_rule": GENERATED_RULE}
           if generated else {}),
        "state_keys": _state_keys(state),
    }
    if not write:
        return entry

    crop, crop_pixels = _crop_for(spec, image)
    crop_x = image_to_tensor(crop_pixels)
    with torch.no_grad():
        expected, notes = _expected_forward(model, spec, x)
        synthetic = _code(model, spec, x, repeats=1)
        coded = _code(model, spec, crop_x)
        crop_forward, _ = _expected_forward(model, spec, crop_x)
    # Running the model never changed a parameter or buffer, except that CompressAI's masked
    # convolutions zero their masked weights in place (outputs never depend on those).
    masked = {f"{n}.weight": module.mask for n, module in model.named_modules()
              if isinstance(module, MaskedConv2d)}
    for key, value in model.state_dict().items():
        before = state[key] * masked[key] if key in masked else state[key]
        assert torch.equal(before, value), f"{key} changed while running the model"

    forward_y_hat = expected.get("y_hat", expected.get("forward_y_hat"))
    crop_forward_y_hat = crop_forward.get("y_hat", crop_forward.get("forward_y_hat"))
    expected["decoded_y_hat"] = synthetic["y_hat"]
    notes["decoded_y_hat"] = ("y_hat that CompressAI's decompress feeds to g_s after compress of x "
                              "(noise-free: round(y - means) + means at the decoder's means)")
    crop_u8 = tensor_to_image(coded["x_hat"])
    tensors = dict(stored)
    tensors.update({f"expected.{k}": v.detach().contiguous() for k, v in expected.items()})
    tensors["expected.x_u8"] = x_u8.contiguous()
    tensors["expected.crop_y_hat"] = coded["y_hat"].contiguous()
    tensors["expected.crop_x_hat_u8"] = torch.from_numpy(crop_u8)
    notes["crop_y_hat"] = "y_hat that decompress fed to g_s, for the crop"
    notes["crop_x_hat_u8"] = "decompress's x_hat rounded to uint8 (H, W, 3) as trellic does"
    path = out_dir / f"{arch}.safetensors"
    save_file(tensors, str(path))

    def max_diff(a, b):
        return float((a - b).abs().max())

    entry.update({
        "expected": dict(sorted(notes.items())),
        "forward_y_hat_equals_decoded": bool(torch.equal(forward_y_hat, synthetic["y_hat"])),
        "forward_y_hat_max_abs_diff_to_decoded": max_diff(forward_y_hat, synthetic["y_hat"]),
        "crop": crop,
        "crop_streams": coded["sizes"],
        "crop_decoded_sha256": hashlib.sha256(crop_u8.tobytes()).hexdigest(),
        "crop_decoded_inside_fraction": round(float(((crop_u8 > 0) & (crop_u8 < 255)).mean()), 4),
        "nonzero_crop_y_symbols": int((coded["y_hat"] != 0).sum()),
        "crop_forward_y_hat_equals_decoded": bool(torch.equal(crop_forward_y_hat, coded["y_hat"])),
        "crop_forward_y_hat_max_abs_diff_to_decoded": max_diff(crop_forward_y_hat, coded["y_hat"]),
        "synthetic_streams": synthetic["sizes"],
        "encode_seconds": coded["encode_seconds"],
        "decode_seconds": coded["decode_seconds"],
        "file_bytes": path.stat().st_size,
    })
    return entry


# ---------------------------------------------------------------------------------------------
# The legacy two: what their entries lack (their files are never rewritten without --force).


def _legacy_model(arch: str):
    from compressai.zoo.image import model_architectures

    N, M, seed = ARCHS[arch]
    torch.manual_seed(seed)
    model = model_architectures[arch](N, M)
    _perturb(model)
    model.eval()
    model.update(force=True)
    return model


def describe_legacy(arch: str, image: np.ndarray) -> dict:
    """class, kwargs, every state_dict key (shape, dtype) and the crop's decode time."""
    model = _legacy_model(arch)
    state_keys = _state_keys(model.state_dict())
    _, crop_pixels = _crop_for(None, image)
    with torch.no_grad():
        start = time.perf_counter()
        compressed = model.compress(image_to_tensor(crop_pixels))
        encode = time.perf_counter() - start
        decode = []
        for _ in range(3):
            start = time.perf_counter()
            model.decompress(compressed["strings"], compressed["shape"])
            decode.append(time.perf_counter() - start)
    N, M, _ = ARCHS[arch]
    return {"class": type(model).__name__, "kwargs": {"N": N, "M": M},
            "state_keys": state_keys, "encode_seconds": round(encode, 4),
            "decode_seconds": round(min(decode), 4)}


def _check_against_file(arch: str, path: Path, entry: dict, state_keys: dict) -> None:
    """A kept file must hold exactly a rebuilt model's keys (less omitted, generated) and shapes."""
    tensors = load_file(str(path))
    stored = {k[len("state."):]: v for k, v in tensors.items() if k.startswith("state.")}
    listed = set(stored) | set(entry.get("omitted_state_shapes", {}))
    listed |= set(entry.get("generated_state", {}))
    if listed != set(state_keys):
        raise SystemExit(f"{path}: keys differ from a rebuilt {arch}: "
                         f"{sorted(listed ^ set(state_keys))}")
    for key, value in stored.items():
        record = state_keys[key]
        dtype = str(value.dtype).removeprefix("torch.")
        if list(value.shape) != record["shape"] or dtype != record["dtype"]:
            raise SystemExit(f"{path}: {key} is {value.dtype}{list(value.shape)}, rebuilt {record}")


def _compact_json(data) -> str:
    """json.dumps(indent=2) with lists of numbers, and each state key's record, on one line."""
    text = json.dumps(data, indent=2)
    text = re.sub(r"\[\s*((?:-?[\d.e+-]+,\s*)*-?[\d.e+-]+)\s*\]",
                  lambda m: "[" + ", ".join(m.group(1).replace(",", " ").split()) + "]", text)
    # a state key's record ({"shape": [...], "dtype": ...}, salt, exponent) on one line
    return re.sub(r'\{\s*("shape": \[[^\]\n]*\],\s*"dtype": "\w+"(?:,\s*"\w+": -?\d+)*)\s*\}',
                  lambda m: "{" + re.sub(r",\s+", ", ", m.group(1)) + "}", text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", action="append", choices=ALL_ARCHS,
                        help="an architecture to write (repeatable; default: all)")
    parser.add_argument("--force", action="store_true", help="rewrite files that exist")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="output folder")
    args = parser.parse_args(argv)
    archs = [a for a in ALL_ARCHS if a in (args.arch or ALL_ARCHS)]

    torch.set_num_threads(1)
    _stub_unused_imports()
    import compressai

    image = read_image(data_root() / CROP["path"])
    crop, crop_pixels = _crop_for(None, image)
    out_dir = args.out
    out_dir.mkdir(parents=True, exist_ok=True)
    meta_path = out_dir / "fixtures.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    if meta.get("crop", {}).get("input_sha256", crop["input_sha256"]) != crop["input_sha256"]:
        raise SystemExit(f"{CROP['path']}: not the image the existing fixtures were made from")
    summary = {
        "generator": "scripts/make_compressai_fixtures.py",
        "compressai": compressai.__version__,
        "torch": torch.__version__,
        "kernels": meta.get("kernels", kernel_fingerprint()),  # the legacy fixtures' machine
        "crop": {**CROP, "input_sha256": crop["input_sha256"]},
        "archs": dict(meta.get("archs", {})),
    }
    for key in ("compressai", "torch"):
        if meta.get(key, summary[key]) != summary[key]:
            raise SystemExit(f"fixtures.json was made with {key} {meta[key]}, not {summary[key]}")

    for arch in archs:
        path = out_dir / f"{arch}.safetensors"
        write = args.force or not path.is_file()
        old = summary["archs"].get(arch, {})
        if not write and not old:
            raise SystemExit(f"{path} exists but fixtures.json has no entry for it: use --force")
        print(f"{arch}: {'writing' if write else 'kept; filling in its entry'}", flush=True)
        if arch in LEGACY:
            entry = make_fixture(arch, crop_pixels, out_dir) if write else dict(old)
            if write:
                entry["kernels"] = kernel_fingerprint()
            else:
                entry.setdefault("kernels", summary["kernels"])
            for key, value in describe_legacy(arch, image).items():
                if write or key not in entry:
                    entry[key] = value
            if not write:
                _check_against_file(arch, path, entry, entry["state_keys"])
        else:
            entry = make_spec_fixture(arch, image, out_dir, write)
            if not write:
                _check_against_file(arch, path, old, entry["state_keys"])
                entry = {**entry, **old, "state_keys": old.get("state_keys", entry["state_keys"])}
        summary["archs"][arch] = entry

    legacy_kernels = {summary["archs"][a]["kernels"] for a in LEGACY if a in summary["archs"]}
    if len(legacy_kernels) == 1:
        summary["kernels"] = legacy_kernels.pop()
    elif legacy_kernels:
        print("warning: the legacy fixtures were made on different kernels", file=sys.stderr)
    summary["archs"] = {a: summary["archs"][a] for a in ALL_ARCHS if a in summary["archs"]}
    meta_path.write_text(_compact_json(summary) + "\n")
    for arch in archs:
        entry = summary["archs"][arch]
        print(arch, entry["class"], entry["kwargs"], entry.get("crop_streams"),
              f"decode {entry.get('decode_seconds')} s",
              f"{(out_dir / f'{arch}.safetensors').stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
