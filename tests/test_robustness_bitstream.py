"""Hostile trellic files: every one decodes to an image or fails with a one-line TrellicError.

bench/fuzz_report.py runs the same mutations 10,000 times; these tests keep a
fast sample of each category in the default run.
"""

import struct
import zlib

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import synthetic_image
from trellic.codec import MAX_PIXELS, Codec, codec_for_file
from trellic.coding import bitstream
from trellic.coding.range_coder import SymbolDecoder, SymbolEncoder
from trellic.entropy.gaussian import build_gaussian_tables, default_scale_table
from trellic.errors import TrellicError
from trellic.quant import make_quantizer
from trellic.quant.registry import quantizer_names

FUZZ = settings(max_examples=40, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module", params=["mbt2018-mean", "ms2020-channel"])
def codecs(request, tiny_weights, tiny_channel_weights):
    """Every quantizer's codec of a tiny model of each architecture."""
    weights = tiny_weights if request.param == "mbt2018-mean" else tiny_channel_weights
    return {kind: Codec(weights[1], make_quantizer(kind)) for kind in quantizer_names()}


@pytest.fixture(scope="module")
def files(codecs):
    return {kind: codec.encode(synthetic_image(40, 70)).data for kind, codec in codecs.items()}


def with_crc(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


def repack(data: bytes, z: bytes | None = None, y: bytes | None = None,
           symbols_crc: int | None = None, **header) -> bytes:
    container = bitstream.unpack(data)
    fields = {**container.header.__dict__, **header}
    fields["weights_sha256"] = container.header.weights_sha256
    return bitstream.pack(bitstream.Header(**fields),
                          container.z_stream if z is None else z,
                          container.y_stream if y is None else y,
                          container.symbols_crc if symbols_crc is None else symbols_crc)


def decodes_or_fails_cleanly(codec: Codec, data: bytes) -> str:
    try:
        header = bitstream.unpack(data).header
        image = codec.decode(data)
    except TrellicError as error:
        assert "\n" not in str(error)
        return "error"
    assert image.dtype == np.uint8 and image.shape == (header.height, header.width, 3)
    return "image"


@given(st.binary(max_size=600))
@settings(max_examples=300, deadline=None)
def test_unpack_of_arbitrary_bytes_returns_a_container_or_raises_trellic_error(data):
    for blob in (data, bitstream.MAGIC + bytes([bitstream.FORMAT_VERSION]) + data,
                 with_crc(bitstream.MAGIC + bytes([bitstream.FORMAT_VERSION]) + data)):
        try:
            bitstream.unpack(blob)
        except TrellicError as error:
            assert "\n" not in str(error)


@pytest.mark.parametrize("kind", ["usq", "tcq8"])
@FUZZ
@given(flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 7)), min_size=1, max_size=6))
def test_bit_flips_with_a_recomputed_crc_decode_or_fail_cleanly(codecs, files, kind, flips):
    data = bytearray(files[kind][:-4])
    for position, bit in flips:
        data[position % len(data)] ^= 1 << bit
    decodes_or_fails_cleanly(codecs[kind], with_crc(bytes(data)))


@pytest.mark.parametrize("kind", quantizer_names())
@FUZZ
@given(y=st.binary(min_size=0, max_size=2048), words=st.booleans())
def test_garbage_y_streams_with_a_valid_crc_decode_or_fail_cleanly(codecs, files, kind, y, words):
    if words:
        y = y[: len(y) // 4 * 4]
    decodes_or_fails_cleanly(codecs[kind], repack(files[kind], y=y))


def test_every_truncation_at_a_section_boundary_fails_cleanly(codecs, files):
    data = files["tcq4"]
    container = bitstream.unpack(data)
    y_start = len(data) - 4 - len(container.y_stream)
    boundaries = {4, 5, 6, 6 + len(container.header.model_id), y_start, len(data) - 4}
    for cut in sorted(b + d for b in boundaries for d in (-1, 0, 1)):
        for blob in (data[:cut], with_crc(data[: cut - 4])):
            assert decodes_or_fails_cleanly(codecs["tcq4"], blob) == "error"
    for cut in range(0, len(container.y_stream), 4):  # a stream cut short inside a valid container
        decodes_or_fails_cleanly(codecs["tcq4"], repack(data, y=container.y_stream[:cut]))


@pytest.mark.parametrize("kind", ["usq", "tcq8"])
def test_a_large_claimed_image_with_tiny_streams_fails_before_the_synthesis(
    codecs, files, kind, monkeypatch
):
    model = codecs[kind].loaded.model

    def no_synthesis(*args):
        raise AssertionError("g_s ran on a file whose streams cannot hold its size")

    monkeypatch.setattr(model.g_s, "forward", no_synthesis)
    for z, y in ((None, None), (b"", b""), (b"\xff" * 8, b"\x00" * 8)):
        data = repack(files[kind], z=z, y=y, height=4096, width=MAX_PIXELS // 4096)
        with pytest.raises(TrellicError, match="too short|invalid range-coded|escape"):
            codecs[kind].decode(data)


def test_sizes_beyond_the_pixel_limit_are_refused_before_decoding(codecs, files):
    data = repack(files["usq"], height=6000, width=8000)
    with pytest.raises(TrellicError, match="exceeds the supported maximum"):
        codecs["usq"].decode(data)


@pytest.mark.parametrize("kind", ["usq", "tcq4"])
def test_absurd_escape_values_are_an_error_not_an_image_of_nans(codecs, files, kind):
    """A well-formed y stream coding indices of 2**20: g_s overflows: never silently."""
    codec = codecs[kind]
    model, quantizer = codec.loaded.model, codec.quantizer
    container = bitstream.unpack(files[kind])
    latent = model.latent_codec
    z = latent.z_coding().decode(container.z_stream, (1, model.config.N, 1, 2))  # 40x70: 64x128
    y = torch.full((1, model.config.M, 4, 8), 2.0**20)
    y[..., ::2] *= -1
    # The codec's own encoder codes them (escapes), with the file's z.
    forged_latents = latent.compress(y, quantizer, side=latent.entropy_bottleneck.dequantize(z))
    y_stream = forged_latents.streams[1]
    forged = repack(files[kind], y=y_stream, symbols_crc=forged_latents.checksum)
    with pytest.raises(TrellicError, match="not finite"):
        codec.decode(forged)
    # The same stream under the encoder's checksum: the integrity check names the desync.
    with pytest.raises(TrellicError, match="integrity check"):
        codec.decode(repack(files[kind], y=y_stream))


@given(seed=st.integers(0, 2**32 - 1), count=st.integers(1, 3000),
       sigma=st.sampled_from([0.05, 1, 40]))
@settings(max_examples=40, deadline=None)
def test_the_information_budget_never_rejects_a_valid_stream(seed, count, sigma):
    tables = build_gaussian_tables(make_quantizer("tcq4"), default_scale_table())
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, tables.num_rows, count)
    values = np.round(rng.normal(0, sigma, count)).astype(np.int64)
    encoder = SymbolEncoder(tables)
    encoder.encode_step(values, rows)
    assert np.array_equal(SymbolDecoder(encoder.finish(), tables).decode_step(rows), values)


def test_an_empty_stream_fails_at_the_first_step():
    tables = build_gaussian_tables(make_quantizer("usq"), default_scale_table())
    with pytest.raises(TrellicError, match="too short"):
        SymbolDecoder(b"", tables).decode_step(np.full(10**6, 20))


def test_a_header_never_names_a_path_to_load(files):
    for model_id in ("file.safetensors", "x/y", "../weights"):
        if "/" in model_id:
            with pytest.raises(TrellicError, match="model id"):
                header = bitstream.Header(model_id, "0" * 16, "usq", 1.0, 0.0, 8, 8)
                bitstream.pack(header, b"", b"", 0)
            continue
        data = repack(files["usq"], model_id=model_id)
        with pytest.raises(TrellicError, match="unknown model|manifest"):
            codec_for_file(data)


def test_version_is_checked_before_the_crc_and_varints_must_be_minimal(files):
    data = bytearray(files["usq"])
    data[4] = 7  # CRC now wrong too: the version is what the user needs to hear
    with pytest.raises(TrellicError, match="version 7"):
        bitstream.unpack(bytes(data))
    body = bytearray(files["usq"][:-4])
    model_id_length = body[5]
    sizes = 6 + model_id_length + bitstream.SHA_PREFIX_BYTES + 9
    body[sizes] |= 0x80  # height 40 as the two bytes 0xA8 0x00
    body.insert(sizes + 1, 0)
    with pytest.raises(TrellicError, match="malformed height"):
        bitstream.unpack(with_crc(bytes(body)))


def test_pack_refuses_what_unpack_would_refuse():
    good = bitstream.Header("m", "0" * 16, "usq", 1.0, 0.0, 8, 8)
    for bad in ({"lambda_t": float("inf")}, {"delta": 0.0}, {"height": 0},
                {"width": bitstream.MAX_SIDE + 1}, {"model_id": "modèle"}, {"model_id": "a" * 65}):
        with pytest.raises(TrellicError):
            bitstream.pack(bitstream.Header(**{**good.__dict__, **bad}), b"", b"", 0)


@pytest.mark.parametrize("kind", ["usq", "tcq4"])
def test_a_stream_that_decodes_to_other_symbols_is_caught_by_the_integrity_check(
    codecs, files, kind
):
    """Streams altered under a valid container CRC: the decoder either refuses them in one
    line or returns the very image of the original file, never another image."""
    codec = codecs[kind]
    original = codec.decode(files[kind])
    container = bitstream.unpack(files[kind])
    rng = np.random.default_rng(7)
    caught = 0
    for _ in range(40):
        y = bytearray(container.y_stream)
        position = int(rng.integers(len(y)))
        y[position] ^= int(rng.integers(1, 256))
        try:
            image = codec.decode(repack(files[kind], y=bytes(y)))
        except TrellicError as error:
            caught += "integrity check" in str(error)
            continue
        assert np.array_equal(image, original)
    assert caught > 0
