"""What a seller owns: `designs list` and `designs find`."""

from __future__ import annotations

from pathlib import Path

import typer

from designflow.cli.app import app, fail, out, print_json

designs = typer.Typer(help="A seller's designs: list them, find the ones like an image.", no_args_is_help=True)  # fmt: skip
app.add_typer(designs, name="designs")

USER_HELP = "the seller's user id"


@designs.command("list")
def designs_list(
    user: str = typer.Option(..., "--user", help=USER_HELP),
    near_of: int | None = typer.Option(None, "--near-of", metavar="ID", help="only this design and those stored as its near duplicates"),
    page: int = typer.Option(1, "--page", min=1, help="page number, newest designs first"),
    per_page: int = typer.Option(50, "--per-page", min=1, max=1000, help="designs per page"),
    as_json: bool = typer.Option(False, "--json", help="print the page as JSON"),
) -> int:  # fmt: skip
    """The seller's designs, newest first: id, name, size, pixels, stored at, mockups, listing."""
    from designflow.orchestration import resources
    from designflow.storage.nas import InvalidUserId, check_user_id

    try:
        check_user_id(user)
        rows, total = resources.catalog().list_designs(
            user, near_of, per_page, (page - 1) * per_page
        )
    except InvalidUserId as exc:
        return fail(str(exc))
    finally:
        resources.close_all()
    if as_json:
        print_json({"user_id": user, "page": page, "per_page": per_page, "total": total,
                    "designs": rows})  # fmt: skip
        return 0
    pages = max(1, -(-total // per_page))
    out(f"{total} design(s) of {user}; page {page} of {pages}")
    for r in rows:
        near = f"  near duplicate of {r['near_duplicate_of']}" if r["near_duplicate_of"] else ""
        listing = f"  listing {r['listing_id']}" if r["listing_id"] else ""
        out(f"  {r['id']:>8}  {r['original_name']}  {r['width']}x{r['height']}  "
            f"{int(r['bytes']) / 1e6:.1f} MB  {r['created_at']:%Y-%m-%d %H:%M}  "
            f"{r['mockups']} mockup(s){listing}{near}")  # fmt: skip
    return 0


@designs.command("find")
def designs_find(
    image: Path = typer.Argument(..., help="an image file"),
    user: str = typer.Option(..., "--user", help=USER_HELP),
    distance: int | None = typer.Option(None, "--distance", min=0, max=15, help="phash bits (default: DESIGNFLOW_NEAR_DUP_DISTANCE)"),
    limit: int = typer.Option(20, "--limit", min=1, max=200, help="most designs shown"),
    as_json: bool = typer.Option(False, "--json", help="print the designs found as JSON"),
) -> int:  # fmt: skip
    """The seller's designs that look like IMAGE, the closest first, with the distance and
    whether they show the same artwork. Nothing is stored."""
    from designflow.images.fingerprint import RejectedDesign, fingerprint_design
    from designflow.ingest.lookup import designs_like
    from designflow.orchestration import resources
    from designflow.storage.nas import InvalidUserId, check_user_id

    try:
        check_user_id(user)
        settings = resources.current_settings()
        fingerprint = fingerprint_design(image, settings.limits)
        found = designs_like(resources.catalog(), user, fingerprint,
                             settings.near_dup_distance if distance is None else distance, limit)  # fmt: skip
    except (InvalidUserId, RejectedDesign) as exc:
        return fail(f"{image}: {exc}" if isinstance(exc, RejectedDesign) else str(exc))
    finally:
        resources.close_all()
    if as_json:
        print_json({"image": str(image), "user_id": user, "designs": [f.as_dict() for f in found]})
        return 0
    out(f"{len(found)} design(s) of {user} like {image}" + (":" if found else ""))
    for f in found:
        out(f"  {f.design_id:>8}  {f.name}  distance {f.distance}  {f.kind}: {f.why}")
    return 0
