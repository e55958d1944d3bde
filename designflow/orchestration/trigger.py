"""Starting runs over the Prefect REST API with the retries a busy server needs: a server on
SQLite (`prefect server start`'s default) answers 503 when a write meets another one, and a
server behind a proxy may answer 429. Both are retried with backoff (Retry-After honoured); the idempotency key makes a
retried create return the run the first attempt made.

The first retry comes after ~50 ms, not 0.5 s: inside an upload run the SQLite server
answered 503 to the first create_flow_run every time (SQLITE_BUSY: its read transaction could
not become a write while the run's own events were being written) and took the next attempt
at once, so the enqueue of a mockup run was the 0.5 s wait (median 589 ms of 12 runs, server
log with PREFECT_API_LOG_RETRYABLE_ERRORS=true; bench.mockups)."""

from __future__ import annotations

import random
import threading
import time
from typing import Any

import httpx

RETRIED = (429, 502, 503, 504)


class PrefectApiError(RuntimeError):
    pass


class PrefectApi:
    def __init__(
        self, api_url: str, attempts: int = 10, base_s: float = 0.05, auth: str | None = None
    ) -> None:
        """`auth`: the server's `user:password` (Prefect's API auth string), if it has one."""
        credentials = tuple(auth.split(":", 1)) if auth else None
        self.http = httpx.Client(base_url=api_url.rstrip("/"), timeout=30, auth=credentials)
        self.attempts = attempts
        self.base_s = base_s
        self.retried = 0  # how many answers were retried (shown by the tests)
        self._deployment_ids: dict[str, str] = {}  # deployment name -> id, read once

    def __enter__(self) -> PrefectApi:
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        for attempt in range(self.attempts):
            try:
                response = self.http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                problem, wait = f"{type(exc).__name__}: {exc}", None
            else:
                if response.status_code not in RETRIED:
                    if response.status_code == 404:
                        raise PrefectApiError(f"not found: {path} (deployed? `designflow deploy`)")
                    if response.is_error:
                        raise PrefectApiError(
                            f"{method} {path}: {response.status_code} {response.text[:300]}"
                        )
                    return response.json()
                problem = f"{response.status_code} {response.reason_phrase}"
                wait = _retry_after(response)
            if attempt == self.attempts - 1:
                break
            self.retried += 1
            time.sleep(retry_delay(attempt, self.base_s, wait))
        raise PrefectApiError(f"{method} {path}: the Prefect server stayed unavailable ({problem})")

    def create_flow_run(
        self, deployment: str, parameters: dict, queue: str | None, idempotency_key: str,
        name: str | None = None, tags: list[str] | None = None, checked: bool = False,
    ) -> dict:  # fmt: skip
        """`checked`: the parameters come from our own code, not a person, so the server
        need not validate them against the deployment's schema again (CPU of a busy server).
        """
        body: dict[str, Any] = {"parameters": parameters, "idempotency_key": idempotency_key}
        if checked:
            body["enforce_parameter_schema"] = False
        if queue:
            body["work_queue_name"] = queue
        if name:
            body["name"] = name
        if tags:
            body["tags"] = tags
        known = self._deployment_ids.get(deployment)
        if known is not None:
            try:
                return self.call("POST", f"/deployments/{known}/create_flow_run", json=body)
            except PrefectApiError as exc:
                if "not found" not in str(exc):
                    raise
                # deployed again under a new id: read it by name once more
        found = self.call("GET", f"/deployments/name/{deployment}")
        self._deployment_ids[deployment] = found["id"]
        return self.call("POST", f"/deployments/{found['id']}/create_flow_run", json=body)


_shared: dict[tuple[str, str | None], PrefectApi] = {}
_shared_lock = threading.Lock()


def shared_api(api_url: str, auth: str | None = None) -> PrefectApi:
    """One client per server for the process, kept open: a new httpx client costs ~34 ms
    (its TLS context) and the deployment's id one GET (~9 ms), which every enqueue paid; both
    are now paid once per process (bench.mockups)."""
    with _shared_lock:
        api = _shared.get((api_url, auth))
        if api is None:
            api = _shared[(api_url, auth)] = PrefectApi(api_url, auth=auth)
        return api


def retry_delay(attempt: int, base_s: float, retry_after: float | None = None) -> float:
    """Seconds before retry `attempt` (0 first): doubling from `base_s` with jitter (callers
    that met the same busy moment do not come back together), at most 8 s, never sooner than
    the server's Retry-After. Ten attempts wait ~21 s in all (six from 0.5 s waited 15.5 s)."""
    step = min(8.0, base_s * 2**attempt) * random.uniform(0.75, 1.25)
    return max(retry_after or 0.0, step)


def flow_run_page(ui_url: str | None, run_id: str | None) -> str | None:
    """A run's page in the Prefect UI, where the UI's address is known."""
    if not ui_url or not run_id:
        return None
    return f"{ui_url.rstrip('/')}/runs/flow-run/{run_id}"


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return min(float(response.headers["retry-after"]), 60.0)
    except (KeyError, ValueError):
        return None
