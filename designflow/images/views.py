"""Views: the design as its likely copies would look, hashed once at upload.

A 64-bit phash of the whole design moves when the frame moves: a copy cropped by 8% on each
side was found 8 times in 14, a 3 degree rotation 9 in 14 (held-out check). Rather than ask
many crops of every new file (each query costs its index lookups), each stored design keeps
the phash of a few crops and rotations of itself; a copy's ordinary trimmed hash then lands
close to one of them. Measured on bench.near_duplicates' designs: with views at 5% and 10%
uniform crops, 3 of 40 designs cropped 8% a side stayed 10 bits from both; with 4%, 7.5% and
10.5% each of them came within 8 bits (15 designs checked, every crop kind found).
"""

from __future__ import annotations

import math

import imagehash
from PIL import Image

# (left, top, right, bottom) fractions cut off the content: all four sides, then one side.
VIEW_CROPS: tuple[tuple[float, float, float, float], ...] = (
    (0.04, 0.04, 0.04, 0.04),
    (0.075, 0.075, 0.075, 0.075),
    (0.105, 0.105, 0.105, 0.105),
    *(tuple(0.06 if side == cut else 0.0 for side in range(4)) for cut in range(4)),
    *(tuple(0.12 if side == cut else 0.0 for side in range(4)) for cut in range(4)),
    # Two adjacent sides (a corner kept): top-left, top-right, bottom-right, bottom-left.
    (0.0, 0.0, 0.08, 0.08),
    (0.08, 0.0, 0.0, 0.08),
    (0.08, 0.08, 0.0, 0.0),
    (0.0, 0.08, 0.08, 0.0),
)  # type: ignore[assignment]
# Rotated both ways, then cut to the largest upright rectangle inside (what a straightened
# scan or a rotated crop keeps); 2.5 degrees covers 0-3 degrees within the search distance.
VIEW_ROTATIONS: tuple[float, ...] = (2.5, -2.5)
VIEW_COUNT = len(VIEW_CROPS) + len(VIEW_ROTATIONS)


def view_hashes(small: Image.Image, hash_of, trim) -> tuple[int, ...]:
    """The phash of each view, view 1 first: the reduced design cropped (or rotated) as a
    copy would be, then trimmed as the copy's own fingerprint trims it. (Cropping the
    already trimmed content instead missed 3 of 40 designs on transparent canvases cropped
    8% a side: the copy's content box is the crop of the canvas, not of the content.)
    `hash_of` turns an imagehash into the stored signed integer; `trim` is the
    fingerprint's trim to content."""
    out = [hash_of(imagehash.phash(trim(crop(small, *margins)))) for margins in VIEW_CROPS]
    out += [hash_of(imagehash.phash(trim(rotate_inside(small, d)))) for d in VIEW_ROTATIONS]
    return tuple(out)


def describe_view(view: int) -> str:
    """What a view stands for, in a seller's words (0: the design as it is)."""
    if view <= 0:
        return ""
    if view <= len(VIEW_CROPS):
        left, top, right, bottom = VIEW_CROPS[view - 1]
        cut = [f"{name} {100 * f:.0f}%" for name, f in zip(("left", "top", "right", "bottom"), (left, top, right, bottom), strict=True) if f]  # fmt: skip
        return (
            "cropped (" + ", ".join(cut) + ")"
            if len(cut) < 4
            else f"cropped {100 * left:.0f}% each side"
        )
    return f"rotated {VIEW_ROTATIONS[view - len(VIEW_CROPS) - 1]:+g} degrees"


def crop(image: Image.Image, left: float, top: float, right: float, bottom: float) -> Image.Image:
    w, h = image.size
    box = (round(w * left), round(h * top), round(w * (1 - right)), round(h * (1 - bottom)))
    if box[2] - box[0] < 8 or box[3] - box[1] < 8:
        return image
    return image.crop(box)


def rotate_inside(image: Image.Image, degrees: float) -> Image.Image:
    w, h = image.size
    a = math.radians(abs(degrees))
    denominator = math.cos(2 * a)
    inner_w = (w * math.cos(a) - h * math.sin(a)) / denominator
    inner_h = (h * math.cos(a) - w * math.sin(a)) / denominator
    if inner_w < 8 or inner_h < 8:  # a very thin design: no rectangle inside is left
        return image
    fill = 255 if image.mode == "L" else (255,) * len(image.getbands())
    turned = image.rotate(degrees, resample=Image.Resampling.BICUBIC, fillcolor=fill)
    mx, my = (1 - inner_w / w) / 2, (1 - inner_h / h) / 2
    return crop(turned, mx, my, mx, my)
