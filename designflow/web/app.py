"""`designflow web`: the seller's upload page and upload API (FastAPI, which Prefect ships).

Every request but /health is signed in: an API call with `Authorization: Bearer <token>`
(`designflow tokens create --user U`), a page with the session cookie set by /login from the
same token. A seller reaches only their own jobs, designs and thumbnails: another seller's
answer 404, as if they did not exist. Forms and the page's uploads carry a CSRF token.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, FastAPI, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.requests import ClientDisconnect

from designflow.catalog import Catalog
from designflow.catalog.designs import DesignFilter
from designflow.mockups import PRIORITY_QUEUES
from designflow.web.jobs import JobRunner
from designflow.web.staging import BadUpload, LimitExceeded, StagingRequest, WebLimits

SESSION = "designflow_session"
ACCESS_LOG = logging.getLogger("designflow.web.access")
CSRF = "designflow_csrf"
FINAL = ("completed", "failed")
WAIT_SECONDS = 1800  # a synchronous upload answers within half an hour or says to poll


@dataclass
class WebContext:
    catalog: Catalog
    runner: JobRunner
    limits: WebLimits
    thumbnail: Callable[[int, str], bytes | None]  # (design id, user) -> JPEG bytes


def create_app(context: WebContext) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        # SIGTERM: uvicorn has stopped taking requests; uploads running get 30 s to finish.
        await asyncio.to_thread(context.runner.stop)

    app = FastAPI(
        title="designflow", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan
    )
    app.state.context = context
    app.middleware("http")(access_log)
    app.include_router(router)
    return app


router = APIRouter()
TEMPLATES = Jinja2Templates(directory=str(resources.files("designflow.web") / "templates"))


def _context(request: Request) -> WebContext:
    return request.app.state.context


async def access_log(request: Request, call_next):
    """One JSON line per request (designflow.web.access): method, path without its
    query, status, time, bytes sent and the seller once known; never a header, a
    cookie or a query string (a token must not end up in a log)."""
    started = time.perf_counter()
    status, size = 500, 0
    try:
        response = await call_next(request)
        status, size = response.status_code, int(response.headers.get("content-length", 0))
        return response
    finally:
        ACCESS_LOG.info(json.dumps({
            "method": request.method, "path": request.url.path, "status": status,
            "ms": round(1000 * (time.perf_counter() - started), 1), "bytes": size,
            "user": getattr(request.state, "user", None),
            "client": request.client.host if request.client else None,
        }))  # fmt: skip


def seller(request: Request, unsafe: bool = False) -> str:
    """The signed-in seller, or 401. A cookie session's unsafe request needs the CSRF
    token too (a bearer token is never sent by a browser on its own)."""
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        user = _context(request).catalog.user_of_token(header[7:].strip())
    else:
        user = _context(request).catalog.user_of_token(request.cookies.get(SESSION, ""))
        if user and unsafe and not _csrf_ok(request):
            raise HTTPException(403, "missing or wrong CSRF token")
    if not user:
        raise HTTPException(401, "sign in with a token", {"WWW-Authenticate": "Bearer"})
    request.state.user = user
    return user


@router.get("/health")
def health() -> dict:
    return {"status": "ok"}


@router.post("/api/v1/uploads")
async def upload(request: Request) -> Response:
    user = seller(request, unsafe=True)
    context = _context(request)
    if context.catalog.open_jobs(user) >= context.limits.uploads_in_flight:
        return JSONResponse(
            {"error": f"{context.limits.uploads_in_flight} uploads in flight is the limit"
                      " per seller (DESIGNFLOW_WEB_MAX_UPLOADS_IN_FLIGHT); retry later"},
            status_code=429, headers={"Retry-After": "10"},
        )  # fmt: skip
    job_id = uuid.uuid4()
    try:
        staging = StagingRequest.for_content_type(
            request.headers.get("content-type", ""),
            context.runner.folder_for(job_id, user),
            context.limits,
        )
    except BadUpload as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    refused = await _stage(request, staging, context.limits)
    if refused is not None:
        return refused
    context.runner.start(job_id, user, staging.files, _options(staging.fields), staging.urls)
    status_url = str(request.url_for("job", job_id=str(job_id)))
    if _true(staging.fields.get("async_mode")):
        return JSONResponse({"job_id": str(job_id), "status_url": status_url}, status_code=202)
    for _ in range(WAIT_SECONDS * 2):
        job = _job_view(context, job_id, user)
        if job["status"] in FINAL:
            return JSONResponse(job, status_code=200)
        await asyncio.sleep(0.5)
    return JSONResponse({"job_id": str(job_id), "status_url": status_url}, status_code=202)


async def _stage(request: Request, staging: StagingRequest, limits: WebLimits) -> Response | None:
    """The request's body streamed into staging; the answer when it is refused (nothing
    staged is kept then), None when every file is staged."""
    try:
        if int(request.headers.get("content-length") or 0) > limits.request_bytes:
            raise LimitExceeded(  # said before a byte is read
                f"the request is over the limit of {limits.request_bytes // 2**20} MB"
                " per request (DESIGNFLOW_WEB_MAX_REQUEST_MB)"
            )
        async for chunk in request.stream():
            staging.feed(chunk)
        staging.finish()
        return None
    except LimitExceeded as exc:
        staging.discard()
        return JSONResponse({"error": str(exc)}, status_code=413, headers={"Connection": "close"})
    except BadUpload as exc:
        staging.discard()
        return JSONResponse({"error": str(exc)}, status_code=400)
    except ClientDisconnect:  # the connection dropped mid-file: nothing staged, no job
        staging.discard()
        return Response(status_code=400)


@router.get("/api/v1/jobs/{job_id}", name="job")
def job(job_id: str, request: Request) -> dict:
    return _job_view(_context(request), _uuid(job_id), seller(request))


@router.get("/api/v1/designs")
def designs(request: Request, page: int = 1, per_page: int = 50) -> dict:
    user = seller(request)
    per_page = max(1, min(per_page, 200))
    rows, total = _context(request).catalog.list_designs(
        user, None, per_page, (max(page, 1) - 1) * per_page, design_filter(request)
    )
    return {"total": total, "page": page, "per_page": per_page,
            "designs": [_design_view(r) for r in rows]}  # fmt: skip


@router.get("/api/v1/designs/{design_id}/thumbnail")
def thumbnail(design_id: int, request: Request) -> Response:
    data = _context(request).thumbnail(design_id, seller(request))
    if data is None:
        raise HTTPException(404, "no such design")
    return Response(
        data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"}
    )


# -- pages -----------------------------------------------------------------------------


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request) -> Response:
    csrf = request.cookies.get(CSRF) or secrets.token_urlsafe(24)
    page = TEMPLATES.TemplateResponse(request, "login.html", {"csrf": csrf, "error": ""})
    page.set_cookie(CSRF, csrf, httponly=False, samesite="strict")
    return page


@router.post("/login")
def login(request: Request, token: str = Form(...), csrf: str = Form(...)) -> Response:
    if not hmac.compare_digest(csrf, request.cookies.get(CSRF, "")):
        raise HTTPException(403, "missing or wrong CSRF token")
    if not _context(request).catalog.user_of_token(token.strip()):
        return TEMPLATES.TemplateResponse(
            request, "login.html", {"csrf": csrf, "error": "unknown or revoked token"},
            status_code=401,
        )  # fmt: skip
    done = RedirectResponse("/", status_code=303)
    done.set_cookie(SESSION, token.strip(), httponly=True, samesite="strict")
    return done


@router.get("/", response_class=HTMLResponse)
def upload_page(request: Request) -> Response:
    return _page(request, "upload.html", {})


@router.get("/designs", response_class=HTMLResponse)
def designs_page(request: Request, page: int = 1) -> Response:
    return _page(request, "designs.html", {"page": max(page, 1)})


@router.get("/designs/{design_id}", response_class=HTMLResponse)
def design_page(design_id: int, request: Request) -> Response:
    return _page(request, "design.html", {"design_id": design_id})


def _page(request: Request, name: str, extra: dict[str, Any]) -> Response:
    user = _context(request).catalog.user_of_token(request.cookies.get(SESSION, ""))
    if not user:
        return RedirectResponse("/login", status_code=303)
    extra = dict(extra)
    if name == "designs.html":
        per_page = 48
        rows, total = _context(request).catalog.list_designs(
            user, None, per_page, (extra["page"] - 1) * per_page, design_filter(request)
        )
        kept = {k: v for k, v in request.query_params.items() if k in FILTERS and v}
        extra |= {"designs": [_design_view(r) for r in rows], "total": total,
                  "pages": max(1, -(-total // per_page)), "filters": kept,
                  "filter_query": urlencode(kept)}  # fmt: skip
    if name == "design.html":
        extra |= _design_details(_context(request).catalog, user, extra["design_id"])
    return TEMPLATES.TemplateResponse(
        request, name, {"user": user, "csrf": request.cookies.get(CSRF, ""), **extra}
    )


# The catalog's filters, as query parameters of the designs page and API:
# q (part of the file name), near=1 (near-duplicate groups), mockups=with|without,
# listed=yes|no.
FILTERS = ("q", "near", "mockups", "listed")


def design_filter(request: Request) -> DesignFilter:
    """The filters a request asks for (unknown values mean no filter), or 400 for a name
    longer than any file name."""
    given = request.query_params
    name = given.get("q", "").strip()
    if len(name) > 255:
        raise HTTPException(400, "q: at most 255 characters")
    choice = {"with": True, "yes": True, "without": False, "no": False}
    return DesignFilter(
        name=name,
        near_groups=given.get("near") in ("1", "true", "yes", "on"),
        mockups=choice.get(given.get("mockups", "")),
        listed=choice.get(given.get("listed", "")),
    )


def _design_details(catalog: Catalog, user: str, design_id: int) -> dict[str, Any]:
    """A design's page: the design, its mockups and listing, its near twins (designs stored
    as its near duplicates, or the one it is a near duplicate of). 404 if not the seller's."""
    rows, _ = catalog.list_designs(user, design_id, 200, 0)
    this = next((r for r in rows if r["id"] == design_id), None)
    if this is None:
        raise HTTPException(404, "no such design")
    twins = [r for r in rows if r["id"] != design_id]
    if this["near_duplicate_of"]:
        parent, _ = catalog.list_designs(user, int(this["near_duplicate_of"]), 1, 0)
        twins = [r for r in parent if r["id"] != design_id] + twins
    return {
        "design": _design_view(this),
        "mockups": catalog.mockups_of([design_id]),
        "twins": [_design_view(r) for r in twins],
    }


def _csrf_ok(request: Request) -> bool:
    expected = request.cookies.get(CSRF, "")
    given = request.headers.get("x-csrf-token", "")
    return bool(expected) and hmac.compare_digest(expected, given)


def _uuid(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise HTTPException(404, "no such job") from None


def _true(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def _options(fields: dict[str, str]) -> dict[str, Any]:
    """The upload flow's parameters a form may set."""
    options: dict[str, Any] = {}
    for choice in ("allow_near_duplicates", "replace_with_better"):
        if _true(fields.get(choice)):
            options[choice] = True
    templates = [t.strip() for t in fields.get("mockup_templates", "").split(",") if t.strip()]
    if templates:
        options["mockup_templates"] = templates
    if fields.get("priority") in PRIORITY_QUEUES:
        options["priority"] = fields["priority"]
    return options


def _job_view(context: WebContext, job_id: uuid.UUID, user: str) -> dict[str, Any]:
    job = context.catalog.job(job_id, user)
    if job is None:
        raise HTTPException(404, "no such job")
    job = context.runner.refresh(job)
    report = job["report"] or {}
    return {
        "job_id": str(job["id"]),
        "status": job["status"],
        "files": job["files"],
        "flow_run_id": str(job["flow_run_id"]) if job["flow_run_id"] else None,
        "error": job["error"],
        "counts": report.get("counts"),
        "outcomes": report.get("outcomes") or _outcomes(report),
        "mockup_runs": report.get("mockup_runs", []),
        "listings": report.get("listings", []),
    }


def _outcomes(report: dict) -> list[dict[str, Any]]:
    rows = [
        {"file": s["file"], "outcome": "stored", "design_id": s["design_id"]}
        for s in report.get("stored", [])
    ]
    rows += [{"file": d["file"], "outcome": "duplicate", "kind": d["kind"], "duplicate_of": d["duplicate_of"],
              "distance": d["distance"], "why": d.get("why", "")} for d in report.get("duplicates", [])]  # fmt: skip
    for section in ("rejected", "failed", "skipped"):
        rows += [{"file": r["file"], "outcome": section, "reason": r["reason"]}
                 for r in report.get(section, [])]  # fmt: skip
    return rows


def _design_view(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"], "name": row["original_name"], "width": row["width"],
        "height": row["height"], "bytes": row["bytes"], "format": row["format"],
        "stored_at": row["created_at"].isoformat(), "mockups": row["mockups"],
        "listing_id": row["listing_id"], "near_duplicate_of": row["near_duplicate_of"],
        "thumbnail": f"/api/v1/designs/{row['id']}/thumbnail",
    }  # fmt: skip


def thumbnail_maker(catalog: Catalog, nas) -> Callable[[int, str], bytes | None]:
    """The pages' thumbnails (designflow.ops.thumbnails: made once, cached on the NAS)."""
    from designflow.ops.thumbnails import design_thumbnail

    return lambda design_id, user: design_thumbnail(catalog, nas, design_id, user)


def staging_root(home: Path) -> Path:
    return home / "web-staging"
