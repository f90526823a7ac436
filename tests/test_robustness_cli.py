"""CLI errors (exit codes 0 / 1 / 2), files (atomic, no overwrite, input untouched), determinism."""

import hashlib
import os
import stat

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import synthetic_image
from trellic import io as trellic_io
from trellic.cli import main
from trellic.codec import Codec
from trellic.coding import bitstream
from trellic.errors import TrellicError
from trellic.quant import make_quantizer


@pytest.fixture()
def work(tmp_path, tiny_weights, monkeypatch):
    """A folder with in.png, a coded a.trl and a few bad files; returns (folder, weights)."""
    monkeypatch.chdir(tmp_path)
    Image.fromarray(synthetic_image(24, 40)).save("in.png")
    weights = str(tiny_weights[0])
    assert main(["compress", "in.png", "a.trl", "--model", weights, "--quantizer", "tcq4"]) == 0
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (tmp_path / "folder").mkdir()
    return tmp_path, weights


def one_line_error(capsys, expected: str) -> None:
    err = capsys.readouterr().err
    assert err.startswith("trellic: error: ") and err.count("\n") == 1, err
    assert expected in err, err


@pytest.mark.parametrize("argv, expected", [
    (["compress", "missing.png", "o.trl"], "file not found: missing.png"),
    (["compress", "folder", "o.trl"], "no images (.png"),
    (["compress", "bad.png", "o.trl"], "cannot read image bad.png"),
    (["compress", "a.trl", "o.trl"], "cannot read image a.trl"),
    (["compress", "in.png", "o.trl", "--model", "no-such-model"], "unknown model 'no-such-model'"),
    (["compress", "in.png", "o.trl", "--model", "nowhere/w.safetensors"], "weights file not found"),
    (["compress", "in.png", "o.trl", "--model", "in.png.safetensors"], "weights file not found"),
    (["compress", "in.png", "folder"], "output is a directory"),
    (["compress", "in.png", "nowhere/o.trl"], "output folder does not exist"),
    (["compress", "in.png", "a.trl"], "output exists (use --force"),
    (["compress", "in.png", "in.png", "--force"], "in.png is named like an image"),
    (["decompress", "missing.trl", "o.png"], "file not found"),
    (["decompress", "folder", "o.png"], "no .trl files in folder"),
    (["decompress", "in.png", "o.png"], "not a trellic file"),
    (["decompress", "a.trl", "o.png"], "pass them with --model PATH"),
    (["decompress", "a.trl", "a.trl", "--force"], "output would replace an input"),
    (["info", "in.png"], "not a trellic file"),
    (["info", "folder"], "expected a file, got a directory"),
])
def test_errors_are_one_line_with_exit_code_1(work, capsys, argv, expected):
    folder, _ = work
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    capsys.readouterr()
    assert main(argv) == 1
    one_line_error(capsys, expected)
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()} == before


@pytest.mark.parametrize("argv", [
    [],
    ["squash", "in.png", "o.trl"],
    ["compress"],
    ["compress", "in.png", "o.trl", "--quantizer", "tcq16"],
    ["compress", "in.png", "o.trl", "--lambda-t", "-1"],
    ["compress", "in.png", "o.trl", "--lambda-t", "nan"],
    ["compress", "in.png", "o.trl", "--lambda-t", "inf"],
    ["compress", "in.png", "o.trl", "--lambda-t", "1e9"],
    ["compress", "in.png", "o.trl", "--lambda-t", "lots"],
    ["decompress", "a.trl", "o.png", "--bogus"],
])
def test_usage_errors_exit_with_code_2(work, capsys, argv):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_a_header_naming_an_unknown_model_is_one_line(work, capsys):
    folder, _ = work
    container = bitstream.unpack((folder / "a.trl").read_bytes())
    header = bitstream.Header(**{**container.header.__dict__, "model_id": "gone-model"})
    forged = bitstream.pack(header, container.z_stream, container.y_stream,
                            container.symbols_crc)
    (folder / "gone.trl").write_bytes(forged)
    assert main(["decompress", "gone.trl", "o.png"]) == 1
    one_line_error(capsys, "unknown model 'gone-model'")


def test_inputs_are_never_modified(work):
    folder, weights = work
    digest = {name: hashlib.sha256((folder / name).read_bytes()).hexdigest()
              for name in ("in.png", "a.trl")}
    mtime = {name: os.stat(folder / name).st_mtime_ns for name in digest}
    for _ in range(2):
        assert main(["compress", "in.png", "b.trl", "--model", weights, "--force"]) == 0
        assert main(["decompress", "a.trl", "b.png", "--model", weights, "--force",
                     "--reference", "in.png"]) == 0
        assert main(["info", "a.trl"]) == 0
    for name in digest:
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest[name]
        assert os.stat(folder / name).st_mtime_ns == mtime[name]


def test_outputs_are_atomic_with_usual_permissions_and_no_leftovers(work, monkeypatch):
    folder, weights = work
    assert main(["decompress", "a.trl", "o.png", "--model", weights]) == 0
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(os.stat(folder / "o.png").st_mode) == 0o666 & ~mask

    def broken_disk(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_disk)
    (folder / "keep.trl").write_bytes(b"previous")
    with pytest.raises(TrellicError, match="cannot write .*keep.trl: No space left"):
        trellic_io.write_atomic(folder / "keep.trl", b"new", force=True)
    assert (folder / "keep.trl").read_bytes() == b"previous"
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_without_force_a_file_that_appears_meanwhile_is_not_overwritten(tmp_path):
    target = tmp_path / "late.trl"
    staged = tmp_path / "staged.tmp"
    staged.write_bytes(b"new")
    target.write_bytes(b"theirs")  # appeared after write_atomic's first check
    with pytest.raises(TrellicError, match="output exists"):
        trellic_io._publish(str(staged), target, force=False)
    assert target.read_bytes() == b"theirs"


def test_oversized_inputs_are_refused_without_reading_them_whole(tmp_path):
    (tmp_path / "big.trl").write_bytes(b"TRLC" + bytes(100))
    with pytest.raises(TrellicError, match="file too large"):
        trellic_io.read_bytes(tmp_path / "big.trl", limit=64)


@pytest.mark.parametrize("kind", ["usq", "tcq8"])
def test_bytes_and_images_do_not_depend_on_runs_or_thread_counts(tiny_weights, kind):
    codec = Codec(tiny_weights[1], make_quantizer(kind))
    image = synthetic_image(70, 90, seed=3)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        first, second = codec.encode(image).data, codec.encode(image).data
        decoded_2 = codec.decode(first)
        torch.set_num_threads(1)
        single = codec.encode(image).data
        decoded_1 = codec.decode(first)
    finally:
        torch.set_num_threads(threads)
    assert first == second == single
    assert np.array_equal(decoded_1, decoded_2)
