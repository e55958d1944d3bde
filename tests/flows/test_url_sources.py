"""`https://` sources: the run downloads each URL (a real HTTPS server on loopback addresses,
its certificate trusted through SSL_CERT_FILE) under the guards of designflow.ingest.urls."""

from __future__ import annotations

from pathlib import Path

import pytest

from designflow.flows.upload import upload_designs
from tests import images
from tests.conftest import DesignflowEnv
from tests.https_files import FileServer, make_certificate


@pytest.fixture
def file_servers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The same files on 127.0.0.2 (the seller's file server) and 127.0.0.1."""
    cert, key = make_certificate(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    files = {
        f"d{i}.png": images.write_png(tmp_path / f"d{i}.png", seed=9600 + i).read_bytes()
        for i in range(3)
    }
    files["notes.png"] = b"these are notes, not a picture"
    servers = FileServer("127.0.0.2", cert, key, files), FileServer("127.0.0.1", cert, key, files)
    yield servers
    for server in servers:
        server.stop()


def _by_file(report: dict) -> dict[str, tuple[str, str]]:
    out = {s["file"]: ("stored", "") for s in report["stored"]}
    out.update({d["file"]: ("duplicate", d["kind"]) for d in report["duplicates"]})
    out.update({r["file"]: ("rejected", r["reason"]) for r in report["rejected"]})
    out.update({f["file"]: ("failed", f["reason"]) for f in report["failed"]})
    return out


def test_urls_are_downloaded_and_stored_under_the_guards(
    designflow_env: DesignflowEnv, file_servers, monkeypatch: pytest.MonkeyPatch
) -> None:
    seller, other = file_servers
    monkeypatch.setenv("DESIGNFLOW_URL_SOURCES_ALLOW_NETWORKS", "127.0.0.2/32")
    monkeypatch.setenv("DESIGNFLOW_URL_SOURCES_TIMEOUT_SECONDS", "2")
    monkeypatch.setenv("DESIGNFLOW_MAX_FILE_MB", "1")
    good = seller.url("/files/d0.png?signature=abc")
    by_name = seller.url("/files/d1.png", host="127.0.0.2")
    urls = {
        "good": good,
        "good-again": good,  # the same URL twice: one design
        "second": by_name,
        "to-loopback": seller.url("/redirect?to=" + other.url("/files/d2.png")),
        "loopback": other.url("/files/d2.png"),
        "plain-http": f"http://127.0.0.2:{seller.port}/files/d2.png",
        "missing": seller.url("/files/nothing.png"),
        "server-error": seller.url("/status/503"),
        "declared-large": seller.url("/declared-large"),
        "endless": seller.url("/endless"),
        "stall": seller.url("/stall"),
        "not-a-picture": seller.url("/files/notes.png"),
    }
    state = upload_designs(paths=list(dict.fromkeys(urls.values())), user_id="uma",
                           return_state=True)  # fmt: skip
    # Files that may download later (a 503, a stalled server) fail the run: upload again.
    assert state.is_failed()
    report = state.result(raise_on_failure=False).report
    outcome = _by_file(report)
    assert outcome[good] == ("stored", "") and outcome[by_name] == ("stored", "")
    reason = {k: outcome[u][1] for k, u in urls.items() if outcome[u][0] in ("rejected", "failed")}
    kind = {k: outcome[u][0] for k, u in urls.items()}
    assert (
        kind["to-loopback"] == "rejected"
        and "a loopback address (127.0.0.1) is not allowed" in reason["to-loopback"]
    )
    assert kind["loopback"] == "rejected" and "a loopback address (127.0.0.1)" in reason["loopback"]
    assert kind["plain-http"] == "rejected" and "only https:// URLs" in reason["plain-http"]
    assert kind["missing"] == "rejected" and "answered 404" in reason["missing"]
    assert kind["server-error"] == "failed" and "answered 503" in reason["server-error"]
    assert (
        kind["declared-large"] == "rejected"
        and "larger than the 1 MB limit" in reason["declared-large"]
    )
    assert kind["endless"] == "rejected" and "larger than the 1 MB limit" in reason["endless"]
    assert kind["stall"] == "failed" and "within 2 s" in reason["stall"]
    assert kind["not-a-picture"] == "rejected"
    # Nothing reached 127.0.0.1: the redirect was refused before it was followed.
    assert other.requests == []
    # The signature of a signed URL is in no reason (reasons show the URL without query).
    assert not any("signature=abc" in r for r in reason.values())
    # Stored from their bytes: the same URL again is an exact duplicate.
    again = upload_designs(paths=[good], user_id="uma")
    assert [d["kind"] for d in again["duplicates"]] == ["exact"]
    stored = designflow_env.nas_root / report["stored"][0]["nas_path"]
    assert stored.read_bytes() in (seller.files["d0.png"], seller.files["d1.png"])


def test_without_an_allowed_network_no_private_or_loopback_url_is_fetched(
    designflow_env: DesignflowEnv, file_servers
) -> None:
    seller, _ = file_servers
    by_host = f"https://localhost:{seller.port}/files/d0.png"
    report = upload_designs(paths=[seller.url("/files/d0.png"), by_host], user_id="uma")
    reasons = {r["file"]: r["reason"] for r in report["rejected"]}
    assert "a loopback address (127.0.0.2) is not allowed" in reasons[seller.url("/files/d0.png")]
    assert "localhost resolves to a loopback address" in reasons[by_host]
    assert seller.requests == [] and report["stored"] == []
