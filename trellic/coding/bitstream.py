"""The trellic container: one file = one image.

Layout (all integers little-endian; ``varint`` = unsigned LEB128, at most 5 bytes)::

    offset  field
    0       magic            4 bytes  b"TRLC"
    4       version          u8       FORMAT_VERSION
    5       model id length  u8       1..64
    6       model id         ASCII    [A-Za-z0-9._:+-]: zoo name, or "file:<sha256 prefix>"
    ..      weights sha256   8 bytes  prefix of the weights' identity (trellic.zoo.weights_sha256;
                                      files written before it: of the weights file's sha256)
    ..      quantizer        u8       its code in trellic.quant.registry
    ..      delta            f32      quantizer step (reconstruction scale)
    ..      lambda_t         f32      the trellis's rate weight (informative only)
    ..      height, width    varint   image size in pixels, 1..MAX_SIDE (minimal varints)
    ..      z length         varint   bytes of the z stream
    ..      z stream         bytes    range-coded hyper-latents (whole 32-bit words)
    ..      y length         varint   bytes of the y stream
    ..      y stream         bytes    range-coded latent indices (whole 32-bit words)
    ..      symbols crc32    u32      version 2 only: CRC-32 of the coded symbols (below)
    end-4   crc32            u32      CRC-32 of every byte before it

Version 2 (written since 0.2) makes files portable. The decoder derives every
pmf row from integer arithmetic (``trellic.latent.integer_net``: the scales of
h_s in fixed point, exact on any CPU, thread count, with or without oneDNN, or
on a GPU), so a file written on one machine decodes on every other, to the same
indices; the float means and g_s may then differ by a rounding in the last bit,
at most a pixel level. The *symbols CRC* is CRC-32 of the z symbols, then the y indices,
as little-endian int32 in tensor order (N, h, w) and (M, H/16, W/16): the
decoder recomputes it from what its entropy decoder produced, so a desynchronised
decoder (from any cause) is an error, never a garbage image.

Version 1 files (float h_s, no symbols CRC) still decode through the float path;
that is exact only on a machine whose convolution kernels round like the
encoder's (same CPU kind and library build): elsewhere a row may differ, which
shows as a corrupt-stream error or, undetected, as a wrong image.

Coding order inside the streams (see trellic.coding.range_coder): z is one
step, values grouped by channel. y for USQ is one step grouped by (scale
level); for TCQ the latents (1, M, H/16, W/16) split into M * H/16 independent
sequences, one per latent row (channel-major, then row), each scanned left to
right from trellis state 0; step t codes position t of every sequence, grouped
by table row = quantizer id of the sequence's current state * L + scale level.

Every field is validated before use: no allocation is sized by an unchecked
header value, and any inconsistency is a :class:`TrellicError`. The version is
checked before the CRC, so a newer file is named as such. ``pack`` refuses what
``unpack`` would refuse: an encoder never writes a file it cannot read back.
The model id's alphabet keeps error messages free of control characters and
ids free of path separators (a file never names a path to load).
"""

from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass

import numpy as np

from trellic.errors import TrellicError
from trellic.quant.registry import QUANTIZERS

MAGIC = b"TRLC"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
MAX_SIDE = 1 << 16
QUANTIZER_CODES = {name: spec.code for name, spec in QUANTIZERS.items()}
SHA_PREFIX_BYTES = 8
MAX_DELTA = 1e3
MAX_LAMBDA_T = 1e6
MAX_FILE_BYTES = 1 << 28  # 256 MiB, ~80 bpp at the codec's 25 Mpx limit
_MODEL_ID = re.compile(r"[A-Za-z0-9._:+-]{1,64}")


class TruncatedFile(TrellicError):
    """The data ends before the end its header declares (a cut download or copy)."""


@dataclass(frozen=True)
class Header:
    model_id: str
    weights_sha256: str  # hex prefix (16 hex digits)
    quantizer: str
    delta: float
    lambda_t: float
    height: int
    width: int


@dataclass(frozen=True)
class Container:
    header: Header
    z_stream: bytes
    y_stream: bytes
    header_bytes: int  # everything but the two streams: magic .. lengths + CRCs
    version: int = FORMAT_VERSION
    symbols_crc: int | None = None  # version 2: CRC-32 of the coded symbols


def symbols_crc(*symbols) -> int:
    """CRC-32 of integer arrays (z symbols, then y indices) as little-endian int32 bytes."""
    crc = 0
    for array in symbols:
        crc = zlib.crc32(np.ascontiguousarray(array, dtype="<i4").tobytes(), crc)
    return crc


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


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
                    break  # a non-minimal encoding: one file, one byte string
                return value
        raise TrellicError(f"corrupt bitstream: malformed {what}")


def _check_header(header: Header, problem: str) -> None:
    if header.quantizer not in QUANTIZER_CODES:
        raise TrellicError(f"{problem}: unknown quantizer {header.quantizer!r}")
    if not (0.0 < header.delta < MAX_DELTA) or not (0.0 <= header.lambda_t < MAX_LAMBDA_T):
        raise TrellicError(f"{problem}: quantizer parameters out of range")
    if not (1 <= header.height <= MAX_SIDE and 1 <= header.width <= MAX_SIDE):
        raise TrellicError(f"{problem}: image size {header.width}x{header.height} out of range")


def pack(header: Header, z_stream: bytes, y_stream: bytes, coded_symbols_crc: int) -> bytes:
    """A version-2 file; coded_symbols_crc is :func:`symbols_crc` of what the streams code."""
    if not _MODEL_ID.fullmatch(header.model_id):
        raise TrellicError(f"model id must be 1..64 of [A-Za-z0-9._:+-]: {header.model_id!r}")
    _check_header(header, "cannot write header")
    model_id = header.model_id.encode("ascii")
    out = bytearray(MAGIC)
    out += struct.pack("<BB", FORMAT_VERSION, len(model_id)) + model_id
    out += bytes.fromhex(header.weights_sha256[: 2 * SHA_PREFIX_BYTES])
    out += struct.pack("<Bff", QUANTIZER_CODES[header.quantizer], header.delta, header.lambda_t)
    out += _varint(header.height) + _varint(header.width)
    out += _varint(len(z_stream)) + z_stream + _varint(len(y_stream)) + y_stream
    out += struct.pack("<I", coded_symbols_crc)
    out += struct.pack("<I", zlib.crc32(out))
    if len(out) > MAX_FILE_BYTES:
        raise TrellicError(f"cannot write a file of more than {MAX_FILE_BYTES} bytes")
    return bytes(out)


def _declared_size(data: bytes, version: int) -> int | None:
    """The file size the header declares (its fields and stream lengths), None when the data
    ends inside the header; a malformed field is left to :func:`unpack` (the size of data)."""
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


def unpack(data: bytes, name: str | None = None) -> Container:
    """Parse and validate a container; raises TrellicError on any defect, naming ``name``
    (the file) at the end of the message when given; :class:`TruncatedFile` when the data
    ends before the end its header declares."""
    if name is None:
        return _unpack(data)
    try:
        return _unpack(data)
    except TrellicError as error:
        raise type(error)(f"{error}: {name}") from None


def _unpack(data: bytes) -> Container:
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
    if not _MODEL_ID.fullmatch(model_id):
        raise TrellicError("corrupt bitstream: malformed model id")
    sha = reader.take(SHA_PREFIX_BYTES, "weights hash").hex()
    code, delta, lambda_t = struct.unpack("<Bff", reader.take(9, "quantizer"))
    names = {v: k for k, v in QUANTIZER_CODES.items()}
    if code not in names:
        raise TrellicError(f"corrupt bitstream: unknown quantizer code {code}")
    height, width = reader.varint("height"), reader.varint("width")
    header = Header(model_id, sha, names[code], delta, lambda_t, height, width)
    _check_header(header, "corrupt bitstream")
    z_stream = reader.take(reader.varint("z length"), "z stream")
    y_stream = reader.take(reader.varint("y length"), "y stream")
    coded_crc = None
    if version >= 2:
        (coded_crc,) = struct.unpack("<I", reader.take(4, "symbols crc"))
    if reader.pos != len(reader.data):
        raise TrellicError("corrupt bitstream: trailing bytes")
    header_bytes = len(data) - len(z_stream) - len(y_stream)
    return Container(header, z_stream, y_stream, header_bytes, version, coded_crc)
