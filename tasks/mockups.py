"""Mockup rendering and storing as Prefect tasks, and the trigger of background runs."""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from designflow.mockup import PreparedDesign, Template, TemplateError, load_template, render_mockup
from designflow.nas import check_user_id
from tasks import resources
from tasks.retry import IO_RETRIES, IO_RETRY_DELAYS, IO_RETRY_JITTER

PRIORITY_QUEUES = {"high": 1, "normal": 2, "low": 3}
MOCKUP_DEPLOYMENT = "generate-mockups/generate-mockups"

_retry = dict(
    retries=IO_RETRIES,
    retry_delay_seconds=IO_RETRY_DELAYS,
    retry_jitter_factor=IO_RETRY_JITTER,
    retry_condition_fn=lambda task, run, state: not _is_permanent(state),
    cache_policy=NO_CACHE,
)


def _is_permanent(state) -> bool:
    try:
        state.result()
    except (TemplateError, LookupError):
        return True  # a broken template or a missing design does not heal by retrying
    except Exception:
        return False
    return False


@dataclass(frozen=True)
class RenderedMockup:
    design_id: int
    template_id: str
    local_path: str
    sha256: str
    bytes: int
    width: int
    height: int


# Templates are read once per process and template folder version, not once per design:
# the cache for a run (and for every later run in a worker) is this dictionary.
_templates: dict[tuple[str, str, float], Template] = {}
_templates_lock = threading.Lock()


def template_folder(template_id: str) -> Path:
    settings = resources.current_settings()
    if not template_id or "/" in template_id or template_id.startswith("."):
        raise TemplateError(f"invalid template id {template_id!r}")
    root = settings.templates
    if root.startswith("nas:"):
        return _template_from_nas(root[4:].strip("/"), template_id)
    return Path(root) / template_id


def _template_from_nas(prefix: str, template_id: str) -> Path:
    """Templates kept on the NAS are copied once into a local cache folder."""
    settings = resources.current_settings()
    nas = resources.nas(settings)
    remote = f"{prefix}/{template_id}"
    local = settings.home / "template-cache" / template_id
    files = nas.list_files(remote)
    if not files:
        raise TemplateError(f"template {template_id!r} not found on the NAS under {remote}/")
    local.mkdir(parents=True, exist_ok=True)
    for path in files:
        target = local / Path(path).relative_to(remote)
        data = nas.read_bytes(path)
        if not target.exists() or target.stat().st_size != len(data):
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
    return local


def get_template(template_id: str) -> Template:
    folder = template_folder(template_id)
    manifest = folder / "template.json"
    if not manifest.is_file():
        raise TemplateError(f"template {template_id!r} not found ({manifest} does not exist)")
    key = (str(folder), template_id, manifest.stat().st_mtime)
    with _templates_lock:
        cached = _templates.get(key)
    if cached is None:
        cached = load_template(folder)
        with _templates_lock:
            _templates[key] = cached
    return cached


@task(name="render-mockups", task_run_name="render mockups of design {design_id}", **_retry)
def render_design_mockups(design_id: int, template_ids: list[str]) -> list[RenderedMockup]:
    """Decode the design once and render every requested template from it."""
    catalog = resources.catalog()
    design = catalog.designs_by_id([design_id]).get(design_id)
    if design is None:
        raise LookupError(f"design {design_id} is not in the catalog")
    templates = [get_template(t) for t in template_ids]
    data = resources.nas().read_bytes(str(design["nas_path"]))
    prepared = PreparedDesign.from_bytes(data, max_side=max(max(t.print_size) for t in templates))
    out_dir = Path(tempfile.mkdtemp(prefix=f"designflow-mockups-{design_id}-"))
    rendered = []
    for template in templates:
        jpeg = render_mockup(prepared, template)
        path = out_dir / f"{template.id}.jpg"
        path.write_bytes(jpeg)
        width, height = template.output_size
        rendered.append(
            RenderedMockup(
                design_id,
                template.id,
                str(path),
                hashlib.sha256(jpeg).hexdigest(),
                len(jpeg),
                width,
                height,
            )
        )
    return rendered


@task(
    name="store-mockup",
    task_run_name="store {mockup.template_id} of design {mockup.design_id}",
    **_retry,
)
def store_mockup(mockup: RenderedMockup, flow_run_id: str | None = None) -> dict:
    """Next to the design on the NAS, then in design_mockups (a row only once the file is there)."""
    import uuid

    catalog = resources.catalog()
    design = catalog.designs_by_id([mockup.design_id])[mockup.design_id]
    user = check_user_id(str(design["user_id"]))
    sha = str(design["sha256"])
    dest = f"users/{user}/designs/{sha[:2]}/{sha}.mockups/{mockup.template_id}-{mockup.sha256[:16]}.jpg"
    resources.nas().put_file(mockup.local_path, dest, mockup.sha256)
    mockup_id = catalog.record_mockup(
        mockup.design_id, mockup.template_id, dest, mockup.bytes, mockup.width, mockup.height,
        uuid.UUID(flow_run_id) if flow_run_id else None,
    )  # fmt: skip
    try:
        os.unlink(mockup.local_path)
    except OSError:
        pass
    return {
        "mockup_id": mockup_id,
        "design_id": mockup.design_id,
        "template_id": mockup.template_id,
        "nas_path": dest,
    }


def trigger_mockup_run(
    design_ids: list[int], template_ids: list[str], priority: str, upload_run_id: str | None
) -> str:
    """Start a background `generate-mockups` run on the queue of `priority`; returns its id
    at once (`timeout=0`): the worker picks it up, Prefect retries it and shows its status."""
    from prefect.deployments import run_deployment

    if priority not in PRIORITY_QUEUES:
        raise ValueError(f"priority must be one of {', '.join(PRIORITY_QUEUES)}, got {priority!r}")
    run = run_deployment(
        MOCKUP_DEPLOYMENT,
        parameters={
            "design_ids": design_ids,
            "template_ids": template_ids,
            "upload_run_id": upload_run_id,
        },
        timeout=0,
        work_queue_name=priority,
        as_subflow=False,
        tags=[f"priority:{priority}"],
        # A retried upload run asks again: the same key returns the run it already made.
        idempotency_key=f"mockups-{upload_run_id}-{','.join(map(str, design_ids))}"
        if upload_run_id
        else None,
    )
    return str(run.id)


@task(
    name="enqueue-mockups",
    retries=2,
    retry_delay_seconds=[1, 4],
    retry_jitter_factor=0.5,
    cache_policy=NO_CACHE,
)
def enqueue_mockups(
    design_ids: list[int], template_ids: list[str], priority: str, upload_run_id: str | None
) -> str:
    return trigger_mockup_run(design_ids, template_ids, priority, upload_run_id)
