"""The layers as DESIGN.md draws them, checked on the source: the core never imports Prefect,
and settings are read from the environment in one place."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CORE = ["catalog", "images", "ingest", "storage", "etsy", "mockups"]
CORE_MODULES = ["errors.py", "settings.py", "resources.py"]


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def test_the_core_never_imports_prefect() -> None:
    files = [p for d in CORE for p in (ROOT / "designflow" / d).rglob("*.py")]
    files += [ROOT / "designflow" / m for m in CORE_MODULES]
    assert len(files) > 20
    offenders = [str(p.relative_to(ROOT)) for p in files if "prefect" in _imports(p)]
    assert offenders == []


def test_designflow_settings_are_read_in_settings_py_only() -> None:
    reads = re.compile(r"""(environ|getenv|env)(\.get)?[\[(]\s*["']DESIGNFLOW_""")
    files = [
        p for d in ("designflow", "flows", "tasks", "deployments") for p in (ROOT / d).rglob("*.py")
    ]
    offenders = [
        f"{p.relative_to(ROOT)}:{n}"
        for p in files
        if p.name != "settings.py"
        for n, line in enumerate(p.read_text().splitlines(), start=1)
        if reads.search(line)
    ]
    assert offenders == []


def test_facts_written_once() -> None:
    """The priority queues, the NAS layout of designs and mockups, and the run heartbeat
    switch are each defined in one place; the upload flow's priority choices (a Literal, for
    the Prefect UI's form) are those queues."""
    import typing

    from designflow.flows.upload import upload_designs
    from designflow.mockups import PRIORITY_QUEUES

    sources = {
        p: p.read_text()
        for d in ("designflow", "flows", "tasks", "deployments")
        for p in (ROOT / d).rglob("*.py")
    }

    def where(pattern: str) -> list[str]:
        return sorted(
            str(p.relative_to(ROOT)) for p, text in sources.items() if re.search(pattern, text)
        )

    assert where(r"""["']high["']:\s*1""") == ["designflow/mockups/__init__.py"]
    assert where(r"\.mockups/") == ["designflow/storage/nas.py"]
    assert where(r"users/\{") == ["designflow/storage/nas.py"]
    assert where(r"PREFECT_FLOWS_HEARTBEAT_FREQUENCY\b(?!\" not in)") == ["tasks/runners.py"]
    hints = typing.get_type_hints(upload_designs.fn)
    assert set(typing.get_args(hints["priority"])) == set(PRIORITY_QUEUES)
