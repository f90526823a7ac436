"""The trellic container parsed and checked with the standard library alone.

``trellic.coding.bitstream`` documents the layout and writes files; it imports
the quantizer registry, hence torch (seconds). Reading needs neither, so the one
parser lives here: ``bitstream.unpack`` (the decoder) and ``trellic info`` (which
must start without torch) both call :func:`parse`: magic, a truncated file,
size, version, CRC, fields, stream lengths, no trailing bytes, in that order.
The quantizer codes repeat the registry's (``trellic.quant.registry``: codes are
never reused); tests/test_cli_batch.py checks that they agree.
"""

from __future__ import annotations

import re
import struct
import zlib
from dataclasses import asdict, dataclass, fields

from trellic.errors import TrellicError

MAGIC = b"TRLC"
READABLE_VERSIONS = (1, 2)
MAX_SIDE = 1 << 16
SHA_PREFIX_BYTES = 8
MAX_DELTA = 1e3
MAX_LAMBDA_T = 1e6
MAX_FILE_BYTES = 1 << 28
# Quantizer name -> its byte in the header (trellic.quant.registry's ``code``; never reused).
QUANTIZER_CODES = {"usq": 0, "tcq4": 1, "tcq8": 2, "rdoq": 3}
QUANTIZER_NAMES = tuple(QUANTIZER_CODES)  # registry order: the --quantizer choices
MODEL_ID = re.compile(r"[A-Za-z0-9._:+-]{1,64}")


class TruncatedFile(TrellicError):
    """The data ends before the end its header declares (a cut download or copy)."""


@dataclass(frozen=True)
class Header:
    """What a file's header says about how to decode it (written by ``bitstream.pack``)."""

    model_id: str
    weights_sha256: str  # hex prefix (16 hex digits)
    quantizer: str
    delta: float
    lambda_t: float
    height: int
    width: int


@dataclass(frozen=True)
class HeaderInfo(Header):
    """A checked container's header and sizes (all a file tells without decoding)."""

    version: int = 0
    z_bytes: int = 0
    y_bytes: int = 0
    header_bytes: int = 0  # everything but the two streams
    file_bytes: int = 0

    @property
    def bpp(self) -> float:
        return 8 * self.file_bytes / (self.width * self.height)

    @property
    def header(self) -> Header:
        """The fields ``bitstream.pack`` writes."""
        return Header(**{f.name: getattr(self, f.name) for f in fields(Header)})

    def to_dict(self) -> dict:
        return {**asdict(self), "bpp": self.bpp}


class _Reader:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise TrellicError(f"corrupt bitstream: truncated {what}")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def varint(self, what: str) -> int:
        value = 0
        for shift in range(0, 35, 7):
            byte = self.take(1, what)[0]
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                if byte == 0 and shift:
                    break  # non-minimal
                return value
        raise TrellicError(f"corrupt bitstream: malformed {what}")


def _declared_size(data: bytes, version: int) -> int | None:
    """The file size the header declares, None when the data ends inside the header; a
    malformed field is left to the full parse (the size of data)."""
    reader = _Reader(data)
    try:
        reader.take(5, "magic")
        reader.take(reader.take(1, "header")[0] + SHA_PREFIX_BYTES + 9, "header")
        reader.varint("height"), reader.varint("width")
        for stream in ("z", "y"):
            length = reader.varint(f"{stream} length")
            reader.pos += length
    except TrellicError as error:
        return None if "truncated" in str(error) else len(data)
    return reader.pos + (4 if version >= 2 else 0) + 4


@dataclass(frozen=True)
class Parsed:
    """A checked container: its header and sizes, the two streams, the symbols CRC."""

    header: HeaderInfo
    z_stream: bytes
    y_stream: bytes
    symbols_crc: int | None  # version 2: CRC-32 of the coded symbols


def read_header(data: bytes, name: str | None = None) -> HeaderInfo:
    """The header of a whole container checked by :func:`parse`."""
    return parse(data, name).header


def parse(data: bytes, name: str | None = None) -> Parsed:
    """Parse and check a whole container; raises TrellicError (:class:`TruncatedFile` when
    the data ends before the end its header declares), naming ``name`` (the file) at the
    end of the message when given."""
    if name is None:
        return _parse(data)
    try:
        return _parse(data)
    except TrellicError as error:
        raise type(error)(f"{error}: {name}") from None


def _parse(data: bytes) -> Parsed:
    if not data:
        raise TrellicError("not a trellic file (empty)")
    if data[: len(MAGIC)] != MAGIC[: len(data)]:
        raise TrellicError("not a trellic file (bad magic)")
    if len(data) < len(MAGIC) + 5:
        raise TruncatedFile(f"truncated file ({len(data)} bytes)")
    if len(data) > MAX_FILE_BYTES:
        raise TrellicError(f"not a trellic file (more than {MAX_FILE_BYTES} bytes)")
    version = data[4]
    if version not in READABLE_VERSIONS:
        readable = ", ".join(str(v) for v in READABLE_VERSIONS)
        raise TrellicError(f"unsupported format version {version} (this trellic reads {readable})")
    declared = _declared_size(data, version)
    if declared is None or declared > len(data):
        of = "" if declared is None else f" of the {declared} its header declares"
        raise TruncatedFile(f"truncated file ({len(data)} bytes{of})")
    (crc,) = struct.unpack("<I", data[-4:])
    if zlib.crc32(data[:-4]) != crc:
        raise TrellicError("corrupt bitstream: CRC mismatch")
    reader = _Reader(data[:-4])
    reader.take(5, "magic")
    model_id = reader.take(reader.take(1, "header")[0], "model id").decode("latin-1")
    if not MODEL_ID.fullmatch(model_id):
        raise TrellicError("corrupt bitstream: malformed model id")
    sha = reader.take(SHA_PREFIX_BYTES, "weights hash").hex()
    code, delta, lambda_t = struct.unpack("<Bff", reader.take(9, "quantizer"))
    names = {v: k for k, v in QUANTIZER_CODES.items()}
    if code not in names:
        raise TrellicError(f"corrupt bitstream: unknown quantizer code {code}")
    height, width = reader.varint("height"), reader.varint("width")
    check_fields(delta, lambda_t, height, width, "corrupt bitstream")
    z_stream = reader.take(reader.varint("z length"), "z stream")
    y_stream = reader.take(reader.varint("y length"), "y stream")
    coded_crc = None
    if version >= 2:
        (coded_crc,) = struct.unpack("<I", reader.take(4, "symbols crc"))
    if reader.pos != len(reader.data):
        raise TrellicError("corrupt bitstream: trailing bytes")
    header = HeaderInfo(model_id, sha, names[code], delta, lambda_t, height, width,
                        version=version, z_bytes=len(z_stream), y_bytes=len(y_stream),
                        header_bytes=len(data) - len(z_stream) - len(y_stream),
                        file_bytes=len(data))
    return Parsed(header, z_stream, y_stream, coded_crc)


def check_fields(delta: float, lambda_t: float, height: int, width: int, problem: str) -> None:
    """The bounds every header field must keep (read and written alike)."""
    if not (0.0 < delta < MAX_DELTA) or not (0.0 <= lambda_t < MAX_LAMBDA_T):
        raise TrellicError(f"{problem}: quantizer parameters out of range")
    if not (1 <= height <= MAX_SIDE and 1 <= width <= MAX_SIDE):
        raise TrellicError(f"{problem}: image size {width}x{height} out of range")
