"""The model around the latent codec: versioned config, architectures, older files."""

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from tests.conftest import make_tiny_model
from trellic.errors import TrellicError
from trellic.models import CodecModel, ModelConfig
from trellic.models.architectures import latent_codec_class
from trellic.models.config import CONFIG_VERSION
from trellic.zoo import load_model_file, save_model


def test_a_version_1_config_means_mbt2018_mean_and_new_configs_name_their_architecture():
    config = ModelConfig.from_dict({"N": 64, "M": 96, "tcq_delta": 0.6})
    assert config == ModelConfig("mbt2018-mean", 64, 96, 0.6)
    stored = config.to_dict()
    assert stored["version"] == CONFIG_VERSION and stored["architecture"] == "mbt2018-mean"
    assert ModelConfig.from_dict(stored) == config


def test_a_field_the_file_lacks_takes_its_default():
    config = ModelConfig.from_dict({"version": 2, "architecture": "mbt2018-mean", "N": 8, "M": 8})
    assert config.tcq_delta == ModelConfig().tcq_delta
    assert config.usq_delta == 1.0
    assert config.prior_filters == (3, 3, 3)


def test_the_prior_widths_of_a_config_size_the_factorized_prior_and_survive_json():
    config = ModelConfig(N=8, M=8, prior_filters=(3, 3, 3, 3))
    assert ModelConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    prior = CodecModel(config).latent_codec.entropy_bottleneck
    assert len(prior.matrices) == 5 and len(prior.factors) == 4


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"version": CONFIG_VERSION + 1, "N": 8, "M": 8}, "version"),
        ({"version": 2, "N": 8, "M": 8, "colour": "blue"}, "does not know"),
        ({"version": 2, "architecture": "cheng2020", "N": 8, "M": 8}, "unknown architecture"),
        ({"N": 0, "M": 8}, "not in 1..1024"),
        ({"N": 8, "M": 8.5}, "not an integer"),
        ({"N": 8, "M": 8, "tcq_delta": -1.0}, "out of range"),
        ({"N": 8, "M": 8, "usq_delta": 0}, "usq_delta=0 out of range"),
        ({"N": 8, "M": 8, "usq_delta": "1"}, "usq_delta='1' is not a number"),
        ({"N": 8, "M": 8, "prior_filters": []}, "prior_filters"),
        ({"N": 8, "M": 8, "prior_filters": [3, 99]}, "prior_filters"),
        ({"N": 8, "M": 8, "prior_filters": [3, 2.5]}, "prior_filters"),
        ({"N": 8, "M": 8, "prior_filters": 3}, "prior_filters"),
    ],
)
def test_configs_this_trellic_cannot_build_are_refused_before_allocation(data, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig.from_dict(data)


def test_the_architecture_names_the_latent_codec_and_the_padding_follows_it():
    model = make_tiny_model()
    assert isinstance(model.latent_codec, latent_codec_class("mbt2018-mean"))
    assert model.pad_multiple == 64 and model.latent_shape(40, 70) == (4, 8)
    assert model.transforms() == [model.g_a, *model.latent_codec.transforms(), model.g_s]
    with pytest.raises(TrellicError, match="unknown architecture"):
        latent_codec_class("cheng2020")


def _legacy_copy(path, out):
    """The file as trellic wrote it before the latent-codec layer: top-level names, config v1."""
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
    tensors = {k.removeprefix("latent_codec."): v for k, v in load_file(str(path)).items()}
    config = json.loads(metadata["config"])
    metadata["config"] = json.dumps({k: config[k] for k in ("N", "M", "tcq_delta")})
    save_file(tensors, str(out), metadata=metadata)
    return tensors


def test_files_written_before_the_latent_codec_layer_load_with_their_names_upgraded(tmp_path):
    model = make_tiny_model()
    save_model(model, tmp_path / "new.safetensors", {})
    legacy = _legacy_copy(tmp_path / "new.safetensors", tmp_path / "old.safetensors")
    assert "h_s.0.weight" in legacy and "scale_table" in legacy
    loaded, _ = load_model_file(tmp_path / "old.safetensors")
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_a_training_checkpoint_with_the_old_names_loads_strictly():
    model = make_tiny_model()
    old_names = {k.removeprefix("latent_codec."): v for k, v in model.state_dict().items()}
    fresh = CodecModel(model.config)
    fresh.load_state_dict(old_names, strict=True)
    assert torch.equal(fresh.latent_codec.h_a[0].weight, model.latent_codec.h_a[0].weight)
