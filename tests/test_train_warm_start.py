"""Training another architecture: --architecture, partial warm start, --train-params new."""

import json
import re

import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from tests.conftest import synthetic_image
from trellic.cli import main
from trellic.errors import TrellicError
from trellic.latent.hyperprior import MeanScaleHyperprior
from trellic.layers import conv
from trellic.models import CodecModel, ModelConfig, architectures
from trellic.train.checkpoint import load_model_weights, model_from_checkpoint, read_progress
from trellic.train.run_folder import CHECKPOINT, EXPORT
from trellic.train.warm_start import (
    fresh_prefixes,
    load_matching,
    prior_filters_of,
    with_prior_of,
)
from trellic.zoo import load_model_file

EXTRA = "test-mean-nets"


class WithMeanNets(MeanScaleHyperprior):
    """The mean-scale hyperprior plus a network that refines its means: an entropy model
    whose only tensors the mean-scale one lacks are ``mean_nets``."""

    def __init__(self, config) -> None:
        super().__init__(config)
        self.mean_nets = nn.ModuleList([conv(config.M, config.M, 3, 1)])

    def entropy_parameters(self, z_hat):
        means, scales = super().entropy_parameters(z_hat)
        return means + self.mean_nets[0](means), scales


@pytest.fixture(autouse=True)
def extra_architecture(monkeypatch):
    """WithMeanNets registered as EXTRA, as a new entropy model is (one registry entry)."""
    entry = architectures.Architecture("a test's entropy model", architectures.GDN_TRANSFORMS,
                                       f"{__name__}:WithMeanNets")
    monkeypatch.setitem(architectures.ARCHITECTURES, EXTRA, entry)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    for seed in range(2):
        Image.fromarray(synthetic_image(64, 80, seed)).save(folder / f"{seed}.png")
    return folder


def _train(photos, out, *extra):
    return main(["train", "--data", str(photos), "--out", str(out), "--N", "8", "--M", "8",
                 "--steps", "2", "--batch-size", "1", "--crop", "64", "--log-every", "1",
                 "--checkpoint-every", "1", "--threads", "1", "--lr", "1e-2", *extra])


@pytest.fixture(scope="module")
def source(photos, tmp_path_factory):
    """A tiny mbt2018-mean run's exported model (the shipped hyperprior's stand-in)."""
    out = tmp_path_factory.mktemp("source")
    assert _train(photos, out) == 0
    return out / EXPORT


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_another_architecture_loads_the_shared_tensors_and_names_the_new_ones(
        source, photos, tmp_path, capsys):
    shipped = _state(load_model_file(source)[0])
    model = CodecModel(ModelConfig(EXTRA, N=8, M=8))
    new = load_model_weights(source, model)
    assert set(new) == {"latent_codec.mean_nets.0.weight", "latent_codec.mean_nets.0.bias"}
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in shipped.items())
    assert fresh_prefixes(model.state_dict(), new) == ["latent_codec.mean_nets"]
    names = ["a.x.w", "a.x.b", "a.y.w", "b.w"]
    assert fresh_prefixes(names, {"a.x.w", "a.x.b", "a.y.w"}) == ["a"]
    assert fresh_prefixes(names, {"a.x.b", "b.w"}) == ["a.x.b", "b"]

    capsys.readouterr()
    assert _train(photos, tmp_path / "run", "--architecture", EXTRA, "--steps", "1",
                  "--warm-start", str(source)) == 0
    line = capsys.readouterr().out.splitlines()[1]  # after "training on 2 images"
    assert line == (f"warm start: {len(shipped)} tensors from {source}; "
                    "new: latent_codec.mean_nets")


def _refusal(load, *args) -> str:
    """The one-line message of the TrellicError that ``load(*args)`` raises."""
    with pytest.raises(TrellicError) as info:
        load(*args)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_a_warm_start_that_would_mix_unrelated_models_is_refused_in_one_line(source, photos,
                                                                             tmp_path):
    scales_only = CodecModel(ModelConfig("bmshj2018-hyperprior", N=8, M=8))
    assert re.search(r"\(mbt2018-mean\) cannot warm-start the bmshj2018-hyperprior model: "
                     r"wrong shape of key.*latent_codec\.h_s\.2\.weight",
                     _refusal(load_model_weights, source, scales_only))

    assert _train(photos, tmp_path / "extra", "--architecture", EXTRA, "--steps", "1") == 0
    older = CodecModel(ModelConfig(N=8, M=8))  # a newer model's file into an older architecture
    assert re.search(rf"\({EXTRA}\) cannot warm-start the mbt2018-mean model: "
                     r"unexpected keys latent_codec\.mean_nets\.0\.(weight|bias)",
                     _refusal(load_model_weights, tmp_path / "extra" / EXPORT, older))

    extra = CodecModel(ModelConfig(EXTRA, N=8, M=8))
    assert _refusal(load_matching, extra, {"other.weight": torch.zeros(1)}, "other.pt") == (
        f"other.pt shares no tensor with the {EXTRA} model: not a warm start for it")

    wider = CodecModel(ModelConfig(N=16, M=8))  # the same architecture: strict, as before
    assert _refusal(load_model_weights, source, wider).startswith(
        f"{source} does not match the model (")


def test_train_params_new_trains_only_the_new_tensors_and_resume_keeps_it(source, photos,
                                                                         tmp_path):
    shipped = _state(load_model_file(source)[0])
    phase1 = ("--architecture", EXTRA, "--warm-start", str(source), "--train-params", "new")
    assert _train(photos, tmp_path / "a", *phase1, "--steps", "4") == 0
    assert _train(photos, tmp_path / "b", *phase1, "--steps", "2") == 0
    assert _train(photos, tmp_path / "b", *phase1, "--steps", "4", "--resume") == 0
    fresh = _state(CodecModel(ModelConfig(EXTRA, N=8, M=8)))  # what the new tensors start as
    for run in ("a", "b"):
        trained, _ = model_from_checkpoint(tmp_path / run / CHECKPOINT)
        state = trained.state_dict()
        for key, value in shipped.items():
            assert torch.equal(value, state[key]), (run, key)  # bit-identical, quantiles too
        assert not torch.equal(state["latent_codec.mean_nets.0.weight"],
                               fresh["latent_codec.mean_nets.0.weight"])
        frozen = read_progress(tmp_path / run / CHECKPOINT)["frozen"]
        assert set(frozen) == {k for k, _ in trained.named_parameters()} - {
            "latent_codec.mean_nets.0.weight", "latent_codec.mean_nets.0.bias"}
    straight = model_from_checkpoint(tmp_path / "a" / CHECKPOINT)[0].state_dict()
    resumed = model_from_checkpoint(tmp_path / "b" / CHECKPOINT)[0].state_dict()
    for key, value in straight.items():
        assert torch.allclose(value, resumed[key], atol=1e-6), key


def test_train_params_new_needs_a_warm_start_with_new_tensors(source, photos, tmp_path, capsys):
    out = tmp_path / "run"
    assert _train(photos, out, "--train-params", "new") == 1
    assert capsys.readouterr().err == (
        "trellic: error: --train-params new needs --warm-start (what it loads stays fixed)\n")
    assert not out.exists()  # refused before any work
    assert _train(photos, out, "--train-params", "new", "--warm-start", str(source)) == 1
    assert "provided every parameter" in capsys.readouterr().err.splitlines()[-1]
    assert _train(photos, out, "--force") == 0
    assert _train(photos, out, "--resume", "--steps", "3", "--architecture", EXTRA) == 1
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"trellic: error: --resume: the run of {out / CHECKPOINT} trains --architecture "
        f"mbt2018-mean, not {EXTRA}")
    assert _train(photos, out, "--resume", "--steps", "3", "--train-params", "new") == 1
    assert "trains --train-params all, not new" in capsys.readouterr().err


def test_the_architecture_goes_through_checkpoint_and_export(photos, tmp_path):
    out = tmp_path / "run"
    assert _train(photos, out, "--architecture", "bmshj2018-hyperprior", "--steps", "1") == 0
    model, progress = model_from_checkpoint(out / CHECKPOINT)
    exported, info = load_model_file(out / EXPORT)
    assert progress["config"]["architecture"] == "bmshj2018-hyperprior"
    assert model.config.architecture == exported.config.architecture == "bmshj2018-hyperprior"
    assert info["training"]["architecture"] == "bmshj2018-hyperprior"
    for key, value in exported.state_dict().items():
        assert torch.equal(value, model.state_dict()[key]), key

    assert _train(photos, tmp_path / "old", "--steps", "1") == 0
    path = tmp_path / "old" / CHECKPOINT  # as written before runs recorded their architecture
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
    progress = json.loads(metadata["progress"])
    del progress["config"]["architecture"], progress["config"]["train_params"]
    del progress["frozen"]
    save_file(load_file(str(path)), str(path), {**metadata, "progress": json.dumps(progress)})
    assert model_from_checkpoint(path)[0].config.architecture == "mbt2018-mean"
    assert _train(photos, tmp_path / "old", "--resume", "--steps", "2") == 0

    progress["config"]["architecture"] = "no-such-model"  # a run of another trellic's model
    save_file(load_file(str(path)), str(path), {**metadata, "progress": json.dumps(progress)})
    with pytest.raises(TrellicError, match="cannot read checkpoint .*unknown architecture"):
        model_from_checkpoint(path)


def test_a_compressai_import_warm_starts_a_model_built_with_its_prior_widths(source, tmp_path):
    """Imports have CompressAI's prior (3, 3, 3, 3), trellic's runs (3, 3, 3): the run's
    model takes the widths of the file it starts from (with_prior_of)."""
    from tests.test_interop_compressai import fixture_state, save_checkpoint

    checkpoint = save_checkpoint(tmp_path / "c.pth.tar", fixture_state("mbt2018-mean"))
    weights = tmp_path / "imported.safetensors"
    assert main(["import-compressai", str(checkpoint), "-o", str(weights)]) == 0
    config = ModelConfig(N=8, M=12)
    with pytest.raises(TrellicError, match=r"entropy_bottleneck\.biases\.3"):
        load_model_weights(weights, CodecModel(config))  # what a default-built run met
    model = CodecModel(with_prior_of(config, weights))
    assert model.config.prior_filters == (3, 3, 3, 3)
    assert load_model_weights(weights, model) == ()  # strict: every tensor, the prior too
    imported = load_model_file(weights)[0].state_dict()
    assert all(torch.equal(v, imported[k]) for k, v in model.state_dict().items())

    assert with_prior_of(config, None) is config
    assert with_prior_of(config, source) is config  # trellic's own widths: unchanged
    assert prior_filters_of(source.parent / CHECKPOINT) == (3, 3, 3)  # a run's checkpoint
    resumed = tmp_path / "checkpoint.safetensors"  # a run of an import: from its tensors
    save_file({f"model.latent_codec.entropy_bottleneck.matrices.{i}": torch.zeros(8, a, b)
               for i, (a, b) in enumerate([(3, 1), (3, 3), (3, 3), (3, 3), (1, 3)])},
              str(resumed), {"progress": "{}"})
    assert prior_filters_of(resumed) == (3, 3, 3, 3)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not safetensors")
    with pytest.raises(TrellicError, match="cannot read warm-start file"):
        with_prior_of(config, garbage)


def test_train_warm_starts_from_an_import_and_resumes_it(photos, tmp_path, capsys):
    """The whole path a researcher takes: import, train from it (its prior widths), resume;
    the CompressAI checkpoint itself is refused with the import command."""
    from tests.test_interop_compressai import fixture_state, save_checkpoint

    checkpoint = save_checkpoint(tmp_path / "c.pth.tar", fixture_state("mbt2018-mean"))
    weights = tmp_path / "imported.safetensors"
    assert main(["import-compressai", str(checkpoint), "-o", str(weights)]) == 0
    out = tmp_path / "run"
    train = ["--M", "12", "--warm-start", str(weights), "--steps", "1"]
    assert _train(photos, out, *train) == 0
    assert load_model_file(out / EXPORT)[0].config.prior_filters == (3, 3, 3, 3)
    assert _train(photos, out, *train[:4], "--steps", "2", "--resume") == 0
    capsys.readouterr()
    assert _train(photos, tmp_path / "other", "--warm-start", str(checkpoint)) == 1
    assert "import it first (trellic import-compressai" in capsys.readouterr().err
