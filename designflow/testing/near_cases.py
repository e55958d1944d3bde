"""Near-duplicate cases: generated designs, the copies a seller's copies go through, and the
text variants a seller sells as other products. Used by the tests (a small fixed set) and by
`bench.near_duplicates` (precision and recall per kind over many designs).

Designs come in four families: flat shapes on transparency, posters (gradient, texture,
shapes and a slogan), typography (words and a small emblem) and photographs (matplotlib's
sample photo and renderings of its terrain data, cropped at several places). Every design has
a slogan (words and a number) drawn with one of matplotlib's fonts and a small emblem, so
that a text variant is the same artwork with other words, another number or another emblem.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFont

from designflow.testing.samples import make_artwork

WORDS = (
    ("DOG MOM", "CAT MOM"), ("BARK", "TACO"), ("COFFEE FIRST", "BEER FIRST"),
    ("BEST DAD", "BEST MOM"), ("HAPPY CAMPER", "HAPPY HIKER"), ("NAP QUEEN", "NAP KING"),
    ("TEACHER LIFE", "NURSE LIFE"), ("GAME ON", "GAME OFF"), ("STAY WILD", "STAY WEIRD"),
    ("PLANT LADY", "PLANT DADDY"), ("LAKE DAYS", "BEACH DAYS"), ("GO TEAM", "GO BEARS"),
)  # fmt: skip
FONTS = ("DejaVuSans-Bold.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSansMono-Bold.ttf",
         "DejaVuSans.ttf", "DejaVuSerif-BoldItalic.ttf")  # fmt: skip
FAMILIES = ("shapes", "poster", "typography", "photo")


@dataclass(frozen=True)
class DesignSpec:
    """Everything that makes one design: change `words`, `year` or `emblem` for a variant."""

    seed: int
    family: str
    words: str
    year: int
    emblem: int  # which small element: 0 star, 1 heart-like circle pair, 2 diamond, 3 bolt
    size: tuple[int, int] = (1000, 1200)


def spec(seed: int, family: str | None = None, size: tuple[int, int] = (1000, 1200)) -> DesignSpec:
    rng = np.random.default_rng(seed)
    return DesignSpec(
        seed=seed,
        family=family or FAMILIES[seed % len(FAMILIES)],
        words=WORDS[int(rng.integers(len(WORDS)))][0],
        year=int(rng.integers(1960, 2020)),
        emblem=int(rng.integers(4)),
        size=size,
    )


def source_of(design: DesignSpec) -> str:
    """Designs made from the same photograph share a source: two crops of one photo are
    the same picture to a seller, so they are not counted as unrelated designs."""
    if design.family != "photo":
        return f"seed-{design.seed}"
    pick = design.seed // len(FAMILIES) % 3
    return f"photo-{pick}" if pick == 0 else f"photo-{pick}-{design.seed % 4}"


def variants(base: DesignSpec) -> dict[str, DesignSpec]:
    """The same artwork with other words, another number, another small element."""
    other = dict(WORDS)
    return {
        "text: other words": replace(base, words=other.get(base.words, base.words[::-1])),
        "text: other number": replace(base, year=base.year + 7 if base.year < 2010 else base.year - 23),
        "text: other emblem": replace(base, emblem=(base.emblem + 1) % 4),
    }  # fmt: skip


@lru_cache(maxsize=16)
def _font(name: str, size: int) -> ImageFont.FreeTypeFont:
    import matplotlib

    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    return ImageFont.truetype(str(folder / name), size)


def render(design: DesignSpec) -> Image.Image:
    """The design as an RGBA image (transparent where the family leaves it so)."""
    rng = np.random.default_rng(design.seed)
    width, height = design.size
    if design.family == "photo":
        image = _photo(design.seed, design.size).convert("RGBA")
    elif design.family == "poster":
        image = _poster_background(rng, design.size)
        image.alpha_composite(make_artwork(design.seed, design.size))
    elif design.family == "typography":
        image = Image.new("RGBA", design.size, (0, 0, 0, 0))
        ImageDraw.Draw(image).ellipse(
            [width * 0.08, height * 0.1, width * 0.92, height * 0.72],
            outline=_colour(rng), width=max(4, width // 60),
        )  # fmt: skip
    else:
        image = make_artwork(design.seed, design.size)
    font_name = FONTS[design.seed % len(FONTS)]
    big = design.family == "typography"
    _slogan(image, design, rng, font_name, big)
    _emblem(image, design, rng)
    return image


def _colour(rng: np.random.Generator, alpha: int = 255) -> tuple[int, int, int, int]:
    return (*(int(c) for c in rng.integers(0, 200, 3)), alpha)


def _slogan(
    image: Image.Image, design: DesignSpec, rng: np.random.Generator, font_name: str, big: bool
) -> None:
    width, height = image.size
    draw = ImageDraw.Draw(image)
    size = int(height * (0.13 if big else 0.08))
    font = _font(font_name, size)
    # Fit the longest of the pair: a variant keeps the layout, as a seller's template does.
    text = design.words
    while draw.textlength(text, font=font) > width * 0.9 and size > 12:
        size = int(size * 0.9)
        font = _font(font_name, size)
    colour = _colour(rng)
    top = height * (0.35 if big else float(rng.uniform(0.08, 0.75)))
    x = (width - draw.textlength(text, font=font)) / 2
    outline = (255, 255, 255, 255) if sum(colour[:3]) < 300 else (0, 0, 0, 255)
    draw.text(
        (x, top), text, font=font, fill=colour, stroke_width=max(1, size // 18), stroke_fill=outline
    )
    year_font = _font(font_name, int(size * 0.6))
    label = f"EST. {design.year}"
    draw.text(((width - draw.textlength(label, font=year_font)) / 2, top + size * 1.25), label,
              font=year_font, fill=colour, stroke_width=max(1, size // 24), stroke_fill=outline)  # fmt: skip


def _emblem(image: Image.Image, design: DesignSpec, rng: np.random.Generator) -> None:
    width, height = image.size
    r = min(width, height) * 0.07
    cx, cy = width * float(rng.uniform(0.2, 0.8)), height * float(rng.uniform(0.8, 0.88))
    colour = _colour(rng)
    draw = ImageDraw.Draw(image)
    kind = design.emblem
    if kind == 0:
        points = [(cx + r * math.cos(a) * (1 if i % 2 == 0 else 0.45),
                   cy + r * math.sin(a) * (1 if i % 2 == 0 else 0.45))
                  for i, a in enumerate(np.linspace(-math.pi / 2, 1.5 * math.pi, 11)[:-1])]  # fmt: skip
        draw.polygon(points, fill=colour)
    elif kind == 1:
        draw.ellipse([cx - r, cy - r * 0.6, cx, cy + r * 0.4], fill=colour)
        draw.ellipse([cx, cy - r * 0.6, cx + r, cy + r * 0.4], fill=colour)
        draw.polygon([(cx - r, cy), (cx + r, cy), (cx, cy + r)], fill=colour)
    elif kind == 2:
        draw.polygon(
            [(cx, cy - r), (cx + r * 0.7, cy), (cx, cy + r), (cx - r * 0.7, cy)], fill=colour
        )
    else:
        draw.polygon([(cx - r * 0.2, cy - r), (cx + r * 0.5, cy - r), (cx + r * 0.05, cy - r * 0.1),
                      (cx + r * 0.5, cy - r * 0.1), (cx - r * 0.4, cy + r), (cx - r * 0.05, cy + r * 0.1),
                      (cx - r * 0.5, cy + r * 0.1)], fill=colour)  # fmt: skip


def _poster_background(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    width, height = size
    top, bottom = rng.integers(40, 256, 3), rng.integers(0, 220, 3)
    t = np.linspace(0.0, 1.0, height)[:, None, None]
    gradient = top[None, None, :] * (1 - t) + bottom[None, None, :] * t
    texture = _fractal_noise(rng, (height, width)) * 60
    pixels = np.clip(gradient + texture[..., None], 0, 255).astype(np.uint8)
    pixels = np.broadcast_to(pixels, (height, width, 3)) if pixels.shape[1] == 1 else pixels
    return Image.fromarray(np.ascontiguousarray(pixels), "RGB").convert("RGBA")


def _fractal_noise(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Smooth random texture (octaves of upscaled noise), zero mean, roughly -1..1."""
    height, width = shape
    out = np.zeros(shape, np.float32)
    for octave, weight in ((4, 1.0), (12, 0.5), (40, 0.25), (120, 0.12)):
        small = rng.standard_normal((octave, max(2, octave * width // height))).astype(np.float32)
        out += weight * np.asarray(
            Image.fromarray(small, "F").resize((width, height), Image.Resampling.BICUBIC)
        )
    return out / 1.5


def _photo(seed: int, size: tuple[int, int]) -> Image.Image:
    """A photograph-like image: matplotlib's sample photo or a shaded rendering of its
    terrain data, cropped at a place the seed picks, with grain."""
    import matplotlib
    from matplotlib import cm

    folder = Path(matplotlib.get_data_path()) / "sample_data"
    rng = np.random.default_rng(seed)
    pick = seed // len(FAMILIES) % 3
    if pick == 0:
        source = Image.open(folder / "grace_hopper.jpg").convert("RGB")
    else:
        data = np.load(folder / ("topobathy.npz" if pick == 1 else "jacksboro_fault_dem.npz"))
        elevation = np.asarray(data[data.files[0]], np.float32)
        norm = (elevation - elevation.min()) / max(1e-6, float(np.ptp(elevation)))
        maps = (cm.terrain, cm.gist_earth, cm.viridis, cm.copper)
        rgb = maps[seed % len(maps)](norm)[..., :3]
        gy, gx = np.gradient(norm)
        shade = np.clip(0.75 + 6 * (gx - gy), 0.3, 1.2)[..., None]
        source = Image.fromarray((np.clip(rgb * shade, 0, 1) * 255).astype(np.uint8), "RGB")
    sw, sh = source.size
    scale = float(rng.uniform(0.55, 0.9))
    cw, ch = int(sw * scale), int(sw * scale * size[1] / size[0])
    if ch > sh:
        ch, cw = int(sh * scale), int(sh * scale * size[0] / size[1])
    left, top = int(rng.integers(0, sw - cw + 1)), int(rng.integers(0, sh - ch + 1))
    photo = source.crop((left, top, left + cw, top + ch)).resize(size, Image.Resampling.BICUBIC)
    grain = rng.normal(0, 4, (size[1], size[0], 1))
    pixels = np.clip(np.asarray(photo, np.float32) + grain, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels, "RGB")


# -- copies ----------------------------------------------------------------------------------


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG", compress_level=1)
    return out.getvalue()


def jpeg(image: Image.Image, quality: int) -> bytes:
    out = io.BytesIO()
    flat = Image.new("RGB", image.size, (255, 255, 255))
    flat.paste(image, mask=image.getchannel("A") if image.mode == "RGBA" else None)
    flat.save(out, format="JPEG", quality=quality)
    return out.getvalue()


def _flat(image: Image.Image) -> Image.Image:
    flat = Image.new("RGBA", image.size, (255, 255, 255, 255))
    flat.alpha_composite(image.convert("RGBA"))
    return flat


def _crop(image: Image.Image, left: float, top: float, right: float, bottom: float) -> Image.Image:
    w, h = image.size
    return image.crop(
        (round(w * left), round(h * top), round(w * (1 - right)), round(h * (1 - bottom)))
    )


def _rotate(image: Image.Image, degrees: float) -> Image.Image:
    """Rotated about the centre and cropped to the largest upright rectangle inside, as a
    straightened scan or a rotated crop comes out (no new corners)."""
    w, h = image.size
    turned = _flat(image).rotate(degrees, resample=Image.Resampling.BICUBIC, expand=False)
    a = math.radians(abs(degrees))
    inner_w = (w * math.cos(a) - h * math.sin(a)) / math.cos(2 * a)
    inner_h = (h * math.cos(a) - w * math.sin(a)) / math.cos(2 * a)
    mx, my = (1 - inner_w / w) / 2, (1 - inner_h / h) / 2
    return _crop(turned, mx, my, mx, my)


def _keystone(image: Image.Image, amount: float) -> Image.Image:
    """A print photographed slightly from below: the top edge narrower than the bottom,
    then cropped to the rectangle inside."""
    import cv2

    flat = np.asarray(_flat(image).convert("RGB"))
    h, w = flat.shape[:2]
    inset = w * amount
    source = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    target = np.float32([[inset, 0], [w - inset, 0], [w, h], [0, h]])
    matrix = cv2.getPerspectiveTransform(source, target)
    warped = cv2.warpPerspective(
        flat, matrix, (w, h), flags=cv2.INTER_CUBIC, borderValue=(255, 255, 255)
    )
    out = Image.fromarray(warped, "RGB")
    return _crop(out, amount + 0.01, 0.01, amount + 0.01, 0.01)


def _watermark(image: Image.Image) -> Image.Image:
    w, h = image.size
    marked = image.convert("RGBA").copy()
    layer = Image.new("RGBA", image.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    font = _font("DejaVuSans.ttf", max(12, h // 30))
    for y in range(h // 6, h, h // 3):
        draw.text((w // 10, y), "SAMPLE   SAMPLE   SAMPLE", font=font, fill=(128, 128, 128, 110))
        draw.line([(0, y), (w, y + h // 10)], fill=(128, 128, 128, 90), width=max(2, w // 200))
    marked.alpha_composite(layer)
    return marked


def _canvas(image: Image.Image) -> Image.Image:
    w, h = image.size
    canvas = Image.new("RGBA", (int(w * 1.3), int(h * 1.3)), (255, 255, 255, 255))
    canvas.alpha_composite(image.convert("RGBA"), (int(w * 0.1), int(h * 0.2)))
    return canvas


def _combo(image: Image.Image) -> bytes:
    w, h = image.size
    small = _crop(image, 0.03, 0.03, 0.03, 0.03).resize((w // 2, h // 2), Image.Resampling.LANCZOS)
    return jpeg(small, 75)


# (kind, how a copy is made): the kinds a seller meets, easy ones first.
COPIES: dict[str, Callable[[Image.Image], bytes]] = {
    "resize 50%": lambda im: png(im.resize((im.width // 2, im.height // 2), Image.Resampling.LANCZOS)),
    "JPEG q70": lambda im: jpeg(im, 70),
    "brightness +15%": lambda im: png(ImageEnhance.Brightness(im).enhance(1.15)),
    "watermark": lambda im: png(_watermark(im)),
    "flatten on white": lambda im: png(_flat(im)),
    "mirror": lambda im: png(im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)),
    "extra canvas 30%": lambda im: png(_canvas(im)),
    "crop 4% each side": lambda im: png(_crop(im, 0.04, 0.04, 0.04, 0.04)),
    "crop 8% each side": lambda im: png(_crop(im, 0.08, 0.08, 0.08, 0.08)),
    "crop 10% each side": lambda im: png(_crop(im, 0.10, 0.10, 0.10, 0.10)),
    "crop 10% one side": lambda im: png(_crop(im, 0.10, 0.0, 0.0, 0.0)),
    "crop 10% top, 5% right": lambda im: png(_crop(im, 0.0, 0.10, 0.05, 0.0)),
    "rotate 1.5 degrees": lambda im: png(_rotate(im, 1.5)),
    "rotate 3 degrees": lambda im: png(_rotate(im, -3.0)),
    "mild keystone": lambda im: png(_keystone(im, 0.04)),
    "half size + JPEG 75 + 3% crop": _combo,
    "mirror + crop 6%": lambda im: png(_crop(im.transpose(Image.Transpose.FLIP_LEFT_RIGHT), 0.06, 0.06, 0.06, 0.06)),
}  # fmt: skip


def copies_of(image: Image.Image, kinds: list[str] | None = None) -> dict[str, bytes]:
    return {kind: make(image) for kind, make in COPIES.items() if kinds is None or kind in kinds}
