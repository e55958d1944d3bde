"""`designflow web` (the upload page and API) and `designflow tokens` (who may use them)."""

from __future__ import annotations

import sys

import typer

from designflow.cli.app import app, fail, out, print_json

tokens = typer.Typer(help="Sellers' tokens for the upload page and API.", no_args_is_help=True)
app.add_typer(tokens, name="tokens")


@tokens.command("create")
def tokens_create(
    user: str = typer.Option(..., "--user", help="the seller's user id"),
    name: str = typer.Option("", "--name", help="what the token is for (shown by tokens list)"),
) -> int:
    """Make a token for a seller and print it (once: only its hash is kept)."""
    from designflow.orchestration import resources
    from designflow.storage.nas import InvalidUserId, check_user_id

    try:
        check_user_id(user)
        token_id, token = resources.catalog().create_token(user, name)
    except InvalidUserId as exc:
        return fail(str(exc))
    finally:
        resources.close_all()
    out(token)
    typer.echo(f"token {token_id} for {user}: keep it secret, it is not shown again", err=True)
    return 0


@tokens.command("list")
def tokens_list(
    user: str | None = typer.Option(None, "--user", help="one seller's tokens"),
    as_json: bool = typer.Option(False, "--json", help="print the tokens as JSON"),
) -> int:
    """The tokens made (never the tokens themselves): id, seller, name, when made, last used."""
    from designflow.orchestration import resources

    try:
        found = resources.catalog().tokens(user)
    finally:
        resources.close_all()
    rows = [t.__dict__ for t in found]
    if as_json:
        print_json(rows)
        return 0
    for t in found:
        state = f"revoked {t.revoked_at:%Y-%m-%d}" if t.revoked_at else "active"
        used = f"{t.last_used_at:%Y-%m-%d %H:%M}" if t.last_used_at else "never"
        out(
            f"{t.id:>5}  {t.user_id}  {t.name or '-'}  made {t.created_at:%Y-%m-%d}  used {used}  {state}"
        )
    return 0


@tokens.command("revoke")
def tokens_revoke(token_id: int = typer.Argument(..., help="the token's id (tokens list)")) -> int:
    """Revoke a token: the next request with it is refused."""
    from designflow.orchestration import resources

    try:
        done = resources.catalog().revoke_token(token_id)
    finally:
        resources.close_all()
    if not done:
        return fail(f"no active token {token_id}", 1)
    out(f"token {token_id} revoked")
    return 0


@app.command()
def web(
    host: str = typer.Option("127.0.0.1", "--host", help="address to listen on (behind a reverse proxy for other machines)"),
    port: int = typer.Option(8080, "--port", help="port to listen on"),
) -> int:  # fmt: skip
    """The sellers' upload page and upload API. Uploads run through the upload-designs
    deployment when PREFECT_API_URL is set, else as `designflow upload` on this machine."""
    import logging

    import uvicorn
    from prefect.settings import Settings as PrefectSettings

    from designflow.orchestration import resources
    from designflow.orchestration.trigger import PrefectApi
    from designflow.web.app import WebContext, create_app, staging_root, thumbnail_maker
    from designflow.web.jobs import JobRunner
    from designflow.web.staging import MB, WebLimits

    settings = resources.current_settings()
    catalog, nas = resources.catalog(), resources.nas()
    prefect = PrefectSettings()
    api = None
    if settings.web_runs == "deployment" and not prefect.api.url:
        return fail("DESIGNFLOW_WEB_RUNS=deployment needs a Prefect server: set PREFECT_API_URL")
    if prefect.api.url and settings.web_runs != "local":
        secret = prefect.api.auth_string
        api = PrefectApi(prefect.api.url, auth=secret.get_secret_value() if secret else None)
    left = catalog.fail_open_jobs("the web server stopped before this upload ran; upload again")
    runner = JobRunner(catalog, nas, api, staging_root(settings.home))
    limits = WebLimits(
        file_bytes=settings.limits.max_file_bytes,
        request_files=settings.web_max_files,
        request_bytes=int(settings.web_max_request_mb * MB),
        uploads_in_flight=settings.web_uploads_in_flight,
    )
    application = create_app(WebContext(catalog, runner, limits, thumbnail_maker(catalog, nas)))
    mode = (
        "through the upload-designs deployment" if api else "on this machine (no PREFECT_API_URL)"
    )
    logging.getLogger("designflow.web").info("uploads run %s", mode)
    typer.echo(
        f"designflow web on http://{host}:{port} (uploads run {mode}; {left} stale job(s) failed)",
        err=True,
    )
    # Access lines are designflow's own JSON ones (designflow.web.access), not uvicorn's.
    access = logging.getLogger("designflow.web.access")
    if not access.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter('{"time": "%(asctime)s", "access": %(message)s}'))
        access.addHandler(handler)
        access.setLevel(logging.INFO)
        access.propagate = False
    uvicorn.run(application, host=host, port=port, log_level="info", access_log=False,
                timeout_graceful_shutdown=30)  # fmt: skip
    resources.close_all()
    return 0
