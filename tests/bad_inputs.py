"""The bad-input corpus (36 kinds), generated: each kind of awkward or hostile file with the outcome
designflow must give it (stored as it looks, or rejected with a precise reason)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from tests import images


@dataclass(frozen=True)
class Case:
    kind: str
    name: str  # file name inside the corpus folder ("" for cases made outside it)
    make: Callable[[Path], Path]  # writes the file, returns the path to upload
    outcome: str  # "stored" or "rejected"
    reason: str = ""  # a substring of the rejection reason


def _write(name: str, data: bytes) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        (folder / name).write_bytes(data)
        return folder / name

    return make


def _with(name: str, writer: Callable[[Path], object]) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        writer(folder / name)
        return folder / name

    return make


def _pillow(
    name: str, image_fn: Callable[[], Image.Image], fmt: str, **save
) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        image_fn().save(folder / name, format=fmt, **save)
        return folder / name

    return make


def _symlink_outside(folder: Path) -> Path:
    outside = folder.parent / "outside-the-folder.png"
    images.write_png(outside, seed=2990)
    link = folder / "link-out.png"
    link.symlink_to(outside)
    return link


def _dangling_symlink(folder: Path) -> Path:
    link = folder / "dangling.png"
    link.symlink_to(folder / "gone.png")  # inside the folder, pointing at nothing
    return link


def _fifo(folder: Path) -> Path:
    os.mkfifo(folder / "pipe.png")
    return folder / "pipe.png"


def _unreadable(folder: Path) -> Path:
    path = images.write_png(folder / "unreadable.png", seed=2991)
    path.chmod(0)
    return path


def _dotdot(folder: Path) -> Path:
    (folder / "sub").mkdir(exist_ok=True)
    images.write_png(folder / "dotdot.png", seed=2992)
    return folder / "sub" / ".." / "dotdot.png"  # given with ../ on purpose


def _wide_png(path: Path) -> None:
    # Blocky noise, so that it does not hash like the other plain images of the corpus.
    blocks = np.random.default_rng(2993).integers(0, 256, (1, 200, 3), dtype=np.uint8)
    Image.fromarray(np.repeat(np.repeat(blocks, 3, axis=0), 100, axis=1), "RGB").save(
        path, format="PNG"
    )


def _many_frames_gif(path: Path) -> None:
    """1000 frames: only the first is decoded (a fingerprint must not walk them all)."""
    first = images.flatten(images.design(2994, (96, 96))).convert("P")
    rest = [Image.new("P", (96, 96), i % 256) for i in range(999)]
    first.save(path, format="GIF", save_all=True, append_images=rest, duration=20, loop=0)


def _animated_webp(path: Path) -> None:
    frames = [images.design(2995 + i, (240, 240)) for i in range(3)]
    frames[0].save(
        path, format="WEBP", save_all=True, append_images=frames[1:], duration=80, lossless=True
    )


def _bad_orientation_jpeg(path: Path) -> None:
    """EXIF orientation 99 (there are 8): the pixels are taken as they are."""
    image = images.flatten(images.design(2996))
    exif = Image.Exif()
    exif[0x0112] = 99
    image.save(path, format="JPEG", exif=exif.tobytes(), quality=90)


def _system_file_link(folder: Path) -> Path:
    """A symlink named like a design that points at a system file, given by name."""
    link = folder / "passwd.png"
    link.symlink_to("/etc/passwd")
    return link


SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="100" height="100"><circle cx="50" cy="50" r="40"/></svg>'

ROOT_READS_ANYTHING = os.geteuid() == 0  # root is not stopped by file permissions

CASES: list[Case] = [
    Case("empty", "empty.png", _write("empty.png", b""), "rejected", "empty file"),
    Case("text", "notes.png", _write("notes.png", b"these are my design notes\n" * 20), "rejected", "not a recognised image"),
    Case("truncated PNG", "cut.png", _with("cut.png", lambda p: images.truncated_png(p, 2900)), "rejected", "truncated"),
    Case("truncated JPEG", "cut.jpg", _with("cut.jpg", lambda p: images.truncated_jpeg(p, 2901)), "rejected", "truncated"),
    Case("header-only bomb", "bomb-header.png", _with("bomb-header.png", images.header_bomb_png), "rejected", "pixels"),
    Case("real bomb", "bomb.png", _with("bomb.png", images.real_bomb_png), "rejected", "pixels"),
    Case("huge dimensions", "huge.png", _with("huge.png", lambda p: images.header_bomb_png(p, 40_000, 100)), "rejected", "40000"),
    Case("over the size cap", "big.png", _with("big.png", lambda p: images.noisy_png(p, 2902, (1100, 1100))), "rejected", "over the size cap"),
    Case("PNG named .jpg", "really-a-png.jpg", _with("really-a-png.jpg", lambda p: images.write_png(p.with_suffix(".tmp"), 2903).rename(p)), "stored"),
    Case("GIF", "still.gif", _pillow("still.gif", lambda: images.flatten(images.design(2904, (300, 300))).convert("P"), "GIF"), "stored"),
    Case("animated GIF", "moving.gif", _with("moving.gif", lambda p: images.animated_gif(p, 2905)), "stored"),
    Case("16-bit", "deep.png", _with("deep.png", lambda p: images.png_16bit_gray(p, 2906)), "stored"),
    Case("palette with transparency", "palette.png", _with("palette.png", lambda p: images.palette_png_with_transparency(p, 2907)), "stored"),
    Case("CMYK", "cmyk.jpg", _with("cmyk.jpg", lambda p: images.cmyk_jpeg(p, 2908)), "stored"),
    Case("EXIF-rotated", "rotated.jpg", _with("rotated.jpg", lambda p: images.exif_rotated_jpeg(p, 2909)), "stored"),
    Case("grayscale", "gray.png", _pillow("gray.png", lambda: images.design(2910).convert("L"), "PNG"), "stored"),
    Case("1x1", "dot.png", _pillow("dot.png", lambda: Image.new("RGBA", (1, 1), (9, 9, 9, 255)), "PNG"), "stored"),
    Case("extremely wide", "wide.png", _with("wide.png", _wide_png), "stored"),
    Case("unicode name", "デザイン ✓ café.png", _with("デザイン ✓ café.png", lambda p: images.write_png(p, 2911)), "stored"),
    Case("spaces in the name", "  my design  (final) .png", _with("  my design  (final) .png", lambda p: images.write_png(p, 2912)), "stored"),
    Case("path with ../", "dotdot.png", _dotdot, "stored"),
    Case("absolute path", "absolute.png", lambda f: images.write_png(f / "absolute.png", 2913).absolute(), "stored"),
    Case("symlink outside the folder", "link-out.png", _symlink_outside, "rejected", "outside"),
    Case("dangling symlink", "dangling.png", _dangling_symlink, "rejected", "file not found"),
    Case("deleted between listing and reading", "vanishing.png", _with("vanishing.png", lambda p: images.write_png(p, 2914)), "rejected", "deleted or moved before it was read"),
    Case("FIFO named like a design", "pipe.png", _fifo, "rejected", "not a regular file"),
    Case("unreadable", "unreadable.png", _unreadable, "stored" if ROOT_READS_ANYTHING else "rejected", "" if ROOT_READS_ANYTHING else "permission denied"),
    Case("WebP", "art.webp", _pillow("art.webp", lambda: images.design(2915), "WEBP", lossless=True), "stored"),
    Case("1000-frame animated GIF", "frames.gif", _with("frames.gif", _many_frames_gif), "stored"),
    Case("animated WebP", "moving.webp", _with("moving.webp", _animated_webp), "stored"),
    Case("malformed EXIF orientation", "oriented.jpg", _with("oriented.jpg", _bad_orientation_jpeg), "stored"),
    Case("symlink to a system file, given by name", "passwd.png", _system_file_link, "rejected", "not a recognised image"),
    Case("newline in the name", "two\nlines.png", _with("two\nlines.png", lambda p: images.write_png(p, 2997)), "stored"),
    Case("SVG named .png", "vector.png", _write("vector.png", SVG), "rejected", "not a recognised image"),
    Case("huge iCCP chunk", "icc-bomb.png", _with("icc-bomb.png", lambda p: images.png_with_metadata(p, 2998, b"iCCP", b"ICC Profile", 512 << 20, compressible=True)), "rejected", "metadata decompression bomb"),
    Case("zTXt inflating to 1 GiB", "text-bomb.png", _with("text-bomb.png", lambda p: images.png_with_metadata(p, 2999, b"zTXt", b"Comment", 1 << 30, compressible=True)), "rejected", "metadata decompression bomb"),
]  # fmt: skip
