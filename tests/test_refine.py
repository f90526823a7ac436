"""Latent refinement with every quantizer: same decoder and format, deterministic files, a real
RD gain, never a loss, guard rails."""

import numpy as np
import pytest
import torch

from tests.conftest import synthetic_image
from trellic.cli import main
from trellic.codec import Codec
from trellic.determinism import single_threaded
from trellic.errors import TrellicError
from trellic.eval.runner import rate_point
from trellic.io import image_to_tensor, pad_to_multiple, tensor_to_image
from trellic.models.refine import (
    REFINE_MODES,
    RefineConfig,
    linearised_shift,
    refine_config,
    refine_latents,
    true_cost,
)
from trellic.quant import make_quantizer
from trellic.quant.registry import quantizer_names
from trellic.zoo import LoadedModel, load


@pytest.fixture(scope="module")
def tiny_loaded(tiny_model):
    return LoadedModel(tiny_model, "tiny", "0" * 64, {"training": {"lmbda": 0.01}})


# The tiny model's latents are ~30x a trained one's, hence its learning rates.
ANNEALED = RefineConfig(steps=8, lr=2.0)
UNROUNDED = RefineConfig(steps=3, lr=2.0, anneal=False, bfloat16=False)


@pytest.mark.parametrize(("kind", "config"), [("usq", ANNEALED), ("rdoq", UNROUNDED),
                                              ("tcq4", UNROUNDED), ("tcq8", ANNEALED)],
                         ids=["usq-annealed", "rdoq-unrounded", "tcq4-unrounded", "tcq8-annealed"])
def test_refined_file_decodes_to_the_refined_latents_and_is_deterministic(tiny_loaded, kind,
                                                                           config):
    codec = Codec(tiny_loaded, tiny_loaded.model.quantizer(kind), refine=config)
    image = synthetic_image(40, 72, seed=3)
    encoded = codec.encode(image)
    assert codec.encode(image).data == encoded.data
    decoded = codec.decode(encoded.data)

    model, quantizer = tiny_loaded.model, codec.quantizer
    x = pad_to_multiple(image_to_tensor(image), 64)
    y, z = refine_latents(model, x, (40, 72), 0.01, quantizer, codec.lambda_t, config)
    y_plain = model.g_a(x).detach()
    z_plain = model.latent_codec.side_latents(y_plain)
    plain = true_cost(model, x, y_plain, z_plain, (40, 72), 0.01, quantizer, None)
    assert true_cost(model, x, y, z, (40, 72), 0.01, quantizer, None) < 0.97 * plain
    y_hat = model.latent_codec.compress(y, quantizer, codec.lambda_t, z).y_hat
    with torch.no_grad(), single_threaded():
        expected = model.synthesize(y_hat)
    assert np.array_equal(tensor_to_image(expected[..., :40, :72]), decoded)


@pytest.mark.parametrize("kind", quantizer_names())
def test_linearised_mode_files_decode_bit_exactly_and_never_cost_more(tiny_loaded, kind):
    codec = Codec(tiny_loaded, tiny_loaded.model.quantizer(kind), refine=REFINE_MODES["linear"])
    plain = Codec(tiny_loaded, tiny_loaded.model.quantizer(kind))
    for seed in (3, 4):
        image = synthetic_image(40, 72, seed=seed)
        encoded = codec.encode(image)
        assert codec.encode(image).data == encoded.data
        model, quantizer = tiny_loaded.model, codec.quantizer
        x = pad_to_multiple(image_to_tensor(image), 64)
        y, z = refine_latents(model, x, (40, 72), 0.01, quantizer, codec.lambda_t,
                              REFINE_MODES["linear"])
        y_plain = model.g_a(x).detach()
        z_plain = model.latent_codec.side_latents(y_plain)
        assert torch.equal(z, z_plain)  # the side latents stay the plain encoder's
        costs = [true_cost(model, x, *latents, (40, 72), 0.01, quantizer, codec.lambda_t)
                 for latents in ((y, z), (y_plain, z_plain))]
        assert costs[0] <= costs[1]
        y_hat = model.latent_codec.compress(y, quantizer, codec.lambda_t, z).y_hat
        with torch.no_grad(), single_threaded():
            expected = tensor_to_image(model.synthesize(y_hat)[..., :40, :72])
        assert np.array_equal(codec.decode(encoded.data), expected)
        if not torch.equal(y, y_plain):
            assert encoded.data != plain.encode(image).data


def test_linearised_shift_minimises_the_image_error_along_its_gradient(tiny_model):
    """D(y + t * shift) falls from t = 0 and is lowest near t = 1 (the Gauss-Newton step)."""
    image = synthetic_image(64, 64, seed=6)
    x = image_to_tensor(image)
    with torch.no_grad():
        y = tiny_model.g_a(x)
    shift = linearised_shift(tiny_model, x, y, (64, 64))
    assert shift.shape == y.shape and shift.abs().max() > 0

    def distortion(t: float) -> float:
        with torch.no_grad():
            return float(((tiny_model.g_s(y + t * shift) - x) ** 2).sum())

    along = {t: distortion(t) for t in (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)}
    assert along[0.25] < along[0.0] and along[1.0] < along[0.5]
    assert min(along, key=along.get) in (1.0, 2.0)
    assert along[4.0] > along[1.0]


def test_refinement_lowers_the_measured_rd_cost_of_the_default_model():
    loaded = load("default")
    lmbda = loaded.info["training"]["lmbda"]
    images = [synthetic_image(128, 128, seed=seed) for seed in (1, 2)]
    plain = rate_point(Codec.load_from(loaded, "usq"), images)
    refined = rate_point(Codec.load_from(loaded, "usq", refine=RefineConfig(steps=40)), images)
    assert refined.rd_cost(lmbda) < plain.rd_cost(lmbda) - 0.01 * plain.bpp


@pytest.mark.parametrize("kind", quantizer_names())
def test_refinement_that_does_not_help_is_dropped(tiny_loaded, kind):
    image = synthetic_image(40, 72, seed=4)
    quantizer = tiny_loaded.model.quantizer(kind)
    plain = Codec(tiny_loaded, quantizer).encode(image)
    for anneal in (True, False):
        wild = Codec(tiny_loaded, quantizer, refine=RefineConfig(steps=3, lr=1e4, anneal=anneal))
        assert wild.encode(image).data == plain.data


def test_refine_option_values_name_modes_or_steps():
    assert refine_config(0) is None
    assert refine_config(7) == RefineConfig(steps=7)
    assert refine_config("full") == RefineConfig()
    linear = refine_config("linear")
    assert linear.steps == 0 and linear.linear_step == 1.0
    with pytest.raises(ValueError, match="linear_step >= 0"):
        RefineConfig(steps=3, linear_step=-1.0)
    cheap = refine_config("cheap")
    assert not cheap.anneal and cheap.steps < RefineConfig().steps


def test_refinement_needs_the_models_lambda(tiny_model):
    unknown = LoadedModel(tiny_model, "tiny", "0" * 64, {})
    with pytest.raises(TrellicError, match="no training lambda"):
        Codec(unknown, make_quantizer("usq"), refine=RefineConfig())
    with pytest.raises(ValueError, match="steps >= 1"):
        RefineConfig(steps=0)


def test_cli_compress_refine_round_trips_and_rejects_bad_flags(tmp_path, tiny_weights, capsys):
    from PIL import Image

    png, trl, out = tmp_path / "in.png", tmp_path / "a.trl", tmp_path / "a.png"
    Image.fromarray(synthetic_image(40, 72)).save(png)
    weights = str(tiny_weights[0])
    assert main(["compress", str(png), str(trl), "--model", weights, "--refine", "4"]) == 0
    assert main(["decompress", str(trl), str(out), "--model", weights]) == 0
    assert np.asarray(Image.open(out)).shape == (40, 72, 3)

    argv = ["compress", str(png), str(tmp_path / "b.trl"), "--model", weights, "--refine"]
    assert main([*argv, "cheap", "--quantizer", "tcq4"]) == 0
    assert main(["decompress", str(tmp_path / "b.trl"), str(out), "--model", weights,
                 "--force"]) == 0
    for bad in ("-1", "fast"):
        with pytest.raises(SystemExit) as exit_info:
            main([*argv, bad])
        assert exit_info.value.code == 2


class _Terminal:
    """A stderr that says it is a terminal and keeps what is written to it."""

    def __init__(self, is_terminal: bool):
        self.is_terminal, self.text = is_terminal, ""

    def isatty(self) -> bool:
        return self.is_terminal

    def write(self, text: str) -> int:
        self.text += text
        return len(text)

    def flush(self) -> None:
        pass


@pytest.mark.parametrize("is_terminal", [True, False])
def test_cli_refinement_shows_progress_on_a_terminal_only(
    tmp_path, tiny_weights, monkeypatch, is_terminal
):
    from PIL import Image

    png = tmp_path / "in.png"
    Image.fromarray(synthetic_image(32, 32)).save(png)
    stderr = _Terminal(is_terminal)
    monkeypatch.setattr("sys.stderr", stderr)
    argv = ["compress", str(png), str(tmp_path / "a.trl"), "--model", str(tiny_weights[0])]
    assert main([*argv, "--refine", "3"]) == 0
    assert ("refine:" in stderr.text and "/3 [" in stderr.text) == is_terminal, stderr.text
