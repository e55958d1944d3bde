"""The layers as DESIGN.md draws them, checked on the source: the core never imports Prefect,
and settings are read from the environment in one place."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CORE = ["catalog", "images", "ingest", "storage", "etsy", "mockups", "ops"]
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


def test_every_core_module_imports_with_prefect_unavailable() -> None:
    """Checked by running it, not only by reading imports: a fresh interpreter in which any
    import of prefect fails imports every core module."""
    import subprocess
    import sys

    modules = [
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for d in CORE
        for p in sorted((ROOT / "designflow" / d).rglob("*.py"))
    ] + [f"designflow.{m.removesuffix('.py')}" for m in CORE_MODULES]
    program = (
        "import importlib, sys\n"
        "class NoPrefect:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'prefect' or name.startswith('prefect.') or name.startswith('prefect_'):\n"
        "            raise ImportError('prefect is unavailable in this check: ' + name)\n"
        "sys.meta_path.insert(0, NoPrefect())\n"
        f"for m in {modules!r}:\n"
        "    importlib.import_module(m)\n"
        "print(len([m for m in sys.modules if m.startswith('designflow')]))\n"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    assert int(done.stdout) >= len(modules) > 30


def test_tasks_holds_tasks() -> None:
    """Every module in tasks/ defines at least one Prefect task; what flows and tasks share
    without being a task lives in designflow/orchestration."""
    modules = [p for p in sorted((ROOT / "tasks").glob("*.py")) if p.name != "__init__.py"]
    without = [p.name for p in modules if not re.search(r"^@task\b", p.read_text(), re.M)]
    assert len(modules) >= 7 and without == []


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
    assert where(r"PREFECT_FLOWS_HEARTBEAT_FREQUENCY\b(?!\" not in)") == [
        "designflow/orchestration/runners.py"
    ]
    hints = typing.get_type_hints(upload_designs.fn)
    assert set(typing.get_args(hints["priority"])) == set(PRIORITY_QUEUES)


def test_following_a_value_stays_short() -> None:
    """A reader following `paths` from upload_designs, or `inbox` from sweep_inbox, crosses
    few files and rarely goes back to one already read (bench/walks.py says how it counts)."""
    from bench.walks import walk

    paths = walk("flows/upload.py", "upload_designs", "paths")
    assert "designflow/ingest/batching.py" in paths.trail
    assert len(set(paths.trail)) <= 6 and paths.climbs <= 2, paths.trail
    inbox = walk("flows/sweep.py", "sweep_inbox", "inbox")
    assert "designflow/ingest/inbox.py" in inbox.trail
    assert len(set(inbox.trail)) <= 7 and inbox.climbs <= 2, inbox.trail
