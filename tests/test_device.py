"""``--device`` on every network-running command, and files that do not depend on it.

This machine has no GPU: ``--device cpu`` runs, ``--device cuda`` is refused in one line,
and another device's float kernels are stood in for by running g_a and g_s in float64
(``Codec(transforms_dtype=torch.float64)``). ``bench/gpu_check.sh`` does the real thing.
"""

import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import synthetic_image
from trellic.cli import main

ROOT = Path(__file__).resolve().parents[1]
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")


@pytest.fixture
def png(tmp_path):
    path = tmp_path / "in.png"
    Image.fromarray(synthetic_image(64, 96)).save(path)
    return path


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(2):
        Image.fromarray(synthetic_image(176, 176, seed=i)).save(folder / f"img{i}.png")
    return folder


def test_resolve_device():
    from trellic.device import resolve_device
    from trellic.errors import TrellicError
    from trellic.train.distributed import resolve_device as train_resolve

    assert train_resolve is resolve_device  # one helper for every command
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    with pytest.raises(TrellicError, match="unknown device"):
        resolve_device("tpu")


def test_compress_decompress_eval_on_cpu(tmp_path, png, photos, tiny_weights):
    weights = str(tiny_weights[0])
    trl, out = tmp_path / "a.trl", tmp_path / "a.png"
    assert main(["compress", str(png), str(trl), "--model", weights, "--device", "cpu"]) == 0
    assert main(["decompress", str(trl), str(out), "--model", weights, "--device", "cpu"]) == 0
    auto = tmp_path / "auto.trl"
    assert main(["compress", str(png), str(auto), "--model", weights]) == 0
    assert auto.read_bytes() == trl.read_bytes()
    results = tmp_path / "r.json"
    assert main(["eval", str(photos), "--model", weights, "--device", "cpu",
                 "-o", str(results)]) == 0


def test_retrain_on_cpu(tmp_path, photos, tiny_weights):
    out = tmp_path / "run"
    assert main(["retrain", "--model", str(tiny_weights[0]), "--data", str(photos),
                 "--out", str(out), "--mode", "online", "--steps", "1", "--batch-size", "1",
                 "--crop", "64", "--threads", "1", "--device", "cpu"]) == 0
    assert (out / "model.safetensors").is_file()


@no_cuda
@pytest.mark.parametrize("command", ["compress", "decompress", "eval", "retrain", "train"])
def test_cuda_without_cuda_is_one_line(tmp_path, png, photos, tiny_weights, command, capsys):
    weights = str(tiny_weights[0])
    argv = {
        "compress": ["compress", str(png), str(tmp_path / "x.trl"), "--model", weights],
        "decompress": ["decompress", str(tmp_path / "missing.trl"), str(tmp_path / "x.png"),
                       "--model", weights],
        "eval": ["eval", str(photos), "--model", weights, "-o", str(tmp_path / "r.json")],
        "retrain": ["retrain", "--model", weights, "--data", str(photos),
                    "--out", str(tmp_path / "run"), "--steps", "1"],
        "train": ["train", "--data", str(photos), "--out", str(tmp_path / "run"),
                  "--steps", "1"],
    }[command]
    code = main([*argv, "--device", "cuda"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code in (1, 2)
    assert err == ["trellic: error: --device cuda requested but CUDA is not available"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.png", "photos"]  # no work done


@pytest.mark.parametrize("kind", ["usq", "tcq8"])
def test_file_decodes_the_same_whatever_the_transforms_kernels(tiny_weights, kind):
    """g_a in float64 (another device's kernels) may write another file; every file decodes
    to the same indices (its CRC holds) with the float32 CPU decoder, within one level of
    the float64 decoder's pixels."""
    from trellic.codec import Codec

    loaded = tiny_weights[1]
    image = synthetic_image(64, 96)
    cpu = Codec.load_from(loaded, kind)
    other = Codec(loaded, loaded.model.quantizer(kind), transforms_dtype=torch.float64)
    for data in (cpu.encode(image).data, other.encode(image).data):
        y_cpu, _ = cpu.decode_latents(data)  # raises on a CRC mismatch
        y_other, _ = other.decode_latents(data)
        assert torch.equal(y_cpu, y_other)  # the latent codec never leaves the CPU
        pixels = cpu.decode(data).astype(int)
        assert np.abs(pixels - other.decode(data)).max() <= 1


def test_cpu_codec_keeps_the_model_on_the_cpu(tiny_weights):
    from trellic.codec import Codec

    loaded = tiny_weights[1]
    codec = Codec.load_from(loaded, "usq", device="cpu")
    codec.decode(codec.encode(synthetic_image(64, 64)).data)
    assert codec._moved == {}  # the model's own networks: byte-identical files
    assert all(p.device.type == "cpu" for p in loaded.model.parameters())


def test_table_bits_follow_the_tensors_device(tiny_model):
    """The rate tables are cached per device; a stand-in "device" (the meta device, then
    the CPU again) gives each its own tables, the same values on the CPU."""
    tables = next(iter(tiny_model.latent_codec.tables.values()))
    rows = torch.randint(tables.num_rows, (500,), generator=torch.Generator().manual_seed(0))
    values = torch.randint(-40, 40, (500,), generator=torch.Generator().manual_seed(1))
    values = values + torch.from_numpy(tables.offsets)[rows]
    expected = tables.bits(rows, values)
    meta = tables._torch_tables("meta")  # no data: shapes and devices only
    assert all(t.device.type == "meta" for t in meta)
    assert [t.shape for t in meta] == [t.shape for t in tables._torch_tables("cpu")]
    assert tables._torch_tables("cpu") is tables._torch_tables(torch.device("cpu"))
    assert torch.equal(tables.bits(rows, values), expected)
    if torch.cuda.is_available():
        on_gpu = tables.bits(rows.cuda(), values.cuda())
        assert torch.equal(on_gpu.cpu(), expected)


def test_integer_scales_run_on_the_cpu_for_any_network_device(tiny_model):
    from trellic.latent.integer_net import CachedIntegerSynthesis

    codec = tiny_model.latent_codec
    z = torch.randn(1, tiny_model.config.N, 2, 3)
    fresh = CachedIntegerSynthesis(codec.scale_channels())
    assert torch.equal(fresh(codec.h_s, z), codec.integer_h_s(codec.h_s, z))


def test_gpu_check_script_is_valid_bash():
    script = ROOT / "bench" / "gpu_check.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    text = script.read_text()
    assert "--device cuda" in text and "--device cpu" in text
    assert "--precision bf16" in text and "retrain" in text
