"""The whole trellic workflow on imported CompressAI checkpoints: code, retrain, evaluate."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import synthetic_image
from tests.test_interop_compressai import META, fixture_state, save_checkpoint
from trellic.cli import main
from trellic.codec import Codec
from trellic.eval.results import read_results
from trellic.interop.compressai_layouts import compressai_keys
from trellic.io import image_to_tensor, pad_to_multiple, read_image, tensor_to_image
from trellic.models import CodecModel, ModelConfig
from trellic.models.gdn import PEDESTAL
from trellic.zoo import load, sha256_of


def random_compressai_state(arch: str, N: int, M: int, seed: int = 0) -> dict:
    """A CompressAI-layout state_dict with random weights, its keys and shapes derived from
    trellic's model of the architecture (trellic.interop.compressai_layouts)."""
    generator = torch.Generator().manual_seed(seed)
    model = CodecModel(ModelConfig(architecture=arch, N=N, M=M, prior_filters=(3, 3, 3, 3)))
    own = model.state_dict()
    state = {}
    for key, entry in compressai_keys(model, arch).keys.items():
        shape = entry.shape
        if entry.kind == "table":
            state[key] = torch.zeros(0, dtype=torch.int32)  # as saved before update()
        elif entry.kind == "constant":
            state[key] = torch.tensor(entry.value)
        elif entry.kind == "mask":
            state[key] = own[entry.trellic].clone()
        elif key.endswith(".beta"):
            state[key] = torch.sqrt(torch.ones(shape) + PEDESTAL)
        elif key.endswith(".gamma"):
            state[key] = torch.sqrt(0.1 * torch.eye(shape[0]) + PEDESTAL)
        elif key.endswith("entropy_bottleneck.quantiles"):
            state[key] = torch.tensor([-10.0, 0.0, 10.0]).repeat(N, 1, 1)
        else:
            fan_in = math.prod(shape[1:]) if len(shape) > 1 else 1
            state[key] = torch.randn(shape, generator=generator) / math.sqrt(fan_in)
    with torch.no_grad():
        state["g_a.6.weight"].mul_(20.0)  # latents of a few units: many non-zero indices
    return state


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    for seed in range(2):  # eval's MS-SSIM needs at least 161 pixels a side
        Image.fromarray(synthetic_image(176, 192, seed)).save(folder / f"{seed}.png")
    return folder


@pytest.mark.parametrize("arch", ["mbt2018-mean", "bmshj2018-hyperprior"])
@pytest.mark.parametrize(
    ("kind", "lambda_t"), [("usq", None), ("usq", 0.2), ("tcq4", None), ("tcq8", None)]
)
def test_imported_model_decodes_the_encoders_latents_with_every_quantizer(
    tmp_path, arch, kind, lambda_t
):
    checkpoint = save_checkpoint(tmp_path / "c.pth.tar", fixture_state(arch))
    weights = tmp_path / "m.safetensors"
    assert main(["import-compressai", str(checkpoint), "--arch", arch, "-o", str(weights)]) == 0
    codec = Codec.load(str(weights), kind, lambda_t)
    image = synthetic_image(64, 128)
    decoded = codec.decode(codec.encode(image).data)
    model, quantizer = codec.loaded.model, codec.quantizer
    compressed = model.compress(image_to_tensor(image), quantizer, codec.lambda_t)
    y_hat = model.latent_codec.decompress(compressed.streams, (4, 8), quantizer)
    assert torch.equal(y_hat, compressed.y_hat)
    assert np.array_equal(decoded, tensor_to_image(model.synthesize(y_hat)))
    assert decoded.std() > 0


def test_n128_m192_checkpoint_imports_codes_retrains_and_evaluates(tmp_path, photos, capsys):
    """Done-when of issue 17: compress -> decompress (bit-exact y) -> retrain -> eval."""
    checkpoint = save_checkpoint(tmp_path / "mbt.pth.tar",
                                 random_compressai_state("mbt2018-mean", 128, 192),
                                 "state_dict", "module.")
    weights = tmp_path / "mbt.safetensors"
    assert main(["import-compressai", str(checkpoint), "-o", str(weights)]) == 0  # inferred

    image, trl, png = photos / "0.png", tmp_path / "0.trl", tmp_path / "0.png"
    assert main(["compress", str(image), str(trl), "--model", str(weights),
                 "--quantizer", "tcq4"]) == 0
    assert main(["decompress", str(trl), str(png), "--model", str(weights)]) == 0
    codec = Codec.load(str(weights), "tcq4")
    assert np.array_equal(read_image(png), codec.decode(trl.read_bytes()))
    model, x = codec.loaded.model, pad_to_multiple(image_to_tensor(read_image(image)), 64)
    compressed = model.compress(x, codec.quantizer, codec.lambda_t)
    latent_shape = (x.shape[-2] // 16, x.shape[-1] // 16)
    assert torch.equal(model.latent_codec.decompress(compressed.streams, latent_shape,
                                                     codec.quantizer), compressed.y_hat)

    run = tmp_path / "run"
    assert main(["retrain", "--model", str(weights), "--quantizer", "tcq4", "--part", "decoder",
                 "--steps", "2", "--batch-size", "1", "--crop", "64", "--cache-crops", "2",
                 "--data", str(photos), "--out", str(run), "--lr", "1e-4"]) == 0
    retrained = run / "model.safetensors"
    results = tmp_path / "results.json"
    assert main(["eval", str(photos), "--model", str(retrained), "--quantizer", "tcq4",
                 "-o", str(results)]) == 0
    (point,) = read_results(results).points
    assert point.options["source"]["sha256"] == sha256_of(checkpoint)
    assert point.options["architecture"]["name"] == "mbt2018-mean"
    assert point.options["architecture"]["prior_filters"] == [3, 3, 3, 3]
    assert point.checkpoint_sha256 == load(str(retrained)).sha256 and point.bpp > 0


@pytest.mark.parametrize("arch", ["mbt2018-mean", "bmshj2018-hyperprior"])
def test_hyper_and_decoder_retrain_on_an_imported_model_with_its_lambda(tmp_path, photos, arch):
    checkpoint = save_checkpoint(tmp_path / "c.pth.tar", fixture_state(arch))
    weights = tmp_path / "m.safetensors"
    assert main(["import-compressai", str(checkpoint), "--arch", arch,
                 "-o", str(weights), "--lambda", "0.013"]) == 0
    run = tmp_path / "run"
    assert main(["retrain", "--model", str(weights), "--quantizer", "usq",
                 "--part", "hyper+decoder", "--mode", "online", "--steps", "2",
                 "--batch-size", "2", "--crop", "64", "--data", str(photos),
                 "--out", str(run)]) == 0
    retrained = load(str(run / "model.safetensors"))
    assert retrained.info["retrain"]["lmbda"] == 0.013
    assert retrained.info["source"]["sha256"] == sha256_of(checkpoint)
    source = load(str(weights)).model
    assert not torch.equal(retrained.model.latent_codec.h_s[0].weight,
                           source.latent_codec.h_s[0].weight)

    # and back to CompressAI: its keys and shapes, the retrained tensors in them
    exported = tmp_path / "retrained.pth.tar"
    assert main(["export-compressai", str(run / "model.safetensors"), "-o", str(exported)]) == 0
    state = torch.load(exported, weights_only=True)["state_dict"]
    assert {k: list(v.shape) for k, v in state.items()} == {
        k: record["shape"] for k, record in META["archs"][arch]["state_keys"].items()}
    assert torch.equal(state["h_s.0.weight"], retrained.model.latent_codec.h_s[0].weight)
    assert torch.equal(state["g_s.0.weight"], retrained.model.g_s[0].weight)
