"""`designflow templates`: the mockup templates, and making them from a product photo or a
Photoshop mockup."""

from __future__ import annotations

from pathlib import Path

import typer

from designflow.cli.app import app, fail, out, print_json

templates = typer.Typer(help="Mockup templates.", no_args_is_help=True)
app.add_typer(templates, name="templates")


def _resources():
    from designflow.orchestration.resources import current

    return current()


def _writable_resources():
    """The resources, with a templates folder of the seller's own: a first template made
    without DESIGNFLOW_TEMPLATES starts $DESIGNFLOW_HOME/templates with a copy of the
    examples (they were the default, and must not vanish from the list)."""
    import shutil
    from importlib import resources

    from designflow.settings import Settings

    settings = Settings.from_env()
    examples = str(resources.files("designflow.examples") / "templates")
    if not settings.templates_set and settings.templates == examples:
        shutil.copytree(examples, settings.home / "templates", dirs_exist_ok=True)
    return _resources()


def _size(text: str | None) -> tuple[int, int] | None:
    from designflow.mockups.render import TemplateError

    if not text:
        return None
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise TemplateError(f"--size {text!r}: WIDTHxHEIGHT expected, e.g. 2000x2000") from None
    return w, h


def _save(draft, preview_to: str | None) -> int:
    from designflow.mockups.authoring import preview

    where = _writable_resources().save_template(draft.name, draft.files())
    h, w = draft.base.shape[:2]
    corners = ", ".join(f"({x:.1f}, {y:.1f})" for x, y in draft.print_area)
    out(f"template {draft.name!r} written to {where}: {w}x{h}, print area {corners}")
    if preview_to:
        Path(preview_to).write_bytes(preview(draft.template()))
        out(f"preview: {preview_to} (a checkerboard rendered through the template)")
    return 0


@templates.command("add")
def add(
    name: str = typer.Argument(..., help="template name (a folder name: letters, digits, - _ .)"),
    photo: Path = typer.Option(..., "--photo", help="photo of the blank product (JPEG, PNG, ...)"),
    corners: str | None = typer.Option(None, "--corners", help="print area corners x1,y1,...,x4,y4 (tl, tr, br, bl) in the photo's pixels"),
    mask: Path | None = typer.Option(None, "--mask", help="image as large as the photo, the print area painted white (or opaque) on black"),
    size: str | None = typer.Option(None, "--size", help="resize the template to WIDTHxHEIGHT (default: the photo's size)"),
    preview_to: str | None = typer.Option(None, "--preview", help="also render a checkerboard through it to this JPEG"),
) -> int:  # fmt: skip
    """Make a template from a photo of a blank product."""
    from designflow.mockups.authoring import parse_corners, template_from_photo
    from designflow.mockups.render import TemplateError

    try:
        quad = parse_corners(corners) if corners else None
        draft = template_from_photo(name, photo, quad, mask, _size(size))
        return _save(draft, preview_to)
    except TemplateError as exc:
        return fail(str(exc), 1)


@templates.command("import")
def import_psd(
    psd: Path = typer.Argument(..., help="Photoshop mockup (.psd) with a smart object layer"),
    layer: list[str] = typer.Option([], "--layer", help="a smart object layer's name (when there are several); repeat it for several print areas"),
    all_layers: bool = typer.Option(False, "--all-layers", help="every smart object layer is a print area"),
    name: str | None = typer.Option(None, "--name", help="template name (default: the file's name)"),
    size: str | None = typer.Option(None, "--size", help="resize the template to WIDTHxHEIGHT"),
    preview_to: str | None = typer.Option(None, "--preview", help="also render a checkerboard through it to this JPEG"),
) -> int:  # fmt: skip
    """Make a template from a Photoshop mockup (its smart object is the print area)."""
    from designflow.mockups.authoring import template_from_psd
    from designflow.mockups.render import TemplateError

    template_name = name or "".join(c if c.isalnum() or c in "-_." else "-" for c in psd.stem)
    try:
        draft = template_from_psd(template_name, psd, layer or None, _size(size), all_layers)
        return _save(draft, preview_to)
    except TemplateError as exc:
        return fail(str(exc), 1)


@templates.command("check")
def check_psd(
    psd: Path = typer.Argument(..., help="Photoshop mockup (.psd) saved with its composite (Maximize Compatibility)"),
    layer: str | None = typer.Option(None, "--layer", help="the smart object layer's name (when there are several)"),
    design: Path | None = typer.Option(None, "--design", help="the picture inside the smart object, when the PSD links it instead of embedding it"),
    as_json: bool = typer.Option(False, "--json", help="print the comparison as JSON"),
) -> int:  # fmt: skip
    """Compare the template made from a PSD with Photoshop's own rendering: the smart
    object's content rendered through it against the composite saved in the file."""
    from designflow.mockups.authoring import check_against_composite
    from designflow.mockups.render import TemplateError

    try:
        result = check_against_composite(psd, layer, design)
    except TemplateError as exc:
        return fail(str(exc), 1)
    if as_json:
        print_json({"mean_difference": round(result.mean_difference, 3), "share_off": round(result.share_off, 5),
                    "off_by": result.OFF_BY, "pixels": result.pixels, "content": result.content})  # fmt: skip
    else:
        out(f"{psd.name}: {result.line()}")
    return 0


@templates.command("list")
def list_templates() -> int:
    """List the templates: where each came from (photo, psd, hand-written) and its print area."""
    from designflow.mockups.authoring import source_of

    resources = _resources()
    root = resources.settings.templates
    names = resources.template_names()
    if not names:
        out(f"no templates in {root}")
        return 1
    for template_id in names:
        try:
            manifest = resources.template_manifest(template_id)
            w, h = manifest["output_size"]
            areas = manifest.get("print_areas") or [{"print_area": manifest["print_area"]}]
            area = " ".join(f"{x:g},{y:g}" for x, y in areas[0]["print_area"])
            if len(areas) > 1:
                area += (
                    f" (+{len(areas) - 1} more: {', '.join(str(a.get('name')) for a in areas[1:])})"
                )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            out(f"{template_id:16} BROKEN: {exc}")
            continue
        extras = "".join(f", {k}" for k in ("shading", "displacement") if manifest.get(k))
        out(f"{template_id:16} {str(manifest.get('name') or template_id)[:32]:32} "
            f"{source_of(manifest):12} {w}x{h}, print area {area}{extras}")  # fmt: skip
    return 0


@templates.command("show")
def show(
    name: str = typer.Argument(..., help="template name"),
    preview_to: str | None = typer.Option(None, "--preview", help="render a checkerboard through it to this JPEG"),
) -> int:  # fmt: skip
    """Show one template (its source and print area) and optionally render a preview."""
    from designflow.mockups.authoring import preview, source_of
    from designflow.mockups.render import TemplateError

    resources = _resources()
    try:
        template = resources.template(name)
        manifest = resources.template_manifest(name)
    except (TemplateError, OSError) as exc:
        return fail(str(exc), 1)
    w, h = template.output_size
    out(f"{name}: {template.name}")
    out(f"  source        {source_of(manifest)} {manifest.get('source', {}) or ''}")
    out(f"  size          {w}x{h}")
    for area_name, quad in template.areas:
        label = "print area" if len(template.areas) == 1 else area_name[:12]
        out(f"  {label:13} " + ", ".join(f"({x:g}, {y:g})" for x, y in quad.tolist()))
    out(f"  maps          shading {'yes' if template.shading is not None else 'no'}, "
        f"displacement {'yes' if template.displacement is not None else 'no'} "
        f"(strength {template.displacement_strength:g})")  # fmt: skip
    if preview_to:
        Path(preview_to).write_bytes(preview(template))
        out(f"preview: {preview_to}")
    return 0
