"""Output files: the pre-flight check before the work, and --force replacing regular files only."""

import os
import stat

import numpy as np
import pytest
from PIL import Image

from tests.conftest import synthetic_image
from trellic.cli import main
from trellic.codec import Codec
from trellic.errors import TrellicError
from trellic.io import check_output, write_atomic


def test_force_replaces_a_regular_file(tmp_path):
    target = tmp_path / "out.trl"
    target.write_bytes(b"old")
    write_atomic(target, b"new", force=True)
    assert target.read_bytes() == b"new" and stat.S_ISREG(os.lstat(target).st_mode)


def test_force_never_replaces_a_fifo_or_a_symbolic_link(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    link = tmp_path / "null.png"
    link.symlink_to(os.devnull)
    regular = tmp_path / "real.png"
    regular.write_bytes(b"theirs")
    to_regular = tmp_path / "alias.png"
    to_regular.symlink_to(regular)
    for path in (fifo, link, to_regular):
        with pytest.raises(TrellicError, match="not a regular file"):
            write_atomic(path, b"new", force=True)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert os.readlink(link) == os.devnull and os.readlink(to_regular) == str(regular)
    assert regular.read_bytes() == b"theirs"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alias.png", "null.png", "pipe",
                                                          "real.png"]


def test_a_device_node_is_refused_before_anything_is_written():
    with pytest.raises(TrellicError, match=f"not a regular file .*: {os.devnull}"):
        check_output(os.devnull, force=True)  # a pre-flight only: nothing is written


def test_missing_and_unwritable_folders_are_named(tmp_path):
    with pytest.raises(TrellicError, match="output folder does not exist: .*nowhere"):
        check_output(tmp_path / "nowhere" / "x.trl")
    if os.geteuid() == 0:
        pytest.skip("root may write into any folder")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    with pytest.raises(TrellicError, match="output folder is not writable"):
        check_output(locked / "x.trl")


@pytest.fixture()
def coded(tmp_path, tiny_weights, monkeypatch):
    """in.png and its a.trl in the working folder; returns the weights path."""
    monkeypatch.chdir(tmp_path)
    Image.fromarray(synthetic_image(24, 40)).save("in.png")
    weights = str(tiny_weights[0])
    assert main(["compress", "in.png", "a.trl", "--model", weights]) == 0
    return weights


def _no_coding(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the codec ran before the output was checked")

    monkeypatch.setattr(Codec, "encode", refuse)
    monkeypatch.setattr(Codec, "decode", refuse)


@pytest.mark.parametrize("argv, expected", [
    (["compress", "in.png", "nowhere/o.trl"], "output folder does not exist"),
    (["compress", "in.png", "a.trl"], "output exists"),
    (["compress", "in.png", os.devnull, "--force"], "not a regular file"),
    (["decompress", "a.trl", "nowhere/o.png"], "output folder does not exist"),
    (["decompress", "a.trl", "in.png"], "output exists"),
    (["decompress", "a.trl", os.devnull, "--force"], "not a regular file"),
])
def test_outputs_are_checked_before_coding(coded, monkeypatch, capsys, argv, expected):
    _no_coding(monkeypatch)
    assert main([*argv, "--model", coded]) == 1
    err = capsys.readouterr().err
    assert expected in err and err.count("\n") == 1, err
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode)


def test_a_reference_of_another_size_is_refused_before_decoding(coded, monkeypatch, capsys):
    Image.fromarray(synthetic_image(24, 41)).save("other.png")
    _no_coding(monkeypatch)
    argv = ["decompress", "a.trl", "o.png", "--model", coded, "--reference", "other.png"]
    assert main(argv) == 1
    assert "reference other.png is 41x24, the file codes 40x24" in capsys.readouterr().err
    assert not os.path.exists("o.png")


def test_a_reference_of_the_right_size_gives_the_psnr(coded, capsys):
    argv = ["decompress", "a.trl", "o.png", "--model", coded, "--reference", "in.png"]
    assert main(argv) == 0
    assert "PSNR" in capsys.readouterr().out
    assert np.asarray(Image.open("o.png")).shape == (24, 40, 3)
