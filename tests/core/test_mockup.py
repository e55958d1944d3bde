"""The mockup renderer and template manifests."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from designflow.mockups.render import (
    PreparedDesign,
    TemplateError,
    list_templates,
    load_template,
    render_mockup,
    render_mockup_array,
)
from designflow.testing.templates import write_example_templates

SHIPPED = Path(__file__).resolve().parents[2] / "examples" / "templates"


def flat_template(folder: Path, shading: int | None = None, quad=None) -> Path:
    """A 400x300 grey photo, print area a rectangle, optional uniform shading."""
    folder.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(folder / "base.png"), np.full((300, 400, 3), 200, np.uint8))
    manifest = {"name": "test", "output_size": [400, 300], "base": "base.png",
                "print_area": quad or [[100, 50], [300, 50], [300, 250], [100, 250]]}  # fmt: skip
    if shading is not None:
        shade = np.full((300, 400), 255, np.uint8)
        shade[:, 200:] = shading  # right half darker
        cv2.imwrite(str(folder / "shade.png"), shade)
        manifest["shading"] = "shade.png"
    (folder / "template.json").write_text(json.dumps(manifest))
    return folder


def solid_design(color=(0, 0, 255), alpha=255, size=(200, 200)) -> PreparedDesign:
    image = np.zeros((size[1], size[0], 4), np.uint8)
    image[..., :3] = color
    image[..., 3] = alpha
    return PreparedDesign.from_array(image)


def test_design_lands_inside_print_area_only(tmp_path: Path) -> None:
    template = load_template(flat_template(tmp_path / "t"))
    out = render_mockup_array(solid_design(), template)
    assert out.shape == (300, 400, 3)
    assert (out[:45, :] == 200).all() and (
        out[:, :95] == 200
    ).all()  # outside: the photo, unchanged
    assert (out[255:, :] == 200).all() and (out[:, 305:] == 200).all()
    inside = out[60:240, 110:290]
    assert inside[..., 2].mean() > 250 and inside[..., 0].mean() < 5  # red (BGR) design


def test_shading_modulates_the_print(tmp_path: Path) -> None:
    template = load_template(flat_template(tmp_path / "t", shading=128))
    out = render_mockup_array(solid_design(color=(255, 255, 255)), template)
    left, right = out[100:200, 120:190].mean(), out[100:200, 210:280].mean()
    assert left > 240 and 110 < right < 145  # multiply: the darker fabric shows through


def test_alpha_is_respected(tmp_path: Path) -> None:
    template = load_template(flat_template(tmp_path / "t"))
    clear = render_mockup_array(solid_design(alpha=0), template)
    assert (clear == 200).all()  # a transparent design leaves the photo as it is
    half = render_mockup_array(solid_design(color=(0, 0, 0), alpha=128), template)
    assert 95 < half[100:200, 120:280].mean() < 106  # 50% black over grey 200


def test_output_is_jpeg_of_template_size(tmp_path: Path) -> None:
    template = load_template(flat_template(tmp_path / "t"))
    data = render_mockup(solid_design(), template)
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert data[:2] == b"\xff\xd8" and decoded.shape == (300, 400, 3)


def test_perspective_quad(tmp_path: Path) -> None:
    quad = [[150, 40], [320, 80], [300, 260], [120, 230]]
    template = load_template(flat_template(tmp_path / "t", quad=quad))
    out = render_mockup_array(solid_design(size=(100, 100)), template)
    changed = np.argwhere((out != 200).any(axis=2))
    assert changed.size and changed[:, 1].min() >= 119 and changed[:, 1].max() <= 321
    assert out[150, 220, 2] > 200  # centre of the quad is printed


@pytest.mark.parametrize(
    "edit, words",
    [
        (lambda m, f: (f / "base.png").unlink(), "base.png is missing"),
        (
            lambda m, f: m.update(print_area=[[500, 0], [900, 0], [900, 300], [500, 300]]),
            "lie outside",
        ),
        (lambda m, f: m.update(print_area=[[0, 0], [10, 0], [10, 10]]), "4 points"),
        (lambda m, f: m.pop("output_size"), "missing field 'output_size'"),
        (lambda m, f: m.update(output_size=[300, 300]), "the manifest says 300x300"),
    ],
    ids=["missing-file", "outside", "three-points", "no-size", "wrong-size"],
)
def test_bad_manifest_is_a_clear_error(tmp_path: Path, edit, words: str) -> None:
    folder = flat_template(tmp_path / "t")
    manifest = json.loads((folder / "template.json").read_text())
    edit(manifest, folder)
    (folder / "template.json").write_text(json.dumps(manifest))
    with pytest.raises(TemplateError) as info:
        load_template(folder)
    assert words in str(info.value)


def test_shipped_templates_load_and_regenerate(tmp_path: Path) -> None:
    shipped = {t.id for t in list_templates(SHIPPED)}
    assert {"tshirt", "poster"} <= shipped
    made = write_example_templates(tmp_path / "gen")
    for folder in made:
        template = load_template(folder)
        original = load_template(SHIPPED / folder.name)
        assert template.output_size == original.output_size
        out = render_mockup_array(solid_design(), template)
        assert out.shape[:2][::-1] == template.output_size
    shutil.rmtree(tmp_path / "gen")
