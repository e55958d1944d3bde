"""Mockup rendering and storing as Prefect tasks, and the trigger of background runs."""

from __future__ import annotations

import hashlib
import os
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from prefect import task

from designflow.mockups import PRIORITY_QUEUES
from designflow.mockups.render import (
    PreparedDesign,
    Template,
    render_mockup,
)
from designflow.orchestration import resources
from designflow.orchestration.retry import io_retry
from designflow.storage.nas import check_user_id, mockup_path

MOCKUP_DEPLOYMENT = "generate-mockups/generate-mockups"


@dataclass(frozen=True)
class RenderedMockup:
    design_id: int
    template_id: str
    local_path: str
    sha256: str
    bytes: int
    width: int
    height: int


def get_template(template_id: str) -> Template:
    """A template by its id; `tee:front` (or `tee:front+back`) prints into the named print
    areas of a template that has several."""
    name, _, areas = template_id.partition(":")
    template = resources.current().template(name)
    return template.only(areas.split("+")) if areas else template


@task(name="render-mockups", task_run_name="render mockups of design {design_id}", **io_retry())
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
    for index, (template_id, template) in enumerate(zip(template_ids, templates, strict=True)):
        jpeg = render_mockup(prepared, template)
        path = out_dir / f"{index}-{template.id}.jpg"
        path.write_bytes(jpeg)
        width, height = template.output_size
        rendered.append(
            RenderedMockup(
                design_id,
                template_id,
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
    **io_retry(),
)
def store_mockup(mockup: RenderedMockup, flow_run_id: str | None = None) -> dict:
    """Next to the design on the NAS, then in design_mockups (a row only once the file is there)."""
    import uuid

    catalog = resources.catalog()
    design = catalog.designs_by_id([mockup.design_id])[mockup.design_id]
    user = check_user_id(str(design["user_id"]))
    sha = str(design["sha256"])
    dest = mockup_path(user, sha, mockup.template_id, mockup.sha256)
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
    at once: the worker picks it up, Prefect retries it and shows its status.

    Two REST calls of our own (read the deployment once per process, create the run) when a
    server is configured: Prefect's run_deployment called inside a task run took 2.1-2.5 s on
    this machine (its client waits 2 s after a 503), 80-170 ms in a flow's body or outside a
    run. Called from the upload run's own thread, not as a task run (bench.mockups)."""
    if priority not in PRIORITY_QUEUES:
        raise ValueError(f"priority must be one of {', '.join(PRIORITY_QUEUES)}, got {priority!r}")
    parameters = {"design_ids": design_ids, "template_ids": template_ids,
                  "upload_run_id": upload_run_id}  # fmt: skip
    # Named after the upload run it came from (its artifacts link back to it too); a retried
    # upload run asks again with the same key and gets the run it already made.
    name = f"mockups-for-upload-{upload_run_id[:8]}" if upload_run_id else None
    key = f"mockups-{upload_run_id}-{','.join(map(str, design_ids))}" if upload_run_id else None
    from prefect.settings import get_current_settings

    api = get_current_settings().api
    if api.url and not api.key:
        from designflow.orchestration.trigger import shared_api

        secret = api.auth_string.get_secret_value() if api.auth_string else None
        # 429 and 503 answers retried with backoff, as Prefect's own client does (a SQLite
        # server answers 503 under load); anything else fails the task to its retries.
        run = shared_api(api.url, auth=secret).create_flow_run(
            MOCKUP_DEPLOYMENT, parameters, priority, key or str(uuid.uuid4()),
            name=name, tags=[f"priority:{priority}"], checked=True,
        )  # fmt: skip
        return str(run["id"])
    from prefect.deployments import run_deployment

    run = run_deployment(
        MOCKUP_DEPLOYMENT, parameters=parameters, timeout=0, work_queue_name=priority,
        as_subflow=False, tags=[f"priority:{priority}"], flow_run_name=name, idempotency_key=key,
    )  # fmt: skip
    return str(run.id)


@task(name="templates-of-replaced-designs", **io_retry())
def templates_of_replaced(design_ids: list[int]) -> list[str]:
    """The templates the designs replaced by better versions had mockups of: their mockups
    follow the new versions."""
    return sorted({str(m["template_id"]) for m in resources.catalog().mockups_of(design_ids)})
