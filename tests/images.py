"""Test inputs made on the fly: good designs in awkward encodings and broken or hostile files."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from designflow.testing.samples import jpeg_bytes, make_artwork, png_bytes


def design(seed: int, size: tuple[int, int] = (600, 720)) -> Image.Image:
    return make_artwork(seed, size)


def write_png(path: Path, seed: int, size: tuple[int, int] = (600, 720)) -> Path:
    path.write_bytes(png_bytes(design(seed, size)))
    return path


def write_jpeg(path: Path, seed: int, size: tuple[int, int] = (600, 720)) -> Path:
    path.write_bytes(jpeg_bytes(design(seed, size)))
    return path


def flatten(image: Image.Image) -> Image.Image:
    flat = Image.new("RGB", image.size, (255, 255, 255))
    flat.paste(image, mask=image.getchannel("A"))
    return flat


def palette_png_with_transparency(path: Path, seed: int) -> Image.Image:
    """A P-mode PNG with a tRNS chunk; returns the RGBA image it should look like."""
    rgba = design(seed)
    alpha = np.asarray(rgba.getchannel("A"))
    # Hard alpha so the palette's single transparent entry represents it exactly.
    hard = rgba.copy()
    hard.putalpha(Image.fromarray(np.where(alpha > 127, 255, 0).astype(np.uint8)))
    pal = hard.convert("RGB").quantize(colors=255)
    pixels = np.asarray(pal).copy()
    pixels[np.asarray(hard.getchannel("A")) == 0] = 255
    pal_img = Image.fromarray(pixels.astype(np.uint8), "P")
    palette = pal.getpalette()[: 255 * 3] + [0, 0, 0]
    pal_img.putpalette(palette)
    pal_img.save(path, format="PNG", transparency=255)
    return hard


def png_16bit_gray(path: Path, seed: int) -> Image.Image:
    """A 16-bit grayscale PNG; returns the 8-bit grayscale image it should look like."""
    gray8 = np.asarray(flatten(design(seed)).convert("L")).astype(np.uint16)
    Image.fromarray((gray8 * 257).astype("<u2")).save(path, format="PNG")
    return Image.fromarray(gray8.astype(np.uint8), "L")


def cmyk_jpeg(path: Path, seed: int) -> Image.Image:
    rgb = flatten(design(seed))
    rgb.convert("CMYK").save(path, format="JPEG", quality=92)
    return rgb


def exif_rotated_jpeg(path: Path, seed: int) -> Image.Image:
    """Pixels stored sideways with EXIF orientation 6: it looks like the returned image."""
    upright = flatten(design(seed))
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(path, format="JPEG", quality=92, exif=exif.tobytes())
    return upright


def truncated_png(path: Path, seed: int) -> None:
    data = png_bytes(design(seed))
    path.write_bytes(data[: len(data) // 2])


def truncated_jpeg(path: Path, seed: int) -> None:
    data = jpeg_bytes(design(seed))
    path.write_bytes(data[: len(data) // 2])


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))
        + kind
        + payload
        + struct.pack(">I", zlib.crc32(kind + payload))
    )


def header_bomb_png(path: Path, width: int = 100_000, height: int = 100_000) -> None:
    """A tiny PNG whose header claims `width`x`height` pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
    )


def real_bomb_png(path: Path, side: int = 12_000) -> None:
    """A small, valid PNG (a few hundred KB) that decodes to `side`x`side` gray pixels."""
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    comp = zlib.compressobj(9)
    row = b"\x00" * (side + 1)
    parts = [comp.compress(row) for _ in range(side)]
    parts.append(comp.flush())
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", b"".join(parts))
        + _chunk(b"IEND", b"")
    )


def noisy_png(path: Path, seed: int, size: tuple[int, int]) -> None:
    """Incompressible content: a file whose size is about 3 bytes per pixel."""
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), "RGB").save(
        path, format="PNG", compress_level=1
    )


def animated_gif(path: Path, seed: int) -> Image.Image:
    frames = [flatten(design(seed + i, (300, 300))).convert("P") for i in range(3)]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    return frames[0].convert("RGB")


def image_bytes(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def png_with_metadata(
    path: Path, seed: int, kind: bytes, keyword: bytes, inflated: int, compressible: bool = False
) -> Path:
    """A valid design PNG with one compressed metadata chunk (zTXt, iTXt or iCCP) placed
    before the pixels, whose payload inflates to `inflated` bytes: XMP as Photoshop writes
    it (`compressible=False`: text that compresses about 4:1), or a bomb (zeros)."""
    png = image_bytes(design(seed, (400, 480)))
    comp = zlib.compressobj(9)
    if compressible:
        block = b"\x00" * (1 << 20)
        parts = [comp.compress(block) for _ in range(inflated >> 20)]
    else:
        rng = np.random.default_rng(seed)
        text = rng.integers(0x41, 0x51, inflated, dtype=np.uint8).tobytes()  # 16 letters
        parts = [comp.compress(text)]
    parts.append(comp.flush())
    data = b"".join(parts)
    if kind == b"iTXt":
        payload = keyword + b"\x00\x01\x00" + b"\x00" + b"\x00" + data
    else:  # zTXt and iCCP: keyword, NUL, method 0, compressed data
        payload = keyword + b"\x00\x00" + data
    ihdr_end = 8 + 12 + 13  # signature + IHDR chunk
    path.write_bytes(png[:ihdr_end] + _chunk(kind, payload) + png[ihdr_end:])
    return path


def large_gray16_png(path: Path, side: int = 10_000) -> Path:
    """A 16-bit grey PNG of side x side pixels (100 Mpx at the default: the pixel cap) that
    compresses to under a MB: a smooth ramp with one flat quarter."""
    y = np.arange(side, dtype=np.uint32)[:, None]
    x = np.arange(side, dtype=np.uint32)[None, :]
    values = ((x * 7 + y * 3) % 65536).astype("<u2")
    values[: side // 2, : side // 2] = 60000
    Image.fromarray(values).save(path, format="PNG", compress_level=6)
    return path
