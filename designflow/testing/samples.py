"""Synthetic artwork for examples, tests and benchmarks: transparent PNG designs that look
like print-on-demand art (shapes, gradients, text-like strokes) and vary with a seed."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, ImageFilter


def make_artwork(seed: int, size: tuple[int, int] = (900, 1080), grain: float = 0.0) -> Image.Image:
    """An RGBA design: a few filled shapes and strokes on a transparent canvas.

    `grain` (0..1) adds faint texture to the painted pixels of that fraction of the rows, so
    PNG compression yields realistic file sizes (flat synthetic art compresses far better
    than painted or scanned artwork).
    """
    rng = np.random.default_rng(seed)
    width, height = size
    scale = min(width, height) / 1000
    image = Image.new("RGBA", size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(6, 14))):
        color = tuple(int(c) for c in rng.integers(0, 256, 3)) + (int(rng.integers(180, 256)),)
        x0, y0 = rng.integers(0, width), rng.integers(0, height)
        w, h = rng.integers(int(80 * scale), int(500 * scale) + 2, 2)
        box = [int(x0 - w / 2), int(y0 - h / 2), int(x0 + w / 2), int(y0 + h / 2)]
        kind = rng.integers(0, 3)
        if kind == 0:
            draw.ellipse(box, fill=color)
        elif kind == 1:
            draw.rectangle(box, fill=color)
        else:
            points = [(int(x), int(y)) for x, y in rng.integers(0, [width, height], (3, 2))]
            draw.polygon(points, fill=color)
    for _ in range(int(rng.integers(3, 8))):
        color = tuple(int(c) for c in rng.integers(0, 256, 3)) + (255,)
        points = [(int(x), int(y)) for x, y in rng.integers(0, [width, height], (4, 2))]
        draw.line(points, fill=color, width=max(2, int(18 * scale)))
    image = image.filter(ImageFilter.GaussianBlur(radius=max(0.5, 1.5 * scale)))
    if grain > 0:
        pixels = np.asarray(image).astype(np.int16)
        rows = int(height * min(grain, 1.0))
        top = int(rng.integers(0, height - rows + 1))
        band = pixels[top : top + rows]
        texture = rng.integers(-1, 2, band.shape[:2] + (3,), dtype=np.int16)
        texture[band[..., 3] == 0] = 0  # transparent pixels stay clean, as in real artwork
        band[..., :3] = np.clip(band[..., :3] + texture, 0, 255)
        image = Image.fromarray(pixels.astype(np.uint8), "RGBA")
    return image


def png_bytes(image: Image.Image, compress_level: int = 6) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()


def jpeg_bytes(image: Image.Image, quality: int = 90, **kwargs) -> bytes:
    buffer = io.BytesIO()
    flat = image
    if image.mode == "RGBA":
        flat = Image.new("RGB", image.size, (255, 255, 255))
        flat.paste(image, mask=image.getchannel("A"))
    flat.save(buffer, format="JPEG", quality=quality, **kwargs)
    return buffer.getvalue()
