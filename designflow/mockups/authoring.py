"""Making mockup templates from what sellers have: a photo of a blank product, or a
Photoshop mockup (a PSD with a smart object layer where the design goes).

From a photo, the print area is given by its four corners or by a mask painted over it (the
corners then come from the mask's outline). The shading map is the blank product's own
luminance inside the print area relative to its median, smoothed, so folds and highlights
show through the design; the displacement map is the more strongly smoothed luminance,
centred on 128 (the way Photoshop's displace filter is used on fabric). From a PSD, the smart
object's transform gives the corners, the layers below it the base photo, and the layers
above it that multiply, screen or overlay the shading.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from designflow.mockups import render
from designflow.mockups.render import (
    MANIFEST,
    PreparedDesign,
    Template,
    TemplateError,
    render_mockup,
)
from designflow.mockups.warp import WarpMesh, is_flat, placed_mesh

SOURCE_KINDS = ("photo", "psd", "hand-written")


@dataclass
class TemplateDraft:
    """A template before it is written: the base photo and maps as arrays."""

    name: str
    base: np.ndarray  # BGR uint8
    print_area: np.ndarray  # 4x2 float32: tl, tr, br, bl, in the base's pixels
    shading: np.ndarray | None  # grey uint8, 255 = no change
    displacement: np.ndarray | None  # grey uint8, 128 = no shift
    displacement_strength: float
    source: dict = field(default_factory=dict)
    # Several print areas (a PSD's front and back smart objects): the first one's name, and
    # the others as (name, quad).
    area_name: str = "main"
    more_areas: list[tuple[str, np.ndarray]] = field(default_factory=list)
    # Warped print areas by name (a PSD smart object's warp mesh, on the base's pixels).
    warps: dict[str, WarpMesh] = field(default_factory=dict)

    def files(self) -> dict[str, bytes]:
        """The template folder's files, by name."""
        h, w = self.base.shape[:2]
        manifest: dict = {
            "name": self.name,
            "output_size": [w, h],
            "print_area": [[round(float(x), 2), round(float(y), 2)] for x, y in self.print_area],
            "base": "base.jpg",
            "source": self.source,
        }
        if self.more_areas or self.warps:
            manifest["print_areas"] = [
                {"name": name, "print_area": [[round(float(x), 2), round(float(y), 2)] for x, y in quad]}
                | ({"warp": self.warps[name].as_manifest()} if name in self.warps else {})
                for name, quad in [(self.area_name, self.print_area), *self.more_areas]
            ]  # fmt: skip
        out = {"base.jpg": _encode(".jpg", self.base, [cv2.IMWRITE_JPEG_QUALITY, 95])}
        if self.shading is not None:
            manifest["shading"] = "shading.png"
            out["shading.png"] = _encode(".png", self.shading)
        if self.displacement is not None:
            manifest["displacement"] = "displacement.png"
            manifest["displacement_strength"] = self.displacement_strength
            out["displacement.png"] = _encode(".png", self.displacement)
        out[MANIFEST] = (json.dumps(manifest, indent=2) + "\n").encode()
        return out

    def template(self, folder: Path = Path(".")) -> Template:
        """The draft as the renderer loads it (for a preview before anything is written)."""
        displacement = None
        if self.displacement is not None:
            displacement = (self.displacement.astype(np.float32) - 128.0) / 127.0
        shading = None if self.shading is None else cv2.cvtColor(self.shading, cv2.COLOR_GRAY2BGR)
        h, w = self.base.shape[:2]
        return Template(
            id=self.name, name=self.name, folder=folder, output_size=(w, h),
            print_area=self.print_area.astype(np.float32), base=self.base, shading=shading,
            displacement=displacement, displacement_strength=self.displacement_strength,
            area_name=self.area_name,
            more_areas=tuple((n, q.astype(np.float32)) for n, q in self.more_areas),
            warps=tuple(self.warps.items()),
        )  # fmt: skip


def _encode(ext: str, image: np.ndarray, params: list[int] | None = None) -> bytes:
    ok, buffer = cv2.imencode(ext, image, params or [])
    if not ok:
        raise TemplateError(f"could not encode {ext}")
    return buffer.tobytes()


# -- the print area ----------------------------------------------------------------------


def parse_corners(text: str) -> np.ndarray:
    """`x1,y1,x2,y2,x3,y3,x4,y4` (tl, tr, br, bl) as a 4x2 array."""
    try:
        values = [float(v) for v in text.replace(" ", "").split(",")]
    except ValueError:
        raise TemplateError(f"--corners {text!r}: eight numbers x1,y1,...,x4,y4 expected") from None
    if len(values) != 8:
        raise TemplateError(f"--corners {text!r}: eight numbers expected, got {len(values)}")
    return np.array(values, np.float32).reshape(4, 2)


def order_corners(points: np.ndarray) -> np.ndarray:
    """Four points as tl, tr, br, bl (clockwise from the one nearest the top-left)."""
    points = np.asarray(points, np.float32).reshape(4, 2)
    centre = points.mean(axis=0)
    angles = np.arctan2(points[:, 1] - centre[1], points[:, 0] - centre[0])
    clockwise = points[np.argsort(angles)]  # y grows downwards: increasing angle is clockwise
    start = int(np.argmin(clockwise.sum(axis=1)))
    return np.roll(clockwise, -start, axis=0)


def corners_from_mask(mask: np.ndarray, name: str = "mask") -> np.ndarray:
    """The quadrilateral a painted mask covers: the outline's four dominant corners, each
    side then fitted as a line through the outline's points and the corners taken as the
    sides' intersections (sub-pixel, robust to a ragged brush edge)."""
    if mask.ndim == 3:
        mask = (
            cv2.cvtColor(mask[..., :3], cv2.COLOR_BGR2GRAY) if mask.shape[2] >= 3 else mask[..., 0]
        )
    binary = (mask > 127).astype(np.uint8)
    contours, _ = cv2.findContours(binary, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not contours:
        raise TemplateError(f"{name}: the mask is empty (paint the print area white on black)")
    outline = max(contours, key=cv2.contourArea)
    if cv2.contourArea(outline) < 64:
        raise TemplateError(f"{name}: the painted area is too small to be a print area")
    hull = cv2.convexHull(outline)
    perimeter = cv2.arcLength(hull, True)
    quad = None
    for fraction in np.linspace(0.005, 0.1, 40):
        approx = cv2.approxPolyDP(hull, fraction * perimeter, True)
        if len(approx) == 4:
            quad = approx.reshape(4, 2).astype(np.float32)
            break
    if quad is None:
        quad = cv2.boxPoints(cv2.minAreaRect(outline)).astype(np.float32)
    quad = order_corners(quad)
    return _refine_with_side_lines(outline.reshape(-1, 2).astype(np.float32), quad)


def _refine_with_side_lines(points: np.ndarray, quad: np.ndarray) -> np.ndarray:
    lines = []
    for i in range(4):
        a, b = quad[i], quad[(i + 1) % 4]
        side = b - a
        length = float(np.linalg.norm(side))
        if length < 4:
            return quad
        normal = np.array([-side[1], side[0]]) / length
        along = (points - a) @ (side / length)
        across = np.abs((points - a) @ normal)
        # The side's own points: near the line, away from the corners' rounding.
        near = (across < max(3.0, 0.02 * length)) & (along > 0.1 * length) & (along < 0.9 * length)
        if near.sum() < 5:
            return quad
        vx, vy, x0, y0 = cv2.fitLine(points[near], cv2.DIST_HUBER, 0, 0.01, 0.01).ravel()
        lines.append((np.array([x0, y0]), np.array([vx, vy])))
    refined = []
    for i in range(4):  # corner i is where side i-1 meets side i
        (p1, d1), (p2, d2) = lines[i - 1], lines[i]
        matrix = np.array([d1, -d2]).T
        if abs(np.linalg.det(matrix)) < 1e-6:
            return quad
        t = np.linalg.solve(matrix, p2 - p1)[0]
        refined.append(p1 + t * d1)
    # The mask thresholded at half coverage keeps the pixels whose centres are inside the
    # area, and OpenCV's coordinates are pixel centres: the fitted sides lie on the painted
    # edges (measured: corners within 0.9 px, also with a 1.5 px ragged brush).
    return np.array(refined, np.float32)


def check_print_area(quad: np.ndarray, size: tuple[int, int], name: str) -> None:
    """Partly inside the image (it may bleed past the edges), with an area, and convex (tl,
    tr, br, bl of a real quadrilateral)."""
    render.check_print_area(quad, size, name, min_area=64)
    if not cv2.isContourConvex(quad.astype(np.float32).reshape(-1, 1, 2)):
        raise TemplateError(
            f"{name}: the corners must be given as tl, tr, br, bl of a convex quadrilateral"
        )


# -- maps from the product's own light ---------------------------------------------------


def maps_from_luminance(base: np.ndarray, quad: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(shading, displacement, strength) from the blank product's luminance in the print area."""
    h, w = base.shape[:2]
    grey = cv2.cvtColor(base, cv2.COLOR_BGR2GRAY).astype(np.float32)
    inside = np.zeros((h, w), np.uint8)
    cv2.fillConvexPoly(inside, quad.round().astype(np.int32), 1)
    values = grey[inside > 0]
    median = float(np.median(values)) if values.size else 128.0
    scale = max(w, h) / 2000.0  # smoothing sized to the photo: texture goes, folds stay
    # Shading: light relative to the area's median, lightly smoothed (weave and noise gone).
    shade = cv2.GaussianBlur(grey, (0, 0), max(1.0, 2.0 * scale)) / max(median, 1.0)
    shading = np.where(inside > 0, np.clip(shade * 255.0, 0, 255), 255).astype(np.uint8)
    # Displacement: strongly smoothed luminance around the median, ±127 at the 99th percentile.
    smooth = cv2.GaussianBlur(grey, (0, 0), max(2.0, 12.0 * scale)) - median
    spread = float(np.percentile(np.abs(smooth[inside > 0]), 99)) if values.size else 0.0
    normalised = smooth / spread * 127.0 if spread > 1.0 else smooth * 0.0
    displacement = np.where(inside > 0, np.clip(128.0 + normalised, 0, 255), 128).astype(np.uint8)
    strength = round(max(2.0, 8.0 * scale) if spread > 1.0 else 0.0, 1)
    return shading, displacement, strength


# -- from a photo ------------------------------------------------------------------------


def read_image(path: str | Path, flags: int = cv2.IMREAD_COLOR) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise TemplateError(f"{path}: no such file")
    image = cv2.imread(str(path), flags)
    if image is None:
        raise TemplateError(f"{path}: not a readable image (JPEG, PNG, TIFF or WebP)")
    return image


def template_from_photo(
    name: str,
    photo: str | Path,
    corners: np.ndarray | None = None,
    mask: str | Path | None = None,
    size: tuple[int, int] | None = None,
) -> TemplateDraft:
    """A template from a blank product photo; corners in the photo's own pixels."""
    if (corners is None) == (mask is None):
        raise TemplateError("give the print area either as --corners or as --mask, not both")
    base = read_image(photo)
    h, w = base.shape[:2]
    if corners is None:
        painted = read_image(mask, cv2.IMREAD_UNCHANGED)
        if painted.shape[:2] != (h, w):
            raise TemplateError(
                f"{mask}: is {painted.shape[1]}x{painted.shape[0]}, the photo {w}x{h}"
            )
        if painted.ndim == 3 and painted.shape[2] == 4 and painted[..., 3].min() < 255:
            painted = painted[..., 3]  # painted on a transparent layer: the alpha is the mask
        quad = corners_from_mask(painted, str(mask))
    else:
        quad = order_corners(corners)
    check_print_area(quad, (w, h), str(photo))
    if size is not None and size != (w, h):
        base = cv2.resize(
            base, size, interpolation=cv2.INTER_AREA if size[0] < w else cv2.INTER_CUBIC
        )
        quad = quad * np.array([size[0] / w, size[1] / h], np.float32)
    _check_size(base, str(photo))
    shading, displacement, strength = maps_from_luminance(base, quad)
    source = {
        "kind": "photo",
        "photo": Path(photo).name,
        "print_area_from": "mask" if mask else "corners",
    }
    return TemplateDraft(
        name, base, quad.astype(np.float32), shading, displacement, strength, source
    )


def _check_size(base: np.ndarray, name: str) -> None:
    h, w = base.shape[:2]
    if not (16 <= w <= 8000 and 16 <= h <= 8000):
        raise TemplateError(f"{name}: {w}x{h} is outside 16..8000 pixels a side (use --size)")


# -- from a Photoshop mockup -------------------------------------------------------------

_COLOR_MODES = {0: "bitmap", 1: "greyscale", 2: "indexed", 3: "RGB", 4: "CMYK", 7: "multichannel", 8: "duotone", 9: "Lab"}  # fmt: skip
SHADING_BLENDS = ("multiply", "screen", "overlay")


def check_psd_header(path: Path) -> None:
    """What psd-tools would choke on or designflow cannot use, said before any pixel is read."""
    try:
        with open(path, "rb") as handle:
            header = handle.read(26)
    except OSError as exc:
        raise TemplateError(f"{path}: cannot read it ({exc.strerror})") from None
    if len(header) < 26 or header[:4] != b"8BPS":
        raise TemplateError(f"{path}: not a Photoshop file (no 8BPS signature)")
    version, _channels, _h, _w, depth, mode = struct.unpack(">H6xHIIHH", header[4:26])
    if version == 2:
        raise TemplateError(
            f"{path}: a PSB (large document) file; save it as PSD (at most 30000 px a side)"
        )
    if version != 1:
        raise TemplateError(f"{path}: unknown Photoshop file version {version}")
    if mode != 3:
        raise TemplateError(
            f"{path}: {_COLOR_MODES.get(mode, f'mode {mode}')} colour; convert it to RGB in Photoshop"
        )
    if depth != 8:
        raise TemplateError(f"{path}: {depth}-bit channels; convert it to 8 bits per channel")


def template_from_psd(
    name: str,
    path: str | Path,
    layer_name: str | Sequence[str] | None = None,
    size: tuple[int, int] | None = None,
    all_layers: bool = False,
) -> TemplateDraft:
    """A template from a Photoshop mockup: the design goes where its smart object is (one
    named layer, several named layers or all smart objects: one print area each)."""
    path = Path(path)
    psd, layers = _open_psd(path)
    targets = _targets(path, layers, layer_name, all_layers)
    w, h = psd.width, psd.height
    placed = []
    for target in targets:
        quad, placement = smart_object_placement(target)
        if quad is None:
            raise TemplateError(
                f"{path}: smart object {target.name!r} has no placement (transform)"
            )
        check_print_area(quad, (w, h), f"{path} (smart object {target.name!r})")
        placed.append((target, quad, placement))
    lowest = min(layers.index(t) for t in targets)
    chosen = {id(t) for t in targets}
    below = {id(layer) for layer in layers[:lowest]}
    above = [
        layer
        for layer in layers[lowest + 1 :]
        if id(layer) not in chosen and _blend(layer) in SHADING_BLENDS and layer.is_visible()
    ]
    base = _composite(psd, lambda layer: id(layer) in below, (w, h), background=(255, 255, 255))
    shading = None
    if above:
        keep = {id(layer) for layer in above}
        over_white = _composite(
            psd, lambda layer: id(layer) in keep, (w, h), background=(255, 255, 255)
        )
        shading = cv2.cvtColor(over_white, cv2.COLOR_BGR2GRAY)
    if size is not None and size != (w, h):
        base = cv2.resize(base, size, interpolation=cv2.INTER_AREA)
        if shading is not None:
            shading = cv2.resize(shading, size, interpolation=cv2.INTER_AREA)
        factor = np.array([size[0] / w, size[1] / h], np.float32)
        placed = [(t, q * factor, p) for t, q, p in placed]
    _check_size(base, str(path))
    derived_shading, displacement, strength = _maps_for_areas(base, [q for _, q, _ in placed])
    target, quad, placement = placed[0]
    source = {"kind": "psd", "psd": path.name, "layer": target.name, **placement,
              "shading_from": "layers above" if shading is not None else "base luminance"}  # fmt: skip
    if len(placed) > 1:
        source["layers"] = [t.name for t, _, _ in placed]
    warps = {}
    for t, q, _ in placed:
        mesh = warp_mesh(t, q)
        if mesh is not None:
            warps[t.name] = mesh
    if warps:
        source["warp"] = sorted(warps)
    return TemplateDraft(
        name, base, quad, shading if shading is not None else derived_shading, displacement,
        strength, source, area_name=target.name,
        more_areas=[(t.name, q) for t, q, _ in placed[1:]], warps=warps,
    )  # fmt: skip


@dataclass(frozen=True)
class CompositeCheck:
    """How a template's render of the smart object's own content compares with the
    composite Photoshop saved in the file, over the print area."""

    mean_difference: float  # grey levels, 0-255
    share_off: float  # of the print area's pixels, off by more than OFF_BY
    pixels: int
    content: str  # where the rendered content came from

    OFF_BY = 64

    def line(self) -> str:
        return (
            f"mean |difference| {self.mean_difference:.2f} grey levels over {self.pixels:,} px of the"
            f" print area, {100 * self.share_off:.2f}% off by more than {self.OFF_BY} ({self.content})"
        )


def check_against_composite(
    path: str | Path, layer_name: str | None = None, design: str | Path | None = None
) -> CompositeCheck:
    """Render the smart object's content (embedded in the file, or `design`) through the
    template made from the PSD, and compare it with the composite Photoshop stored in the
    file (what Photoshop showed when it was saved), inside the print area."""
    path = Path(path)
    psd, layers = _open_psd(path)
    target = _smart_object(path, layers, layer_name)
    template = template_from_psd(path.stem, path, target.name).template()
    content, where = _smart_object_content(path, target, design)
    saved = psd.topil()
    if saved is None:
        raise TemplateError(
            f"{path}: no composite image in the file (saved without Maximize Compatibility?)"
        )
    expected = cv2.cvtColor(np.asarray(saved.convert("RGB")), cv2.COLOR_RGB2GRAY).astype(np.float32)
    rendered = render.render_mockup_array(PreparedDesign.from_array(content), template)
    grey = cv2.cvtColor(rendered, cv2.COLOR_BGR2GRAY).astype(np.float32)
    area = _area_mask(template, expected.shape)
    diff = np.abs(grey - expected)[area]
    if diff.size == 0:
        raise TemplateError(f"{path}: the print area does not lie on the image")
    return CompositeCheck(
        float(diff.mean()), float((diff > CompositeCheck.OFF_BY).mean()), int(diff.size), where
    )


def _smart_object_content(path: Path, layer, design) -> tuple[np.ndarray, str]:
    """The picture inside the smart object, BGRA: `design` when given, else the file
    embedded in the PSD (an image, or a PSD/PSB composited)."""
    import io

    from PIL import Image

    if design is not None:
        image = cv2.imread(str(design), cv2.IMREAD_UNCHANGED)
        if image is None:
            raise TemplateError(f"{design}: not an image OpenCV can read")
        return _bgra(image), f"content from {Path(design).name}"
    try:
        data = layer.smart_object.data if layer.smart_object.kind == "data" else None
    except ValueError:  # psd-tools: no linked-layer block for this object at all
        data = None
    if not data:
        raise TemplateError(
            f"{path}: smart object {layer.name!r} links its content instead of embedding it;"
            " give the picture with --design"
        )
    if layer.smart_object.is_psd():
        from psd_tools import PSDImage

        picture = PSDImage.open(io.BytesIO(data)).composite()
    else:
        picture = Image.open(io.BytesIO(data))
    rgba = np.asarray(picture.convert("RGBA"))
    return cv2.cvtColor(
        rgba, cv2.COLOR_RGBA2BGRA
    ), f"content embedded as {layer.smart_object.filename}"


def _bgra(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGRA)
    if image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2BGRA)
    return image


def _area_mask(template: Template, shape: tuple[int, ...]) -> np.ndarray:
    """The print area's pixels (the warp mesh's outline when warped), its edge left out:
    anti-aliasing there says nothing about where the design went."""
    mask = np.zeros(shape[:2], np.uint8)
    mesh = dict(template.warps).get(template.area_name)
    if mesh is not None:
        p = mesh.points
        outline = np.concatenate([p[0, :], p[1:, -1], p[-1, -2::-1], p[-2:0:-1, 0]])
    else:
        outline = template.print_area
    cv2.fillPoly(mask, [np.round(outline).astype(np.int32)], 1)
    return cv2.erode(mask, np.ones((7, 7), np.uint8)) > 0


def _targets(path: Path, layers: list, layer_name, all_layers: bool) -> list:
    if all_layers:
        smart = [layer for layer in layers if layer.kind == "smartobject"]
        if not smart:
            raise TemplateError(f"{path}: no smart object layer (the layer where the design goes)")
        return smart
    names = [layer_name] if isinstance(layer_name, str) or layer_name is None else list(layer_name)
    if len(names) <= 1:
        return [_smart_object(path, layers, names[0] if names else None)]
    if len(set(names)) != len(names):
        raise TemplateError(f"{path}: a smart object layer is named twice with --layer")
    return [_smart_object(path, layers, n) for n in names]


def _warp(layer):
    try:
        return layer.smart_object.warp
    except ValueError:  # no smart object settings block: no warp either
        return None


def warp_mesh(layer, quad: np.ndarray) -> WarpMesh | None:
    """The smart object's warp (Edit > Transform > Warp) on the canvas, None when it has
    none or Photoshop's untouched grid. A "quiltWarp" (a grid split into several patches)
    is read in preference to "warp", which Photoshop then leaves at its default."""
    config = getattr(layer.smart_object, "_config", None)
    data = getattr(config, "data", None)
    if data is None:
        return None
    for key in (b"quiltWarp", b"warp"):
        found = _control_grid(data.get(key))
        if found is not None:
            control, bounds = found
            if is_flat(control, bounds):
                return None
            # The placement carries the object's whole content (its placed size) onto the
            # quad; the warp's bounds are that content in the files seen.
            size = data.get(b"Sz  ")
            if size is not None and b"Wdth" in size and b"Hght" in size:
                bounds = (0.0, 0.0, float(size[b"Wdth"]), float(size[b"Hght"]))
            return placed_mesh(control, bounds, quad)
    return None


def _control_grid(warp) -> tuple[np.ndarray, tuple[float, float, float, float]] | None:
    """A warp descriptor's control points (rows, cols, 2) and bounds (left, top, right,
    bottom), as Photoshop writes them: customEnvelopeWarp.meshPoints with Hrzn and Vrtc
    lists, row by row; rows and columns from deformNumRows/-Cols (a quilt) or 4."""
    if warp is None:
        return None
    try:
        mesh = warp[b"customEnvelopeWarp"][b"meshPoints"]
        xs = [float(v) for v in getattr(mesh[b"Hrzn"], "values", mesh[b"Hrzn"])]
        ys = [float(v) for v in getattr(mesh[b"Vrtc"], "values", mesh[b"Vrtc"])]
        box = warp[b"bounds"]
        bounds = tuple(
            float(getattr(box[k], "value", box[k])) for k in (b"Left", b"Top ", b"Rght", b"Btom")
        )
    except (KeyError, TypeError, ValueError):
        return None
    rows = int(getattr(warp.get(b"deformNumRows"), "value", 4) or 4)
    cols = int(getattr(warp.get(b"deformNumCols"), "value", 4) or 4)
    if len(xs) != rows * cols or len(ys) != rows * cols or not all(np.isfinite(xs + ys)):
        return None
    return np.stack([np.reshape(xs, (rows, cols)), np.reshape(ys, (rows, cols))], axis=-1), bounds  # type: ignore[return-value]


def _maps_for_areas(
    base: np.ndarray, quads: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray, float]:
    """Shading and displacement from the base's luminance inside each print area (each
    map is neutral outside its own area: 255 and 128)."""
    shading, displacement, strength = maps_from_luminance(base, quads[0])
    for quad in quads[1:]:
        more_shading, more_displacement, more_strength = maps_from_luminance(base, quad)
        shading = np.minimum(shading, more_shading)
        further = np.abs(more_displacement.astype(np.int16) - 128) > np.abs(
            displacement.astype(np.int16) - 128
        )
        displacement = np.where(further, more_displacement, displacement)
        strength = max(strength, more_strength)
    return shading, displacement, strength


def smart_object_placement(layer) -> tuple[np.ndarray | None, dict[str, object]]:
    """Where a smart object's content lies on the canvas (tl, tr, br, bl), as Photoshop writes
    it: in the smart object block ('SoLd', newer files) its `nonAffineTransform`, the quad
    itself when the object was distorted in perspective (a keystone: Photoshop keeps the
    affine `Trnf` beside it), else `Trnf`; in the placed layer block ('PlLd', older files)
    its transform. psd-tools' transform_box reads only the latter, so a perspective smart
    object from Photoshop had no placement. Also returns what was read, for the manifest."""
    from psd_tools.constants import Tag

    for tag in (Tag.SMART_OBJECT_LAYER_DATA1, Tag.SMART_OBJECT_LAYER_DATA2):
        block = layer.tagged_blocks.get_data(tag)
        if block is None:
            continue
        data = block.data
        for key in (b"nonAffineTransform", b"Trnf"):
            quad = _eight_numbers(data.get(key))
            if quad is not None:
                info: dict[str, object] = {"placement": f"SoLd {key.decode()}"}
                size = data.get(b"Sz  ")
                if size is not None and b"Wdth" in size and b"Hght" in size:
                    info["placed_size"] = [float(size[b"Wdth"]), float(size[b"Hght"])]
                return quad, info
    box = layer.smart_object.transform_box
    if box is None:
        return None, {}
    return np.array(box, np.float32).reshape(4, 2), {"placement": "PlLd transform"}


def _eight_numbers(values) -> np.ndarray | None:
    try:
        numbers = [float(getattr(v, "value", v)) for v in values]
    except (TypeError, ValueError):
        return None
    if len(numbers) != 8 or not all(np.isfinite(numbers)):
        return None
    return np.array(numbers, np.float32).reshape(4, 2)


def _open_psd(path: Path):
    """The PSD and its layers (all, nested ones included), or a TemplateError saying why."""
    if not path.is_file():
        raise TemplateError(f"{path}: no such file")
    check_psd_header(path)
    try:
        from psd_tools import PSDImage
    except ImportError:  # pragma: no cover - a dependency
        raise TemplateError(
            "importing PSD mockups needs psd-tools (pip install psd-tools)"
        ) from None
    try:
        psd = PSDImage.open(path)
        return psd, list(psd.descendants())
    except Exception as exc:  # psd-tools raises many kinds on a damaged file
        raise TemplateError(
            f"{path}: psd-tools cannot read it ({type(exc).__name__}: {exc})"
        ) from None


def _smart_object(path: Path, layers: list, layer_name: str | None):
    """The one smart object layer where the design goes (named by `layer_name` if given)."""
    smart = [layer for layer in layers if layer.kind == "smartobject"]
    if layer_name is not None:
        named = [layer for layer in smart if layer.name == layer_name]
        if not named:
            names = ", ".join(repr(layer.name) for layer in smart) or "none"
            raise TemplateError(
                f"{path}: no smart object layer named {layer_name!r} (smart objects: {names})"
            )
        smart = named[:1]
    if not smart:
        raise TemplateError(f"{path}: no smart object layer (the layer where the design goes)")
    if len(smart) > 1:
        names = ", ".join(repr(layer.name) for layer in smart)
        raise TemplateError(
            f"{path}: {len(smart)} smart object layers ({names}); choose one with --layer"
        )
    return smart[0]


def _blend(layer) -> str:
    mode = getattr(layer, "blend_mode", None)
    return str(getattr(mode, "name", mode) or "").lower()


def _composite(
    psd, keep: Callable, size: tuple[int, int], background: tuple[int, int, int]
) -> np.ndarray:
    """The chosen layers composited (psd-tools, one layer at a time) over a background, BGR."""
    from PIL import Image

    image = psd.composite(layer_filter=lambda layer: keep(layer) and layer.is_visible(), force=True)
    canvas = Image.new("RGB", size, background)
    if image is not None:
        image = image.convert("RGBA")
        canvas.paste(image, (0, 0), image)
    return cv2.cvtColor(np.asarray(canvas), cv2.COLOR_RGB2BGR)


# -- preview -----------------------------------------------------------------------------


def checkerboard(size: int = 1200, squares: int = 8) -> np.ndarray:
    """A BGRA test design: black and white squares with a red frame, opaque."""
    cell = size // squares
    ys, xs = np.indices((size, size)) // cell
    board = np.where((xs + ys) % 2 == 0, 255, 30).astype(np.uint8)
    out = cv2.cvtColor(board, cv2.COLOR_GRAY2BGRA)
    cv2.rectangle(out, (0, 0), (size - 1, size - 1), (0, 0, 220, 255), max(4, size // 60))
    return out


def preview(template: Template, quality: int = 88) -> bytes:
    """A checkerboard rendered through the template: the fit, the folds and the light."""
    return render_mockup(PreparedDesign.from_array(checkerboard()), template, quality)


def source_of(manifest: dict) -> str:
    source = manifest.get("source")
    kind = source.get("kind") if isinstance(source, dict) else None
    return kind if kind in SOURCE_KINDS else "hand-written"
