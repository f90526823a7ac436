"""Golden files: every shipped model codes and decodes small real crops byte for byte as recorded.

tests/golden/ holds .trl files written by scripts/make_golden.py and
golden.json (how each was made, its sha256, the sha256 of its decoded image).
Decoding needs only the files; re-encoding needs the Kodak crops (skipped
without ``$TRELLIC_DATA``). A failure here means the codec's bytes or pixels
changed: a bug, unless the change is meant to alter the format or the models
(then regenerate with ``python scripts/make_golden.py --force`` and say why).

Every file decodes on every machine (portable bitstreams: the symbols CRC
proves the same indices). Bytes and pixels are compared where the float
kernels of g_a / g_s round like the writer's (``kernels`` in golden.json);
elsewhere those comparisons are skipped, naming the reason.
"""

import hashlib
import importlib.util
import json
from pathlib import Path

import pytest

from trellic.coding import bitstream
from trellic.determinism import kernel_fingerprint
from trellic.paths import data_root
from trellic.zoo import read_manifest

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden"
RECORD = json.loads((GOLDEN / "golden.json").read_text())

_spec = importlib.util.spec_from_file_location("make_golden", ROOT / "scripts" / "make_golden.py")
make_golden = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_golden)


@pytest.fixture(scope="module")
def same_kernels():
    if kernel_fingerprint() != RECORD["kernels"]:
        pytest.skip("this machine's float kernels round unlike those that wrote the golden files")


def _crop(name: str):
    crop = RECORD["crops"][name]
    path = data_root() / crop["image"]
    if not path.is_file():
        pytest.skip(f"{crop['image']} not found under {data_root()} (set TRELLIC_DATA)")
    pixels = make_golden.read_crop(crop, data_root())
    if make_golden.image_sha256(pixels) != crop["sha256"]:
        pytest.skip(f"{crop['image']} under {data_root()} is not the recorded image")
    return pixels


def test_every_shipped_model_has_golden_files_for_every_quantizer():
    covered = {(entry["model"], entry["quantizer"]) for entry in RECORD["files"]}
    for model in read_manifest()["models"]:
        for kind in make_golden.QUANTIZERS:
            assert (model, kind) in covered, f"no golden file for {model} {kind}"


@pytest.mark.parametrize("entry", RECORD["files"], ids=lambda entry: entry["file"])
def test_golden_file_decodes_on_any_machine(entry):
    data = (GOLDEN / entry["file"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == entry["sha256"]
    assert bitstream.unpack(data).version == bitstream.FORMAT_VERSION
    image = make_golden.decode(data)  # raises if the decoded symbols fail the file's CRC
    assert image.shape == (RECORD["crops"][entry["crop"]]["height"],
                           RECORD["crops"][entry["crop"]]["width"], 3)


@pytest.mark.parametrize("entry", RECORD["files"], ids=lambda entry: entry["file"])
def test_golden_file_decodes_to_the_recorded_image(entry, same_kernels):
    data = (GOLDEN / entry["file"]).read_bytes()
    assert make_golden.image_sha256(make_golden.decode(data)) == entry["decoded_sha256"]


@pytest.mark.parametrize("entry", RECORD["format1"], ids=lambda entry: entry["file"])
def test_format1_file_still_decodes_where_it_was_written(entry, same_kernels):
    data = (GOLDEN / "format1" / entry["file"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == entry["sha256"]
    assert bitstream.unpack(data).version == 1
    assert make_golden.image_sha256(make_golden.decode(data)) == entry["decoded_sha256"]


@pytest.mark.parametrize("entry", RECORD["cross_decodes"], ids=lambda entry: entry["model"])
def test_decoder_variant_decodes_its_base_models_golden_file(entry, same_kernels):
    data = (GOLDEN / entry["file"]).read_bytes()
    decoded = make_golden.decode(data, entry["model"])
    assert make_golden.image_sha256(decoded) == entry["decoded_sha256"]


@pytest.mark.parametrize("entry", RECORD["files"], ids=lambda entry: entry["file"])
def test_golden_crop_reencodes_to_identical_bytes(entry, same_kernels):
    case = {key: entry[key] for key in ("model", "quantizer", "lambda_t", "refine", "crop")}
    data = make_golden.encode(case, _crop(entry["crop"]))
    assert data == (GOLDEN / entry["file"]).read_bytes()


def test_decompress_warns_that_a_format1_file_is_not_portable(tmp_path, capsys, same_kernels):
    from trellic.cli import main

    entry = RECORD["format1"][0]
    assert main(["decompress", str(GOLDEN / "format1" / entry["file"]),
                 str(tmp_path / "out.png")]) == 0
    assert "is a format-1 file" in capsys.readouterr().err
