"""Compressed PNG metadata, checked before any decoder sees it.

Photoshop and Illustrator write megabytes of XMP into a compressed iTXt chunk; Pillow's own
cap (1 MB inflated) refused such designs as "corrupt". The other way round, a zTXt or iCCP
chunk can inflate a few hundred KB into gigabytes, which Pillow's iCCP reader inflates with
no cap at all. So every compressed chunk is inflated here, counted and discarded, against
caps of our own: over them the file is refused as a metadata decompression bomb; under
them Pillow is allowed to read what we allowed.
"""

from __future__ import annotations

import struct
import zlib

from PIL import PngImagePlugin

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Measured on real Adobe exports: XMP with embedded thumbnails and history inflates to a few
# MB, rarely tens; 64 MiB per chunk and 128 MiB in all leave room and bound the work.
CHUNK_INFLATED_MAX = 64 << 20
TOTAL_INFLATED_MAX = 128 << 20
COMPRESSED_CHUNKS = (b"zTXt", b"iTXt", b"iCCP")

PngImagePlugin.MAX_TEXT_CHUNK = CHUNK_INFLATED_MAX
PngImagePlugin.MAX_TEXT_MEMORY = TOTAL_INFLATED_MAX


class MetadataBomb(ValueError):
    """A compressed metadata chunk inflates past our caps."""


def check_png_metadata(data: bytes) -> None:
    """Raise MetadataBomb when a compressed metadata chunk of this PNG inflates past the
    caps. Anything malformed is left for the decoder to report."""
    if not data.startswith(PNG_SIGNATURE):
        return
    total = 0
    offset = len(PNG_SIGNATURE)
    while offset + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, offset)
        start, offset = offset + 8, offset + 12 + length
        if kind in (b"IDAT", b"IEND") or offset > len(data):
            return  # metadata after the pixels is not read by the decoders we use
        if kind not in COMPRESSED_CHUNKS:
            continue
        compressed = _compressed_part(kind, data[start : start + length])
        if compressed is None:
            continue
        inflated = _inflated_size(compressed, CHUNK_INFLATED_MAX + 1)
        label = kind.decode()
        if inflated > CHUNK_INFLATED_MAX:
            raise MetadataBomb(
                f"metadata decompression bomb: a {label} chunk inflates past "
                f"{CHUNK_INFLATED_MAX >> 20} MiB"
            )
        total += inflated
        if total > TOTAL_INFLATED_MAX:
            raise MetadataBomb(
                f"metadata decompression bomb: compressed metadata inflates past "
                f"{TOTAL_INFLATED_MAX >> 20} MiB in all"
            )


def _compressed_part(kind: bytes, payload: bytes) -> bytes | None:
    keyword_end = payload.find(b"\x00")
    if keyword_end < 0:
        return None
    if kind == b"iTXt":  # keyword NUL flag method language NUL translated NUL text
        if len(payload) < keyword_end + 3 or payload[keyword_end + 1] != 1:
            return None  # not compressed
        rest = payload[keyword_end + 3 :]
        language_end = rest.find(b"\x00")
        translated_end = rest.find(b"\x00", language_end + 1) if language_end >= 0 else -1
        return rest[translated_end + 1 :] if translated_end >= 0 else None
    return payload[keyword_end + 2 :]  # zTXt and iCCP: keyword NUL method data


def _inflated_size(compressed: bytes, limit: int) -> int:
    """Bytes the stream inflates to, counted in 1 MiB steps and stopped past `limit`."""
    inflater = zlib.decompressobj()
    size = 0
    pending = compressed
    try:
        while pending and size < limit:
            size += len(inflater.decompress(pending, 1 << 20))
            pending = inflater.unconsumed_tail
    except zlib.error:
        return size  # corrupt: the decoder reports it
    return size
