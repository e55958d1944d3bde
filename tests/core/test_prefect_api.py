"""Starting runs over Prefect's REST API: a busy server's 503 is retried soon (the first
retry inside an upload run used to wait 0.5 s, all of the enqueue's time), Retry-After is
honoured, and a server that stays away for ~20 s is outlasted before the call gives up."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from designflow.orchestration.trigger import PrefectApi, PrefectApiError, retry_delay


class BusyServer:
    """Answers create_flow_run with 503 `busy` times, then 201 with the run; the deployment's
    id by name; records each create's body."""

    def __init__(self, busy: int) -> None:
        self.busy = busy
        self.bodies: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _answer(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                if self.path == "/api/deployments/name/generate-mockups/generate-mockups":
                    self._answer(200, {"id": "dep-1"})
                else:
                    self._answer(404, {"detail": "not found"})

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                server.bodies.append(body)
                if server.busy > 0:
                    server.busy -= 1
                    self._answer(503, {"exception_message": "Service Unavailable"})
                else:
                    self._answer(201, {"id": "run-1", "name": body.get("name")})

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}/api"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()


@pytest.fixture
def busy_server() -> Iterator[BusyServer]:
    server = BusyServer(busy=2)
    yield server
    server.http.shutdown()


def test_a_busy_answer_is_retried_with_the_same_key(busy_server: BusyServer) -> None:
    with PrefectApi(busy_server.url) as api:
        run = api.create_flow_run(
            "generate-mockups/generate-mockups", {"design_ids": [1]}, "high", "key-1"
        )
    assert run["id"] == "run-1"
    assert api.retried == 2
    assert [b["idempotency_key"] for b in busy_server.bodies] == ["key-1"] * 3
    assert {b["work_queue_name"] for b in busy_server.bodies} == {"high"}


def test_a_server_that_stays_busy_fails_the_call_naming_it() -> None:
    server = BusyServer(busy=100)
    try:
        with PrefectApi(server.url, attempts=3, base_s=0.01) as api:
            with pytest.raises(PrefectApiError, match="stayed unavailable.*503"):
                api.create_flow_run("generate-mockups/generate-mockups", {}, None, "k")
        assert len(server.bodies) == 3
    finally:
        server.http.shutdown()


def test_the_first_retry_comes_soon_and_the_waits_outlast_a_busy_spell() -> None:
    api = PrefectApi("http://127.0.0.1:9/api")
    api.http.close()
    waits = [retry_delay(a, api.base_s) for a in range(api.attempts - 1)]
    assert waits[0] <= 0.1  # not the 0.5 s that was all of an upload's enqueue time
    assert all(later >= earlier * 1.1 for earlier, later in zip(waits[:5], waits[1:6], strict=True))
    assert max(waits) <= 10.0
    assert sum(waits) >= 15.0  # as long as the six waits from 0.5 s it replaced (15.5 s)


def test_retry_after_is_never_cut_short() -> None:
    assert retry_delay(0, 0.05, retry_after=3.0) == 3.0
    assert retry_delay(9, 0.05, retry_after=1.0) >= 6.0  # the backoff, when longer


def test_a_missing_deployment_is_not_retried_and_says_what_to_do(busy_server: BusyServer) -> None:
    with PrefectApi(busy_server.url) as api:
        with pytest.raises(PrefectApiError, match="not found.*designflow deploy"):
            api.create_flow_run("nowhere/nowhere", {}, None, "k")
    assert api.retried == 0 and busy_server.bodies == []
