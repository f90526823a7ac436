"""Write the CompressAI conformance fixtures (tests/fixtures/compressai/) with CompressAI itself.

trellic never depends on CompressAI; this script runs once, in a scratch
environment outside the repository, and its outputs are committed:

    python3.11 -m venv "$VENV"    # VENV: any folder outside the repository
    "$VENV"/bin/pip install torch==2.13.0 numpy scipy tqdm einops pillow safetensors
    "$VENV"/bin/pip install --no-deps compressai==1.2.8 pytorch-msssim
    PYTHONPATH=$PWD "$VENV"/bin/python scripts/make_compressai_fixtures.py

(torchvision, torch_geometric, pandas and requests are imported by CompressAI's
package but used by none of the code run here: ``_stub_unused_imports`` stands
in for them.) For each architecture it builds a tiny random-weight CompressAI
model (seeded; GDN, entropy-bottleneck and hyper-synthesis parameters moved
away from their initial values, a few GDN entries below their bound), then
writes ``ARCH.safetensors``:

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

``fixtures.json`` holds the small facts (N, M, seed, versions, aux loss,
CompressAI's stream sizes, the decoded image's sha256). Everything runs on one
thread, as trellic's codec does, so the floats are reproducible.
"""

from __future__ import annotations

import hashlib
import json
import sys
import types
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from trellic.io import image_to_tensor, read_image, tensor_to_image
from trellic.paths import data_root

OUT_DIR = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "compressai"
ARCHS = {"mbt2018-mean": (8, 12, 1), "bmshj2018-hyperprior": (8, 12, 2)}  # N, M, seed
# CompressAI's y tables (64 x 3133 int32, 0.8 MB): derived data the importer ignores; tests put
# a zero tensor of the recorded shape in its place.
OMITTED = "gaussian_conditional._quantized_cdf"
CROP = {"path": "pypi_samples/coffee.png", "box": [96, 64, 224, 192]}  # left, top, right, bottom


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


def make_fixture(arch: str, crop_pixels: np.ndarray) -> dict:
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
    save_file(tensors, str(OUT_DIR / f"{arch}.safetensors"))
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


def main() -> int:
    torch.set_num_threads(1)
    _stub_unused_imports()
    import compressai

    image = read_image(data_root() / CROP["path"])
    left, top, right, bottom = CROP["box"]
    crop_pixels = image[top:bottom, left:right]
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    summary = {
        "generator": "scripts/make_compressai_fixtures.py",
        "compressai": compressai.__version__,
        "torch": torch.__version__,
        "crop": {**CROP, "input_sha256": hashlib.sha256(crop_pixels.tobytes()).hexdigest()},
        "archs": {arch: make_fixture(arch, crop_pixels) for arch in ARCHS},
    }
    (OUT_DIR / "fixtures.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
