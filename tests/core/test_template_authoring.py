"""Templates made from a blank product photo (corners or a painted mask) and from a Photoshop
mockup (a PSD built here with psd-tools' own structures), and the bad PSDs."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from designflow.cli import main
from designflow.mockups.authoring import corners_from_mask, template_from_photo, template_from_psd
from designflow.mockups.render import (
    PreparedDesign,
    TemplateError,
    load_template,
    render_mockup_array,
)
from designflow.testing.mockup_sources import painted_mask, product_photo, write_mockup_psd

SIZE = (1600, 1200)
SHIRT = np.array([[300, 150], [1300, 150], [1350, 1150], [250, 1150]], np.float32)
# A print area seen at an angle: no side parallel to the image's edges.
QUAD = np.array([[560.4, 330.2], [1040.7, 352.9], [1021.3, 930.5], [548.2, 901.8]], np.float32)


@pytest.fixture
def photo_files(tmp_path: Path) -> tuple[Path, Path]:
    photo, mask = tmp_path / "blank.jpg", tmp_path / "mask.png"
    cv2.imwrite(str(photo), product_photo(SIZE, SHIRT), [cv2.IMWRITE_JPEG_QUALITY, 95])
    cv2.imwrite(str(mask), painted_mask(SIZE, QUAD, ragged=1.5))
    return photo, mask


def _red_design() -> PreparedDesign:
    design = np.zeros((1000, 800, 4), np.uint8)
    design[...] = (0, 0, 255, 255)
    return PreparedDesign.from_array(design)


def _lands_inside(draft, quad: np.ndarray) -> None:
    """A red design rendered through the template: every changed pixel within the quad
    (1 px of anti-aliasing), and the quad's middle covered."""
    template = draft.template()
    out = render_mockup_array(_red_design(), template).astype(np.int16)
    changed = np.abs(out - template.base.astype(np.int16)).max(axis=2) > 40
    allowed = np.zeros(changed.shape, np.uint8)
    cv2.fillConvexPoly(allowed, (quad * 16).round().astype(np.int32), 1, cv2.LINE_AA, shift=4)
    allowed = cv2.dilate(allowed, np.ones((5, 5), np.uint8))  # 2 px
    assert changed.sum() > 0.5 * cv2.contourArea(quad)
    assert not (changed & (allowed == 0)).any(), "the design spills outside the print area"
    cx, cy = quad.mean(axis=0).round().astype(int)
    b, g, r = out[cy, cx]
    assert r > 120 and g < 80 and b < 80


def test_mask_gives_the_corners_within_2px_and_the_design_lands_inside(photo_files) -> None:
    photo, mask = photo_files
    draft = template_from_photo("shirt", photo, mask=mask)
    assert np.abs(draft.print_area - QUAD).max() <= 2.0, draft.print_area.tolist()
    _lands_inside(draft, QUAD)
    assert draft.source == {"kind": "photo", "photo": "blank.jpg", "print_area_from": "mask"}


def test_corners_are_kept_and_the_maps_follow_the_fabric(photo_files) -> None:
    photo, _ = photo_files
    draft = template_from_photo("shirt", photo, corners=QUAD[[2, 0, 3, 1]])  # any order
    np.testing.assert_allclose(draft.print_area, QUAD, atol=1e-4)
    _lands_inside(draft, QUAD)
    grey = cv2.cvtColor(cv2.imread(str(photo)), cv2.COLOR_BGR2GRAY)
    inside = np.zeros(grey.shape, np.uint8)
    cv2.fillConvexPoly(inside, QUAD.round().astype(np.int32), 1)
    # Shading: darker where the fabric is darker than its median (the crease), 255 outside.
    dark = (grey < np.median(grey[inside > 0]) - 40) & (inside > 0)
    assert dark.sum() > 100
    assert draft.shading[dark].mean() < 200 and (draft.shading[inside == 0] == 255).all()
    assert (draft.displacement[inside == 0] == 128).all()
    assert draft.displacement[inside > 0].std() > 10 and draft.displacement_strength > 0


def test_a_mask_with_no_paint_or_a_bad_corner_list_is_refused(photo_files, tmp_path) -> None:
    photo, _ = photo_files
    empty = tmp_path / "empty.png"
    cv2.imwrite(str(empty), np.zeros((SIZE[1], SIZE[0]), np.uint8))
    with pytest.raises(TemplateError, match="empty.png: the mask is empty"):
        template_from_photo("x", photo, mask=empty)
    outside = QUAD + np.array([1100, 0], np.float32)  # wholly off the photo
    with pytest.raises(TemplateError, match="lie outside the 1600x1200 image"):
        template_from_photo("x", photo, corners=outside)
    bleeding = QUAD + np.array([700, 0], np.float32)  # past the right edge: a bleed
    assert template_from_photo("x", photo, corners=bleeding).print_area[1, 0] > SIZE[0]
    assert np.abs(corners_from_mask(painted_mask(SIZE, QUAD)) - QUAD).max() <= 1.0


def test_psd_smart_object_gives_exact_corners_base_and_shading(tmp_path: Path) -> None:
    quad = np.array([[610.25, 400.5], [1390.0, 430.75], [1370.5, 1500.0], [630.0, 1470.25]])
    psd = tmp_path / "Tee Mockup.psd"
    photo = write_mockup_psd(psd, (2000, 2000), quad)
    draft = template_from_psd("tee", psd)
    assert draft.print_area.tolist() == quad.astype(np.float32).tolist()  # exactly
    assert np.array_equal(draft.base, photo)  # the layers below the smart object
    # The multiply layer above: 150 grey on the lower half of the print area, white elsewhere.
    assert draft.shading[1400, 1000] == 150 and draft.shading[500, 1000] == 255
    assert draft.source["kind"] == "psd" and draft.source["layer"] == "Your design"
    _lands_inside(draft, quad.astype(np.float32))


def test_a_photoshop_perspective_smart_object_imports_with_its_exact_quad(tmp_path: Path) -> None:
    """Photoshop writes a smart object distorted in perspective in its 'SoLd' block (the quad
    as nonAffineTransform, no 'PlLd'): psd-tools has no transform_box for it."""
    from psd_tools import PSDImage

    keystone = np.array([[480.5, 420.25], [1520.75, 405.0], [1390.0, 1490.5], [610.25, 1500.0]])
    psd = tmp_path / "Keystone Tee.psd"
    write_mockup_psd(psd, (2000, 2000), keystone, placement="SoLd")
    (smart,) = [layer for layer in PSDImage.open(psd).descendants() if layer.kind == "smartobject"]
    assert smart.smart_object.transform_box is None  # what psd-tools alone would use
    draft = template_from_psd("keystone", psd)
    assert np.abs(draft.print_area - keystone).max() <= 0.5
    assert draft.source["placement"] == "SoLd nonAffineTransform"
    assert draft.source["placed_size"] == [1000.0, 1200.0]
    _lands_inside(draft, keystone.astype(np.float32))


def test_a_smart_object_bleeding_past_the_canvas_imports_and_renders_clipped(
    tmp_path: Path,
) -> None:
    bleed = np.array([[-160.0, 90.0], [620.0, 70.0], [640.0, 660.0], [-140.0, 650.0]])
    psd = tmp_path / "mug wrap.psd"
    write_mockup_psd(psd, (800, 700), bleed, placement="SoLd")
    draft = template_from_psd("wrap", psd)
    assert draft.print_area.tolist() == bleed.astype(np.float32).tolist()
    folder = tmp_path / "templates" / "wrap"
    folder.mkdir(parents=True)
    for name, data in draft.files().items():
        (folder / name).write_bytes(data)
    template = load_template(folder)  # the saved manifest is accepted too
    out = render_mockup_array(_red_design(), template)
    # The design runs off the left edge: red right at the canvas' edge, none beyond the area.
    b, g, r = out[360, 2].astype(int)
    assert r > 120 and g < 80 and b < 80
    changed = np.abs(out.astype(int) - template.base.astype(int)).max(axis=2) > 40
    assert not changed[:, 660:].any() and not changed[:60].any()
    # A print area wholly off the image is still refused, naming the file.
    off = bleed + np.array([1000.0, 0.0])
    write_mockup_psd(tmp_path / "off.psd", (800, 700), off.clip(-1e9, None), placement="SoLd")
    with pytest.raises(TemplateError, match=r"off.psd .*lie outside the 800x700 image"):
        template_from_psd("off", tmp_path / "off.psd")


def test_psd_with_several_smart_objects_needs_a_layer_name(tmp_path: Path) -> None:
    quad = np.array([[100.0, 100.0], [500.0, 110.0], [490.0, 600.0], [110.0, 590.0]])
    psd = tmp_path / "two.psd"
    write_mockup_psd(psd, (800, 700), quad, smart_objects=("Front", "Back"))
    with pytest.raises(TemplateError, match=r"two.psd: 2 smart object layers \('Front', 'Back'\); choose one with --layer"):  # fmt: skip
        template_from_psd("two", psd)
    assert template_from_psd("two", psd, "Back").source["layer"] == "Back"
    with pytest.raises(TemplateError, match="no smart object layer named 'Side'"):
        template_from_psd("two", psd, "Side")


def _red_pixels(out: np.ndarray, base: np.ndarray) -> np.ndarray:
    b, g, r = (out.astype(int)[..., i] for i in range(3))
    return (r > 120) & (g < 90) & (b < 90) & (np.abs(out.astype(int) - base).max(axis=2) > 40)


def test_a_psd_with_a_front_and_a_back_makes_one_template_printing_both(tmp_path: Path) -> None:
    """`templates import --layer Front --layer Back` (or --all-layers): one template with two
    named print areas, each placed exactly where its smart object is; the design is printed
    into both, and nowhere else. Written and read back as `print_areas`."""
    front = np.array([[60.0, 120.0], [360.0, 130.0], [350.0, 560.0], [70.0, 550.0]])
    back = np.array([[440.0, 140.0], [740.0, 120.0], [730.0, 540.0], [450.0, 560.0]])
    psd = tmp_path / "front-back.psd"
    write_mockup_psd(psd, (800, 700), [front, back], smart_objects=("Front", "Back"),
                     placement="SoLd", shading_layer=False)  # fmt: skip
    draft = template_from_psd("shirt2", psd, ["Front", "Back"])
    assert draft.area_name == "Front" and [n for n, _ in draft.more_areas] == ["Back"]
    assert np.abs(draft.print_area - front).max() < 0.5
    assert np.abs(draft.more_areas[0][1] - back).max() < 0.5
    assert [n for n, _ in template_from_psd("all", psd, all_layers=True).template().areas] == [
        "Front",
        "Back",
    ]
    folder = tmp_path / "templates" / "shirt2"
    folder.mkdir(parents=True)
    for file_name, data in draft.files().items():
        (folder / file_name).write_bytes(data)
    template = load_template(folder)
    assert [n for n, _ in template.areas] == ["Front", "Back"]
    out = render_mockup_array(_red_design(), template)
    red = _red_pixels(out, template.base)
    for quad in (front, back):
        cx, cy = quad.mean(axis=0).astype(int)
        assert red[cy, cx], quad  # printed in this area
    outside = np.zeros(red.shape, np.uint8)
    for quad in (front, back):
        cv2.fillConvexPoly(outside, quad.round().astype(np.int32), 1)
    grown = cv2.dilate(outside, np.ones((5, 5), np.uint8))
    assert not (red & (grown == 0)).any()  # nowhere else
    with pytest.raises(TemplateError, match="named twice"):
        template_from_psd("x", psd, ["Front", "Front"])


def test_a_hand_written_template_may_list_several_print_areas(tmp_path: Path) -> None:
    folder = tmp_path / "mug"
    folder.mkdir()
    cv2.imwrite(str(folder / "base.jpg"), np.full((400, 600, 3), 200, np.uint8))
    areas = [{"name": "left", "print_area": [[20, 40], [260, 40], [260, 360], [20, 360]]},
             {"name": "right", "print_area": [[320, 40], [580, 40], [580, 360], [320, 360]]}]  # fmt: skip
    manifest = {"name": "Mug", "output_size": [600, 400], "base": "base.jpg", "print_areas": areas}
    (folder / "template.json").write_text(json.dumps(manifest))
    template = load_template(folder)
    out = render_mockup_array(_red_design(), template)
    red = _red_pixels(out, template.base)
    assert red[200, 140] and red[200, 450] and not red[200, 290]
    assert max(template.print_size) == 320  # the largest area: how large the design is read
    assert [n for n, _ in template.only(["right"]).areas] == ["right"]
    with pytest.raises(TemplateError, match=r"no print area 'back' \(its areas: left, right\)"):
        template.only(["back"])
    areas[1]["name"] = "left"
    (folder / "template.json").write_text(json.dumps(manifest))
    with pytest.raises(TemplateError, match="two print areas named 'left'"):
        load_template(folder)


def _patched(source: Path, dest: Path, offset: int, value: bytes) -> Path:
    data = bytearray(source.read_bytes())
    data[offset : offset + len(value)] = value
    dest.write_bytes(bytes(data))
    return dest


def test_bad_psds_are_refused_naming_the_file_and_the_reason(tmp_path: Path) -> None:
    quad = np.array([[100.0, 100.0], [500.0, 110.0], [490.0, 600.0], [110.0, 590.0]])
    good = tmp_path / "good.psd"
    write_mockup_psd(good, (800, 700), quad)
    flat = tmp_path / "flat.psd"
    write_mockup_psd(flat, (800, 700), quad, smart_objects=())
    # Header: signature(4) version(2) reserved(6) channels(2) height(4) width(4) depth(2) mode(2)
    cases = {
        flat: "flat.psd: no smart object layer",
        _patched(
            good, tmp_path / "big.psb", 4, b"\x00\x02"
        ): "big.psb: a PSB (large document) file",
        _patched(
            good, tmp_path / "cmyk.psd", 24, b"\x00\x04"
        ): "cmyk.psd: CMYK colour; convert it to RGB",
        _patched(good, tmp_path / "deep.psd", 22, b"\x00\x10"): "deep.psd: 16-bit channels",
        tmp_path / "notes.psd": "notes.psd: not a Photoshop file",
    }
    (tmp_path / "notes.psd").write_text("not a psd")
    cut = tmp_path / "cut.psd"
    cut.write_bytes(good.read_bytes()[:300])
    cases[cut] = "cut.psd: psd-tools cannot read it"
    for path, expected in cases.items():
        with pytest.raises(TemplateError) as caught:
            template_from_psd("x", path)
        assert expected in str(caught.value), (path.name, str(caught.value))


def test_templates_commands_add_import_list_show(
    photo_files, tmp_path, monkeypatch, capsys
) -> None:
    photo, mask = photo_files
    monkeypatch.setenv("DESIGNFLOW_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DESIGNFLOW_TEMPLATES", raising=False)
    preview = tmp_path / "preview.jpg"
    assert main(["templates", "add", "shirt-photo", "--photo", str(photo), "--mask", str(mask),
                 "--size", "800x600", "--preview", str(preview)]) == 0  # fmt: skip
    shown = cv2.imread(str(preview))
    assert shown is not None and shown.shape == (600, 800, 3)
    psd = tmp_path / "Mug mockup.psd"
    write_mockup_psd(psd, (900, 900), np.array([[200.0, 200.0], [700.0, 220.0], [690.0, 700.0], [210.0, 680.0]]))  # fmt: skip
    assert main(["templates", "import", str(psd)]) == 0
    capsys.readouterr()
    assert main(["templates", "list"]) == 0
    listed = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    # The examples stay beside the seller's own (copied into their new folder).
    assert set(listed) == {"shirt-photo", "Mug-mockup", "tshirt", "poster"}
    assert " photo " in listed["shirt-photo"] and " psd " in listed["Mug-mockup"]
    assert " hand-written " in listed["tshirt"]
    area = listed["shirt-photo"].split("print area ")[1].split(",", 2)
    assert abs(float(area[0]) - 280.2) < 1 and abs(float(area[1].split()[0]) - 165.1) < 1  # scaled
    manifest = json.loads(
        (tmp_path / "home" / "templates" / "Mug-mockup" / "template.json").read_text()
    )
    assert manifest["print_area"] == [[200, 200], [700, 220], [690, 700], [210, 680]]
    out = tmp_path / "mug.jpg"
    assert main(["templates", "show", "Mug-mockup", "--preview", str(out)]) == 0
    assert "source        psd" in capsys.readouterr().out and cv2.imread(str(out)).shape == (
        900,
        900,
        3,
    )
    assert main(["templates", "import", str(tmp_path / "missing.psd")]) == 1
    assert "missing.psd: no such file" in capsys.readouterr().err


def test_templates_added_to_the_nas_are_read_back_like_any(
    photo_files, tmp_path, monkeypatch
) -> None:
    from designflow import resources

    photo, mask = photo_files
    monkeypatch.setenv("DESIGNFLOW_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DESIGNFLOW_NAS_URL", f"file://{tmp_path / 'nas'}")
    monkeypatch.setenv("DESIGNFLOW_TEMPLATES", "nas:templates")
    assert main(["templates", "add", "shirt", "--photo", str(photo), "--mask", str(mask)]) == 0
    assert (tmp_path / "nas" / "templates" / "shirt" / "template.json").is_file()
    # Another machine (another home) reads it from the NAS.
    monkeypatch.setenv("DESIGNFLOW_HOME", str(tmp_path / "other-home"))
    template = resources.current().template("shirt")
    assert np.abs(template.print_area - QUAD).max() <= 2.0
    assert resources.current().template_names() == ["shirt"]
