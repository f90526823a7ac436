"""The compress / decompress / info commands, called in-process as a user would."""

import numpy as np
import pytest
from PIL import Image

from tests.conftest import synthetic_image
from trellic.cli import main


@pytest.fixture()
def png(tmp_path):
    path = tmp_path / "in.png"
    Image.fromarray(synthetic_image(40, 72)).save(path)
    return path


@pytest.mark.parametrize("kind", ["usq", "tcq8"])
def test_compress_decompress_info_round_trip(tmp_path, png, tiny_weights, kind, capsys):
    weights = str(tiny_weights[0])
    trl, out = tmp_path / "a.trl", tmp_path / "a.png"
    assert (
        main(["compress", str(png), str(trl), "--model", weights, "--quantizer", kind, "-v"]) == 0
    )
    assert (
        main(["decompress", str(trl), str(out), "--model", weights, "--reference", str(png)]) == 0
    )
    assert "PSNR" in capsys.readouterr().out
    decoded = np.asarray(Image.open(out))
    assert decoded.shape == (40, 72, 3)
    assert main(["info", str(trl)]) == 0
    assert f"quantizer      {kind}" in capsys.readouterr().out


def test_existing_output_needs_force(tmp_path, png, tiny_weights, capsys):
    trl = tmp_path / "a.trl"
    trl.write_bytes(b"keep me")
    assert main(["compress", str(png), str(trl), "--model", str(tiny_weights[0])]) == 1
    assert trl.read_bytes() == b"keep me"
    assert "--force" in capsys.readouterr().err
    assert main(["compress", str(png), str(trl), "--model", str(tiny_weights[0]), "--force"]) == 0


@pytest.mark.parametrize(
    "argv_tail, message",
    [
        (["missing.png", "o.trl"], "file not found"),
        ([".", "o.trl"], "directory"),
        (["bad.png", "o.trl"], "cannot read image"),
        (["in.png", "o.trl", "--model", "nonexistent-model"], "unknown model"),
        (["in.png", "o.trl", "--model", "nowhere/w.safetensors"], "weights file not found"),
    ],
)
def test_compress_errors_are_one_line(tmp_path, png, monkeypatch, capsys, argv_tail, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.png").write_bytes(b"not an image")
    assert main(["compress", *argv_tail]) == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_corrupt_and_truncated_files_fail_cleanly(tmp_path, png, tiny_weights, capsys):
    weights = str(tiny_weights[0])
    trl = tmp_path / "a.trl"
    assert main(["compress", str(png), str(trl), "--model", weights, "--quantizer", "tcq4"]) == 0
    data = trl.read_bytes()
    cases = {
        "truncated": data[: len(data) // 2],
        "flipped": bytes([data[0] ^ 1]) + data[1:],
        "garbage": b"\x00" * 40,
    }
    for name, payload in cases.items():
        bad = tmp_path / f"{name}.trl"
        bad.write_bytes(payload)
        capsys.readouterr()
        assert (
            main(["decompress", str(bad), str(tmp_path / f"{name}.png"), "--model", weights]) == 1
        )
        err = capsys.readouterr().err
        assert err.startswith("trellic: error:") and err.count("\n") == 1, name
        assert not (tmp_path / f"{name}.png").exists()


def test_bad_option_value_is_a_usage_error(png, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["compress", str(png), "o.trl", "--lambda-t", "-1"])
    assert exit_info.value.code == 2
