"""generate_mockups: render product mockups of stored designs and store them on the NAS."""

from __future__ import annotations

import base64
import time

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.futures import wait
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner

from designflow.flows.publish import publish_designs
from designflow.flows.states import failure_reason
from designflow.orchestration.links import flow_run_markdown
from designflow.orchestration.resources import release_nas
from designflow.orchestration.retry import io_retry_delays
from designflow.tasks.metrics import record_mockup_run_metrics
from designflow.tasks.mockups import render_design_mockups, store_mockup


@flow(name="generate-mockups", task_runner=ThreadPoolTaskRunner(max_workers=4), persist_result=True)
def generate_mockups(
    design_ids: list[int],
    template_ids: list[str],
    upload_run_id: str | None = None,
    publish: bool = True,
) -> dict:
    """Render every mockup template for every design (each design decoded once), store the
    JPEGs next to the design on the NAS, record them in the catalog, then publish the
    designs that have listing content as Etsy draft listings with these mockups.

    Args:
        design_ids: Catalog ids of stored designs (from an upload's report).
        template_ids: Mockup templates to render, as `designflow templates list` shows them.
        upload_run_id: The upload run that asked for these mockups, if any.
        publish: Publish the designs with listing content to Etsy after rendering (skipped,
            with a message, without Etsy credentials).
    """
    logger = get_run_logger()
    run_id = str(flow_run.id) if flow_run.id else None
    started = time.perf_counter()
    logger.info("rendering %d template(s) for %d design(s)", len(template_ids), len(design_ids))
    try:
        delays = io_retry_delays()  # read at run time: a deployment can tune the backoff
        render = render_design_mockups.with_options(retry_delay_seconds=delays)
        store = store_mockup.with_options(retry_delay_seconds=delays)
        renders = {d: render.submit(d, template_ids) for d in design_ids}
        wait(list(renders.values()))
        _preview(renders)
        stores = []
        failed: list[dict] = []
        for design_id, future in renders.items():
            if future.state.is_completed():
                stores.extend(store.submit(m, run_id) for m in future.result())
            else:
                failed.append({"design_id": design_id, "reason": failure_reason(future.state)})
        wait(stores)
        mockups = []
        for future in stores:
            if future.state.is_completed():
                mockups.append(future.result())
            else:
                failed.append({"design_id": None, "reason": failure_reason(future.state)})
    finally:
        release_nas()
    _publish(mockups, failed, upload_run_id)
    result = {
        "flow_run_id": run_id,
        "upload_run_id": upload_run_id,
        "mockups": mockups,
        "failed": failed,
        "listings": [],
        "listing_skipped": None,
    }
    if publish:
        # Designs whose mockups all rendered; a design missing one is left for a re-run.
        incomplete = {f["design_id"] for f in failed}
        ready = [d for d in design_ids if d not in incomplete]
        try:
            published = publish_designs(ready) if ready else {"listings": [], "skipped": None}
        finally:
            release_nas()
        result["listings"] = published["listings"]
        result["listing_skipped"] = published["skipped"]
    if run_id:  # a metrics failure never fails the run
        record_mockup_run_metrics(result, started, len(design_ids), return_state=True)
    problems = [f["reason"] for f in failed[:3]]
    problems += [
        f"design {o['design_id']} not listed: {o['error']}"
        for o in result["listings"]
        if o["error"]
    ]
    if problems:
        prefix = f"{len(failed)} mockup(s) failed; " if failed else ""
        raise RuntimeError(prefix + "; ".join(problems[:5]))
    return result


def _publish(mockups: list[dict], failed: list[dict], upload_run_id: str | None) -> None:
    create_table_artifact(
        key="mockups",
        table=mockups
        + [
            {
                "design_id": f["design_id"],
                "template_id": "",
                "nas_path": "",
                "mockup_id": None,
                "failed": f["reason"],
            }
            for f in failed
        ]
        or [{"design_id": None}],  # fmt: skip
        description="Mockups rendered by this run"
        + (f", for {flow_run_markdown(upload_run_id, 'upload run')}" if upload_run_id else ""),
    )


def _preview(renders: dict) -> None:
    """One rendered mockup, inline in the UI, so a person sees what the run produced."""
    for future in renders.values():
        if future.state.is_completed() and future.result():
            first = future.result()[0]
            try:
                thumb = _thumbnail(first.local_path)
            except OSError:
                continue  # already cleaned up after storing
            create_markdown_artifact(
                key="mockup-preview",
                markdown=f"### {first.template_id}, design {first.design_id}\n\n![mockup](data:image/jpeg;base64,{thumb})",
                description="A rendered mockup",
            )
            break


def _thumbnail(path: str) -> str:
    import cv2

    image = cv2.imread(path)
    if image is None:
        raise OSError(path)
    small = cv2.resize(image, (480, 480), interpolation=cv2.INTER_AREA)
    ok, data = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 80])
    return base64.b64encode(data.tobytes()).decode()
