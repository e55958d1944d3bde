"""`designflow web` as a seller's web app and browser use it: a running server process, real
PostgreSQL and NAS folder, uploads run as `designflow upload` against the session's Prefect
server (DESIGNFLOW_WEB_RUNS=local), every call over HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from designflow.catalog import Catalog
from tests import images
from tests.https_files import FileServer, make_certificate
from tests.machines import new_database, wait_until_healthy
from tests.sftp_servers import free_port

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def web(pg_admin_url: str, tmp_path_factory: pytest.TempPathFactory, prefect_harness):
    from prefect.settings import PREFECT_API_URL

    root = tmp_path_factory.mktemp("web")
    catalog_url = new_database(pg_admin_url, "df_web")
    port = free_port()
    # A seller's file server for https:// sources (127.0.0.2, allowed) and another loopback
    # address the sources may not reach.
    cert, key = make_certificate(root)
    url_files = {"far.png": png(7301), "near.png": png(7302)}
    file_servers = [FileServer(host, cert, key, url_files) for host in ("127.0.0.2", "127.0.0.1")]
    env = dict(
        os.environ,
        SSL_CERT_FILE=str(cert),
        DESIGNFLOW_URL_SOURCES_ALLOW_NETWORKS="127.0.0.2/32",
        DESIGNFLOW_HOME=str(root / "home"),
        DESIGNFLOW_DATABASE_URL=catalog_url,
        DESIGNFLOW_NAS_URL=f"file://{root / 'nas'}",
        PREFECT_API_URL=PREFECT_API_URL.value(),
        DESIGNFLOW_WEB_RUNS="local",
        DESIGNFLOW_MAX_FILE_MB="2",
        DESIGNFLOW_WEB_MAX_FILES="8",
        DESIGNFLOW_WEB_MAX_REQUEST_MB="12",
        DESIGNFLOW_WEB_MAX_UPLOADS_IN_FLIGHT="1",
    )
    log = open(root / "web.log", "wb")  # noqa: SIM115
    process = subprocess.Popen(
        [sys.executable, "-m", "designflow.cli", "web", "--port", str(port)],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    wait_until_healthy(f"{base}/health", process, root / "web.log")
    catalog = Catalog(catalog_url)
    tokens = {seller: catalog.create_token(seller, "test")[1] for seller in ("ada", "bo", "dee")}
    shared = {"base": base, "tokens": tokens, "catalog": catalog, "root": root,
              "process": process, "log": root / "web.log", "env": env,
              "file_servers": file_servers}  # fmt: skip
    yield shared
    for server in file_servers:
        server.stop()
    # SIGTERM with an upload in flight: it finishes (within the 30 s grace), then the server
    # exits; uvicorn ends by the signal it caught (its exit status says so).
    with httpx.Client(base_url=base, timeout=60,
                      headers={"Authorization": f"Bearer {tokens['ada']}"}) as http:  # fmt: skip
        sent = http.post("/api/v1/uploads", data={"async_mode": "true"},
                         files=[("files", ("last.png", png(7099, (900, 1000)), "image/png"))])  # fmt: skip
    assert sent.status_code == 202, sent.text
    assert httpx.get(f"{base}/api/v1/designs", timeout=10).status_code == 401
    process.terminate()
    stopping = time.monotonic()
    assert process.wait(60) in (0, -15)
    assert time.monotonic() - stopping < 35
    log.close()
    text = (root / "web.log").read_text()
    assert "Finished server process" in text
    last = catalog.job(uuid.UUID(sent.json()["job_id"]), "ada")
    assert last is not None and last["status"] == "completed", last
    # Structured access lines: one JSON object per request, the seller once known, never a
    # token or a query string.
    lines = [json.loads(line)["access"] for line in text.splitlines() if line.startswith('{"time"')]
    assert any(a["path"] == "/api/v1/uploads" and a["status"] == 202 and a["user"] == "ada"
               for a in lines)  # fmt: skip
    assert any(a["status"] == 401 and a["user"] is None for a in lines)
    if shared.get("limits answered"):  # by test_limits_answer_413_and_429_naming_the_limit
        assert any(a["status"] == 413 for a in lines) and any(a["status"] == 429 for a in lines)
    assert not any(token in text for token in tokens.values())
    assert "?" not in "".join(a["path"] for a in lines)


def client(web, seller: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {web['tokens'][seller]}"} if seller else {}
    return httpx.Client(base_url=web["base"], headers=headers, timeout=120)


def wait_job(http: httpx.Client, url: str) -> dict:
    deadline = time.monotonic() + 180
    while True:
        job = http.get(url).raise_for_status().json()
        if job["status"] in ("completed", "failed"):
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.3)


def png(seed: int, size=(300, 360)) -> bytes:
    return images.png_bytes(images.design(seed, size))


def test_upload_async_then_status_then_sync_duplicate(web) -> None:
    with client(web, "ada") as http:
        sent = http.post(
            "/api/v1/uploads",
            files=[("files", ("sun.png", png(7001), "image/png")),
                   ("files", ("moon.png", png(7002), "image/png")),
                   ("files", ("broken.png", PNG_MAGIC + os.urandom(200), "image/png"))],
            data={"async_mode": "true"},
        )  # fmt: skip
        assert sent.status_code == 202, sent.text
        answer = sent.json()
        assert answer["status_url"].endswith(f"/api/v1/jobs/{answer['job_id']}")
        job = wait_job(http, answer["status_url"])
        assert job["status"] == "completed", job
        outcomes = {o["file"]: o for o in job["outcomes"]}
        assert {f: o["outcome"] for f, o in outcomes.items()} == {
            "sun.png": "stored", "moon.png": "stored", "broken.png": "rejected"}  # fmt: skip
        assert outcomes["broken.png"]["reason"]
        assert job["counts"]["stored"] == 2 and job["files"] == 3

        # Without async_mode the call waits and answers with the job's outcome.
        again = http.post(
            "/api/v1/uploads", files=[("files", ("sun-again.png", png(7001), "image/png"))]
        )
        assert again.status_code == 200, again.text
        (dup,) = again.json()["outcomes"]
        assert dup["file"] == "sun-again.png" and dup["outcome"] == "duplicate"
        assert dup["kind"] == "exact" and dup["duplicate_of"] == outcomes["sun.png"]["design_id"]

        listed = http.get("/api/v1/designs").raise_for_status().json()
        assert listed["total"] == 2 and {d["name"] for d in listed["designs"]} == {
            "sun.png",
            "moon.png",
        }
        thumb = http.get(listed["designs"][0]["thumbnail"])
        assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
        assert thumb.content[:2] == b"\xff\xd8"
    web["ada_job"] = answer["job_id"]
    web["ada_design"] = listed["designs"][0]["id"]


def test_urls_instead_of_files_are_downloaded_by_the_run(web) -> None:
    """A web app names its files by https:// URL: the run downloads them under the guards
    (designflow.ingest.urls), a redirect to an address not allowed is refused."""
    seller, other = web["file_servers"]
    far = seller.url("/files/far.png?sig=s3cret")
    to_other = seller.url("/redirect?to=" + other.url("/files/near.png"))
    with client(web, "dee") as http:
        refused = http.post("/api/v1/uploads", data={"url": "ftp://files.example/a.png"},
                            files=[("files", ("x.png", png(7303), "image/png"))])  # fmt: skip
        assert refused.status_code == 400 and "only https:// URLs" in refused.json()["error"]
        sent = http.post(
            "/api/v1/uploads",
            data={"url": [far, to_other], "async_mode": "true"},
            files=[("files", ("beside.png", png(7304), "image/png"))],
        )
        assert sent.status_code == 202, sent.text
        job = wait_job(http, sent.json()["status_url"])
    outcomes = {o["file"]: o for o in job["outcomes"]}
    assert job["files"] == 3
    assert outcomes[far]["outcome"] == "stored" and outcomes["beside.png"]["outcome"] == "stored"
    assert outcomes[to_other]["outcome"] == "rejected"
    assert "a loopback address (127.0.0.1) is not allowed" in outcomes[to_other]["reason"]
    assert other.requests == []  # the redirect was not followed
    assert "s3cret" not in web["log"].read_text()


def test_a_seller_reaches_only_their_own(web) -> None:
    job, design = web["ada_job"], web["ada_design"]
    with client(web, "bo") as bo:
        assert bo.get(f"/api/v1/jobs/{job}").status_code == 404
        assert bo.get(f"/api/v1/designs/{design}/thumbnail").status_code == 404
        assert bo.get("/api/v1/designs").json()["total"] == 0
    with client(web) as nobody:
        assert nobody.get(f"/api/v1/jobs/{job}").status_code == 401
        assert nobody.get("/api/v1/designs").status_code == 401
        assert (
            nobody.post(
                "/api/v1/uploads", files=[("files", ("x.png", png(1), "image/png"))]
            ).status_code
            == 401
        )
        wrong = nobody.get("/api/v1/designs", headers={"Authorization": "Bearer dfw_not-a-token"})
        assert wrong.status_code == 401
    # A revoked token is refused at once.
    token_id, token = web["catalog"].create_token("ada", "to revoke")
    with httpx.Client(base_url=web["base"], headers={"Authorization": f"Bearer {token}"}) as http:
        assert http.get("/api/v1/designs").status_code == 200
        assert web["catalog"].revoke_token(token_id)
        assert http.get("/api/v1/designs").status_code == 401


def test_limits_answer_413_and_429_naming_the_limit(web) -> None:
    staged = web["root"] / "home" / "web-staging"
    with client(web, "bo") as http:
        big = http.post(
            "/api/v1/uploads",
            files=[("files", ("huge.png", PNG_MAGIC + os.urandom(3 * 2**20), "image/png"))],
        )
        assert big.status_code == 413 and "DESIGNFLOW_MAX_FILE_MB" in big.json()["error"]
        many = http.post(
            "/api/v1/uploads",
            files=[("files", (f"{i}.png", png(i), "image/png")) for i in range(9)],
        )
        assert many.status_code == 413 and "DESIGNFLOW_WEB_MAX_FILES" in many.json()["error"]
        whole = http.post(
            "/api/v1/uploads",
            files=[
                ("files", (f"{i}.bin", os.urandom(2 * 2**20 - 100), "image/png")) for i in range(7)
            ],
        )
        assert whole.status_code == 413 and "DESIGNFLOW_WEB_MAX_REQUEST_MB" in whole.json()["error"]
        assert not any(p.is_file() for p in staged.rglob("*")), (
            "a refused request left staged files"
        )

        first = http.post(
            "/api/v1/uploads",
            files=[("files", ("a.png", png(7101), "image/png"))],
            data={"async_mode": "1"},
        )
        assert first.status_code == 202
        second = http.post(
            "/api/v1/uploads",
            files=[("files", ("b.png", png(7102), "image/png"))],
            data={"async_mode": "1"},
        )
        assert second.status_code == 429 and second.headers["retry-after"].isdigit()
        assert "DESIGNFLOW_WEB_MAX_UPLOADS_IN_FLIGHT" in second.json()["error"]
        assert wait_job(http, first.json()["status_url"])["status"] == "completed"
    web["limits answered"] = True


def test_client_file_names_never_become_paths(web) -> None:
    names = [
        "../../escape.png",
        "/etc/abs.png",
        "nul\x00byte.png",
        "x" * 300 + ".png",
        "..\\win.png",
    ]
    with client(web, "bo") as http:
        sent = http.post(
            "/api/v1/uploads",
            files=[("files", (n, png(7200 + i), "image/png")) for i, n in enumerate(names)],
        )
        assert sent.status_code == 200, sent.text
        stored = sorted(o["file"] for o in sent.json()["outcomes"] if o["outcome"] == "stored")
    assert len(stored) == 5
    assert all(
        "/" not in n and "\\" not in n and "\x00" not in n and len(n) <= 120 for n in stored
    ), stored
    assert "escape.png" in stored and "abs.png" in stored and "win.png" in stored
    root = web["root"]
    assert not (root / "home" / "escape.png").exists() and not (root / "escape.png").exists()
    assert not Path("/etc/abs.png").exists()


def test_a_dropped_connection_leaves_no_job_and_no_staged_file(web) -> None:
    catalog = web["catalog"]
    before = _jobs(catalog)
    host, port = web["base"].removeprefix("http://").split(":")
    body = (b"--B\r\nContent-Disposition: form-data; name=\"files\"; filename=\"cut.png\"\r\n"
            b"Content-Type: image/png\r\n\r\n" + PNG_MAGIC + os.urandom(64_000))  # fmt: skip
    head = (f"POST /api/v1/uploads HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {web['tokens']['bo']}\r\n"
            f"Content-Type: multipart/form-data; boundary=B\r\nContent-Length: {len(body) + 500_000}\r\n\r\n")  # fmt: skip
    with socket.create_connection((host, int(port))) as raw:
        raw.sendall(head.encode() + body)
        time.sleep(0.5)
    time.sleep(1.0)
    assert _jobs(catalog) == before
    staged = web["root"] / "home" / "web-staging"
    assert not any(p.is_file() for p in staged.rglob("*"))


def test_a_browser_session_needs_the_csrf_token(web) -> None:
    with httpx.Client(base_url=web["base"], timeout=30) as browser:
        assert browser.get("/").status_code == 303  # to /login
        page = browser.get("/login")
        csrf = browser.cookies["designflow_csrf"]
        assert page.status_code == 200 and csrf in page.text
        refused = browser.post("/login", data={"token": web["tokens"]["ada"], "csrf": "forged"})
        assert refused.status_code == 403
        signed = browser.post("/login", data={"token": web["tokens"]["ada"], "csrf": csrf})
        assert signed.status_code == 303 and "designflow_session" in browser.cookies
        assert "Upload designs" in browser.get("/").text
        # The session cookie alone cannot upload: a cross-site form would carry it.
        files = [("files", ("c.png", png(7301), "image/png"))]
        assert browser.post("/api/v1/uploads", files=files).status_code == 403
        ok = browser.post("/api/v1/uploads", files=files, headers={"X-CSRF-Token": csrf})
        assert ok.status_code == 200, ok.text
        assert "c.png" in browser.get("/designs").text


def _jobs(catalog: Catalog) -> int:
    with catalog.connect() as conn:
        return conn.execute("SELECT count(*) FROM web_jobs").fetchone()[0]


CHROMIUM = "/usr/bin/chromium"


def test_a_seller_uploads_from_the_browser_and_sees_every_outcome(web, tmp_path: Path) -> None:
    """The pages in the system's Chromium (Playwright drives it; no browser is downloaded):
    sign in, pick 6 files (a copy of a stored design, a corrupt file), watch each outcome,
    then the catalog and a design's page."""
    if not Path(CHROMIUM).exists():
        assert not os.environ.get("CI"), "CI installs Debian's chromium (.ci/run)"
        pytest.skip("no system Chromium (apt-get install chromium)")
    from playwright.sync_api import expect, sync_playwright

    files = []
    for i in range(4):
        files.append(tmp_path / f"web-{i}.png")
        files[-1].write_bytes(png(7400 + i))
    (tmp_path / "copy-of-web-0.png").write_bytes(files[0].read_bytes())
    (tmp_path / "corrupt.png").write_bytes(PNG_MAGIC + os.urandom(300))
    with client(web, "bo") as http:
        first = http.post(
            "/api/v1/uploads", files=[("files", ("web-0.png", files[0].read_bytes(), "image/png"))]
        )
        assert first.status_code == 200, first.text
    picked = [
        *files[1:],
        tmp_path / "copy-of-web-0.png",
        tmp_path / "corrupt.png",
        tmp_path / "web-extra.png",
    ]
    picked[-1].write_bytes(png(7450))

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.goto(f"{web['base']}/")
            expect(page).to_have_url(f"{web['base']}/login")
            page.fill("#token", web["tokens"]["bo"])
            page.click("#sign-in")
            expect(page.locator("h1")).to_have_text("Upload designs")
            page.set_input_files("#pick", [str(p) for p in picked])
            rows = page.locator("#files tbody tr")
            expect(rows).to_have_count(6)
            for p in picked:
                row = page.locator(f"#files tbody tr[data-file='{p.name}']")
                expect(row).to_have_attribute("data-outcome", re.compile(".+"), timeout=120_000)
            outcome = {
                p.name: page.locator(f"tr[data-file='{p.name}']").get_attribute("data-outcome")
                for p in picked
            }
            assert outcome == {"web-1.png": "stored", "web-2.png": "stored", "web-3.png": "stored",
                               "copy-of-web-0.png": "duplicate", "corrupt.png": "rejected",
                               "web-extra.png": "stored"}  # fmt: skip
            duplicate = page.locator("tr[data-file='copy-of-web-0.png']")
            expect(duplicate.locator(".outcome")).to_contain_text("exact duplicate of design")
            expect(duplicate.locator("img")).to_have_count(1)  # the design it matched
            assert duplicate.locator("img").evaluate("i => i.complete && i.naturalWidth > 0")
            expect(page.locator("tr[data-file='corrupt.png'] .outcome")).to_contain_text(
                "rejected: "
            )

            page.goto(f"{web['base']}/designs")
            cards = page.locator(".card.design")
            assert cards.count() >= 5
            # the catalog's thumbnails load lazily, after the page's load event: wait for it
            first_thumbnail = cards.first.locator("img").element_handle()
            page.wait_for_function("i => i.complete && i.naturalWidth > 0", arg=first_thumbnail)
            page.locator(".card.design a").first.click()
            expect(page.locator("#design-name")).to_have_text(re.compile(r".+\.png"))
            expect(page.locator("body")).to_contain_text("Near twins")
        finally:
            browser.close()


def test_the_catalog_narrows_by_name_near_groups_mockups_and_listing(web) -> None:
    """The designs API and page filter a seller's catalog: part of the name (LIKE's own
    characters taken literally), near-duplicate groups, with/without mockups, listed or not."""
    from dataclasses import replace

    from designflow.catalog.listings import ListingCatalog
    from tests.core.test_catalog import new_design

    catalog: Catalog = web["catalog"]
    names = ["Sunset_cat.png", "sunset dog.png", "Moon 100%.png", "plain.png"]
    rows = [replace(new_design("cy", 9100 + i), original_name=n) for i, n in enumerate(names)]
    inserted = catalog.record_designs(rows).inserted
    ids = {row.original_name: inserted[row.sha256] for row in rows}
    twin = replace(new_design("cy", 9200), original_name="sunset dog v2.png",
                   near_duplicate_of=ids["sunset dog.png"], near_distance=4)  # fmt: skip
    ids["sunset dog v2.png"] = catalog.record_designs([twin]).inserted[twin.sha256]
    catalog.record_mockup(ids["Sunset_cat.png"], "tshirt", "users/cy/m.jpg", 10, 8, 8, None)
    listings = ListingCatalog(catalog)
    listings.begin_create(ids["Moon 100%.png"], "shop-1", "Moon", "sha")
    listings.set_listing(ids["Moon 100%.png"], "shop-1", 5551, "sha")
    _, token = catalog.create_token("cy", "filters")
    with httpx.Client(base_url=web["base"], timeout=60,
                      headers={"Authorization": f"Bearer {token}"}) as http:  # fmt: skip

        def found(**query) -> set[str]:
            answer = http.get("/api/v1/designs", params=query).raise_for_status().json()
            assert answer["total"] == len(answer["designs"])
            return {d["name"] for d in answer["designs"]}

        assert found() == set(ids)
        assert found(q="sunset") == {"Sunset_cat.png", "sunset dog.png", "sunset dog v2.png"}
        assert found(q="t_c") == {"Sunset_cat.png"}  # "_" is a character, not a wildcard
        assert found(q="0%") == {"Moon 100%.png"}
        assert found(near="1") == {"sunset dog.png", "sunset dog v2.png"}
        assert found(mockups="with") == {"Sunset_cat.png"}
        assert found(mockups="without") == set(ids) - {"Sunset_cat.png"}
        assert found(listed="yes") == {"Moon 100%.png"}
        assert found(listed="no", q="sunset", near="1") == {"sunset dog.png", "sunset dog v2.png"}
        assert http.get("/api/v1/designs", params={"q": "x" * 300}).status_code == 400
        # The page: the same filters from its form, kept in the paging links.
        page = http.get("/designs", params={"mockups": "without", "q": "sunset"},
                        cookies={"designflow_session": token})  # fmt: skip
        assert page.status_code == 200
        shown = set(re.findall(r'class="card design" data-id="(\d+)"', page.text))
        assert shown == {str(ids["sunset dog.png"]), str(ids["sunset dog v2.png"])}
        assert 'value="sunset"' in page.text and 'value="without" selected' in page.text
