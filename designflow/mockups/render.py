"""Product mockups: templates as data, and an OpenCV renderer.

A template is a folder with `template.json` and its images:

    {"name": "T-shirt, white", "output_size": [2000, 2000],
     "print_area": [[x, y], [x, y], [x, y], [x, y]],   # top-left, top-right, bottom-right, bottom-left
     "base": "base.jpg", "shading": "shading.png", "displacement": "displacement.png",
     "displacement_strength": 8}

Several print areas (a front and a back, a pocket) replace `print_area` with
`"print_areas": [{"name": "front", "print_area": [...]}, {"name": "back", ...}]`: the design
is printed into each.

`shading` (grey, 255 = no change) multiplies the design so the fabric shows through;
`displacement` (grey, 128 = no shift) bends it along folds. Both are optional.

The design is decoded once and premultiplied once (`PreparedDesign`); each template then
costs a small resize, a perspective warp of the print area, a remap, a multiply and a JPEG.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from designflow.errors import PermanentError
from designflow.mockups.warp import WarpMesh, uv_maps

MANIFEST = "template.json"


class TemplateError(ValueError, PermanentError):
    """A template folder that cannot be used; the message names the file and the reason."""


@dataclass(frozen=True)
class Template:
    id: str
    name: str
    folder: Path
    output_size: tuple[int, int]  # (width, height)
    print_area: np.ndarray  # 4x2 float32: tl, tr, br, bl
    base: np.ndarray = field(repr=False)  # BGR uint8, output size
    shading: np.ndarray | None = field(default=None, repr=False)  # BGR uint8 (grey x3), 255 = none
    displacement: np.ndarray | None = field(default=None, repr=False)  # float32 -1..1
    displacement_strength: float = 0.0
    # The first print area's name, and any further ones (a back, a pocket): the design is
    # printed into each.
    area_name: str = "main"
    more_areas: tuple[tuple[str, np.ndarray], ...] = field(default=(), repr=False)
    # Print areas bent by a warp (Photoshop's Edit > Transform > Warp), by area name: the
    # design follows the mesh instead of the area's four corners (designflow.mockups.warp).
    warps: tuple[tuple[str, WarpMesh], ...] = field(default=(), repr=False)
    _maps: dict = field(default_factory=dict, repr=False, compare=False)

    def only(self, names: list[str]) -> Template:
        """The same template printing into the named areas only (`tee:front` in a mockup
        request), in the order named."""
        by_name = dict(self.areas)
        unknown = [n for n in names if n not in by_name]
        if unknown or not names:
            raise TemplateError(
                f"template {self.id!r} has no print area {', '.join(map(repr, unknown or ['']))}"
                f" (its areas: {', '.join(by_name)})"
            )
        (first, quad), *rest = [(n, by_name[n]) for n in names]
        return replace(self, print_area=quad, area_name=first, more_areas=tuple(rest), _maps={})

    @property
    def areas(self) -> list[tuple[str, np.ndarray]]:
        """Every print area as (name, quad), the first one first."""
        return [(self.area_name, self.print_area), *self.more_areas]

    @property
    def roi(self) -> tuple[int, int, int, int]:
        """Bounding box (x0, y0, x1, y1) of the print area: the only part a render touches."""
        return self.roi_of(self.print_area)

    def roi_of(self, quad: np.ndarray) -> tuple[int, int, int, int]:
        """Bounding box (x0, y0, x1, y1) of a print area, clipped to the image."""
        x0, y0 = np.floor(quad.min(axis=0)).astype(int)
        x1, y1 = np.ceil(quad.max(axis=0)).astype(int)
        # A print area that bleeds past the edges is drawn only where the image is.
        return (
            max(int(x0), 0),
            max(int(y0), 0),
            min(int(x1), self.output_size[0]),
            min(int(y1), self.output_size[1]),
        )

    def area_roi(self, index: int) -> tuple[int, int, int, int]:
        """The part of the image a print area's render touches: its quad's bounding box, or
        its warp mesh's (a warp may bend the design past the quad's corners)."""
        name, quad = self.areas[index]
        mesh = dict(self.warps).get(name)
        if mesh is None:
            return self.roi_of(quad)
        points = mesh.points.reshape(-1, 2).astype(np.float32)
        return self.roi_of(np.array([points.min(axis=0), points.max(axis=0)]))

    def remap_maps(self, index: int = 0) -> tuple[np.ndarray, np.ndarray] | None:
        """Fold displacement as cv2.remap maps over a print area, computed once."""
        if self.displacement is None or not self.displacement_strength:
            return None
        key = f"remap-{index}"
        if key not in self._maps:
            x0, y0, x1, y1 = self.area_roi(index)
            shift = self.displacement[y0:y1, x0:x1] * self.displacement_strength
            grid_x, grid_y = np.meshgrid(
                np.arange(x1 - x0, dtype=np.float32), np.arange(y1 - y0, dtype=np.float32)
            )
            # Folds move the print vertically more than sideways, as fabric does.
            self._maps[key] = cv2.convertMaps(grid_x + 0.35 * shift, grid_y + shift, cv2.CV_16SC2)
        return self._maps[key]

    def uv_maps(self, index: int) -> tuple[np.ndarray, np.ndarray] | None:
        """For a warped print area: the design's (u, v) at each pixel of the area's bounding
        box (-1 where it does not reach), computed once."""
        name = self.areas[index][0]
        mesh = dict(self.warps).get(name)
        if mesh is None:
            return None
        key = f"uv-{name}"
        if key not in self._maps:
            self._maps[key] = uv_maps(mesh, self.area_roi(index))
        return self._maps[key]

    @property
    def print_size(self) -> tuple[int, int]:
        """Width and height of the largest print area (its longest top/bottom and side
        edges): how large a design this template needs."""
        return max((quad_size(q) for _, q in self.areas), key=lambda wh: max(wh))


def quad_size(quad: np.ndarray) -> tuple[int, int]:
    """Width and height of a print area (its longest top/bottom and side edges)."""
    tl, tr, br, bl = quad
    width = max(np.linalg.norm(tr - tl), np.linalg.norm(br - bl))
    height = max(np.linalg.norm(bl - tl), np.linalg.norm(br - tr))
    return max(1, int(round(width))), max(1, int(round(height)))


def _read_manifest(manifest_path: Path) -> dict:
    """A template's manifest as a JSON object, or a TemplateError naming the file."""
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TemplateError(f"{manifest_path}: template manifest not found") from None
    except json.JSONDecodeError as exc:
        raise TemplateError(f"{manifest_path}: not valid JSON ({exc})") from None
    if not isinstance(manifest, dict):
        raise TemplateError(f"{manifest_path}: the manifest must be a JSON object")
    return manifest


def _output_size(value, manifest_path: Path) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in value)
    except (TypeError, ValueError):
        raise TemplateError(f"{manifest_path}: output_size must be [width, height]") from None
    if not (16 <= width <= 8000 and 16 <= height <= 8000):
        raise TemplateError(f"{manifest_path}: output_size {width}x{height} is out of range")
    return width, height


def load_template(folder: str | Path) -> Template:
    folder = Path(folder)
    manifest_path = folder / MANIFEST
    manifest = _read_manifest(manifest_path)

    def need(key: str):
        if key not in manifest:
            raise TemplateError(f"{manifest_path}: missing field {key!r}")
        return manifest[key]

    width, height = _output_size(need("output_size"), manifest_path)
    areas = (
        _print_areas(manifest["print_areas"], (width, height), manifest_path)
        if "print_areas" in manifest
        else [("main", _quad(need("print_area"), (width, height), str(manifest_path)))]
    )
    (area_name, quad), *more_areas = areas

    base = _read_image(folder, need("base"), cv2.IMREAD_COLOR, (width, height), manifest_path)
    shading = displacement = None
    if manifest.get("shading"):
        shading = _read_image(
            folder, manifest["shading"], cv2.IMREAD_GRAYSCALE, (width, height), manifest_path
        )
        shading = cv2.cvtColor(shading, cv2.COLOR_GRAY2BGR)
    if manifest.get("displacement"):
        raw = _read_image(
            folder, manifest["displacement"], cv2.IMREAD_GRAYSCALE, (width, height), manifest_path
        )
        displacement = (raw.astype(np.float32) - 128.0) / 127.0
    return Template(
        id=folder.name,
        name=str(manifest.get("name") or folder.name),
        folder=folder,
        output_size=(width, height),
        print_area=quad,
        base=base,
        shading=shading,
        displacement=displacement,
        displacement_strength=float(manifest.get("displacement_strength", 0.0)),
        area_name=area_name,
        more_areas=tuple(more_areas),
        warps=_warps(manifest, area_name, manifest_path),
    )


def _warps(
    manifest: dict, first_area: str, manifest_path: Path
) -> tuple[tuple[str, WarpMesh], ...]:
    """Warped print areas: "warp" beside a single "print_area", or in a print_areas entry."""
    entries = [(first_area, manifest.get("warp"))]
    if "print_areas" in manifest:
        entries = [(str(e.get("name") or f"area {i}"), e.get("warp"))
                   for i, e in enumerate(manifest["print_areas"])]  # fmt: skip
    try:
        return tuple((name, WarpMesh.from_manifest(w, f"{manifest_path} ({name})"))
                     for name, w in entries if w is not None)  # fmt: skip
    except ValueError as exc:
        raise TemplateError(str(exc)) from None


def _quad(points, size: tuple[int, int], where: str) -> np.ndarray:
    if (
        not isinstance(points, list)
        or len(points) != 4
        or any(not isinstance(p, list | tuple) or len(p) != 2 for p in points)
    ):
        raise TemplateError(f"{where}: print_area must be 4 points [x, y] (tl, tr, br, bl)")
    quad = np.array(points, dtype=np.float32)
    check_print_area(quad, size, where)
    return quad


def _print_areas(value, size: tuple[int, int], manifest_path: Path) -> list[tuple[str, np.ndarray]]:
    """`print_areas`: a list of {"name", "print_area"}, names unique."""
    if not isinstance(value, list) or not value:
        raise TemplateError(f"{manifest_path}: print_areas must be a non-empty list")
    areas: list[tuple[str, np.ndarray]] = []
    for i, entry in enumerate(value, start=1):
        if not isinstance(entry, dict) or "print_area" not in entry:
            raise TemplateError(f"{manifest_path}: print_areas[{i}] needs a print_area")
        name = str(entry.get("name") or f"area {i}")
        if name in {n for n, _ in areas}:
            raise TemplateError(f"{manifest_path}: two print areas named {name!r}")
        areas.append((name, _quad(entry["print_area"], size, f"{manifest_path} ({name})")))
    return areas


def check_print_area(
    quad: np.ndarray, size: tuple[int, int], where: str, min_area: float = 16
) -> None:
    """The print area's four corners enclose an area, and enough of it lies on the image. It
    may reach past the edges (a design bled off a mug's wrap or a poster's frame): rendered
    into the whole quad, clipped by the image. Corners further out than the image's own size
    are a mistake, not a bleed."""
    w, h = size
    if (np.abs(quad) > 3 * max(w, h)).any() or not np.isfinite(quad).all():
        raise TemplateError(
            f"{where}: the print area's corners {quad.round(1).tolist()} lie far outside the {w}x{h} image"
        )
    if abs(cv2.contourArea(quad)) < min_area:
        raise TemplateError(f"{where}: the print area is degenerate (no area)")
    image = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
    hull = cv2.convexHull(quad.astype(np.float32))
    on_image, _ = cv2.intersectConvexConvex(hull, image)
    if on_image < min_area:
        raise TemplateError(
            f"{where}: the print area's corners {quad.round(1).tolist()} lie outside the {w}x{h} image"
        )


def _read_image(
    folder: Path, name: str, flags: int, size: tuple[int, int], manifest: Path
) -> np.ndarray:
    path = folder / str(name)
    if not path.is_file():
        raise TemplateError(f"{manifest}: {path.name} is missing from the template folder")
    image = cv2.imread(str(path), flags)
    if image is None:
        raise TemplateError(f"{path}: not a readable image")
    if (image.shape[1], image.shape[0]) != size:
        raise TemplateError(
            f"{path}: is {image.shape[1]}x{image.shape[0]}, the manifest says {size[0]}x{size[1]}"
        )
    return image


def list_templates(root: str | Path) -> list[Template]:
    root = Path(root)
    return [load_template(p.parent) for p in sorted(root.glob(f"*/{MANIFEST}"))]


@dataclass
class PreparedDesign:
    """A design decoded once: premultiplied BGRA, reduced once to the largest size any
    template needs, so each render starts from a small image."""

    premultiplied: np.ndarray  # BGRA uint8, premultiplied alpha
    width: int
    height: int

    @classmethod
    def from_bytes(cls, data: bytes, max_side: int = 2048) -> PreparedDesign:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        if image is None:
            raise ValueError("the design cannot be decoded")
        return cls.from_array(image, max_side)

    @classmethod
    def from_array(cls, image: np.ndarray, max_side: int = 2048) -> PreparedDesign:
        if image.dtype == np.uint16:
            image = (image >> 8).astype(np.uint8)
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGRA)
        elif image.shape[2] == 3:
            image = cv2.cvtColor(image, cv2.COLOR_BGR2BGRA)
        height, width = image.shape[:2]
        # Premultiply before any resampling: transparent pixels' hidden colours never bleed.
        premultiplied = cv2.cvtColor(image, cv2.COLOR_RGBA2mRGBA)
        scale = min(1.0, max_side / max(width, height))
        if scale < 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            premultiplied = cv2.resize(premultiplied, size, interpolation=cv2.INTER_AREA)
        return cls(premultiplied, width, height)


def render_mockup(design: PreparedDesign, template: Template, jpeg_quality: int = 90) -> bytes:
    """The template's photo with the design printed in its print area, as JPEG bytes."""
    return encode_jpeg(render_mockup_array(design, template), jpeg_quality)


def render_mockup_array(design: PreparedDesign, template: Template) -> np.ndarray:
    """The template's photo with the design printed into each of its print areas."""
    out = template.base.copy()
    for index, (_, quad) in enumerate(template.areas):
        _print_into(out, design, template, quad, index)
    return out


def _print_into(
    out: np.ndarray, design: PreparedDesign, template: Template, quad: np.ndarray, index: int
) -> None:
    area_w, area_h = quad_size(quad)
    src = design.premultiplied
    src_h, src_w = src.shape[:2]
    # Fit the design inside the print area, centred, keeping its proportions ...
    scale = min(area_w / src_w, area_h / src_h)
    fit_w, fit_h = src_w * scale, src_h * scale
    x0, y0 = (area_w - fit_w) / 2, (area_h - fit_h) / 2
    placed = np.array(
        [[x0, y0], [x0 + fit_w, y0], [x0 + fit_w, y0 + fit_h], [x0, y0 + fit_h]], np.float32
    )
    if scale < 0.5:  # a large reduction: area-average first so the warp does not alias
        src = cv2.resize(
            src, (max(1, round(fit_w)), max(1, round(fit_h))), interpolation=cv2.INTER_AREA
        )
        src_h, src_w = src.shape[:2]

    # ... then one perspective warp (or the warp mesh's remap), design pixels straight into
    # the bounding box of the print area (not the whole photo).
    bx0, by0, bx1, by1 = template.area_roi(index)
    roi_w, roi_h = bx1 - bx0, by1 - by0
    if roi_w <= 0 or roi_h <= 0:
        return
    uv = template.uv_maps(index)
    if uv is not None:
        warped = _follow_mesh(src, uv, (area_w, area_h), placed)
    else:
        rect = np.array([[0, 0], [area_w, 0], [area_w, area_h], [0, area_h]], np.float32)
        area_to_roi = cv2.getPerspectiveTransform(rect, quad - np.array([bx0, by0], np.float32))
        corners = cv2.perspectiveTransform(placed[None], area_to_roi)[0]
        source = np.array([[0, 0], [src_w, 0], [src_w, src_h], [0, src_h]], np.float32)
        homography = cv2.getPerspectiveTransform(source, corners)
        warped = cv2.warpPerspective(
            src,
            homography,
            (roi_w, roi_h),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=0,
        )
    maps = template.remap_maps(index)
    if maps is not None:
        warped = cv2.remap(warped, maps[0], maps[1], cv2.INTER_LINEAR, borderValue=0)

    # Integer blending in OpenCV (saturating, SIMD): premultiplied "over", colour first
    # multiplied by the shading so the fabric's folds and light show through the print.
    color = warped[..., :3]
    alpha = cv2.cvtColor(warped[..., 3], cv2.COLOR_GRAY2BGR)
    if template.shading is not None:
        color = cv2.multiply(color, template.shading[by0:by1, bx0:bx1], scale=1 / 255)
    base = out[by0:by1, bx0:bx1]
    behind = cv2.multiply(base, cv2.bitwise_not(alpha), scale=1 / 255)
    out[by0:by1, bx0:bx1] = cv2.add(color, behind)


def _follow_mesh(
    src: np.ndarray, uv: tuple[np.ndarray, np.ndarray], area: tuple[int, int], placed: np.ndarray
) -> np.ndarray:
    """The design remapped along a warped print area: a pixel at (u, v) of the area shows
    the design where the fitted design covers that spot of the area."""
    (u, v), (area_w, area_h) = uv, area
    (x0, y0), (x1, y1) = placed[0], placed[2]
    src_h, src_w = src.shape[:2]
    per_x, per_y = src_w / (x1 - x0), src_h / (y1 - y0)  # design pixels per area pixel
    # u = -1 outside the mesh: far left of the design, so the border (transparent) shows.
    map_x = cv2.addWeighted(u, area_w * per_x, u, 0.0, -x0 * per_x)
    map_y = cv2.addWeighted(v, area_h * per_y, v, 0.0, -y0 * per_y)
    # Fixed-point maps (1/32 px) remap faster than float ones.
    fixed, fraction = cv2.convertMaps(map_x, map_y, cv2.CV_16SC2)
    return cv2.remap(
        src, fixed, fraction, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
    )


def encode_jpeg(image: np.ndarray, quality: int = 90) -> bytes:
    ok, buffer = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buffer.tobytes()
