"""Generate the example product templates shipped under examples/templates/.

    python -m designflow.testing.templates examples/templates

A t-shirt (folds: shading and displacement maps, a slightly tapered print area) and a
framed poster on a wall (perspective print area, soft light). Synthetic photos, made here.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np

SIZE = 2000


def _folds(size: int, seed: int) -> np.ndarray:
    """A smooth field in -1..1 that looks like fabric folds (a few diagonal waves)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    field = np.zeros((size, size), np.float32)
    for _ in range(5):
        angle = rng.uniform(-0.6, 0.6) + np.pi / 2
        freq = rng.uniform(3, 7)
        phase = rng.uniform(0, 2 * np.pi)
        field += np.sin(
            (x * np.cos(angle) + y * np.sin(angle)) * freq * 2 * np.pi + phase
        ) * rng.uniform(0.3, 1)
    field = cv2.GaussianBlur(field, (0, 0), size / 150)
    return field / max(1e-6, float(np.abs(field).max()))


def make_tshirt(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    s = SIZE
    base = np.zeros((s, s, 3), np.float32)
    base[:] = np.linspace(0.80, 0.70, s, dtype=np.float32)[:, None, None]  # studio backdrop
    shirt = np.array(
        [[620, 260], [820, 200], [1000, 290], [1180, 200], [1380, 260], [1720, 620], [1500, 820],
         [1420, 700], [1420, 1820], [580, 1820], [580, 700], [500, 820], [280, 620]],
        np.int32,
    )  # fmt: skip
    mask = np.zeros((s, s), np.uint8)
    cv2.fillPoly(mask, [shirt], 255)
    cv2.ellipse(mask, (1000, 250), (110, 70), 0, 0, 180, 0, -1)  # neckline
    mask_f = cv2.GaussianBlur(mask.astype(np.float32) / 255, (0, 0), 3)[..., None]
    folds = _folds(s, 7)
    fabric = (0.93 + 0.05 * folds)[..., None] * np.array([1.0, 0.99, 0.97], np.float32)
    base = base * (1 - mask_f) + fabric * mask_f
    cv2.imwrite(
        str(folder / "base.jpg"),
        np.clip(base * 255, 0, 255).astype(np.uint8),
        [cv2.IMWRITE_JPEG_QUALITY, 88],
    )
    shading = 0.82 + 0.18 * (folds * 0.5 + 0.5)  # folds darken the print
    shading = shading * mask_f[..., 0] + (1 - mask_f[..., 0])
    cv2.imwrite(str(folder / "shading.png"), np.clip(shading * 255, 0, 255).astype(np.uint8))
    cv2.imwrite(
        str(folder / "displacement.png"), np.clip(128 + 127 * folds, 0, 255).astype(np.uint8)
    )
    manifest = {
        "name": "T-shirt, white, front",
        "output_size": [s, s],
        "print_area": [[700, 560], [1300, 560], [1290, 1360], [710, 1360]],
        "base": "base.jpg",
        "shading": "shading.png",
        "displacement": "displacement.png",
        "displacement_strength": 9,
    }
    (folder / "template.json").write_text(json.dumps(manifest, indent=2) + "\n")


def make_poster(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    s = SIZE
    y, x = np.mgrid[0:s, 0:s].astype(np.float32) / s
    wall = np.array([0.86, 0.88, 0.90], np.float32) * (0.85 + 0.15 * (1 - x))[..., None]
    base = wall.copy()
    quad = np.array([[560, 330], [1480, 420], [1460, 1640], [580, 1720]], np.float32)
    frame = quad + np.array([[-45, -45], [45, -40], [45, 40], [-45, 45]], np.float32)
    shadow = np.zeros((s, s), np.float32)
    cv2.fillPoly(shadow, [(frame + 25).astype(np.int32)], 1.0)
    shadow = cv2.GaussianBlur(shadow, (0, 0), 25)
    base *= (1 - 0.35 * shadow)[..., None]
    cv2.fillPoly(base, [frame.astype(np.int32)], (0.12, 0.11, 0.10))  # dark frame
    cv2.fillPoly(base, [quad.astype(np.int32)], (0.97, 0.97, 0.97))  # paper
    cv2.imwrite(
        str(folder / "base.jpg"),
        np.clip(base * 255, 0, 255).astype(np.uint8),
        [cv2.IMWRITE_JPEG_QUALITY, 88],
    )
    light = 0.80 + 0.20 * np.clip(1.2 - np.hypot(x - 0.25, y - 0.2), 0, 1)  # window light, top left
    cv2.imwrite(str(folder / "shading.png"), np.clip(light * 255, 0, 255).astype(np.uint8))
    manifest = {
        "name": "Framed poster on a wall",
        "output_size": [s, s],
        "print_area": quad.astype(int).tolist(),
        "base": "base.jpg",
        "shading": "shading.png",
    }
    (folder / "template.json").write_text(json.dumps(manifest, indent=2) + "\n")


def write_example_templates(root: Path) -> list[Path]:
    make_tshirt(root / "tshirt")
    make_poster(root / "poster")
    return [root / "tshirt", root / "poster"]


if __name__ == "__main__":
    for path in write_example_templates(
        Path(sys.argv[1] if len(sys.argv) > 1 else "examples/templates")
    ):
        print(path)
