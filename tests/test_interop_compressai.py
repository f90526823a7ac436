"""CompressAI checkpoints imported as trellic models, checked against CompressAI's own outputs.

The fixtures (tests/fixtures/compressai/, written by scripts/make_compressai_fixtures.py
with CompressAI 1.2.8) hold tiny random-weight models of its ten zoo architectures and
what CompressAI computed with them; CompressAI itself is not needed here. The
``.pth.tar`` variants (wrappers, prefixes, float16, before/after ``update()``) are made
with torch.save. Every architecture is tested once this trellic's registry has it
(skipped, naming why, until then).

Tolerances: float32 transforms agree to rtol = atol = 1e-5 (GDN divides by a square
root where CompressAI multiplies by rsqrt: y differs by ~3e-6); likelihoods to rtol 2e-5;
the rounded latents, the means and scales derived from them and the decoded images
are compared exactly.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from trellic.cli import main
from trellic.codec import Codec
from trellic.determinism import kernel_fingerprint
from trellic.errors import TrellicError
from trellic.interop.compressai import identify, import_checkpoint, read_checkpoint
from trellic.interop.compressai_layouts import LAYOUTS, compressai_keys, swap_halves
from trellic.io import image_to_tensor, read_image
from trellic.models.architectures import ARCHITECTURES
from trellic.paths import data_root
from trellic.quant import ProxyKind
from trellic.zoo import load, model_tensors, save_model, sha256_of

FIXTURES = Path(__file__).parent / "fixtures" / "compressai"
META = json.loads((FIXTURES / "fixtures.json").read_text())
SAME_KERNELS = kernel_fingerprint() == META["kernels"]
LEGACY = ["mbt2018-mean", "bmshj2018-hyperprior"]  # fixtures with the step-by-step forward
ALL = list(META["archs"])  # CompressAI's ten zoo architectures
TOLERANCE = {"rtol": 1e-5, "atol": 1e-5}
LIKELIHOOD_TOLERANCE = {"rtol": 2e-5, "atol": 1e-12}
TABLES = ("_offset", "_quantized_cdf", "_cdf_length", "scale_table")


def present(arch: str) -> str:
    """``arch``, or a skip while this trellic's registry lacks it (another issue adds it)."""
    if arch not in ARCHITECTURES:
        pytest.skip(f"{arch}: not in this trellic's registry")
    return arch


def generated_weight(shape: list[int], salt: int, exponent: int) -> torch.Tensor:
    """A weight the fixture does not store, by ``generated_state_rule`` in fixtures.json."""
    i = torch.arange(int(torch.tensor(shape).prod()), dtype=torch.int64) + salt * 2**24
    h = (((i >> 16) ^ i) * 0x45D9F3B) & 0xFFFFFFFF
    h = (((h >> 16) ^ h) * 0x45D9F3B) & 0xFFFFFFFF
    h = (h >> 16) ^ h
    return (((h & 0xFF) - 128).to(torch.float32) * 2.0**exponent).reshape(shape)


def fixture_state(arch: str) -> dict[str, torch.Tensor]:
    """The CompressAI state_dict after update(): the omitted y tables restored as zeros
    (content the importer ignores), ELIC's generated weights rebuilt."""
    entry = META["archs"][arch]
    tensors = load_file(str(FIXTURES / f"{arch}.safetensors"))
    state = {k[len("state."):]: v for k, v in tensors.items() if k.startswith("state.")}
    for key, shape in entry["omitted_state_shapes"].items():
        state[key] = torch.zeros(shape, dtype=torch.int32)
    for key, spec in entry.get("generated_state", {}).items():
        state[key] = generated_weight(spec["shape"], spec["salt"], spec["exponent"])
    return {key: state[key] for key in entry["state_keys"]}  # CompressAI's order


def fixture_expected(arch: str) -> dict[str, torch.Tensor]:
    tensors = load_file(str(FIXTURES / f"{arch}.safetensors"))
    return {k[len("expected."):]: v for k, v in tensors.items() if k.startswith("expected.")}


def is_table(key: str) -> bool:
    return key.rsplit(".", 1)[-1] in TABLES


def before_update(state: dict) -> dict:
    """What CompressAI saves before update(): its derived tables are empty tensors."""
    return {k: v[:0].reshape(0) if is_table(k) else v for k, v in state.items()}


def save_checkpoint(path: Path, state: dict, wrapper: str | None = None, prefix: str = "") -> Path:
    state = {prefix + key: value for key, value in state.items()}
    torch.save({wrapper: state, "epoch": 3} if wrapper else state, path)
    return path


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """The tiny mbt2018-mean fixture imported and saved: (weights path, checkpoint path)."""
    folder = tmp_path_factory.mktemp("imported")
    checkpoint = save_checkpoint(folder / "mbt.pth.tar", fixture_state("mbt2018-mean"))
    weights = folder / "mbt.safetensors"
    assert main(["import-compressai", str(checkpoint), "--arch", "mbt2018-mean",
                 "-o", str(weights), "--lambda", "0.0067"]) == 0
    return weights, checkpoint


def assert_same_tensors(a, b) -> None:
    ours, theirs = model_tensors(a), model_tensors(b)
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[key], theirs[key]) for key in ours)


# -- every architecture ---------------------------------------------------------------------
@pytest.mark.parametrize("arch", ALL)
def test_the_architecture_is_inferred_and_every_tensor_lands_under_trellics_name(
    tmp_path, capsys, arch
):
    present(arch)
    state = fixture_state(arch)
    checkpoint = save_checkpoint(tmp_path / "c.pth.tar", state)
    model, info = import_checkpoint(checkpoint)  # no architecture given
    entry = META["archs"][arch]
    assert info["source"]["architecture"] == model.config.architecture == arch
    assert info["source"]["inferred"] is True
    assert (model.config.N, model.config.M) == (entry["N"], entry["M"])
    assert model.config.groups == tuple(entry.get("groups", ()))
    assert model.config.prior_filters == (3, 3, 3, 3)
    assert info["source"]["ignored"] == sorted(k for k in state if is_table(k))
    ours, spec = model.state_dict(), LAYOUTS[arch]
    keys = compressai_keys(model, arch).keys
    assert set(keys) == set(state)  # every CompressAI key is accounted for, none left over
    for key, entry in keys.items():
        if entry.kind in ("param", "mask"):  # masked weights copied as stored
            expected = swap_halves(state[key]) if key in spec.swapped else state[key]
            assert torch.equal(ours[entry.trellic], expected), key
        elif entry.kind == "constant":
            assert torch.equal(state[key], torch.tensor(entry.value, dtype=torch.float32)), key
    named, _ = import_checkpoint(checkpoint, arch)
    assert_same_tensors(named, model)
    weights = tmp_path / "m.safetensors"  # the command: inferred, written, loaded back
    assert main(["import-compressai", str(checkpoint), "-o", str(weights)]) == 0
    line = json.loads(capsys.readouterr().out)
    assert line["architecture"] == arch and line["source"]["inferred"] is True
    assert_same_tensors(load(str(weights)).model, model)


@pytest.mark.parametrize("arch", ALL)
def test_transforms_repeat_compressais_forward(tmp_path, arch):
    """g_a, h_a (where the model has one) and g_s against CompressAI's eval forward."""
    present(arch)
    model, _ = import_checkpoint(save_checkpoint(tmp_path / "c.pth", fixture_state(arch)), arch)
    expected = fixture_expected(arch)
    x = expected["x_u8"][None].float() / 255.0
    with torch.no_grad():
        y = model.g_a(x)
        x_hat = model.g_s(expected.get("y_hat", expected.get("forward_y_hat")))
        if "z" in expected:
            torch.testing.assert_close(model.latent_codec.side_latents(y), expected["z"],
                                       **TOLERANCE)
    torch.testing.assert_close(y, expected["y"], **TOLERANCE)
    torch.testing.assert_close(x_hat, expected["x_hat"], **TOLERANCE)


@pytest.mark.parametrize("arch", ALL)
def test_a_checkpoint_of_another_architecture_is_named_in_the_error(tmp_path, capsys, arch):
    present(arch)
    wrong = "bmshj2018-hyperprior" if arch == "mbt2018-mean" else "mbt2018-mean"
    checkpoint = save_checkpoint(tmp_path / "c.pth.tar", fixture_state(arch), "state_dict")
    err = _error_line(capsys, ["import-compressai", str(checkpoint), "--arch", wrong,
                               "-o", str(tmp_path / "out.safetensors")])
    assert f"not a {wrong} checkpoint" in err and f"(it is a {arch} checkpoint)" in err
    assert identify(read_checkpoint(checkpoint).state) == [arch]


@pytest.mark.parametrize("arch", ALL)
def test_a_float16_checkpoint_is_the_same_model_at_float16_precision(tmp_path, arch):
    """2**-36 (GDN's pedestal) and 1e-9 underflow to 0 in float16: still the same layers."""
    present(arch)
    state = fixture_state(arch)
    half = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    if any(k.endswith("reparam.pedestal") for k in half):
        assert all(float(v) == 0 for k, v in half.items() if k.endswith("reparam.pedestal"))
    model, info = import_checkpoint(save_checkpoint(tmp_path / "h.pth", half))
    kinds = {k: entry.kind for k, entry in compressai_keys(model, arch).keys.items()}
    rounded = {k: half[k].float() if kinds[k] == "param" else v for k, v in state.items()}
    reference, _ = import_checkpoint(save_checkpoint(tmp_path / "f.pth", rounded), arch)
    assert info["source"]["dtype"] == "float16"
    assert_same_tensors(model, reference)
    assert all(v.dtype != torch.float16 for v in model.state_dict().values())


def test_an_architecture_missing_from_the_registry_is_named(tmp_path, capsys, monkeypatch):
    monkeypatch.delitem(ARCHITECTURES, "bmshj2018-hyperprior")
    checkpoint = save_checkpoint(tmp_path / "c.pth.tar", fixture_state("bmshj2018-hyperprior"))
    out = tmp_path / "out.safetensors"
    assert "a bmshj2018-hyperprior checkpoint: not in this trellic's registry" in _error_line(
        capsys, ["import-compressai", str(checkpoint), "-o", str(out)])
    assert "bmshj2018-hyperprior is not in this trellic's registry" in _error_line(
        capsys, ["import-compressai", str(checkpoint), "--arch", "bmshj2018-hyperprior",
                 "-o", str(out)])


# -- the two step-by-step fixtures: noise-free forward and the real codec -------------------
@pytest.mark.parametrize("arch", LEGACY)
def test_imported_model_reproduces_compressai_noise_free_forward(tmp_path, arch):
    checkpoint = save_checkpoint(tmp_path / "c.pth.tar", fixture_state(arch))
    model, _ = import_checkpoint(checkpoint, arch)
    codec, expected = model.latent_codec, fixture_expected(arch)
    x = expected["x_u8"][None].float() / 255.0
    usq = model.quantizer("usq")
    with torch.no_grad():
        y = model.g_a(x)
        z = codec.side_latents(y)
        z_hat = codec.entropy_bottleneck.dequantize(codec.entropy_bottleneck.quantize(z))
        means, scales = codec.entropy_parameters(z_hat)
        true = model.forward(x, usq, ProxyKind.TRUE)  # the decoder's y_hat
        # CompressAI's likelihoods come from its float scales; trellic codes with the
        # integer path's (portable files), so compare the float model's likelihoods.
        rounded = codec.relaxed(y, z, torch.round)
        aux_loss = model.aux_loss().item()
    torch.testing.assert_close(y, expected["y"], **TOLERANCE)
    torch.testing.assert_close(z, expected["z"], **TOLERANCE)
    torch.testing.assert_close(true.x_hat, expected["x_hat"], **TOLERANCE)
    if SAME_KERNELS:  # rounded values repeat bit for bit where the float kernels do
        assert torch.equal(z_hat, expected["z_hat"])
        assert torch.equal(means, expected.get("means", torch.zeros_like(means)))
        assert torch.equal(scales, expected["scales"].clamp_min(0.11))
        assert torch.equal(codec.quantize(y, usq).y_hat, expected["y_hat"])
    for name in ("y", "z"):
        torch.testing.assert_close(rounded.likelihoods[name], expected[f"{name}_likelihoods"],
                                   **LIKELIHOOD_TOLERANCE)
    # aux_loss sums |logits(quantiles) - target| where logits and targets are ~20 and the
    # sum only a few thousandths: the float kernels' last-bit rounding (AVX-512 against
    # the fixtures' AVX2: ~4e-6) survives that cancellation, so compare at the logits' scale.
    assert aux_loss == pytest.approx(META["archs"][arch]["aux_loss"], abs=1e-4)


@pytest.mark.parametrize("arch", LEGACY)
def test_usq_decode_of_a_real_crop_equals_compressai_decode_pixel_for_pixel(tmp_path, arch):
    if not SAME_KERNELS:
        pytest.skip("the fixtures were made on float kernels that round unlike this machine's")
    crop = META["crop"]
    path = data_root() / crop["path"]
    if not path.is_file():
        pytest.skip(f"{path} not found (set TRELLIC_DATA)")
    left, top, right, bottom = crop["box"]
    image = read_image(path)[top:bottom, left:right]
    assert hashlib.sha256(image.tobytes()).hexdigest() == crop["input_sha256"]
    checkpoint = save_checkpoint(tmp_path / "c.pth.tar", fixture_state(arch))
    model, info = import_checkpoint(checkpoint, arch)
    save_model(model, tmp_path / "m.safetensors", info)
    codec = Codec.load(str(tmp_path / "m.safetensors"), "usq")
    decoded = codec.decode(codec.encode(image).data)
    expected = fixture_expected(arch)
    usq = model.quantizer("usq")
    compressed = model.compress(image_to_tensor(image), usq)
    y_hat = model.latent_codec.decompress(compressed.streams, (8, 8), usq)
    # means and g_s are float: equal to CompressAI's where the kernels are (format 2
    # takes only the scales, which select table rows, from the integer network)
    assert torch.equal(y_hat, expected["crop_y_hat"])
    assert torch.equal(compressed.y_hat, y_hat)
    assert (decoded == expected["crop_x_hat_u8"].numpy()).all()
    assert hashlib.sha256(decoded.tobytes()).hexdigest() == META["archs"][arch][
        "crop_decoded_sha256"]


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


def _error_line(capsys, argv) -> str:
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("trellic: error: ")
    return err


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
    err = _error_line(capsys, ["import-compressai", str(checkpoint), "--arch", arch,
                               "-o", str(tmp_path / "out.safetensors")])
    assert message in err
    assert not (tmp_path / "out.safetensors").exists()


def test_a_scale_hyperprior_checkpoint_is_not_taken_for_a_mean_scale_one(tmp_path, capsys):
    checkpoint = save_checkpoint(tmp_path / "b.pth.tar", fixture_state("bmshj2018-hyperprior"))
    err = _error_line(capsys, ["import-compressai", str(checkpoint), "--arch", "mbt2018-mean",
                               "-o", str(tmp_path / "out.safetensors")])
    assert "h_s.0.weight has shape [8, 8, 5, 5], expected [8, 12, 5, 5]" in err
    assert "(it is a bmshj2018-hyperprior checkpoint)" in err


def test_keys_of_no_known_architecture_are_refused_without_a_guess(tmp_path, capsys):
    state = {"encoder.weight": torch.zeros(2, 2)}
    err = _error_line(capsys, ["import-compressai", str(save_checkpoint(tmp_path / "x.pth",
                                                                        state)),
                               "-o", str(tmp_path / "out.safetensors")])
    assert "not a checkpoint of a CompressAI architecture trellic reads" in err
    damaged = fixture_state("mbt2018-mean")
    damaged.pop("g_s.0.bias")  # marked as both hyperpriors, fitting neither
    err = _error_line(capsys, ["import-compressai", str(save_checkpoint(tmp_path / "y.pth",
                                                                        damaged)),
                               "-o", str(tmp_path / "out.safetensors")])
    assert "mbt2018-mean or bmshj2018-hyperprior" in err and "give --arch" in err


def test_a_pickle_that_needs_code_execution_is_refused_unexecuted(tmp_path, capsys):
    checkpoint = tmp_path / "object.pth.tar"
    torch.save({"state_dict": fixture_state("mbt2018-mean"), "args": _NeedsCode()}, checkpoint)
    with pytest.raises(pickle.UnpicklingError):  # what weights_only=True makes of it
        torch.load(checkpoint, weights_only=True)
    err = _error_line(capsys, ["import-compressai", str(checkpoint), "--arch", "mbt2018-mean",
                               "-o", str(tmp_path / "out.safetensors")])
    assert "_NeedsCode) that needs code execution" in err


def test_unreadable_files_and_outputs_are_refused(tmp_path, capsys, imported):
    weights, checkpoint = imported
    garbage = tmp_path / "garbage.pth.tar"
    garbage.write_bytes(b"not a checkpoint at all")
    argv = ["import-compressai", "--arch", "mbt2018-mean"]
    assert "cannot read checkpoint" in _error_line(
        capsys, [*argv, str(garbage), "-o", str(tmp_path / "a.safetensors")])
    listed = save_checkpoint(tmp_path / "list.pth", {"g_a.0.weight": [1.0]})
    assert "entry 'g_a.0.weight' is not a named tensor" in _error_line(
        capsys, [*argv, str(listed), "-o", str(tmp_path / "a.safetensors")])
    assert "checkpoint not found" in _error_line(
        capsys, [*argv, str(tmp_path / "none.pth"), "-o", str(tmp_path / "a.safetensors")])
    assert "exists" in _error_line(capsys, [*argv, str(checkpoint), "-o", str(weights)])
    assert ".safetensors" in _error_line(
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


@pytest.mark.parametrize("arch", ALL)
def test_every_architecture_decodes_a_real_crop_like_compressai(tmp_path, arch):
    """trellic's USQ file of the fixture's crop decodes within one level of CompressAI's own
    decode (the issue asks for two): the context models' means come from integer networks
    (PRECISION_2) that follow the float ones to ~1e-5, the others' are float or zero."""
    crop = META["archs"][arch].get("crop", META["crop"])
    path = data_root() / crop["path"]
    if not path.is_file():
        pytest.skip(f"{path} not found (set TRELLIC_DATA)")
    left, top, right, bottom = crop["box"]
    image = read_image(path)[top:bottom, left:right]
    model, info = import_checkpoint(save_checkpoint(tmp_path / "c.pth.tar",
                                                    fixture_state(arch)), arch)
    save_model(model, tmp_path / "m.safetensors", info)
    codec = Codec.load(str(tmp_path / "m.safetensors"), "usq")
    decoded = codec.decode(codec.encode(image).data).astype(int)
    expected = fixture_expected(arch)["crop_x_hat_u8"].numpy().astype(int)
    difference = abs(decoded - expected)
    assert difference.max() <= 1, (arch, difference.max())
    assert (difference > 0).mean() < 0.01
