"""`designflow templates`: the mockup templates."""

from __future__ import annotations

from pathlib import Path

import typer

from designflow.cli.app import app, out

templates = typer.Typer(help="Mockup templates.", no_args_is_help=True)
app.add_typer(templates, name="templates")


@templates.command("list")
def list_templates() -> int:
    """List the available templates."""
    from designflow.mockups.render import TemplateError, load_template
    from designflow.settings import Settings

    root = Settings.from_env().templates
    if root.startswith("nas:"):
        out(f"templates on the NAS under {root[4:]} (copied locally on first use)")
        return 0
    folders = sorted(p.parent for p in Path(root).glob("*/template.json"))
    if not folders:
        out(f"no templates in {root}")
        return 1
    for folder in folders:
        try:
            t = load_template(folder)
        except TemplateError as exc:
            out(f"{folder.name:16} BROKEN: {exc}")
            continue
        w, h = t.output_size
        pw, ph = t.print_size
        extras = [
            n
            for n, v in (("shading", t.shading), ("displacement", t.displacement))
            if v is not None
        ]
        out(
            f"{t.id:16} {t.name:32} {w}x{h}, print area ~{pw}x{ph}{''.join(', ' + e for e in extras)}"
        )
    return 0
