"""CompressAI checkpoints as users store them (wrappers, prefixes, precisions, old names) and
what the importer refuses, each in one line naming the fault (the conformance to CompressAI's
outputs: tests/test_interop_compressai.py, whose fixtures and helpers this file shares)."""

from __future__ import annotations

import pickle

import pytest
import torch

from tests import test_interop_compressai as interop
from tests.test_interop_compressai import (
    assert_same_tensors,
    before_update,
    error_line,
    fixture_state,
    is_table,
    save_checkpoint,
)
from trellic.cli import main
from trellic.errors import TrellicError
from trellic.interop.compressai import import_checkpoint, read_checkpoint
from trellic.zoo import load, sha256_of

imported = interop.imported  # the tiny mbt2018-mean import, a module fixture


# -- how checkpoints are stored ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("wrapper", "prefix", "updated"),
    [(None, "", True), ("state_dict", "module.", False), ("model", "", True),
     ("network", "_orig_mod.", True), ("model_state_dict", "model.", False),
     ("state_dict", "module._orig_mod.", True), (None, "model.module.", True)],
)
def test_wrapped_prefixed_and_unupdated_checkpoints_import_to_the_same_model(
    tmp_path, wrapper, prefix, updated
):
    state = fixture_state("mbt2018-mean")
    reference, _ = import_checkpoint(save_checkpoint(tmp_path / "a.pth", state), "mbt2018-mean")
    variant = state if updated else before_update(state)
    path = save_checkpoint(tmp_path / "b.pth.tar", variant, wrapper, prefix)
    model, info = import_checkpoint(path)
    assert info["source"] == {
        "format": "compressai", "architecture": "mbt2018-mean", "inferred": True,
        "checkpoint": "b.pth.tar", "sha256": sha256_of(path), "wrapper": wrapper,
        "prefix": prefix, "dtype": "float32", "ignored": sorted(k for k in state if is_table(k)),
    }
    assert_same_tensors(model, reference)


def test_a_bfloat16_checkpoint_imports_with_its_constants_at_bfloat16_precision(tmp_path):
    state = {k: v.bfloat16() if v.is_floating_point() else v
             for k, v in fixture_state("bmshj2018-hyperprior").items()}
    model, info = import_checkpoint(save_checkpoint(tmp_path / "b.pth", state))
    assert info["source"]["dtype"] == "bfloat16"
    assert model.config.architecture == "bmshj2018-hyperprior"


@pytest.mark.parametrize(("plural", "example"), [(True, "_matrices.0"), (False, "_matrix0")])
def test_old_entropy_bottleneck_names_are_read(tmp_path, plural, example):
    """CompressAI's zoo files name them ``_matrices.0``, CompressAI < 1.1 ``_matrix0``,
    under any path (the checkerboard model's ``latent_codec.hyper.entropy_bottleneck``)."""
    arch = "cheng2020-anchor-checkerboard"
    state = fixture_state(arch)
    singular = {"matrices": "matrix", "biases": "bias", "factors": "factor"}
    old = {}
    for key, value in state.items():
        path, _, rest = key.rpartition("entropy_bottleneck.")
        name, _, index = rest.partition(".")
        if path or key.startswith("entropy_bottleneck."):
            if name in singular and index.isdigit():
                key = (f"{path}entropy_bottleneck._{name}.{index}" if plural
                       else f"{path}entropy_bottleneck._{singular[name]}{index}")
        old[key] = value
    assert f"latent_codec.hyper.entropy_bottleneck.{example}" in old
    assert read_checkpoint(save_checkpoint(tmp_path / "old.pth", old)).state.keys() == (
        state.keys())


def test_cheng2020s_old_downsample_name_is_read(tmp_path):
    """CompressAI's published cheng2020 files name ResidualBlockWithStride's skip
    ``downsample``."""
    state = fixture_state("cheng2020-anchor-checkerboard")
    old = {k.replace(".skip.", ".downsample."): v for k, v in state.items()}
    assert old.keys() != state.keys()
    assert read_checkpoint(save_checkpoint(tmp_path / "old.pth", old)).state.keys() == (
        state.keys())


# -- what is refused ------------------------------------------------------------------------
class _NeedsCode:
    """An object whose unpickling would run this module's code."""


def _flip_mask(state: dict) -> None:
    key = "latent_codec.y.context_prediction.mask"
    state[key] = 1 - state[key]


@pytest.mark.parametrize(
    ("damage", "source", "arch", "message"),
    [
        (lambda s: s.pop("entropy_bottleneck.quantiles"), "mbt2018-mean", "mbt2018-mean",
         "missing key entropy_bottleneck.quantiles"),
        (lambda s: s.update({"context_prediction.weight": torch.zeros(3)}), "mbt2018-mean",
         "mbt2018-mean", "unexpected key context_prediction.weight"),
        (lambda s: s.update({"h_a.2.weight": torch.zeros(8, 8, 3, 3)}), "mbt2018-mean",
         "mbt2018-mean", "h_a.2.weight has shape [8, 8, 3, 3], expected [8, 8, 5, 5]"),
        (lambda s: s.update({"g_a.1.beta_reparam.lower_bound.bound": torch.tensor([0.01])}),
         "mbt2018-mean", "mbt2018-mean", "g_a.1.beta_reparam.lower_bound.bound = [0.01"),
        (lambda s: s.update({"g_s.0.bias": torch.full((8,), float("nan"))}), "mbt2018-mean",
         "mbt2018-mean", "g_s.0.bias is not a finite floating-point tensor"),
        (lambda s: s.update({"g_s.0.bias": torch.zeros(8, dtype=torch.int64)}), "mbt2018-mean",
         "mbt2018-mean", "g_s.0.bias is not a finite floating-point tensor (torch.int64)"),
        (lambda s: None, "mbt2018-mean", "bmshj2018-hyperprior",
         "(it is a mbt2018-mean checkpoint)"),
        (lambda s: s.pop("g_a.0.conv1.weight"), "cheng2020-anchor-checkerboard",
         "cheng2020-anchor-checkerboard", "missing key g_a.0.conv1.weight"),
        (_flip_mask, "cheng2020-anchor-checkerboard", "cheng2020-anchor-checkerboard",
         "latent_codec.y.context_prediction.mask is not the mask of trellic's "
         "latent_codec.context_prediction"),
    ],
)
def test_bad_checkpoints_are_refused_in_one_line_naming_the_fault(
    tmp_path, capsys, damage, source, arch, message
):
    state = fixture_state(source)
    damage(state)
    checkpoint = save_checkpoint(tmp_path / "bad.pth.tar", state, "state_dict")
    err = error_line(capsys, ["import-compressai", str(checkpoint), "--arch", arch,
                               "-o", str(tmp_path / "out.safetensors")])
    assert message in err
    assert not (tmp_path / "out.safetensors").exists()


def test_a_scale_hyperprior_checkpoint_is_not_taken_for_a_mean_scale_one(tmp_path, capsys):
    checkpoint = save_checkpoint(tmp_path / "b.pth.tar", fixture_state("bmshj2018-hyperprior"))
    err = error_line(capsys, ["import-compressai", str(checkpoint), "--arch", "mbt2018-mean",
                               "-o", str(tmp_path / "out.safetensors")])
    assert "h_s.0.weight has shape [8, 8, 5, 5], expected [8, 12, 5, 5]" in err
    assert "(it is a bmshj2018-hyperprior checkpoint)" in err


def test_keys_of_no_known_architecture_are_refused_without_a_guess(tmp_path, capsys):
    state = {"encoder.weight": torch.zeros(2, 2)}
    err = error_line(capsys, ["import-compressai", str(save_checkpoint(tmp_path / "x.pth",
                                                                        state)),
                               "-o", str(tmp_path / "out.safetensors")])
    assert "not a checkpoint of a CompressAI architecture trellic reads" in err
    damaged = fixture_state("mbt2018-mean")
    damaged.pop("g_s.0.bias")  # marked as both hyperpriors, fitting neither
    err = error_line(capsys, ["import-compressai", str(save_checkpoint(tmp_path / "y.pth",
                                                                        damaged)),
                               "-o", str(tmp_path / "out.safetensors")])
    assert "mbt2018-mean or bmshj2018-hyperprior" in err and "give --arch" in err


def test_a_pickle_that_needs_code_execution_is_refused_unexecuted(tmp_path, capsys):
    checkpoint = tmp_path / "object.pth.tar"
    torch.save({"state_dict": fixture_state("mbt2018-mean"), "args": _NeedsCode()}, checkpoint)
    with pytest.raises(pickle.UnpicklingError):  # what weights_only=True makes of it
        torch.load(checkpoint, weights_only=True)
    err = error_line(capsys, ["import-compressai", str(checkpoint), "--arch", "mbt2018-mean",
                               "-o", str(tmp_path / "out.safetensors")])
    assert "_NeedsCode) that needs code execution" in err


def test_unreadable_files_and_outputs_are_refused(tmp_path, capsys, imported):
    weights, checkpoint = imported
    garbage = tmp_path / "garbage.pth.tar"
    garbage.write_bytes(b"not a checkpoint at all")
    argv = ["import-compressai", "--arch", "mbt2018-mean"]
    assert "cannot read checkpoint" in error_line(
        capsys, [*argv, str(garbage), "-o", str(tmp_path / "a.safetensors")])
    listed = save_checkpoint(tmp_path / "list.pth", {"g_a.0.weight": [1.0]})
    assert "entry 'g_a.0.weight' is not a named tensor" in error_line(
        capsys, [*argv, str(listed), "-o", str(tmp_path / "a.safetensors")])
    assert "checkpoint not found" in error_line(
        capsys, [*argv, str(tmp_path / "none.pth"), "-o", str(tmp_path / "a.safetensors")])
    assert "exists" in error_line(capsys, [*argv, str(checkpoint), "-o", str(weights)])
    assert ".safetensors" in error_line(
        capsys, [*argv, str(checkpoint), "-o", str(tmp_path / "a.pth")])
    with pytest.raises(SystemExit):
        main([*argv, str(checkpoint), "-o", str(tmp_path / "a.safetensors"), "--lambda", "-1"])


def test_a_checkpoint_given_as_a_model_says_how_to_import_it(capsys):
    for name in ("ckpt/mbt-q1.pth.tar", "mbt.pth", "runs/x.PT"):
        with pytest.raises(TrellicError, match=r"a PyTorch checkpoint, not a trellic weights "
                           r"file: import it first \(trellic import-compressai "):
            load(name)
    stem = "ckpt/mbt-q1"
    with pytest.raises(TrellicError, match=rf"-o {stem}\.safetensors;"):
        load(f"{stem}.pth.tar")


def test_imported_weights_record_the_source_and_load_as_a_model(imported):
    weights, checkpoint = imported
    loaded = load(str(weights))
    assert loaded.info["source"]["sha256"] == sha256_of(checkpoint)
    assert loaded.model.config.architecture == "mbt2018-mean"
    assert loaded.info["training"] == {"lmbda": 0.0067}
    assert loaded.model.config.prior_filters == (3, 3, 3, 3)
    codec = loaded.model.latent_codec
    assert set(codec.tables) == set(codec.table_rows()) and "z" in codec.tables


@pytest.mark.parametrize("delta", ["1e-30", "1e-6", "0.01", "0", "1000"])
def test_tcq_deltas_whose_tables_do_not_fit_are_refused_before_any_work(
    tmp_path, capsys, imported, delta
):
    """1e-6 asked for 160 GB of tables, 1e-30 overflowed: one usage line, exit 2."""
    _, checkpoint = imported
    with pytest.raises(SystemExit) as exit_info:
        main(["import-compressai", str(checkpoint), "--arch", "mbt2018-mean",
              "-o", str(tmp_path / "a.safetensors"), "--tcq-delta", delta])
    assert exit_info.value.code == 2
    assert "--tcq-delta: must be in [0.05, 1000), got " + delta in capsys.readouterr().err
    assert not (tmp_path / "a.safetensors").exists()


def test_the_python_api_refuses_a_tiny_tcq_delta_in_one_line(tmp_path):
    checkpoint = save_checkpoint(tmp_path / "mbt.pth.tar", fixture_state("mbt2018-mean"))
    with pytest.raises(TrellicError, match=r"tcq_delta=1e-06 out of range \[0.05, 1000\)"):
        import_checkpoint(checkpoint, "mbt2018-mean", tcq_delta=1e-6)


@pytest.mark.parametrize("field", ["tcq_delta", "usq_delta"])
@pytest.mark.parametrize("delta", [1e-6, 0.049, float("nan"), 1e3])
def test_a_weights_config_cannot_size_huge_coding_tables(field, delta):
    """The config in a weights file bounds the steps too: its tables are built on load."""
    from trellic.models.config import ModelConfig

    with pytest.raises(ValueError, match=rf"config {field}=\S+ out of range \[0.05, 1000\)"):
        ModelConfig.from_dict({"version": 2, "N": 8, "M": 8, field: delta})
    assert ModelConfig.from_dict({"version": 2, "N": 8, "M": 8, field: 0.05})
