import pytest
import torch

from trellic.coding.bitstream import Header, pack, unpack
from trellic.errors import TrellicError

HEADER = Header("default", "0123456789abcdef" * 4, "tcq8", 0.6, 0.108, 513, 769)


def test_pack_unpack_round_trip():
    data = pack(HEADER, b"z" * 8, b"y" * 12, 0xDEADBEEF)
    container = unpack(data)
    assert container.header.model_id == "default"
    assert container.header.weights_sha256 == "0123456789abcdef"
    assert (container.header.height, container.header.width) == (513, 769)
    assert container.header.quantizer == "tcq8"
    assert container.z_stream == b"z" * 8 and container.y_stream == b"y" * 12
    assert container.version == 2 and container.symbols_crc == 0xDEADBEEF
    assert container.header_bytes == len(data) - 20


def test_symbols_crc_covers_values_and_order():
    from trellic.coding.bitstream import symbols_crc

    assert symbols_crc([1, 2], [3]) == symbols_crc([1, 2, 3])
    assert symbols_crc([1, 2, 3]) != symbols_crc([1, 3, 2])
    assert symbols_crc(torch.tensor([[5, -7]], dtype=torch.int64)) == symbols_crc([5, -7])


def test_every_truncation_is_rejected():
    data = pack(HEADER, b"z" * 8, b"y" * 12, 0xDEADBEEF)
    for size in range(len(data)):
        with pytest.raises(TrellicError):
            unpack(data[:size])


def test_every_single_bit_flip_is_rejected():
    data = bytearray(pack(HEADER, b"z" * 8, b"y" * 12, 0xDEADBEEF))
    for position in range(len(data)):
        for bit in range(8):
            data[position] ^= 1 << bit
            with pytest.raises(TrellicError):
                unpack(bytes(data))
            data[position] ^= 1 << bit


def test_unknown_version_is_named_in_the_error():
    import zlib

    data = bytearray(pack(HEADER, b"", b"", 0))
    data[4] = 9
    body = bytes(data[:-4])
    data = body + zlib.crc32(body).to_bytes(4, "little")
    with pytest.raises(TrellicError, match="version 9"):
        unpack(data)


def test_a_truncated_file_says_so_at_every_cut():
    from trellic.coding.bitstream import TruncatedFile

    data = pack(HEADER, b"z" * 8, b"y" * 12, 0xDEADBEEF)
    for size in range(1, len(data)):
        with pytest.raises(TruncatedFile, match=r"^truncated file \(\d+ bytes"):
            unpack(data[:size])
    with pytest.raises(TruncatedFile, match=rf"^truncated file \({len(data) - 1} bytes of the "
                                            rf"{len(data)} its header declares\)$"):
        unpack(data[:-1])
    with pytest.raises(TrellicError, match=r"^not a trellic file \(empty\)$"):
        unpack(b"")


def test_errors_name_the_file_when_given():
    from trellic.coding.bitstream import TruncatedFile

    data = pack(HEADER, b"z" * 8, b"y" * 12, 0xDEADBEEF)
    with pytest.raises(TruncatedFile, match=r"^truncated file \(.*\): cut\.trl$"):
        unpack(data[:30], name="cut.trl")
    with pytest.raises(TrellicError, match=r"^not a trellic file \(bad magic\): x\.png$"):
        unpack(b"\x89PNG\r\n\x1a\n" + bytes(40), name="x.png")
    flipped = bytearray(data)
    flipped[-10] ^= 1
    with pytest.raises(TrellicError, match=r"^corrupt bitstream: CRC mismatch: a\.trl$"):
        unpack(bytes(flipped), name="a.trl")
    assert unpack(data, name="a.trl") == unpack(data)
