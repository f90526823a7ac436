"""A model is its weights' content: the same weights by zoo name, by path, as a copy, rewritten
or re-imported code the same files and decode each other's; weights are validated on load."""

from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from tests.conftest import make_tiny_model, synthetic_image
from tests.test_interop_compressai import fixture_state, save_checkpoint
from trellic.cli import main
from trellic.codec import Codec
from trellic.coding import bitstream
from trellic.errors import TrellicError
from trellic.io import encode_png
from trellic.paths import weights_dir
from trellic.zoo import (
    load,
    load_model_file,
    read_manifest,
    save_model,
    sha256_of,
    store_operating_points,
)

CROP = synthetic_image(40, 56, seed=3)


def _file(name: str):
    return weights_dir() / read_manifest()["models"][name]["file"]


@pytest.mark.parametrize("quantizer", ["usq", "tcq4"])
def test_a_zoo_model_by_name_by_path_and_as_a_copy_codes_the_same_file(tmp_path, quantizer):
    name = read_manifest()["default"]
    copy = tmp_path / "renamed.safetensors"
    shutil.copyfile(_file(name), copy)
    codecs = [Codec.load(m, quantizer) for m in (name, str(_file(name)), str(copy))]
    assert len({c.loaded.sha256 for c in codecs}) == 1
    assert len({c.lambda_t for c in codecs}) == 1  # the operating point follows the weights
    files = [c.encode(CROP).data for c in codecs]
    assert files[0] == files[1] == files[2]
    for codec in codecs:
        assert np.array_equal(codec.decode(files[0]), codecs[0].decode(files[0]))


def test_files_cross_decode_between_name_and_path_on_the_command_line(tmp_path):
    name = "mbt-mean-n64-l0018"
    image = tmp_path / "in.png"
    image.write_bytes(encode_png(CROP))
    by_name, by_path = tmp_path / "name.trl", tmp_path / "path.trl"
    assert main(["compress", str(image), str(by_name), "--model", name]) == 0
    assert main(["compress", str(image), str(by_path), "--model", str(_file(name))]) == 0
    assert by_name.read_bytes() == by_path.read_bytes()
    assert main(["decompress", str(by_name), str(tmp_path / "a.png"),
                 "--model", str(_file(name))]) == 0
    assert main(["decompress", str(by_path), str(tmp_path / "b.png")]) == 0  # names the zoo model


def test_writing_the_same_weights_twice_gives_the_same_bytes(tmp_path):
    model = make_tiny_model(seed=4)
    info = {"training": {"lmbda": 0.01, "quantizer": "usq", "N": 16}, "z": 1, "a": [1, 2]}
    points = {"usq": {"lambda_t": 0.0}, "tcq4": {"lambda_t": 0.05}}
    paths = [tmp_path / f"w{i}.safetensors" for i in range(4)]
    shas = {save_model(model, p, info, operating_points=points) for p in paths}
    assert len(shas) == 1
    assert len({p.read_bytes() for p in paths}) == 1


def test_storing_operating_points_keeps_the_identity_and_the_older_files(tmp_path):
    path = tmp_path / "w.safetensors"
    save_model(make_tiny_model(seed=5), path, {"training": {"lmbda": 0.01}})
    before = load(str(path))
    old_file = Codec.load_from(before, "tcq4").encode(CROP).data
    store_operating_points(path, {"tcq4": {"lambda_t": 0.07}})
    after = load(str(path))
    assert after.sha256 == before.sha256 and after.operating_points == {"tcq4": {"lambda_t": 0.07}}
    assert Codec.load_from(after, "tcq4").lambda_t == 0.07
    assert Codec.load_from(after, "tcq4").decode(old_file).shape == CROP.shape


def test_a_file_naming_the_weights_file_sha256_decodes_after_the_file_is_rewritten(tmp_path):
    """Files written before the content identity carry the weights file's sha256."""
    path = tmp_path / "w.safetensors"
    save_model(make_tiny_model(seed=6), path, {})
    codec = Codec.load(str(path), "usq")
    container = bitstream.unpack(codec.encode(CROP).data)
    header = dataclasses.replace(container.header, weights_sha256=sha256_of(path))
    legacy = bitstream.pack(header, container.z_stream, container.y_stream,
                            container.symbols_crc)
    store_operating_points(path, {"usq": {"lambda_t": 0.0}})  # a new file sha256
    assert Codec.load(str(path), "usq").decode(legacy).shape == CROP.shape


def test_reimporting_a_compressai_checkpoint_gives_the_same_weights(tmp_path):
    checkpoint = save_checkpoint(tmp_path / "mbt.pth.tar", fixture_state("mbt2018-mean"))
    outputs = [tmp_path / "a.safetensors", tmp_path / "b.safetensors"]
    for out in outputs:
        assert main(["import-compressai", str(checkpoint), "--arch", "mbt2018-mean",
                     "-o", str(out), "--lambda", "0.0067"]) == 0
    assert outputs[0].read_bytes() == outputs[1].read_bytes()
    a, b = (load(str(out)) for out in outputs)
    assert a.sha256 == b.sha256 and a.model_id == b.model_id
    data = Codec.load_from(a, "usq").encode(CROP).data
    assert data == Codec.load_from(b, "usq").encode(CROP).data
    assert Codec.load_from(b, "usq").decode(data).shape == CROP.shape


def _tamper(source, target, change):
    with safe_open(str(source), "pt") as handle:
        metadata = handle.metadata()
    tensors = load_file(str(source))
    change(tensors)
    save_file(tensors, str(target), metadata=metadata)
    return target


def test_a_weights_tensor_of_another_dtype_is_refused(tmp_path):
    path = tmp_path / "w.safetensors"
    save_model(make_tiny_model(seed=7), path, {})
    bad = _tamper(path, tmp_path / "int.safetensors",
                  lambda t: t.update({"g_a.0.weight": t["g_a.0.weight"].to(torch.int64)}))
    with pytest.raises(TrellicError, match="g_a.0.weight is torch.int64, expected float"):
        load_model_file(bad)


@pytest.mark.parametrize("change, message", [
    (lambda t: t.update({"tables.usq.lengths": torch.full_like(t["tables.usq.lengths"], 2)}),
     "has mass past its length"),
    (lambda t: t.update({"tables.usq.freqs": t["tables.usq.freqs"].float()}),
     "expected integers"),
])
def test_coding_tables_the_decoder_could_not_read_are_refused(tmp_path, change, message):
    path = tmp_path / "w.safetensors"
    save_model(make_tiny_model(seed=8), path, {})
    with pytest.raises(TrellicError, match=message):
        load_model_file(_tamper(path, tmp_path / "bad.safetensors", change))


def test_deeply_nested_metadata_is_a_one_line_error(tmp_path):
    path = tmp_path / "w.safetensors"
    save_model(make_tiny_model(seed=9), path, {})
    with safe_open(str(path), "pt") as handle:
        metadata = handle.metadata()
    deep = "[" * 100_000 + "]" * 100_000
    for key in ("info", "operating_points", "previous_sha256"):
        save_file(load_file(str(path)), str(tmp_path / "deep.safetensors"),
                  metadata={**metadata, key: deep})
        with pytest.raises(TrellicError) as error:
            load(str(tmp_path / "deep.safetensors"))
        assert "\n" not in str(error.value)
    manifest = tmp_path / "zoo"
    manifest.mkdir()
    (manifest / "manifest.json").write_text(deep)
    with pytest.raises(TrellicError, match="cannot read model manifest"):
        read_manifest(manifest)


def test_a_decoder_only_retrain_keeps_its_sources_encoder_defaults(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "a.png").write_bytes(encode_png(synthetic_image(64, 96)))
    source = tmp_path / "source.safetensors"
    points = {"tcq4": {"lambda_t": 0.07}}
    save_model(make_tiny_model(seed=10), source, {"training": {"lmbda": 0.01}},
               operating_points=points)
    run = tmp_path / "run"
    assert main(["retrain", "--model", str(source), "--quantizer", "tcq4", "--part", "decoder",
                 "--steps", "1", "--batch-size", "1", "--crop", "64", "--cache-crops", "1",
                 "--data", str(photos), "--out", str(run)]) == 0
    variant = load(str(run / "model.safetensors"))
    assert variant.operating_points == points
    assert variant.info["retrain"]["lambda_t"] == 0.07  # the search it was retrained on
    data = Codec.load(str(source), "tcq4").encode(CROP).data
    ours = bitstream.unpack(Codec.load_from(variant, "tcq4").encode(CROP).data)
    theirs = bitstream.unpack(data)
    assert ours.header.lambda_t == theirs.header.lambda_t  # same search, same streams
    assert (ours.z_stream, ours.y_stream) == (theirs.z_stream, theirs.y_stream)
    assert Codec.load_from(variant, "tcq4").decode(data).shape == CROP.shape


def test_the_zoos_weights_with_other_metadata_decode_the_zoos_older_files(tmp_path):
    """By content they are the zoo model, with its file's earlier sha256s too."""
    from tests.test_golden import GOLDEN, RECORD

    name = "mbt-mean-n64-l0067"
    with safe_open(str(_file(name)), "pt") as handle:
        metadata = {k: v for k, v in handle.metadata().items() if k in ("config", "info")}
    copy = tmp_path / "stripped.safetensors"
    save_file(load_file(str(_file(name))), str(copy), metadata=metadata)
    loaded = load(str(copy))
    assert loaded.model_id == name
    entry = next(e for e in RECORD["legacy_identity"] if e["file"].startswith(f"{name}-usq"))
    legacy = (GOLDEN / "legacy" / entry["file"]).read_bytes()
    assert Codec.load_from(loaded, "usq").decode(legacy).shape[2] == 3


def test_a_file_coded_by_path_outside_the_zoo_decodes_by_content_without_model(
        tmp_path, monkeypatch):
    from trellic.codec import codec_for_file

    name = read_manifest()["default"]
    copy = tmp_path / "mine.safetensors"
    shutil.copyfile(_file(name), copy)
    monkeypatch.setenv("TRELLIC_WEIGHTS", str(tmp_path / "elsewhere"))  # no manifest there
    loaded = load(str(copy))
    assert loaded.model_id.startswith("file:")
    data = Codec.load_from(loaded, "usq").encode(CROP).data
    monkeypatch.delenv("TRELLIC_WEIGHTS")
    assert codec_for_file(data).loaded.model_id == name  # found in the zoo by content


@pytest.mark.parametrize("points", [{"tcq4": {"lambda_t": True}},
                                    {"tcq4": {"lambda_t": float("inf")}}])
def test_operating_points_must_be_finite_numbers(tmp_path, points):
    path = tmp_path / "w.safetensors"
    save_model(make_tiny_model(seed=11), path, {})
    with pytest.raises(TrellicError, match="bad operating_points"):
        store_operating_points(path, points)
