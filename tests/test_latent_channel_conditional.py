"""The channel-conditional codec (ms2020-channel): slices, lockstep files, an exact path."""


import pytest
import torch

from tests.conftest import make_tiny_model, synthetic_image
from trellic.io import image_to_tensor, pad_to_multiple
from trellic.latent.channel_conditional import ChannelConditional, slice_sizes
from trellic.latent.integer_net import IntegerSynthesis
from trellic.models import CodecModel, ModelConfig
from trellic.zoo import load, save_model

ARCHITECTURE = "ms2020-channel"


def tiny_model() -> CodecModel:
    """An N=16/M=32 channel-conditional model (5 slices of 2, 2, 4, 8, 16 channels)."""
    return make_tiny_model(architecture=ARCHITECTURE, M=32)


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "channel.safetensors"
    save_model(tiny_model(), path, {})
    return load(str(path))


def test_a_config_with_too_few_latent_channels_is_refused_before_building(capsys):
    with pytest.raises(ValueError, match="needs M >= 16"):
        ModelConfig(ARCHITECTURE, N=16, M=8)
    from trellic.cli import main
    assert main(["train", "--architecture", ARCHITECTURE, "--M", "8", "--out", "unused"]) == 1
    assert capsys.readouterr().err.strip().count("\n") == 0


def test_slices_follow_elics_proportions_and_need_sixteen_channels():
    assert slice_sizes(320) == (20, 20, 40, 80, 160)
    assert slice_sizes(96) == (6, 6, 12, 24, 48)
    assert sum(slice_sizes(50)) == 50
    with pytest.raises(ValueError, match="M >= 16"):
        slice_sizes(15)


def test_an_untrained_model_codes_like_its_hyperprior():
    """Zero-initialised corrections: warm-started from a hyperprior, it starts as that model
    with the integer h_s's means (the hyperprior's scales are exact already)."""
    torch.manual_seed(3)
    hyperprior = CodecModel(ModelConfig("mbt2018-mean", N=16, M=32)).eval()
    channel = CodecModel(ModelConfig(ARCHITECTURE, N=16, M=32)).eval()
    channel.load_state_dict(hyperprior.state_dict(), strict=False)
    channel.update()
    y = torch.randn(1, 32, 8, 12) * 5
    codec = hyperprior.latent_codec
    z_hat = codec.entropy_bottleneck.dequantize(codec.entropy_bottleneck.quantize(codec.h_a(y)))
    means = IntegerSynthesis(codec.h_s)(z_hat)[:, :32]
    expected = means + torch.round(y - means)
    assert torch.equal(channel.latent_codec.quantize(y, channel.quantizer("usq")).y_hat, expected)


def test_the_architecture_builds_the_slice_networks(loaded):
    codec = loaded.model.latent_codec
    assert isinstance(codec, ChannelConditional)
    assert len(codec.mean_nets) == len(codec.scale_nets) == len(codec.lrp_nets) == 5
    # Slice i sees the hyperprior's M channels and the slices before it (LRP: and its own).
    assert codec.mean_nets[3][0].in_channels == 32 + 2 + 2 + 4
    assert codec.lrp_nets[3][0].in_channels == 32 + 2 + 2 + 4 + 8


def test_a_desynchronised_slice_fails_the_integrity_check(loaded):
    model = loaded.model
    quantizer = model.quantizer("usq")
    with torch.no_grad():
        y = model.g_a(pad_to_multiple(image_to_tensor(synthetic_image(64, 64, seed=2)), 64))
    compressed = model.latent_codec.compress(y, quantizer)
    z_stream, y_stream = compressed.streams
    damaged = bytearray(y_stream)
    damaged[len(damaged) // 2] ^= 0x10
    with pytest.raises(Exception, match="integrity|corrupt"):
        model.latent_codec.decompress((z_stream, bytes(damaged)), tuple(y.shape[-2:]), quantizer,
                                      compressed.checksum)


def test_the_float_path_of_format_1_does_not_exist_for_this_codec(loaded):
    with pytest.raises(ValueError, match="portable format"):
        loaded.model.latent_codec.decompress((b"", b""), (4, 4), loaded.model.quantizer("usq"),
                                             exact=False)
