"""Starting runs over the Prefect REST API with the retries a busy server needs: the default
(SQLite) server answered 503 to 3 of ~45 create_flow_run calls under load, and a server
behind a proxy may answer 429. Both are retried with backoff (Retry-After honoured); the
idempotency key makes a retried create return the run the first attempt made."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx

RETRIED = (429, 502, 503, 504)


class PrefectApiError(RuntimeError):
    pass


class PrefectApi:
    def __init__(
        self, api_url: str, attempts: int = 6, base_s: float = 0.5, auth: str | None = None
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
            time.sleep(max(wait or 0.0, self.base_s * 2**attempt))
        raise PrefectApiError(f"{method} {path}: the Prefect server stayed unavailable ({problem})")

    def create_flow_run(
        self, deployment: str, parameters: dict, queue: str | None, idempotency_key: str,
        name: str | None = None, tags: list[str] | None = None,
    ) -> dict:  # fmt: skip
        body: dict[str, Any] = {"parameters": parameters, "idempotency_key": idempotency_key}
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
