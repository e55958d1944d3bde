"""`designflow trigger`: start a deployment's run over the Prefect REST API, the way a web
app would, with the retries a busy server needs."""

from __future__ import annotations

import json
import uuid

import typer

from designflow.cli.app import app, fail, out, print_json


@app.command()
def trigger(
    deployment: str = typer.Argument(..., help="deployment name, e.g. upload-designs or flow-name/deployment-name"),
    param: list[str] = typer.Option([], "--param", metavar="KEY=VALUE",
                                    help="a parameter (VALUE as JSON when it parses, else text); repeatable"),
    queue: str | None = typer.Option(None, "--queue", help="work queue (high, normal, low)"),
    idempotency_key: str | None = typer.Option(None, "--idempotency-key",
                                               help="the same key returns the run already made"),
    as_json: bool = typer.Option(False, "--json"),
) -> int:  # fmt: skip
    """Create a run of a deployment (retrying 429 and 503) and print its id."""
    from prefect.settings import Settings as PrefectSettings

    from designflow.orchestration.trigger import PrefectApi, PrefectApiError, flow_run_page

    settings = PrefectSettings()  # read now: the environment and the active profile
    if not settings.api.url:
        return fail("no Prefect server: set PREFECT_API_URL (e.g. http://127.0.0.1:4200/api)")
    try:
        parameters = dict(_parameter(p) for p in param)
    except ValueError as exc:
        return fail(str(exc))
    name = deployment if "/" in deployment else f"{deployment}/{deployment}"
    key = idempotency_key or str(uuid.uuid4())
    try:
        secret = settings.api.auth_string
        with PrefectApi(
            settings.api.url, auth=secret.get_secret_value() if secret else None
        ) as api:
            run = api.create_flow_run(name, parameters, queue, key)
    except PrefectApiError as exc:
        return fail(str(exc), 1)
    info = {
        "flow_run_id": run["id"],
        "name": run["name"],
        "deployment": name,
        "queue": run.get("work_queue_name"),
        "parameters": run.get("parameters", parameters),
        "url": flow_run_page(settings.ui_url, run["id"]),
    }
    if as_json:
        print_json(info)
    else:
        out(f"{info['name']} ({info['flow_run_id']}) on queue {info['queue']}")
        if info["url"]:
            out(f"  {info['url']}")
        out(f"  designflow status {info['flow_run_id']}")
    return 0


def _parameter(text: str) -> tuple[str, object]:
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise ValueError(f"--param takes KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(raw)
    except json.JSONDecodeError:
        return key, raw
