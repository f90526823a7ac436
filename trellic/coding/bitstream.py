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

import struct
import zlib
from dataclasses import dataclass

import numpy as np

from trellic import container_header
from trellic.container_header import (
    MAGIC,
    MAX_DELTA,
    MAX_FILE_BYTES,
    MAX_LAMBDA_T,
    MAX_SIDE,
    MODEL_ID,
    READABLE_VERSIONS,
    SHA_PREFIX_BYTES,
    Header,
    TruncatedFile,
)
from trellic.errors import TrellicError
from trellic.quant.registry import QUANTIZERS

__all__ = [  # the layout's constants come from the parser, trellic.container_header
    "FORMAT_VERSION", "MAGIC", "MAX_DELTA", "MAX_FILE_BYTES", "MAX_LAMBDA_T", "MAX_SIDE",
    "MODEL_ID", "QUANTIZER_CODES", "READABLE_VERSIONS", "SHA_PREFIX_BYTES", "Container",
    "Header", "TruncatedFile", "pack", "symbols_crc", "unpack",
]

FORMAT_VERSION = 2
QUANTIZER_CODES = {name: spec.code for name, spec in QUANTIZERS.items()}


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


def _check_header(header: Header, problem: str) -> None:
    if header.quantizer not in QUANTIZER_CODES:
        raise TrellicError(f"{problem}: unknown quantizer {header.quantizer!r}")
    container_header.check_fields(header.delta, header.lambda_t, header.height, header.width,
                                  problem)


def pack(header: Header, z_stream: bytes, y_stream: bytes, coded_symbols_crc: int) -> bytes:
    """A version-2 file; coded_symbols_crc is :func:`symbols_crc` of what the streams code."""
    if not MODEL_ID.fullmatch(header.model_id):
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
    parsed = container_header.parse(data)
    h, header = parsed.header, parsed.header.header
    if header.quantizer not in QUANTIZER_CODES:  # a code this build's registry lacks
        raise TrellicError(f"corrupt bitstream: unknown quantizer {header.quantizer!r}")
    return Container(header, parsed.z_stream, parsed.y_stream, h.header_bytes, h.version,
                     parsed.symbols_crc)
