"""trellic models back to CompressAI: ``export-compressai`` and its state_dict.

An exported checkpoint must hold exactly the keys, shapes and dtypes of CompressAI
1.2.8's model after ``update()`` (the fixtures' ``state_keys``), so that
``load_state_dict(strict=True)`` accepts it; CompressAI is not needed here (the
strict load and CompressAI's decode of the export were checked once with CompressAI
itself, docs/compressai.md). Import -> export is the identity on every parameter
except the entries a masked convolution's mask hides, which export as 0.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.test_interop_compressai import (
    ALL,
    META,
    error_line,
    fixture_state,
    is_table,
    present,
    save_checkpoint,
)
from trellic.cli import main
from trellic.interop.compressai import import_checkpoint
from trellic.interop.compressai_export import export_state
from trellic.interop.compressai_tables import gaussian_tables, pmf_to_quantized_cdf
from trellic.models import CodecModel, ModelConfig
from trellic.zoo import load, save_model, weights_sha256

MASKED = ("context_prediction.weight",)


@pytest.fixture(scope="module", params=ALL)
def exported(request, tmp_path_factory):
    """(architecture, its fixture state, the export of its import)."""
    arch = present(request.param)
    state = fixture_state(arch)
    checkpoint = save_checkpoint(tmp_path_factory.mktemp(arch) / "c.pth.tar", state)
    model, _ = import_checkpoint(checkpoint, arch)
    return arch, state, export_state(model)


def test_the_export_has_exactly_compressais_keys_shapes_and_dtypes(exported):
    arch, _, state = exported
    listed = META["archs"][arch]["state_keys"]
    assert {k: (list(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in state.items()} \
        == {k: (record["shape"], record["dtype"]) for k, record in listed.items()}


def test_import_then_export_is_the_identity_up_to_masked_out_weights(exported):
    arch, fixture, state = exported
    for key, value in fixture.items():
        if is_table(key):
            continue
        if key.endswith(MASKED):  # CompressAI's forward zeroes them too: never used
            mask = fixture[key.removesuffix("weight") + "mask"]
            assert torch.equal(state[key], value * mask), key
            assert torch.equal(state[key] * mask, state[key])
        else:
            assert torch.equal(state[key], value), key  # constants: CompressAI's values


def test_the_coding_tables_are_compressais(exported):
    """Offsets, lengths and scale tables exactly; the entropy bottleneck's cdfs to one count
    in one row at most: trellic's density takes each interval's mass in another order than
    CompressAI's (the sign-symmetric difference of sigmoids), and the float kernels may differ
    too, so a pmf value at a rounding boundary may move one count (seen under AVX2 on
    mbt2018-mean, whose fixture was made there); the Gaussian cdfs (not stored) by shape and
    form."""
    arch, fixture, state = exported
    omitted = META["archs"][arch]["omitted_state_shapes"]
    for key, value in fixture.items():
        if not is_table(key):
            continue
        if key in omitted:
            cdf = state[key]
            assert list(cdf.shape) == omitted[key]
            assert (cdf[:, 0] == 0).all() and (cdf.max(dim=1).values == 2**16).all()
        elif key.endswith("_quantized_cdf"):
            assert state[key].shape == value.shape
            assert (state[key] - value).abs().max() <= 1
            assert (state[key] != value).any(dim=1).sum() <= 1
        else:
            assert torch.equal(state[key], value), key


def test_a_zero_frequency_steals_one_count_from_the_smallest_above_one():
    cdf = pmf_to_quantized_cdf(np.array([0.5, 1e-9, 0.4999999, 1e-9], dtype=np.float32))
    assert cdf.tolist()[0] == 0 and cdf.tolist()[-1] == 2**16
    assert (np.diff(cdf) >= 1).all()
    # C++ order: both zero counts take one from the first smallest count above 1 (index 0)
    assert np.diff(cdf).tolist() == [32766, 1, 32768, 1]
    with pytest.raises(ValueError, match="negative"):
        pmf_to_quantized_cdf(np.array([0.5, -0.1], dtype=np.float32))


def test_the_gaussian_tables_follow_compressais_default_scale_table():
    tables = gaussian_tables()
    assert tables["scale_table"][0] == pytest.approx(0.11)
    assert tables["scale_table"][-1] == pytest.approx(256.0)
    assert tables["_quantized_cdf"].shape == (64, 3133)
    lengths = tables["_cdf_length"]
    assert torch.equal(tables["_quantized_cdf"][torch.arange(64), lengths - 1],
                       torch.full((64,), 2**16, dtype=torch.int32))


def test_the_command_writes_a_state_dict_checkpoint_that_imports_back(tmp_path, capsys):
    arch = "mbt2018-mean"
    checkpoint = save_checkpoint(tmp_path / "c.pth.tar", fixture_state(arch))
    weights = tmp_path / "m.safetensors"
    assert main(["import-compressai", str(checkpoint), "-o", str(weights)]) == 0
    capsys.readouterr()
    out = tmp_path / "back.pth.tar"
    assert main(["export-compressai", str(weights), "-o", str(out)]) == 0
    line = json.loads(capsys.readouterr().out)
    assert line["architecture"] == arch and line["keys"] == len(META["archs"][arch]["state_keys"])
    saved = torch.load(out, weights_only=True)
    assert list(saved) == ["state_dict"]
    again = tmp_path / "again.safetensors"
    assert main(["import-compressai", str(out), "-o", str(again)]) == 0
    assert load(str(again)).sha256 == load(str(weights)).sha256  # the same weights

    assert main(["export-compressai", str(weights), "-o", str(out)]) == 1  # exists
    assert "output exists" in capsys.readouterr().err
    assert main(["export-compressai", str(weights), "-o", str(out), "--force"]) == 0


def test_what_cannot_be_exported_is_refused_in_one_line(tmp_path, capsys):
    channel = tmp_path / "channel.safetensors"
    save_model(CodecModel(ModelConfig("ms2020-channel", N=8, M=16)), channel, {})
    assert "'ms2020-channel' has no CompressAI counterpart" in error_line(
        capsys, ["export-compressai", str(channel), "-o", str(tmp_path / "x.pth.tar")])
    trellics = tmp_path / "trellics.safetensors"  # trellic's own prior: widths (3, 3, 3)
    save_model(CodecModel(ModelConfig(N=8, M=12)), trellics, {})
    assert "widths [3, 3, 3], CompressAI's mbt2018-mean [3, 3, 3, 3]" in error_line(
        capsys, ["export-compressai", str(trellics), "-o", str(tmp_path / "x.pth.tar")])
    assert "output must end in .pth.tar" in error_line(
        capsys, ["export-compressai", str(channel), "-o", str(tmp_path / "x.safetensors")])
    assert "import-compressai ckpt.pth.tar -o ckpt.safetensors" in error_line(
        capsys, ["export-compressai", "ckpt.pth.tar", "-o", str(tmp_path / "x.pth.tar")])
    assert not (tmp_path / "x.pth.tar").exists()


def test_a_model_retrained_for_tcq_exports_with_a_warning(tmp_path, capsys):
    model = CodecModel(ModelConfig(N=8, M=12, prior_filters=(3, 3, 3, 3)))
    model.update()
    weights = tmp_path / "tcq.safetensors"
    save_model(model, weights, {"retrain": {"quantizer": "tcq4", "part": "decoder"}})
    assert main(["export-compressai", str(weights), "-o", str(tmp_path / "t.pth")]) == 0
    err = capsys.readouterr().err
    assert err.startswith("trellic: warning: ") and "trained for tcq4" in err
    state = torch.load(tmp_path / "t.pth", weights_only=True)["state_dict"]
    assert weights_sha256(model) == load(str(weights)).sha256 and "h_s.4.weight" in state
