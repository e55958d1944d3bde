"""Allowed source folders: what a run started through the API may read."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from designflow.ingest.batching import collect_design_files
from designflow.ingest.roots import (
    NOT_ALLOWED,
    BadSourceRoot,
    SourceNotAllowed,
    default_deployment_roots,
    parse_source_roots,
)
from tests import images


def test_a_seller_root_allows_that_seller_only(tmp_path: Path) -> None:
    roots = parse_source_roots("nas:uploads/{user_id}", "shop-a")
    assert roots.problem("nas:uploads/shop-a/batch-1/") is None
    assert roots.problem("nas:uploads/shop-a") is None
    assert roots.problem("nas:uploads/shop-b/x.png") == NOT_ALLOWED
    assert roots.problem("nas:uploads/shop-a-evil/x.png") == NOT_ALLOWED  # not a prefix match
    assert roots.problem("nas:uploads/shop-a/../shop-b/x.png") == NOT_ALLOWED
    assert roots.problem("nas:uploads") == NOT_ALLOWED  # the parent holds every seller
    assert roots.problem("/etc/passwd") == NOT_ALLOWED
    assert roots.problem("sftp://me@127.0.0.1:22/srv/x.png") == NOT_ALLOWED
    with pytest.raises(SourceNotAllowed, match="/etc/passwd: not under an allowed source folder"):
        roots.check("/etc/passwd")


def test_local_roots_resolve_links_and_dots(tmp_path: Path) -> None:
    allowed = tmp_path / "uploads"
    (allowed / "shop").mkdir(parents=True)
    secret = tmp_path / "secret"
    secret.mkdir()
    images.write_png(secret / "theirs.png", seed=1)
    mine = images.write_png(allowed / "shop" / "mine.png", seed=2)
    (allowed / "shop" / "link.png").symlink_to(secret / "theirs.png")
    (allowed / "shop" / "linked-folder").symlink_to(secret)
    roots = parse_source_roots(f"{allowed}/{{user_id}}", "shop")
    assert roots.problem(str(mine)) is None
    assert roots.problem(str(allowed / "shop" / ".." / ".." / "secret")) == NOT_ALLOWED
    assert roots.problem(str(allowed / "shop" / "link.png")) == NOT_ALLOWED

    # A folder walk inside the allowed folder keeps its own files and refuses what the links
    # lead to outside it, naming each.
    files, unusable = collect_design_files([str(allowed / "shop")], allowed=roots)
    assert [f.path for f in files] == [str(mine)]
    reasons = {u.path: u.reason for u in unusable}
    assert "outside" in reasons.get(str(allowed / "shop" / "link.png"), ""), reasons
    # A folder named through a link that leads out of the roots is refused as a whole.
    files, unusable = collect_design_files([str(allowed / "shop" / "linked-folder")], allowed=roots)
    assert files == [] and [u.reason for u in unusable] == [NOT_ALLOWED]

    files, unusable = collect_design_files(["/etc/passwd", str(secret)], allowed=roots)
    assert files == []
    assert {(u.path, u.reason) for u in unusable} == {
        ("/etc/passwd", NOT_ALLOWED),
        (str(secret), NOT_ALLOWED),
    }


def test_a_local_nas_root_covers_its_folder(tmp_path: Path) -> None:
    nas = tmp_path / "nas"
    (nas / "uploads" / "shop").mkdir(parents=True)
    design = images.write_png(nas / "uploads" / "shop" / "a.png", seed=3)
    roots = parse_source_roots("nas:uploads/{user_id}", "shop", nas_folder=nas)
    files, unusable = collect_design_files(
        ["nas:uploads/shop/"], locate=lambda name: nas / name[len("nas:") :], allowed=roots
    )
    assert [f.path for f in files] == [str(design)] and unusable == []


def test_default_roots_for_deployments_and_bad_entries() -> None:
    assert default_deployment_roots("nas:inbox") == "nas:inbox,nas:"
    roots = parse_source_roots(default_deployment_roots("/srv/inbox"), "shop")
    assert roots.problem("nas:anything/here.png") is None
    assert roots.problem("/srv/inbox/shop/a.png") is None
    assert roots.problem(os.path.expanduser("~/.ssh/id_ed25519")) == NOT_ALLOWED
    for bad in ("relative/folder", "nas:../up", "/srv/{shop}"):
        with pytest.raises(BadSourceRoot, match="source root"):
            parse_source_roots(bad, "shop")
