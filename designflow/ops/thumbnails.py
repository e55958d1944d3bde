"""Small pictures of designs: the web pages' thumbnails and the Prefect UI's upload summary."""

from __future__ import annotations

import base64
import io
from pathlib import Path

from designflow.catalog import Catalog
from designflow.ingest.report import UploadReport
from designflow.storage.nas import Nas

THUMBNAIL_BOX = 320


def thumbnail_jpeg(source: bytes | Path, box: int = THUMBNAIL_BOX, quality: int = 85) -> bytes:
    """A JPEG at most `box` px on its longer side, transparency flattened on white (a design
    on a transparent canvas would show black otherwise)."""
    from PIL import Image

    with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
        image.draft("RGB", (box, box))  # JPEG: decoded at a fraction of its size
        image.thumbnail((box, box))
        rgba = image.convert("RGBA")
    flat = Image.new("RGB", rgba.size, (255, 255, 255))
    flat.paste(rgba, mask=rgba.getchannel("A"))
    out = io.BytesIO()
    flat.save(out, "JPEG", quality=quality)
    return out.getvalue()


def cached_thumbnail_path(user: str, design_id: int) -> str:
    return f"thumbnails/{user}/{design_id}.jpg"


def design_thumbnail(catalog: Catalog, nas: Nas, design_id: int, user: str) -> bytes | None:
    """A design's thumbnail, made once from its file on the NAS and kept on the NAS beside
    it (thumbnails/<user>/<id>.jpg); None for a design that is not the seller's."""
    design = catalog.designs_by_id([design_id]).get(design_id)
    if design is None or design["user_id"] != user:
        return None
    cached = cached_thumbnail_path(user, design_id)
    if nas.exists(cached):
        return nas.read_bytes(cached)
    data = thumbnail_jpeg(nas.read_bytes(str(design["nas_path"])))
    nas.write_small(cached, data)
    return data


def data_uri(jpeg: bytes) -> str:
    """An image carried inside markdown (the Prefect UI shows artifacts' data: images)."""
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")


# The summary is one artifact in the Prefect database: 12 pairs of 96 px JPEGs are ~100 kB.
SUMMARY_PAIRS = 12
SUMMARY_BOX = 96


def near_duplicates_markdown(
    report: UploadReport, catalog: Catalog, nas: Nas, limit: int = SUMMARY_PAIRS
) -> str:
    """A table of the upload's near duplicates: each file's thumbnail beside the design it
    matched, with the distance and why ("" when there were none)."""
    near = [d for d in report.duplicates if d.kind == "near"]
    if not near:
        return ""
    lines = ["### Near duplicates", "", "| file | | matched design | | distance | why |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    # Nothing is decoded again at the end of the run (~0.8 s a 4500x5400 PNG): the file's
    # picture is its fingerprint's; the matched design's is its cached thumbnail if the web
    # pages made one, else the verifier's grey reduction the catalog keeps.
    reductions = catalog.reductions([d.duplicate_of for d in near[:limit]])
    for d in near[:limit]:
        mine = _picture(lambda d=d: d.thumbnail or thumbnail_jpeg(Path(d.file), SUMMARY_BOX, 75))
        theirs = _picture(lambda d=d: _matched(nas, report.user_id, d.duplicate_of, reductions))
        better = " (this file is larger)" if d.better else ""
        lines.append(
            f"| {_cell(Path(d.file).name)} | {mine} | design {d.duplicate_of} | {theirs} "
            f"| {d.distance} | {_cell(d.why)}{better} |"
        )
    if len(near) > limit:
        lines.append(f"\n{len(near) - limit} more in the upload-outcomes table.")
    return "\n".join(lines) + "\n"


def _matched(nas: Nas, user: str, design_id: int, reductions: dict[int, bytes]) -> bytes | None:
    cached = cached_thumbnail_path(user, design_id)
    if nas.exists(cached):
        return thumbnail_jpeg(nas.read_bytes(cached), SUMMARY_BOX, 75)
    if design_id in reductions:
        return thumbnail_jpeg(reductions[design_id], SUMMARY_BOX, 75)
    return None


def _picture(make) -> str:
    try:
        jpeg = make()
    except Exception:  # noqa: BLE001 - a file gone or unreadable: the row stays, without it
        return "-"
    return f"![]({data_uri(jpeg)})" if jpeg else "-"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
