"""`designflow trigger` against a loopback server that answers like a busy Prefect server:
503 and 429 (with Retry-After) before it creates the run. The run creation itself against a
real Prefect server and worker is in tests/flows/test_background_mockups.py."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from designflow.cli import main

DEPLOYMENT_ID = "9d4c2b4e-0000-4000-8000-000000000001"


class BusyPrefect(BaseHTTPRequestHandler):
    answers: list[int] = []
    seen: list[tuple[str, str, dict, float]] = []

    def log_message(self, *args) -> None:  # quiet
        pass

    def _reply(self, status: int, body: dict | None = None, headers: dict | None = None) -> None:
        data = json.dumps(body or {}).encode()
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self.seen.append(("GET", self.path, {}, time.monotonic()))
        if self.path == "/api/deployments/name/upload-designs/upload-designs":
            self._reply(200, {"id": DEPLOYMENT_ID})
        else:
            self._reply(404, {"detail": "Deployment not found"})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        self.seen.append(("POST", self.path, body, time.monotonic()))
        status = self.answers.pop(0) if self.answers else 201
        if status == 429:
            self._reply(429, {"detail": "slow down"}, {"retry-after": "1"})
        elif status != 201:
            self._reply(status, {"detail": "Service Unavailable"})
        else:
            self._reply(201, {"id": "run-1", "name": "busy-bee", "work_queue_name": body.get("work_queue_name"),
                              "parameters": body["parameters"]})  # fmt: skip


@pytest.fixture
def busy_prefect(monkeypatch):
    BusyPrefect.answers, BusyPrefect.seen = [503, 429, 503], []
    server = ThreadingHTTPServer(("127.0.0.1", 0), BusyPrefect)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("PREFECT_API_URL", f"http://127.0.0.1:{server.server_port}/api")
    monkeypatch.setenv("PREFECT_UI_URL", f"http://127.0.0.1:{server.server_port}")
    yield BusyPrefect
    server.shutdown()


def test_trigger_retries_503_and_429_with_one_idempotency_key(busy_prefect, capsys) -> None:
    code = main(["trigger", "upload-designs", "--param", 'paths=["/srv/a.png"]',
                 "--param", "user_id=shop-42", "--queue", "high", "--json"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    info = json.loads(capsys.readouterr().out)
    assert info["flow_run_id"] == "run-1" and info["queue"] == "high"
    assert info["parameters"] == {"paths": ["/srv/a.png"], "user_id": "shop-42"}
    posts = [s for s in busy_prefect.seen if s[0] == "POST"]
    assert len(posts) == 4  # 503, 429, 503, created
    assert {p[2]["idempotency_key"] for p in posts} == {posts[0][2]["idempotency_key"]}
    assert posts[2][3] - posts[1][3] >= 1.0  # the 429's Retry-After was waited out


def test_trigger_names_a_missing_deployment_and_bad_params(busy_prefect, capsys) -> None:
    assert main(["trigger", "no-such-flow"]) == 1
    assert "not found" in capsys.readouterr().err
    assert main(["trigger", "upload-designs", "--param", "oops"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err
