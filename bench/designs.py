"""Benchmark inputs: large RGBA PNG designs, generated once and kept under bench/out/."""

from __future__ import annotations

import threading
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import imagecodecs
import numpy as np

from designflow.testing.samples import make_artwork, png_bytes

OUT = Path(__file__).resolve().parent / "out"


def _make(args: tuple[Path, int, tuple[int, int]]) -> Path:
    path, seed, size = args
    if not path.exists():
        # 0..0.7 of the rows textured: files of roughly 4 to 15 MB at 4500x5400.
        data = png_bytes(make_artwork(seed, size, grain=(seed % 8) / 10))
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.rename(path)
    return path


def large_designs(
    count: int = 50, size: tuple[int, int] = (4500, 5400), seed0: int = 1000
) -> list[Path]:
    folder = OUT / f"designs-{size[0]}x{size[1]}"
    folder.mkdir(parents=True, exist_ok=True)
    jobs = [(folder / f"design-{seed0 + i:05d}.png", seed0 + i, size) for i in range(count)]
    with ProcessPoolExecutor(max_workers=2) as pool:
        return list(pool.map(_make, jobs))


_floor_buffers = threading.local()


def decode_only(path: str | Path) -> int:
    """The floor both benchmarks measure against: libspng decoding an RGBA design into one
    reused array per thread (as designflow does), nothing else. Returns the height."""
    data = Path(path).read_bytes()
    shape = (int.from_bytes(data[20:24], "big"), int.from_bytes(data[16:20], "big"), 4)
    pixels = getattr(_floor_buffers, "pixels", None)
    if pixels is None or pixels.shape != shape:
        pixels = _floor_buffers.pixels = np.empty(shape, np.uint8)
    return imagecodecs.spng_decode(data, out=pixels).shape[0]


def decode_only_pillow(path: str | Path) -> int:
    """The same floor with Pillow's decoder (Pillow 12+ ships zlib-ng): the benchmarks take
    whichever of the two is faster in the run."""
    from PIL import Image

    with Image.open(path) as image:
        image.load()
        return image.size[1]
