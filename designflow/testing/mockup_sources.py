"""What sellers make templates from, made in code (tests and benchmarks): a photo of a blank
product with a known print area, the mask a seller would paint over it, and a Photoshop
mockup with a smart object layer written with psd-tools' own structures."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def product_photo(size: tuple[int, int], shirt: np.ndarray, seed: int = 7) -> np.ndarray:
    """BGR photo: a wall, a light garment (the polygon `shirt`) with soft folds and a dark
    diagonal crease, and sensor noise."""
    w, h = size
    rng = np.random.default_rng(seed)
    yy, xx = np.indices((h, w)).astype(np.float32)
    wall = np.empty((h, w, 3), np.float32)
    wall[...] = (96, 122, 150)
    inside = np.zeros((h, w), np.uint8)
    cv2.fillPoly(inside, [shirt.round().astype(np.int32)], 1)
    folds = 205 + 22 * np.sin(xx / (w / 43)) * np.cos(yy / (h / 23))
    crease = 70 * np.exp(-(((xx - yy * 0.4 - w * 0.3) / (w / 90)) ** 2))
    fabric = np.clip(folds - crease, 0, 255)
    photo = np.where(inside[..., None] > 0, fabric[..., None], wall)
    photo += rng.normal(0, 2.0, photo.shape)
    return np.clip(photo, 0, 255).astype(np.uint8)


def painted_mask(
    size: tuple[int, int], quad: np.ndarray, ragged: float = 0.0, seed: int = 3
) -> np.ndarray:
    """White on black over the print area, anti-aliased; `ragged` px of brush wobble."""
    w, h = size
    mask = np.zeros((h, w), np.uint8)
    points = np.asarray(quad, np.float32)
    if ragged:
        rng = np.random.default_rng(seed)
        edge = []
        for i in range(4):
            a, b = points[i], points[(i + 1) % 4]
            for t in np.linspace(0, 1, 60, endpoint=False):
                p = a + (b - a) * t
                edge.append(p + (rng.uniform(-ragged, ragged, 2) if 0 < t else 0))
        points = np.array(edge, np.float32)
    cv2.fillPoly(mask, [(points * 16).round().astype(np.int32)], 255, cv2.LINE_AA, shift=4)
    return mask


def write_mockup_psd(
    path: Path,
    size: tuple[int, int],
    quad: np.ndarray | list[np.ndarray],
    smart_objects: tuple[str, ...] = ("Your design",),
    shading_layer: bool = True,
    photo: np.ndarray | None = None,
    placement: str = "PlLd",
    warps: list[np.ndarray | None] | None = None,
    composite: np.ndarray | None = None,
) -> np.ndarray:
    """An RGB 8-bit PSD: a photo layer, smart object layer(s) placed at `quad`, and a
    multiply shadow layer above. `placement` says where the quad is written: "PlLd" (the
    placed layer block's transform, older files) or "SoLd" (the smart object block, as
    Photoshop writes a smart object distorted in perspective: the quad as
    `nonAffineTransform`, its bounding box as the affine `Trnf`, the placed size as `Sz  `).
    The quad may reach past the canvas (a bleed). `warps` (with "SoLd"): per smart object, a
    Photoshop warp's control grid (rows, cols, 2) in the object's 1000x1200 pixels, or None.
    `composite` (BGR, the canvas size): the merged image stored in the file, what Photoshop
    would have shown. Returns the photo (BGR) as written."""
    from PIL import Image
    from psd_tools import PSDImage
    from psd_tools.api.layers import PixelLayer
    from psd_tools.constants import BlendMode, Tag
    from psd_tools.psd.descriptor import DescriptorBlock2

    w, h = size
    if photo is None:
        photo = product_photo(size, np.array([[w * 0.15, h * 0.08], [w * 0.85, h * 0.08], [w * 0.9, h * 0.97], [w * 0.1, h * 0.97]]))  # fmt: skip
    psd = PSDImage.new("RGB", size)
    psd.append(PixelLayer.frompil(Image.fromarray(cv2.cvtColor(photo, cv2.COLOR_BGR2RGB)), psd, "Background photo"))  # fmt: skip
    # One quad for every smart object, or a list of them: one each (several print areas).
    quads = list(quad) if isinstance(quad, list | tuple) else [quad] * max(len(smart_objects), 1)

    def box(quad: np.ndarray) -> tuple[int, int, int, int]:
        x0, y0 = np.clip(np.floor(quad.min(axis=0)).astype(int), 0, None)
        x1, y1 = np.minimum(np.ceil(quad.max(axis=0)).astype(int), (w, h))
        if x1 <= x0 or y1 <= y0:  # placed wholly off the canvas: a token pixel layer
            return 0, 0, 16, 16
        return int(x0), int(y0), int(x1), int(y1)

    for index, name in enumerate(smart_objects):
        quad = np.asarray(quads[index], np.float32)
        x0, y0, x1, y1 = box(quad)
        placeholder = Image.new("RGBA", (int(x1 - x0), int(y1 - y0)), (230, 230, 230, 255))
        layer = PixelLayer.frompil(placeholder, psd, name, top=int(y0), left=int(x0))
        psd.append(layer)
        if placement == "SoLd":
            _smart_object_block(layer, quad, index, (warps or [None] * (index + 1))[index])
            continue
        layer._record.tagged_blocks.set_data(
            Tag.PLACED_LAYER1, uuid=f"design-{index}".encode(), layer_type=2,
            transform=tuple(float(v) for v in np.asarray(quad, np.float64).ravel()),
            warp=DescriptorBlock2(),
        )  # fmt: skip
    if shading_layer:
        x0, y0, x1, y1 = box(np.asarray(quads[0], np.float32))
        shadow = np.full((h, w, 3), 255, np.uint8)
        cv2.rectangle(
            shadow, (int(x0), int((y0 + y1) / 2)), (int(x1), int(y1)), (150, 150, 150), -1
        )
        layer = PixelLayer.frompil(Image.fromarray(shadow), psd, "Shadows")
        layer.blend_mode = BlendMode.MULTIPLY
        psd.append(layer)
    psd.save(path)
    if composite is not None:  # saved again unedited: psd-tools keeps the merged image given
        saved = PSDImage.open(path)
        rgb = cv2.cvtColor(composite, cv2.COLOR_BGR2RGB)
        planes = [rgb[..., c].tobytes() for c in range(3)]
        saved._record.image_data.set_data(planes, saved._record.header)
        saved.save(path)
    return photo


def _smart_object_block(
    layer, quad: np.ndarray, index: int, warp: np.ndarray | None = None
) -> None:
    """The 'SoLd' block Photoshop writes for a placed smart object, with psd-tools' own
    descriptor classes: the perspective quad only there (no 'PlLd'), and a warp when given
    (as Photoshop writes Edit > Transform > Warp: a custom envelope's mesh points over the
    object's bounds; more than 4x4 points as a quilt warp)."""
    from psd_tools.constants import Tag
    from psd_tools.psd.descriptor import Descriptor, DescriptorBlock, Double, List, String

    def doubles(values) -> List:
        return List([Double(float(v)) for v in values])

    (left, top), (right, bottom) = quad.min(axis=0), quad.max(axis=0)
    size = Descriptor()
    size[b"Wdth"], size[b"Hght"] = Double(1000.0), Double(1200.0)
    data = DescriptorBlock()
    data[b"Idnt"] = String(f"design-{index}")
    data[b"Trnf"] = doubles([left, top, right, top, right, bottom, left, bottom])
    data[b"nonAffineTransform"] = doubles(np.asarray(quad, np.float64).ravel())
    data[b"Sz  "] = size
    if warp is not None:
        data[b"quiltWarp" if warp.shape[:2] != (4, 4) else b"warp"] = _warp_descriptor(
            warp, (1000.0, 1200.0)
        )
    layer._record.tagged_blocks.set_data(Tag.SMART_OBJECT_LAYER_DATA1, data=data)


def _warp_descriptor(control: np.ndarray, size: tuple[float, float]):
    from psd_tools.psd.descriptor import (
        Descriptor,
        Double,
        Enumerated,
        Integer,
        ObjectArray,
        UnitFloat,
        UnitFloats,
    )

    rows, cols = control.shape[:2]
    bounds = Descriptor(classID=b"classFloatRect")
    for key, value in ((b"Top ", 0.0), (b"Left", 0.0), (b"Btom", size[1]), (b"Rght", size[0])):
        bounds[key] = UnitFloat(unit=b"#Pxl", value=value)
    points = ObjectArray(classID=b"rationalPoint", items_count=rows * cols)
    points[b"Hrzn"] = UnitFloats(unit=b"#Pxl", values=[float(v) for v in control[..., 0].ravel()])
    points[b"Vrtc"] = UnitFloats(unit=b"#Pxl", values=[float(v) for v in control[..., 1].ravel()])
    envelope = Descriptor(classID=b"customEnvelopeWarp")
    envelope[b"meshPoints"] = points
    warp = Descriptor(classID=b"warp")
    warp[b"warpStyle"] = Enumerated(typeID=b"warpStyle", enum=b"warpCustom")
    warp[b"warpValue"] = Double(0.0)
    warp[b"warpPerspective"] = Double(0.0)
    warp[b"warpPerspectiveOther"] = Double(0.0)
    warp[b"warpRotate"] = Enumerated(typeID=b"Ornt", enum=b"Hrzn")
    warp[b"bounds"] = bounds
    warp[b"uOrder"] = Integer(4)
    warp[b"vOrder"] = Integer(4)
    if (rows, cols) != (4, 4):
        warp[b"deformNumRows"] = Integer(rows)
        warp[b"deformNumCols"] = Integer(cols)
    warp[b"customEnvelopeWarp"] = envelope
    return warp
