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
    for link in ("link.trl", "link.png"):  # not regular files: never replaced
        os.symlink("a.trl", link)
    return weights


def _no_coding(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the codec ran before the output was checked")

    monkeypatch.setattr(Codec, "encode", refuse)
    monkeypatch.setattr(Codec, "decode", refuse)


@pytest.mark.parametrize("argv, expected", [
    (["compress", "in.png", "nowhere/o.trl"], "output folder does not exist"),
    (["compress", "in.png", "a.trl"], "output exists"),
    (["compress", "in.png", "link.trl", "--force"], "not a regular file"),
    (["decompress", "a.trl", "nowhere/o.png"], "output folder does not exist"),
    (["decompress", "a.trl", "in.png"], "output exists"),
    (["decompress", "a.trl", "link.png", "--force"], "not a regular file"),
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


def _dead_pid() -> int:
    """A pid with no process behind it: a child that has exited and been reaped."""
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_killed_writers_temp_is_removed_by_the_next_write(tmp_path):
    from trellic.io import _host_tag

    target = tmp_path / "out.trl"
    host = _host_tag()
    dead = tmp_path / f".out.trl.{host}-{_dead_pid()}.abcd1234.tmp"  # a writer killed mid-write
    live = tmp_path / f".out.trl.{host}-{os.getppid()}.abcd1234.tmp"  # a concurrent writer
    old = tmp_path / ".out.trl.k2m9x_a1.tmp"  # an older trellic's temp, untouched for two hours
    fresh = tmp_path / ".out.trl.zz9x_b12.tmp"  # ... and one just written
    other = tmp_path / ".out.trl.abc.abcd1234.tmp"  # the temp of another name, out.trl.abc
    stranger = tmp_path / ".out.trl.notes.tmp"  # not a temp of trellic's at all
    for path in (dead, live, old, fresh, other, stranger):
        path.write_bytes(b"partial")
    os.utime(old, (os.path.getmtime(old) - 7200,) * 2)
    os.utime(other, (os.path.getmtime(other) - 7200,) * 2)
    write_atomic(target, b"new")
    assert target.read_bytes() == b"new"
    assert not dead.exists() and not old.exists()
    assert live.exists() and fresh.exists() and other.exists() and stranger.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        p.name for p in (target, live, fresh, other, stranger))


def test_a_write_names_its_temp_with_host_and_pid(tmp_path, monkeypatch):
    import re

    from trellic import io as trellic_io

    seen = []
    real = trellic_io._publish
    monkeypatch.setattr(trellic_io, "_publish",
                        lambda tmp, path, force: (seen.append(tmp), real(tmp, path, force)))
    write_atomic(tmp_path / "x.png", b"data")
    name = os.path.basename(seen[0])
    assert re.fullmatch(rf"\.x\.png\.[0-9a-f]{{8}}-{os.getpid()}\.[a-z0-9_]{{8}}\.tmp", name)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.png"]


def test_decoded_pngs_are_tagged_srgb():
    import io as bytes_io

    from trellic.io import encode_png

    data = encode_png(synthetic_image(8, 8))
    assert b"sRGB" in data[: data.index(b"IDAT")]
    assert "srgb" in Image.open(bytes_io.BytesIO(data)).info


@pytest.mark.parametrize(("name", "kind", "lossless"), [
    ("d.png", "PNG", True), ("d.PNG", "PNG", True), ("d.jpg", "JPEG", False),
    ("d.jpeg", "JPEG", False), ("d.webp", "WEBP", True)])
def test_images_are_written_in_the_format_of_their_extension(tmp_path, name, kind, lossless):
    from trellic.io import read_image, write_image

    array = synthetic_image(32, 48)
    write_image(tmp_path / name, array)
    with Image.open(tmp_path / name) as written:
        assert written.format == kind and written.size == (48, 32)
    back = read_image(tmp_path / name)
    error = np.abs(back.astype(int) - array.astype(int)).mean()
    assert error == 0 if lossless else 0 < error < 4, error


@pytest.mark.parametrize("name", ["d.gif", "d.txt", "d", "d.trl"])
def test_an_extension_trellic_does_not_write_is_refused_before_writing(tmp_path, name):
    from trellic.io import image_format_for, write_image

    with pytest.raises(TrellicError, match=r"^cannot write .*\(decoded images are written as "
                                           r"\.png, \.jpg, \.jpeg, \.webp\): "):
        image_format_for(tmp_path / name)
    with pytest.raises(TrellicError, match="cannot write"):
        write_image(tmp_path / name, synthetic_image(8, 8))
    assert list(tmp_path.iterdir()) == []


def test_a_write_killed_before_its_rename_is_cleaned_up_by_the_next(tmp_path):
    """The case of killed-write-leaves-temp: SIGKILL while the temp file is being fsynced."""
    import signal
    import subprocess
    import sys
    import time

    target = tmp_path / "out.trl"
    child = subprocess.Popen([sys.executable, "-c", (
        "import os, sys, time, types\n"
        "os.fsync = lambda fd: time.sleep(60)\n"
        # write_atomic needs no torch: a stub keeps the child's start-up short
        "torch, nn, functional = (types.ModuleType(n) for n in "
        "('torch', 'torch.nn', 'torch.nn.functional'))\n"
        "torch.Tensor, torch.nn, nn.functional = object, nn, functional\n"
        "sys.modules.update({m.__name__: m for m in (torch, nn, functional)})\n"
        "from trellic.io import write_atomic\n"
        "write_atomic(sys.argv[1], b'complete')\n"), str(target)])
    try:
        deadline = time.monotonic() + 30
        while not list(tmp_path.glob(".out.trl.*.tmp")) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert list(tmp_path.glob(".out.trl.*.tmp")), "the writer never made its temp file"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert not target.exists() and len(list(tmp_path.glob(".out.trl.*.tmp"))) == 1
    write_atomic(target, b"new")
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.trl"]
