"""Photoshop's warp of a smart object (Edit > Transform > Warp) as a mapping from the design
to the mockup.

Photoshop keeps the warp as a grid of Bézier control points, 4x4 for one cubic patch or
(4+3m)x(4+3n) for a "quilt" of patches, in the smart object's own pixels (its `bounds`), and
the placement (`Trnf` / `nonAffineTransform`) that carries those bounds onto the canvas. A
point of the design at (u, v) in [0, 1]^2 lands at placement(Bezier(u, v)).

The template keeps that mapping as a mesh: canvas points on a regular grid of (u, v) (a
cell is ~16 canvas pixels). A render needs the inverse, the (u, v) of every canvas pixel of
the print area: each cell is mapped back by the projective transform of its four corners
(within a fraction of a pixel for the smooth surfaces a warp makes), computed once per
template and process.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# Canvas pixels per mesh cell: 16 keeps the piecewise-projective inverse within ~0.1 px of
# the Bézier surface for the bends mockups use (a mug, a pillow), at ~1,000-4,000 cells.
CELL_PX = 16.0


@dataclass(frozen=True)
class WarpMesh:
    """Canvas points (rows, cols, 2) of the design's (u, v) grid `vs` x `us`."""

    points: np.ndarray
    us: np.ndarray
    vs: np.ndarray

    def as_manifest(self) -> dict:
        return {
            "u": [round(float(u), 6) for u in self.us],
            "v": [round(float(v), 6) for v in self.vs],
            "points": [
                [round(float(x), 2), round(float(y), 2)] for x, y in self.points.reshape(-1, 2)
            ],
        }

    @classmethod
    def from_manifest(cls, value: dict, where: str) -> WarpMesh:
        try:
            us = np.asarray(value["u"], np.float64)
            vs = np.asarray(value["v"], np.float64)
            points = np.asarray(value["points"], np.float64).reshape(len(vs), len(us), 2)
        except (KeyError, TypeError, ValueError):
            raise ValueError(
                f"{where}: a warp needs u, v and rows x columns points [x, y]"
            ) from None
        if len(us) < 2 or len(vs) < 2 or np.any(np.diff(us) <= 0) or np.any(np.diff(vs) <= 0):
            raise ValueError(f"{where}: a warp's u and v must each rise from 0 to 1")
        if not np.all(np.isfinite(points)):
            raise ValueError(f"{where}: a warp's points must be numbers")
        return cls(points, us, vs)

    def outline(self) -> np.ndarray:
        """The corners of the warped area (tl, tr, br, bl): the print area it replaces."""
        p = self.points
        return np.array([p[0, 0], p[0, -1], p[-1, -1], p[-1, 0]], np.float32)


def bernstein(t: np.ndarray) -> np.ndarray:
    """Cubic Bernstein weights of each t: shape (len(t), 4)."""
    t = np.asarray(t, np.float64)[:, None]
    s = 1.0 - t
    return np.hstack([s**3, 3 * s**2 * t, 3 * s * t**2, t**3])


def evaluate_patches(
    control: np.ndarray, per_patch: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The Bézier surface of a control grid (rows, cols, 2), rows and cols each 4+3k: its
    points on a grid of `per_patch` (across, down) steps per patch, and that grid's
    parameters along each axis (patch i spans [i/n, (i+1)/n])."""
    rows, cols = control.shape[:2]
    if (rows - 1) % 3 or (cols - 1) % 3 or rows < 4 or cols < 4:
        raise ValueError(f"a warp grid of {cols}x{rows} points is not made of cubic patches")
    across, down = (cols - 1) // 3, (rows - 1) // 3
    steps_u, steps_v = per_patch
    t_u = np.linspace(0.0, 1.0, steps_u + 1)
    t_v = np.linspace(0.0, 1.0, steps_v + 1)
    b_u, b_v = bernstein(t_u), bernstein(t_v)
    out = np.zeros((down * steps_v + 1, across * steps_u + 1, 2))
    for pi in range(down):
        for pj in range(across):
            patch = control[3 * pi : 3 * pi + 4, 3 * pj : 3 * pj + 4]
            for d in range(2):
                block = b_v @ patch[..., d] @ b_u.T
                out[
                    pi * steps_v : (pi + 1) * steps_v + 1, pj * steps_u : (pj + 1) * steps_u + 1, d
                ] = block
    us = np.concatenate([(pj + t_u[:-1]) / across for pj in range(across)] + [[1.0]])
    vs = np.concatenate([(pi + t_v[:-1]) / down for pi in range(down)] + [[1.0]])
    return out, us, vs


def placed_mesh(
    control: np.ndarray, bounds: tuple[float, float, float, float], quad: np.ndarray
) -> WarpMesh:
    """The warp's mesh on the canvas: the control grid (in the smart object's pixels, inside
    `bounds` = left, top, right, bottom) as a Bézier surface, carried onto the canvas by the
    placement that takes the bounds' corners to `quad` (tl, tr, br, bl)."""
    left, top, right, bottom = bounds
    rect = np.array([[left, top], [right, top], [right, bottom], [left, bottom]], np.float32)
    placement = cv2.getPerspectiveTransform(rect, np.asarray(quad, np.float32))
    # How large the area is on the canvas sets how finely the surface is sampled.
    rows, cols = control.shape[:2]
    canvas = cv2.perspectiveTransform(control.reshape(1, -1, 2).astype(np.float64), placement)
    extent = canvas.reshape(rows, cols, 2)
    width = float(np.max(np.linalg.norm(np.diff(extent, axis=1), axis=2).sum(axis=1)))
    height = float(np.max(np.linalg.norm(np.diff(extent, axis=0), axis=2).sum(axis=0)))
    per_u = int(np.clip(np.ceil(width / CELL_PX / ((cols - 1) // 3)), 4, 96))
    per_v = int(np.clip(np.ceil(height / CELL_PX / ((rows - 1) // 3)), 4, 96))
    surface, us, vs = evaluate_patches(control, (per_u, per_v))
    points = cv2.perspectiveTransform(surface.reshape(1, -1, 2), placement.astype(np.float64))
    return WarpMesh(points.reshape(surface.shape), us, vs)


def is_flat(control: np.ndarray, bounds: tuple[float, float, float, float]) -> bool:
    """True when the control grid is Photoshop's untouched one (evenly spaced over the
    bounds): the warp changes nothing."""
    left, top, right, bottom = bounds
    rows, cols = control.shape[:2]
    xs = np.linspace(left, right, cols)
    ys = np.linspace(top, bottom, rows)
    even = np.stack(np.meshgrid(xs, ys), axis=-1)
    return bool(np.allclose(control, even, atol=0.01 * max(right - left, bottom - top, 1.0)))


def uv_maps(mesh: WarpMesh, roi: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(u, v) of every pixel of `roi` (x0, y0, x1, y1) on the canvas, -1 where the warped
    design does not reach. Each mesh cell is filled with the projective map of its corners
    back to its (u, v) rectangle."""
    x0, y0, x1, y1 = roi
    width, height = x1 - x0, y1 - y0
    points = mesh.points - np.array([x0, y0])
    rows, cols = points.shape[:2]
    labels = np.full((height, width), -1, np.int32)
    inverses = np.zeros(((rows - 1) * (cols - 1), 3, 3))
    shift = 4  # corners at 1/16 px
    for i in range(rows - 1):
        for j in range(cols - 1):
            corners = np.array(
                [points[i, j], points[i, j + 1], points[i + 1, j + 1], points[i + 1, j]]
            )
            uv = np.array([[mesh.us[j], mesh.vs[i]], [mesh.us[j + 1], mesh.vs[i]],
                           [mesh.us[j + 1], mesh.vs[i + 1]], [mesh.us[j], mesh.vs[i + 1]]])  # fmt: skip
            cell = i * (cols - 1) + j
            inverses[cell] = cv2.getPerspectiveTransform(
                corners.astype(np.float32), uv.astype(np.float32)
            )
            polygon = np.round(corners * (1 << shift)).astype(np.int32)
            cv2.fillPoly(labels, [polygon], int(cell), lineType=cv2.LINE_8, shift=shift)
    ys, xs = np.nonzero(labels >= 0)
    h = inverses[labels[ys, xs]]
    px, py = xs + 0.0, ys + 0.0
    w = h[:, 2, 0] * px + h[:, 2, 1] * py + h[:, 2, 2]
    u = (h[:, 0, 0] * px + h[:, 0, 1] * py + h[:, 0, 2]) / w
    v = (h[:, 1, 0] * px + h[:, 1, 1] * py + h[:, 1, 2]) / w
    u_map = np.full((height, width), -1.0, np.float32)
    v_map = np.full((height, width), -1.0, np.float32)
    u_map[ys, xs] = np.clip(u, 0.0, 1.0)
    v_map[ys, xs] = np.clip(v, 0.0, 1.0)
    return u_map, v_map
