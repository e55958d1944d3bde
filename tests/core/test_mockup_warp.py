"""A PSD smart object warped with Edit > Transform > Warp: the template bends the design the
way the warp's Bézier surface says. The reference is an independent forward rendering of the
same surface: every design sample pushed through the Bernstein sums and the placement's
homography (solved here with numpy, not OpenCV) and splatted onto the canvas; the template's
render is compared with it pixel by pixel in the print area."""

from __future__ import annotations

from math import comb
from pathlib import Path

import cv2
import numpy as np
import pytest

from designflow.mockups.authoring import checkerboard, template_from_psd
from designflow.mockups.render import PreparedDesign, load_template, quad_size, render_mockup_array
from designflow.testing.mockup_sources import write_mockup_psd

SIZE = (1200, 1200)
CONTENT = (1000.0, 1200.0)  # the smart object's own pixels (write_mockup_psd's placed size)
QUAD = np.array([[300, 200], [900, 230], [880, 950], [320, 920]], np.float32)


def _even_grid(rows: int, cols: int) -> np.ndarray:
    xs, ys = np.linspace(0, CONTENT[0], cols), np.linspace(0, CONTENT[1], rows)
    return np.stack(np.meshgrid(xs, ys), axis=-1)


def _mug_bend() -> np.ndarray:
    """One patch: the middle rows sag, the sides bulge (a mug's or a pillow's curve)."""
    control = _even_grid(4, 4)
    control[1:3, :, 1] += 120
    control[:, 0, 0] -= 40
    control[:, 3, 0] += 40
    control[1:3, 1:3, 0] += np.array([-60, 60])
    return control


def _quilt_wave() -> np.ndarray:
    """A quilt of two patches across (7x4 points): a wave along the width."""
    control = _even_grid(4, 7)
    control[1:3, 1, 1] -= 90
    control[1:3, 2, 1] -= 90
    control[1:3, 4, 1] += 90
    control[1:3, 5, 1] += 90
    return control


def _homography(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    rows, rhs = [], []
    for (x, y), (u, v) in zip(src, dst, strict=True):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        rhs += [u, v]
    h = np.linalg.solve(np.array(rows, float), np.array(rhs, float))
    return np.append(h, 1.0).reshape(3, 3)


def _bernstein(t: np.ndarray) -> np.ndarray:
    return np.stack([comb(3, k) * t**k * (1 - t) ** (3 - k) for k in range(4)], axis=-1)


def _surface(control: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Points of the Bézier surface on the grid v x u (1-D each), patch by patch, from the
    Bernstein sums: sum over i, j of B_i(s) B_j(t) control[j, i]."""
    rows, cols = control.shape[:2]
    across, down = (cols - 1) // 3, (rows - 1) // 3
    pu = np.minimum((u * across).astype(int), across - 1)
    pv = np.minimum((v * down).astype(int), down - 1)
    out = np.zeros((len(v), len(u), 2))
    for a in range(down):
        for b in range(across):
            ys, xs = np.nonzero(pv == a)[0], np.nonzero(pu == b)[0]
            weights_v = _bernstein(v[ys] * down - a)
            weights_u = _bernstein(u[xs] * across - b)
            patch = control[3 * a : 3 * a + 4, 3 * b : 3 * b + 4]
            out[np.ix_(ys, xs)] = np.einsum("yj,xi,jid->yxd", weights_v, weights_u, patch)
    return out


def _forward_reference(control: np.ndarray, design: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The design splatted through the warp onto a white canvas, and where it landed."""
    area_w, area_h = quad_size(QUAD)
    dh, dw = design.shape[:2]
    scale = min(area_w / dw, area_h / dh)
    x0, y0 = (area_w - dw * scale) / 2, (area_h - dh * scale) / 2
    steps_x, steps_y = np.arange(0, dw, 0.5), np.arange(0, dh, 0.5)  # 4x4 samples a canvas pixel
    sy, sx = np.meshgrid(steps_y, steps_x, indexing="ij")
    content = _surface(control, (x0 + (steps_x + 0.5) * scale) / area_w,
                       (y0 + (steps_y + 0.5) * scale) / area_h)  # fmt: skip
    rect = np.array([[0, 0], [CONTENT[0], 0], [CONTENT[0], CONTENT[1]], [0, CONTENT[1]]])
    h = _homography(rect, QUAD.astype(float))
    w = h[2, 0] * content[..., 0] + h[2, 1] * content[..., 1] + h[2, 2]
    cx = (h[0, 0] * content[..., 0] + h[0, 1] * content[..., 1] + h[0, 2]) / w
    cy = (h[1, 0] * content[..., 0] + h[1, 1] * content[..., 1] + h[1, 2]) / w
    px, py = np.floor(cx).astype(int).ravel(), np.floor(cy).astype(int).ravel()
    colours = (
        design[np.floor(sy).astype(int), np.floor(sx).astype(int)].reshape(-1, 3).astype(float)
    )
    index = py * SIZE[0] + px
    pixels = SIZE[0] * SIZE[1]
    count = np.bincount(index, minlength=pixels).reshape(SIZE[1], SIZE[0])
    total = np.stack(
        [np.bincount(index, colours[:, c], minlength=pixels) for c in range(3)], axis=-1
    )
    reference = np.full((SIZE[1], SIZE[0], 3), 255.0)
    covered = count > 0
    reference[covered] = total.reshape(SIZE[1], SIZE[0], 3)[covered] / count[covered][:, None]
    return reference.astype(np.uint8), covered


@pytest.mark.parametrize("kind", ["one patch", "quilt"])
def test_a_warped_smart_object_renders_like_its_bezier_surface(
    tmp_path: Path, kind: str, capsys: pytest.CaptureFixture
) -> None:
    control = _mug_bend() if kind == "one patch" else _quilt_wave()
    psd = tmp_path / "mug.psd"
    white = np.full((SIZE[1], SIZE[0], 3), 255, np.uint8)  # no shading, no folds: shape only
    write_mockup_psd(
        psd, SIZE, QUAD, placement="SoLd", warps=[control], photo=white, shading_layer=False
    )
    draft = template_from_psd("mug", psd)
    assert draft.source["warp"] == ["Your design"]
    folder = tmp_path / "mug"
    folder.mkdir()
    for name, data in draft.files().items():
        (folder / name).write_bytes(data)
    template = load_template(folder)  # the mesh travels through the manifest
    board = checkerboard()
    rendered = render_mockup_array(PreparedDesign.from_array(board), template)
    reference, covered = _forward_reference(control, cv2.cvtColor(board, cv2.COLOR_BGRA2BGR))
    inside = cv2.erode(covered.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    grey = cv2.cvtColor(rendered, cv2.COLOR_BGR2GRAY).astype(float)
    expected = cv2.cvtColor(reference, cv2.COLOR_BGR2GRAY).astype(float)
    diff = np.abs(grey - expected)[inside]
    far = float((diff > 64).mean())
    # Without the warp (the quad's perspective only) the same comparison fails plainly.
    flat = render_mockup_array(PreparedDesign.from_array(board), template.__class__(
        **{**template.__dict__, "warps": (), "_maps": {}}))  # fmt: skip
    flat_diff = np.abs(cv2.cvtColor(flat, cv2.COLOR_BGR2GRAY).astype(float) - expected)[inside]
    print(f"{kind}: mean |difference| {diff.mean():.2f} grey levels over {inside.sum()} px, "
          f"{100 * far:.2f}% of pixels off by > 64; without the warp {flat_diff.mean():.1f}")  # fmt: skip
    assert diff.mean() < 4.0 and far < 0.01
    assert flat_diff.mean() > 20
    # Nothing printed outside the surface.
    outside = cv2.dilate(covered.astype(np.uint8), np.ones((5, 5), np.uint8)) == 0
    assert np.all(rendered[outside] >= 250)
    if kind == "quilt":
        _the_check_command_compares_with_the_saved_composite(
            tmp_path, control, board, reference, capsys
        )


def _the_check_command_compares_with_the_saved_composite(
    tmp_path: Path, control: np.ndarray, board: np.ndarray, reference: np.ndarray, capsys
) -> None:
    """`templates check`: the same PSD saved with the reference as its composite (what
    Photoshop stores), the checkerboard as the smart object's picture."""
    from designflow.cli import main
    from designflow.mockups.authoring import check_against_composite

    white = np.full((SIZE[1], SIZE[0], 3), 255, np.uint8)
    saved = tmp_path / "saved.psd"
    write_mockup_psd(saved, SIZE, QUAD, placement="SoLd", warps=[control], photo=white,
                     shading_layer=False, composite=reference)  # fmt: skip
    picture = tmp_path / "board.png"
    cv2.imwrite(str(picture), board)
    result = check_against_composite(saved, design=picture)
    assert result.mean_difference < 4.0 and result.share_off < 0.01, result
    # A composite that is not this warp (the plain photo) is far off.
    write_mockup_psd(saved, SIZE, QUAD, placement="SoLd", warps=[control], photo=white,
                     shading_layer=False, composite=white)  # fmt: skip
    assert check_against_composite(saved, design=picture).mean_difference > 40
    capsys.readouterr()
    assert main(["templates", "check", str(saved), "--design", str(picture)]) == 0
    assert "mean |difference|" in capsys.readouterr().out
    assert main(["templates", "check", str(saved)]) == 1  # the picture is not in the file
    assert "--design" in capsys.readouterr().err
