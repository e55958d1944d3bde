"""Fingerprint a design: read once, sha256, decode once with guards, hash one small image.

Decoding a large PNG is the dominant cost (~300 ms for 4500x5400), so everything else is
derived from a single ~512 px reduction: the four perceptual hashes cost ~20 ms from it,
against seconds on the full-size image (imagehash's whash scales to 4096 px by itself).
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import imagecodecs
import imagehash
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from designflow.images.budget import DECODES, decode_peak_bytes
from designflow.images.pngmeta import MetadataBomb, check_png_metadata
from designflow.images.similarity import hamming  # noqa: F401  (one Hamming distance, re-exported)
from designflow.images.verify import make_reduction
from designflow.images.views import view_hashes
from designflow.settings import ImageLimits

# We check pixel counts ourselves, right after the header is parsed and before any pixel is
# decoded, so that the limit is ours (a setting) and a bomb is a rejection with a reason,
# not a process-wide warning that depends on the warnings filter of whichever thread runs.
Image.MAX_IMAGE_PIXELS = None
# designflow runs several fingerprints at once (one per worker thread); OpenCV's own worker
# threads inside each call only add contention on top of that (measured: ~5% slower).
cv2.setNumThreads(1)

ACCEPTED_FORMATS = ("PNG", "JPEG", "WEBP", "GIF")
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".gif"})
FORMAT_EXTENSIONS = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp", "GIF": "gif"}
# One background for every flattened design: phash moves ~40 bits between white and black.
FLATTEN_BACKGROUND = (255, 255, 255)


class RejectedDesign(Exception):
    """The file cannot become a design; `reason` says why in words a seller understands."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


@dataclass(frozen=True)
class Fingerprint:
    path: str
    name: str
    sha256: str
    bytes: int
    format: str
    width: int
    height: int
    # 64-bit hashes stored as signed integers so they fit PostgreSQL's bigint.
    phash: int
    ahash: int
    dhash: int
    whash: int
    # Near-duplicate hashes: phash and dhash of the design trimmed to its content (extra
    # canvas does not count), and of its mirror image (flipped copies are found too).
    nd_phash: int = 0
    nd_dhash: int = 0
    nd_phash_flip: int = 0
    nd_dhash_flip: int = 0
    # The trimmed phash of each view (crops, cut sides, small rotations: views.py), kept
    # with the design so that its copies are found; and the grey reduction the verifier
    # compares candidates with (verify.py). Neither is part of the --json output.
    views: tuple[int, ...] = ()
    reduction: bytes = b""
    # A 96 px JPEG of the design (~3 kB, ~2.5 ms from the reduction): the picture the UI's
    # upload summary shows of a near duplicate, which is not stored anywhere else.
    thumbnail: bytes = b""
    # The share of the image its content fills (1.0 unless a uniform border was trimmed):
    # the better of two versions of a design has more pixels of design, not of canvas.
    content_share: float = 1.0
    # A source read from the NAS is kept on the worker's disk for the run: the local copy
    # the upload sends (`path` keeps the name the seller gave). Empty for local files.
    local_copy: str = ""
    # False for a file whose bytes the seller already had when it was read: only its sha256
    # and size are known (it was not decoded: known bytes first).
    decoded: bool = True

    @property
    def extension(self) -> str:
        return FORMAT_EXTENSIONS[self.format]

    def as_dict(self) -> dict[str, object]:
        out = asdict(self)
        for internal in (
            "local_copy",
            "views",
            "reduction",
            "decoded",
            "content_share",
            "thumbnail",
        ):
            out.pop(internal)
        for key in (
            "phash",
            "ahash",
            "dhash",
            "whash",
            "nd_phash",
            "nd_dhash",
            "nd_phash_flip",
            "nd_dhash_flip",
        ):
            out[key + "_hex"] = f"{out[key] & 0xFFFFFFFFFFFFFFFF:016x}"
        return out


def read_design_bytes(path: str | os.PathLike[str], limits: ImageLimits) -> bytes:
    """Read a file whole, once, refusing what is not a regular, readable, non-empty file."""
    try:
        # O_NONBLOCK: opening a FIFO named like a design must not wait for a writer forever;
        # it has no effect on regular files.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise RejectedDesign(path, "not a regular file")
            if info.st_size > limits.max_file_bytes:
                raise RejectedDesign(
                    path,
                    f"file is {info.st_size:,} bytes, over the size cap of "
                    f"{limits.max_file_bytes:,} bytes",
                )
            # Read one byte past the cap: a file that grew after fstat is still refused.
            data = handle.read(limits.max_file_bytes + 1)
    except IsADirectoryError:
        raise RejectedDesign(path, "is a directory, not a file") from None
    except FileNotFoundError:
        raise RejectedDesign(path, "file not found (deleted or moved before it was read)") from None
    except PermissionError:
        raise RejectedDesign(path, "cannot read the file: permission denied") from None
    except OSError as exc:
        raise RejectedDesign(path, f"cannot read the file: {exc.strerror or exc}") from None
    if len(data) > limits.max_file_bytes:
        raise RejectedDesign(path, f"file is over the size cap of {limits.max_file_bytes:,} bytes")
    if not data:
        raise RejectedDesign(path, "empty file (0 bytes)")
    return data


def fingerprint_design(
    path: str | os.PathLike[str], limits: ImageLimits | None = None
) -> Fingerprint:
    """Fingerprint one file; raises `RejectedDesign` with the reason when it is not a usable design."""
    limits = limits or ImageLimits()
    data = read_design_bytes(path, limits)
    return fingerprint_bytes(data, path, limits)


def known_content(path: str | os.PathLike[str], sha256: str, size: int) -> Fingerprint:
    """A file whose bytes the seller already has: it needs no decode, only its address."""
    return Fingerprint(
        path=str(path), name=Path(path).name, sha256=sha256, bytes=size, format="", width=0,
        height=0, phash=0, ahash=0, dhash=0, whash=0, decoded=False,
    )  # fmt: skip


def fingerprint_bytes(
    data: bytes, path: str | os.PathLike[str], limits: ImageLimits | None = None
) -> Fingerprint:
    limits = limits or ImageLimits()
    sha256 = hashlib.sha256(data).hexdigest()
    try:
        check_png_metadata(data)
    except MetadataBomb as exc:
        raise RejectedDesign(path, str(exc)) from None
    try:
        image = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    except UnidentifiedImageError:
        raise RejectedDesign(
            path, "not a PNG, JPEG, WebP or GIF image (the content is not a recognised image)"
        ) from None
    except Image.DecompressionBombError as exc:
        raise RejectedDesign(path, f"decompression bomb refused: {exc}") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise RejectedDesign(path, f"corrupt image header: {exc}") from None

    with image:
        fmt = image.format or "?"
        width, height = image.size
        _check_dimensions(path, width, height, limits)
        orientation = _exif_orientation(image)
        try:
            if _fast_png(image):
                shape = (height, width, len(image.mode))  # RGB or RGBA: 3 or 4 channels
                with DECODES.reserve(width * height * shape[2], limits.decode_budget_bytes):
                    small = _decode_png_reduced(data, limits.hash_reduction_px, shape)
            else:
                small = _decode_reduced(image, limits.hash_reduction_px, limits.decode_budget_bytes)
        except (OSError, SyntaxError, ValueError, EOFError, imagecodecs.SpngError) as exc:
            raise RejectedDesign(path, f"corrupt or truncated {fmt} data: {exc}") from None
        # EXIF orientations 5-8 swap the axes: record the size the design is seen at.
        if orientation in (5, 6, 7, 8):
            width, height = height, width

    hashes: dict[str, object] = dict(hash_reduced_image(small))
    hashes.update(near_duplicate_hashes(small))
    hashes["reduction"] = make_reduction(small)
    hashes["thumbnail"] = _thumbnail(small)
    return Fingerprint(
        path=str(path),
        name=Path(path).name,
        sha256=sha256,
        bytes=len(data),
        format=fmt,
        width=width,
        height=height,
        **hashes,
    )


def _thumbnail(small: Image.Image, box: int = 96) -> bytes:
    """A small JPEG of the reduction, transparency flattened on white. A box-filter step
    first, then bilinear: 2.5 ms from 512 px where one antialiased resize took 5."""
    factor = max(1, max(small.size) // (2 * box))
    image = small.reduce(factor) if factor > 1 else small
    scale = box / max(image.size)
    if scale < 1:
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.BILINEAR)
    flat = Image.new("RGB", image.size, (255, 255, 255))
    rgba = image.convert("RGBA")
    flat.paste(rgba, mask=rgba.getchannel("A"))
    out = io.BytesIO()
    flat.save(out, "JPEG", quality=75)
    return out.getvalue()


def hash_reduced_image(small: Image.Image) -> dict[str, int]:
    """The four 64-bit hashes of an already reduced, flattened RGB image."""
    return {
        "phash": hash_to_int(imagehash.phash(small)),
        "ahash": hash_to_int(imagehash.average_hash(small)),
        "dhash": hash_to_int(imagehash.dhash(small)),
        "whash": hash_to_int(imagehash.whash(small)),
    }


def near_duplicate_hashes(small: Image.Image) -> dict[str, object]:
    """phash and dhash of the content (uniform border trimmed) and of its mirror image, and
    the phash of the content's views."""
    content = trim_to_content(small)
    mirror = content.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return {
        "content_share": (content.width * content.height) / (small.width * small.height),
        "views": view_hashes(small, hash_to_int, trim_to_content),
        "nd_phash": hash_to_int(imagehash.phash(content)),
        "nd_dhash": hash_to_int(imagehash.dhash(content)),
        "nd_phash_flip": hash_to_int(imagehash.phash(mirror)),
        "nd_dhash_flip": hash_to_int(imagehash.dhash(mirror)),
    }


def trim_to_content(small: Image.Image, tolerance: int = 12) -> Image.Image:
    """Crop a uniform border (the shade all four corners share: white for flattened
    transparency) so that the same design on a larger canvas hashes the same."""
    gray = np.asarray(small.convert("L"))
    height, width = gray.shape
    corners = gray[[0, 0, -1, -1], [0, -1, 0, -1]].astype(np.int16)
    background = int(np.median(corners))
    if np.abs(corners - background).max() > tolerance:
        return small  # no uniform border
    differs = cv2.absdiff(gray, np.full_like(gray, background)) > tolerance
    rows = np.flatnonzero(differs.any(axis=1))
    cols = np.flatnonzero(differs.any(axis=0))
    if rows.size == 0 or cols.size == 0:
        return small  # a blank design: nothing to trim to
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    if (bottom - top) * (right - left) < 0.01 * height * width:
        return small  # a speck on a blank canvas is not a design's content
    return small.crop((int(left), int(top), int(right), int(bottom)))


def hash_to_int(value: imagehash.ImageHash) -> int:
    """An 8x8 ImageHash as a signed 64-bit integer (row-major, first bit most significant)."""
    bits = np.asarray(value.hash, dtype=bool).flatten()
    unsigned = int.from_bytes(np.packbits(bits).tobytes(), "big")
    return unsigned - (1 << 64) if unsigned >= 1 << 63 else unsigned


def _check_dimensions(
    path: str | os.PathLike[str], width: int, height: int, limits: ImageLimits
) -> None:
    if width <= 0 or height <= 0:
        raise RejectedDesign(path, f"image has no pixels ({width}x{height})")
    pixels = width * height
    if pixels > limits.max_pixels:
        raise RejectedDesign(
            path,
            f"decompression bomb refused: {width}x{height} is {pixels:,} pixels, "
            f"over the cap of {limits.max_pixels:,}",
        )
    if max(width, height) > limits.max_dimension:
        raise RejectedDesign(
            path,
            f"image is {width}x{height}, a side is over the cap of {limits.max_dimension:,} px",
        )


def _exif_orientation(image: Image.Image) -> int:
    try:
        if image.format == "PNG":
            # Pillow's getexif() on a PNG decodes the whole image to look for an eXIf chunk
            # after the pixels; only the one before them (in `info`) is read here.
            raw = image.info.get("exif")
            if not raw:
                return 1
            exif = Image.Exif()
            exif.load(raw)
            return int(exif.get(0x0112, 1))
        return int(image.getexif().get(0x0112, 1))
    except Exception:  # a broken EXIF block is not a reason to refuse the pixels
        return 1


def _fast_png(image: Image.Image) -> bool:
    """8-bit RGB or RGBA, not interlaced, not animated, no colour-key transparency, no
    rotation: the shape of nearly every exported design, decoded by the fast path."""
    if image.format != "PNG" or image.mode not in ("RGB", "RGBA"):
        return False
    if (
        image.info.get("interlace")
        or "transparency" in image.info
        or getattr(image, "is_animated", False)
    ):
        return False
    rawmode = image.tile[0][3] if image.tile else None
    if isinstance(rawmode, tuple):
        rawmode = rawmode[0]
    return rawmode in ("RGB", "RGBA") and _exif_orientation(image) == 1


def _decode_png_reduced(data: bytes, target: int, shape: tuple[int, int, int]) -> Image.Image:
    """libspng decodes ~30% faster than Pillow's PNG decoder here, and the reduction is done
    in luminance, which is all the four hashes look at (each converts to "L" first):
    premultiplied grey = grey x alpha, area-averaged by an integer factor together with
    alpha, then composited on white. `shape` is (height, width, channels) from the header
    Pillow has read; libspng refuses data that does not fill exactly that array."""
    pixels = imagecodecs.spng_decode(data, out=_decode_buffer(shape))
    height, width = shape[:2]
    factor = max(1, -(-max(width, height) // target))  # ceil: the result fits in `target`
    # Whole blocks only: at most factor-1 edge rows/columns are left out of the average.
    rows, cols = max(factor, height // factor * factor), max(factor, width // factor * factor)
    small_size = (max(1, cols // factor), max(1, rows // factor))
    if rows > height or cols > width:  # thinner than one block: the whole-image path
        return _reduce_whole(pixels, rows, cols, small_size)
    gray = np.empty((small_size[1], small_size[0]), np.uint8)
    alpha = np.empty_like(gray) if pixels.shape[2] == 4 else None
    # In strips of whole blocks (~1.5 MB of RGBA): each step reads the strip from cache
    # rather than the whole 97 MB image from memory, 40 ms instead of 75 ms a design. An
    # integer-factor INTER_AREA average only looks inside its block, so the result is the
    # same bytes as reducing the whole image at once.
    band = factor * max(1, 96 // factor)
    for top in range(0, rows, band):
        strip = pixels[top : min(top + band, rows), :cols]
        out = slice(top // factor, top // factor + strip.shape[0] // factor)
        size = (small_size[0], strip.shape[0] // factor)
        if alpha is None:
            gray[out] = _area_reduce(cv2.cvtColor(strip, cv2.COLOR_RGB2GRAY), size)
            continue
        strip_alpha = cv2.extractChannel(strip, 3)
        # Premultiply: the hidden colour of a transparent pixel never reaches the result.
        premultiplied = cv2.multiply(
            cv2.cvtColor(strip, cv2.COLOR_RGBA2GRAY), strip_alpha, scale=1 / 255
        )
        gray[out] = _area_reduce(premultiplied, size)
        alpha[out] = _area_reduce(strip_alpha, size)
    if alpha is None:
        return Image.fromarray(gray, "L")
    return Image.fromarray(_on_white(gray, alpha), "L")


def _reduce_whole(
    pixels: np.ndarray, rows: int, cols: int, small_size: tuple[int, int]
) -> Image.Image:
    if pixels.shape[2] == 3:
        gray = cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY)[:rows, :cols]
        return Image.fromarray(_area_reduce(gray, small_size), "L")
    alpha = cv2.extractChannel(pixels, 3)
    premultiplied = cv2.multiply(cv2.cvtColor(pixels, cv2.COLOR_RGBA2GRAY), alpha, scale=1 / 255)
    small_gray = _area_reduce(premultiplied[:rows, :cols], small_size)
    small_alpha = _area_reduce(alpha[:rows, :cols], small_size)
    return Image.fromarray(_on_white(small_gray, small_alpha), "L")


def _on_white(gray: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    return cv2.add(gray, cv2.subtract(np.full_like(alpha, 255), alpha))


# One decode buffer per fingerprinting thread, reused from design to design when the size
# repeats (a shop's designs mostly share one canvas): a fresh 97 MB array costs ~10 ms of
# page faults per design. Larger buffers are not kept, so a thread holds at most this much.
_KEEP_BUFFER_BYTES = 160 * 1024 * 1024
_buffers = threading.local()


def _decode_buffer(shape: tuple[int, int, int]) -> np.ndarray:
    buffer = getattr(_buffers, "pixels", None)
    if buffer is not None and buffer.shape == shape:
        return buffer
    buffer = np.empty(shape, np.uint8)
    _buffers.pixels = buffer if buffer.nbytes <= _KEEP_BUFFER_BYTES else None
    return buffer


def _area_reduce(channel: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if (channel.shape[1], channel.shape[0]) == size:
        return np.ascontiguousarray(channel)
    return cv2.resize(channel, size, interpolation=cv2.INTER_AREA)


def _decode_reduced(image: Image.Image, target: int, budget: int) -> Image.Image:
    """Decode once and return the design as it looks, flattened on white, at most `target` px."""
    if image.format == "JPEG":
        # JPEG can decode at 1/2, 1/4 or 1/8 scale directly: ~10x cheaper than full size.
        image.draft(None, (target, target))
    image.seek(0)  # first frame of an animation
    with DECODES.reserve(decode_peak_bytes(*image.size, image.mode), budget):
        image.load()
        # exif_transpose copies even an upright image (200 MB for 100 Mpx of 16-bit grey).
        upright = _exif_orientation(image) == 1
        frame = image if upright else (ImageOps.exif_transpose(image) or image)
        frame = _to_8bit(frame)
        frame.thumbnail((target, target), Image.Resampling.LANCZOS, reducing_gap=3.0)
    if frame.mode == "RGBA":
        flat = Image.new("RGB", frame.size, FLATTEN_BACKGROUND)
        flat.paste(frame, mask=frame.getchannel("A"))
        return flat
    return frame.convert("RGB")


# Rows converted at a time: full-size 32-bit copies of a 100 Mpx image were 400 MB each.
_GRAY_STRIP_PIXELS = 4 << 20


def _to_gray8(image: Image.Image, convert) -> Image.Image:
    """A single-band image of any depth as 8-bit grey, converted in strips of rows."""
    width, height = image.size
    out = np.empty((height, width), np.uint8)
    step = max(1, _GRAY_STRIP_PIXELS // max(width, 1))
    for top in range(0, height, step):
        strip = image.crop((0, top, width, min(height, top + step)))
        out[top : top + strip.height] = convert(np.asarray(strip))
    return Image.fromarray(out, "L")


def _to_8bit(image: Image.Image) -> Image.Image:
    """Normalise modes: 16-bit to 8-bit by scaling, palette and LA to RGBA, CMYK to RGB."""
    mode = image.mode
    if mode in ("RGB", "RGBA", "L"):
        return image
    if mode.startswith("I;16") or mode == "I":
        # "I" from a 16-bit PNG holds 0..65535; scale rather than clip so it looks the same.
        shift = mode.startswith("I;16") or image.getextrema()[1] > 255
        return _to_gray8(image, lambda v: ((v >> 8) if shift else v).astype(np.uint8))
    if mode == "F":
        return _to_gray8(image, lambda v: np.clip(v, 0, 255).astype(np.uint8))
    if mode in ("P", "PA", "LA", "La", "RGBa", "1"):
        if mode == "P" and "transparency" not in image.info:
            return image.convert("RGB")
        return image.convert("RGBA") if mode != "1" else image.convert("L")
    return image.convert("RGB")  # CMYK, YCbCr, LAB, HSV
