import copy
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from trellic.errors import TrellicError
from trellic.zoo import load, load_model_file, save_model, sha256_of, weights_sha256


def test_weights_round_trip_strictly_with_tables(tmp_path, tiny_model):
    path = tmp_path / "m.safetensors"
    save_model(tiny_model, path, {"training": {"lmbda": 0.01}})
    model, info = load_model_file(path)
    assert info["training"]["lmbda"] == 0.01
    for key, value in tiny_model.state_dict().items():
        assert torch.equal(value, model.state_dict()[key])
    tables, expected = model.latent_codec.tables, tiny_model.latent_codec.tables
    assert (tables["tcq"].freqs == expected["tcq"].freqs).all()


def test_missing_key_is_an_error(tmp_path, tiny_model):
    path = tmp_path / "m.safetensors"
    save_model(tiny_model, path, {})
    tensors = load_file(str(path))
    tensors.pop("g_s.0.weight")
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
    save_file(tensors, str(path), metadata=metadata)
    with pytest.raises(TrellicError, match="do not match"):
        load_model_file(path)


def test_truncated_weights_are_an_error(tmp_path, tiny_model):
    path = tmp_path / "m.safetensors"
    save_model(tiny_model, path, {})
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(TrellicError, match="cannot read weights"):
        load_model_file(path)


def test_manifest_checks_sha256(tmp_path, tiny_model):
    save_model(tiny_model, tmp_path / "tiny.safetensors", {})
    manifest = {
        "default": "tiny",
        "models": {
            "tiny": {"file": "tiny.safetensors", "sha256": sha256_of(tmp_path / "tiny.safetensors")}
        },
    }
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    assert load("default", weights_dir=tmp_path).model_id == "tiny"
    data = bytearray((tmp_path / "tiny.safetensors").read_bytes())
    data[-1] ^= 1
    (tmp_path / "tiny.safetensors").write_bytes(bytes(data))
    with pytest.raises(TrellicError, match="sha256 mismatch"):
        load("tiny", weights_dir=tmp_path)
    with pytest.raises(TrellicError, match="unknown model 'nope'"):
        load("nope", weights_dir=tmp_path)


def test_shipped_manifest_lists_loadable_weights():
    from trellic.paths import weights_dir
    from trellic.zoo import read_manifest

    loaded = load("default")
    entry = read_manifest()["models"][loaded.model_id]
    assert loaded.model.latent_codec.tables
    assert loaded.sha256 == entry["weights_sha256"] == weights_sha256(loaded.model)
    assert sha256_of(weights_dir() / entry["file"]) == entry["sha256"] in loaded.aliases


def _rewrite(path, tensors=None, **metadata_changes):
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        metadata = {**handle.metadata(), **metadata_changes}
    save_file(load_file(str(path)) if tensors is None else tensors, str(path), metadata=metadata)


@pytest.mark.parametrize(
    "config",
    [
        '{"N": 1000000000, "M": 24, "tcq_delta": 0.6}',
        '{"N": "16", "M": 24, "tcq_delta": 0.6}',
        '{"N": 16, "M": 24, "tcq_delta": -1}',
        "[1, 2]",
    ],
)
def test_an_absurd_config_is_refused_before_building_the_model(tmp_path, tiny_model, config):
    path = tmp_path / "m.safetensors"
    save_model(tiny_model, path, {})
    _rewrite(path, config=config)
    with pytest.raises(TrellicError, match="cannot read weights"):
        load_model_file(path)


def test_a_pickle_is_never_loaded(tmp_path, tiny_model):
    path = tmp_path / "m.safetensors"
    torch.save(tiny_model.state_dict(), path)
    with pytest.raises(TrellicError, match="cannot read weights"):
        load(str(path))


def test_tables_with_the_wrong_row_count_are_refused(tmp_path, tiny_model):
    path = tmp_path / "m.safetensors"
    save_model(tiny_model, path, {})
    tensors = load_file(str(path))
    for suffix in ("freqs", "lengths", "offsets"):
        tensors[f"tables.z.{suffix}"] = tensors[f"tables.z.{suffix}"][:3].contiguous()
    _rewrite(path, tensors)
    with pytest.raises(TrellicError, match="3 rows in the 'z' coding tables"):
        load_model_file(path)


def _without_tables(path, family):
    tensors = load_file(str(path))
    _rewrite(path, {k: v for k, v in tensors.items() if not k.startswith(f"tables.{family}.")})


def test_a_file_declares_its_table_families_and_a_missing_one_fails_only_when_used(
        tmp_path, tiny_model):
    from trellic.quant import make_quantizer

    path = tmp_path / "m.safetensors"
    save_model(tiny_model, path, {})
    _without_tables(path, "tcq")
    model, _ = load_model_file(path)
    x = torch.rand(1, 3, 64, 64)
    assert model.compress(x, make_quantizer("usq")).streams[1]
    with pytest.raises(TrellicError, match="no 'tcq' coding tables, which tcq4 needs"):
        model.compress(x, make_quantizer("tcq4"))
    _without_tables(path, "z")  # the side information's tables are not optional
    with pytest.raises(TrellicError, match="no 'z' coding tables"):
        load_model_file(path)


def test_a_new_quantizer_with_its_own_tables_leaves_shipped_files_loadable(monkeypatch):
    from dataclasses import replace

    from trellic.quant import registry

    spec = replace(registry.QUANTIZERS["usq"], name="usq-new", code=99, tables="usq-new")
    monkeypatch.setitem(registry.QUANTIZERS, "usq-new", spec)
    loaded = load("default")
    assert "usq-new" not in loaded.model.latent_codec.tables
    quantizer = loaded.model.quantizer("usq-new")
    quantizer.kind = "usq-new"  # the spec reuses USQ's class, which names itself usq
    with pytest.raises(TrellicError, match="no 'usq-new' coding tables"):
        loaded.model.latent_codec.quantizer_tables(quantizer)


def test_a_malformed_manifest_is_a_clear_error(tmp_path):
    for text in ("{not json", '{"models": []}', "[]"):
        (tmp_path / "manifest.json").write_text(text)
        with pytest.raises(TrellicError, match="cannot read model manifest"):
            load("default", weights_dir=tmp_path)


def test_a_weights_file_with_any_name_gets_a_valid_model_id(tmp_path, tiny_model):
    path = tmp_path / ("modèle très long " * 5 + ".safetensors")
    save_model(tiny_model, path, {})
    model_id = load(str(path)).model_id
    assert model_id.startswith("file:") and len(model_id) <= 64 and model_id.isascii()
    assert " " not in model_id


def _write_manifest(folder, *names):
    models = {
        name: {"file": f"{name}.safetensors", "sha256": sha256_of(folder / f"{name}.safetensors")}
        for name in names
    }
    (folder / "manifest.json").write_text(json.dumps({"default": names[0], "models": models}))


def test_fp16_weights_store_parameters_in_half_and_code_bit_exactly(tmp_path):
    from tests.conftest import make_tiny_model, synthetic_image
    from trellic.codec import Codec
    from trellic.zoo import LoadedModel

    save_model(make_tiny_model(seed=1), tmp_path / "full.safetensors", {})
    model = make_tiny_model(seed=1)
    path = tmp_path / "half.safetensors"
    save_model(model, path, {}, half=True)
    stored = load_file(str(path))
    names = {name for name, _ in model.named_parameters()}
    assert all((stored[k].dtype == torch.float16) == (k in names) for k in stored)
    assert path.stat().st_size < (tmp_path / "full.safetensors").stat().st_size
    loaded, _ = load_model_file(path)
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    in_memory = Codec.load_from(LoadedModel(model, "file:half", sha256_of(path), {}), "tcq4")
    data = in_memory.encode(synthetic_image(64, 80)).data
    assert np.array_equal(Codec.load(str(path), "tcq4").decode(data), in_memory.decode(data))


def test_variant_file_holds_only_what_changed_and_loads_over_its_base(tmp_path):
    from tests.conftest import make_tiny_model

    save_model(make_tiny_model(seed=2), tmp_path / "base.safetensors", {}, half=True)
    _write_manifest(tmp_path, "base")
    base = load("base", weights_dir=tmp_path)
    variant = copy.deepcopy(base.model)
    with torch.no_grad():
        variant.g_s[0].weight.add_(0.01)
    save_model(variant, tmp_path / "var.safetensors", {"note": 1}, half=True, base=base)
    assert set(load_file(str(tmp_path / "var.safetensors"))) == {"g_s.0.weight"}
    _write_manifest(tmp_path, "base", "var")
    loaded = load("var", weights_dir=tmp_path)
    assert loaded.info["note"] == 1 and loaded.info["base"]["model"] == "base"
    for key, value in variant.state_dict().items():
        assert torch.equal(value, loaded.model.state_dict()[key]), key
    with pytest.raises(TrellicError, match="must be a full model"):
        save_model(variant, tmp_path / "chain.safetensors", {}, half=True, base=loaded)

    (tmp_path / "chain.safetensors").write_bytes((tmp_path / "var.safetensors").read_bytes())
    tensors = load_file(str(tmp_path / "var.safetensors"))  # now a variant of a variant
    metadata = {
        "config": json.dumps(variant.config.to_dict()),
        "info": "{}",
        "base": json.dumps({"model": "chain", "sha256": sha256_of(tmp_path / "chain.safetensors")}),
    }
    save_file(tensors, str(tmp_path / "var.safetensors"), metadata=metadata)
    _write_manifest(tmp_path, "chain", "var")
    with pytest.raises(TrellicError, match="cannot be the base of another"):
        load("var", weights_dir=tmp_path)

    save_model(make_tiny_model(seed=3), tmp_path / "base.safetensors", {}, half=True)
    _write_manifest(tmp_path, "base")
    with pytest.raises(TrellicError, match="another version of 'base'"):
        load_model_file(tmp_path / "chain.safetensors", weights_dir=tmp_path)


def test_shipped_models_load_and_variants_hold_only_their_retrained_parts():
    """Every manifest entry loads (sha256 checked); a variant never carries an encoder."""
    from trellic.paths import weights_dir
    from trellic.zoo import read_manifest

    retrained = {
        "decoder": {"g_s"},
        "hyper+decoder": {"g_s", "h_a", "h_s", "entropy_bottleneck", "tables"},
    }
    for name, entry in read_manifest()["models"].items():
        loaded = load(name)
        stored = {key.split(".")[0] for key in load_file(str(weights_dir() / entry["file"]))}
        if "variant_of" in entry:
            assert loaded.info["base"]["model"] == entry["variant_of"]
            assert "g_a" not in stored and stored <= retrained[entry["retrain"]["part"]], name
        else:
            assert "g_a" in stored, name


def _rekeyed(path, rename):
    """Rewrite a weights file with its model keys renamed by ``rename`` (tables kept)."""
    tensors = {(k if k.startswith("tables.") else rename(k)): v
               for k, v in load_file(str(path)).items()}
    _rewrite(path, tensors)


def test_missing_and_unexpected_keys_are_named(tmp_path, tiny_model):
    path = tmp_path / "m.safetensors"
    save_model(tiny_model, path, {})
    _rekeyed(path, lambda k: "g_s.0.weighx" if k == "g_s.0.weight" else k)
    with pytest.raises(TrellicError) as error:
        load_model_file(path)
    assert "missing key g_s.0.weight; unexpected key g_s.0.weighx" in str(error.value)

    _rekeyed(path, lambda k: "module." + k)  # saved from a DataParallel wrapper
    with pytest.raises(TrellicError, match=r"missing keys g_a\.0\.weight, g_a\.0\.bias, .*"
                       r"unexpected keys module\.g_a\.0\.bias, .* \(\+\d+ more\)"
                       r" \(saved from a DataParallel wrapper"):
        load_model_file(path)


def test_a_key_of_the_wrong_shape_is_named(tmp_path, tiny_model):
    path = tmp_path / "m.safetensors"
    save_model(tiny_model, path, {})
    tensors = load_file(str(path))
    tensors["g_s.0.weight"] = tensors["g_s.0.weight"][:, :2].contiguous()
    _rewrite(path, tensors)
    with pytest.raises(TrellicError, match=r"wrong shape of key g_s\.0\.weight \(24, 2, 5, 5\)"):
        load_model_file(path)


def test_non_finite_weights_are_refused_on_load(tmp_path, tiny_model):
    model = copy.deepcopy(tiny_model)
    with torch.no_grad():
        model.g_s[0].weight[0, 0, 0, 0] = float("nan")
        model.latent_codec.h_s[0].bias[0] = float("inf")
    path = tmp_path / "nan.safetensors"
    save_model(model, path, {})
    with pytest.raises(TrellicError, match=r"non-finite values \(NaN or inf\): keys "
                       r"(g_s\.0\.weight, latent_codec\.h_s\.0\.bias"
                       r"|latent_codec\.h_s\.0\.bias, g_s\.0\.weight)"):
        load(str(path))


def test_a_training_checkpoint_passed_as_a_model_says_so(tmp_path, tiny_model, capsys):
    from tests.conftest import synthetic_image
    from trellic.cli import main
    from trellic.train.checkpoint import save_training_state

    model = copy.deepcopy(tiny_model)
    optimizer = torch.optim.Adam(model.parameters())
    path = tmp_path / "checkpoint.safetensors"
    save_training_state(path, model, {"main": optimizer}, {"step": 3, "config": {"N": 16}})
    from PIL import Image

    Image.fromarray(synthetic_image(16, 16)).save(tmp_path / "in.png")
    argv = ["compress", str(tmp_path / "in.png"), str(tmp_path / "o.trl"), "--model", str(path)]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "is a training checkpoint, not a model: pass the run's model.safetensors" in err


def test_models_of_two_runs_get_distinct_ids_and_files_name_their_weights(tmp_path):
    from tests.conftest import make_tiny_model, synthetic_image
    from trellic.codec import Codec

    for run, seed in (("run-a", 1), ("run-b", 2)):
        (tmp_path / run).mkdir()
        save_model(make_tiny_model(seed=seed), tmp_path / run / "model.safetensors", {})
    a, b = (str(tmp_path / run / "model.safetensors") for run in ("run-a", "run-b"))
    sha_a, sha_b = load(a).sha256, load(b).sha256
    assert sha_a != sha_b
    assert load(a).model_id == f"file:{sha_a[:16]}" and load(b).model_id == f"file:{sha_b[:16]}"
    data = Codec.load(a).encode(synthetic_image(32, 32)).data

    renamed = tmp_path / "mine.safetensors"
    renamed.write_bytes((tmp_path / "run-a" / "model.safetensors").read_bytes())
    assert Codec.load(str(renamed)).decode(data).shape == (32, 32, 3)  # a copy, same weights
    renamed.write_bytes((tmp_path / "run-b" / "model.safetensors").read_bytes())
    with pytest.raises(TrellicError) as error:
        Codec.load(str(renamed)).decode(data)
    message = str(error.value)
    assert "the weights differ" in message and sha_a[:16] in message and sha_b[:16] in message


@pytest.fixture()
def zoo_with_variant(tmp_path):
    """A weights folder zoo/ holding base + var (a variant of base); returns the folder."""
    from tests.conftest import make_tiny_model

    zoo = tmp_path / "zoo"
    zoo.mkdir()
    save_model(make_tiny_model(seed=2), zoo / "base.safetensors", {}, half=True)
    _write_manifest(zoo, "base")
    base = load("base", weights_dir=zoo)
    variant = copy.deepcopy(base.model)
    with torch.no_grad():
        variant.g_s[0].weight.add_(0.01)
    save_model(variant, zoo / "var.safetensors", {}, half=True, base=base)
    _write_manifest(zoo, "base", "var")
    return zoo


def test_a_variant_loads_by_path_with_its_base_beside_it_or_in_the_weights_folder(
    zoo_with_variant, tmp_path, monkeypatch
):
    expected = load("var", weights_dir=zoo_with_variant).model.state_dict()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    variant = elsewhere / "var.safetensors"
    variant.write_bytes((zoo_with_variant / "var.safetensors").read_bytes())
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("TRELLIC_WEIGHTS", str(empty))
    with pytest.raises(TrellicError, match="a variant of 'base' .* neither next to it as "
                       "base.safetensors nor in the weights folder .* \\(set TRELLIC_WEIGHTS"):
        load(str(variant))

    monkeypatch.setenv("TRELLIC_WEIGHTS", str(zoo_with_variant))
    loaded = load(str(variant))
    assert all(torch.equal(v, expected[k]) for k, v in loaded.model.state_dict().items())

    monkeypatch.setenv("TRELLIC_WEIGHTS", str(empty))
    (elsewhere / "base.safetensors").write_bytes(
        (zoo_with_variant / "base.safetensors").read_bytes()
    )
    loaded = load(str(variant))
    assert all(torch.equal(v, expected[k]) for k, v in loaded.model.state_dict().items())
