"""Golden files: every shipped model codes and decodes small real crops as recorded.

tests/golden/ holds .trl files written by scripts/make_golden.py, golden.json (how
each was made, its sha256, the sha256 of its decoded image and of the decoder's
latents y_hat) and ``decoded/``, each file's reference decode (a PNG crop).
Decoding needs only these; re-encoding needs the Kodak crops (skipped without
``$TRELLIC_DATA``). A failure here means the codec's bytes or pixels changed: a
bug, unless the change is meant to alter the format or the models (then
regenerate with ``ONEDNN_MAX_CPU_ISA=AVX2 python scripts/make_golden.py --force``
and say why).

What holds on every machine: every file decodes to the recorded indices, bit for
bit (the scales that pick every table row and trellis state are computed in
integers; the file's symbols CRC checks the decoded indices), and to pixels
within one level of the reference decode. The means that y_hat adds to the
levels come from the float h_s and g_s is float, so y_hat and the pixels are
exact where the float kernels round like the writer's (``kernels`` in
golden.json): there y_hat's and the image's sha256 are checked, and re-encoding
the crops gives the same bytes; elsewhere those checks are skipped, naming the
reason.
"""

import hashlib
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from trellic.coding import bitstream
from trellic.determinism import kernel_fingerprint
from trellic.io import read_image
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
        pytest.skip("golden: exact pixels/bytes need the recorder's float kernels (AVX2 oneDNN)")


def _crop(name: str):
    crop = RECORD["crops"][name]
    path = data_root() / crop["image"]
    if not path.is_file():
        pytest.skip(f"{crop['image']} not found under {data_root()} (set TRELLIC_DATA)")
    pixels = make_golden.read_crop(crop, data_root())
    if make_golden.image_sha256(pixels) != crop["sha256"]:
        pytest.skip(f"{crop['image']} under {data_root()} is not the recorded image")
    return pixels


def _assert_within_one_level(decoded: np.ndarray, reference_name: str) -> None:
    reference = read_image(GOLDEN / "decoded" / reference_name)
    assert decoded.shape == reference.shape
    difference = np.abs(decoded.astype(np.int16) - reference.astype(np.int16))
    assert difference.max() <= 1, f"{reference_name}: pixels {difference.max()} levels away"


def test_every_shipped_model_has_golden_files_for_every_quantizer():
    covered = {(entry["model"], entry["quantizer"]) for entry in RECORD["files"]}
    for model in read_manifest()["models"]:
        for kind in make_golden.QUANTIZERS:
            assert (model, kind) in covered, f"no golden file for {model} {kind}"


@pytest.mark.parametrize("entry", RECORD["files"], ids=lambda entry: entry["file"])
def test_golden_file_decodes_on_any_machine_to_its_indices_and_within_a_level(entry):
    data = (GOLDEN / entry["file"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == entry["sha256"]
    assert bitstream.unpack(data).version == bitstream.FORMAT_VERSION
    decoded = make_golden.decode(data)  # raises unless the decoded indices match the CRC
    _assert_within_one_level(decoded, make_golden.reference_name(entry["file"]))


@pytest.mark.parametrize("entry", RECORD["files"], ids=lambda entry: entry["file"])
def test_golden_file_decodes_to_the_recorded_latents_and_image(entry, same_kernels):
    data = (GOLDEN / entry["file"]).read_bytes()
    assert make_golden.latents_sha256(data) == entry["y_hat_sha256"]
    assert make_golden.image_sha256(make_golden.decode(data)) == entry["decoded_sha256"]


@pytest.mark.parametrize("entry", RECORD["legacy_identity"], ids=lambda entry: entry["file"])
def test_a_file_naming_the_weights_file_sha256_still_decodes(entry):
    """Files written before the content identity name the weights file's sha256."""
    data = (GOLDEN / "legacy" / entry["file"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == entry["sha256"]
    decoded = make_golden.decode(data)
    _assert_within_one_level(decoded, make_golden.reference_name(entry["file"]))
    if kernel_fingerprint() == RECORD["kernels"]:
        assert make_golden.latents_sha256(data) == entry["y_hat_sha256"]
        assert make_golden.image_sha256(decoded) == entry["decoded_sha256"]


@pytest.mark.parametrize("entry", RECORD["format1"], ids=lambda entry: entry["file"])
def test_format1_file_still_decodes_where_it_was_written(entry, same_kernels):
    data = (GOLDEN / "format1" / entry["file"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == entry["sha256"]
    assert bitstream.unpack(data).version == 1
    assert make_golden.image_sha256(make_golden.decode(data)) == entry["decoded_sha256"]


@pytest.mark.parametrize("entry", RECORD["cross_decodes"], ids=lambda entry: entry["model"])
def test_decoder_variant_decodes_its_base_models_golden_file(entry):
    data = (GOLDEN / entry["file"]).read_bytes()
    decoded = make_golden.decode(data, entry["model"])
    _assert_within_one_level(decoded, make_golden.reference_name(entry["file"], entry["model"]))
    if kernel_fingerprint() == RECORD["kernels"]:
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
