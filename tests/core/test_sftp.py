"""The SFTP NAS against a real server on 127.0.0.1 (OpenSSH sshd when installed, else asyncssh)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from designflow.errors import is_transient
from designflow.storage.nas import design_path
from designflow.storage.sftp import (
    HostKeyError,
    NasAuthError,
    SftpCredentials,
    SftpNas,
    SftpPool,
    SftpTarget,
)
from tests.sftp_servers import AsyncSshServer, start_sftp_server


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def server(tmp_path: Path):
    srv = start_sftp_server(tmp_path / "sftp")
    yield srv
    srv.stop()


def make_nas(srv, max_connections: int = 10, **creds) -> SftpNas:
    target = SftpTarget.from_url(srv.url)
    credentials = SftpCredentials(
        known_hosts=creds.get("known_hosts", srv.known_hosts),
        key_file=creds.get("key_file", srv.key_file),
    )
    return SftpNas(target, SftpPool(target, credentials, max_connections=max_connections))


def source_files(folder: Path, count: int, size: int = 200_000) -> list[Path]:
    """Distinct contents per folder and index."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(count):
        p = folder / f"src {i} ✓.png"
        p.write_bytes(hashlib.sha256(f"{folder}/{i}".encode()).digest() * (size // 32))
        out.append(p)
    return out


def put(nas: SftpNas, src: Path, user: str = "u1"):
    data = src.read_bytes()
    return nas.put_file(src, design_path(user, sha(data), "png"), sha(data))


def test_upload_atomic_and_idempotent(server, tmp_path: Path) -> None:
    nas = make_nas(server)
    (src,) = source_files(tmp_path / "in", 1)
    first = put(nas, src)
    assert first.written
    assert nas.read_bytes(first.path) == src.read_bytes()
    assert (server.root / first.path).read_bytes() == src.read_bytes()
    second = put(nas, src)
    assert not second.written
    assert nas.list_files() == [first.path]  # no temporary file left behind
    nas.close()


def test_pool_reuses_one_connection(server, tmp_path: Path) -> None:
    nas = make_nas(server)
    for src in source_files(tmp_path / "in", 10, size=10_000):
        put(nas, src)
    assert nas.pool.handshakes == 1
    nas.close()


def test_connection_cap_under_20_concurrent_uploads(server, tmp_path: Path) -> None:
    nas = make_nas(server, max_connections=4)
    files = source_files(tmp_path / "in", 20)
    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(lambda f: put(nas, f), files))
    assert all(r.written for r in results)
    assert nas.pool.peak_open <= 4
    assert 1 <= nas.pool.handshakes <= 4
    assert len(nas.list_files()) == 20
    nas.close()


def test_stale_connection_replaced_after_restart(server, tmp_path: Path) -> None:
    nas = make_nas(server)
    a, b = source_files(tmp_path / "in", 2)
    put(nas, a)
    server.restart()  # the pooled connection is now dead
    assert put(nas, b).written  # replaced without failing the upload
    assert nas.pool.handshakes == 2
    nas.close()


def test_unknown_and_changed_host_keys_refused(server, tmp_path: Path) -> None:
    (src,) = source_files(tmp_path / "in", 1)
    changed = make_nas(server, known_hosts=server.wrong_known_hosts)
    with pytest.raises(HostKeyError, match="does not match"):
        put(changed, src)
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    unknown = make_nas(server, known_hosts=str(empty))
    with pytest.raises(HostKeyError, match="unknown"):
        put(unknown, src)
    assert list(server.root.rglob("*.png")) == []


def test_wrong_credentials_clear_error(server, tmp_path: Path) -> None:
    (src,) = source_files(tmp_path / "in", 1)
    nas = make_nas(server, key_file=server.wrong_key_file)
    with pytest.raises(NasAuthError, match="refused the credentials"):
        put(nas, src)


def test_unreachable_server_is_a_clear_error(tmp_path: Path, server) -> None:
    server.stop()
    nas = make_nas(server)
    (src,) = source_files(tmp_path / "in", 1)
    with pytest.raises(Exception, match="cannot reach the NAS"):
        put(nas, src)


def test_changed_source_leaves_nothing_under_final_name(server, tmp_path: Path) -> None:
    nas = make_nas(server)
    (src,) = source_files(tmp_path / "in", 1, size=2_000_000)
    data = src.read_bytes()
    dest = design_path("u1", sha(data), "png")
    with pytest.raises(Exception, match="changed after it was fingerprinted"):
        nas.put_file(src, dest, sha(b"something else"))
    assert not nas.exists(dest)
    assert nas.list_files() == []  # the temporary file was cleaned up too
    nas.close()


def test_connection_cut_mid_file_leaves_nothing_under_final_name(server, tmp_path: Path) -> None:
    """The server dies while the file is half sent: the source is a pipe that holds back its
    second half until the first has reached the server's disk and the server is killed."""
    half = 4 * 1024 * 1024
    data = os.urandom(2 * half)
    dest = design_path("u1", sha(data), "png")
    pipe = tmp_path / "design.png"
    os.mkfifo(pipe)
    cut = threading.Event()

    def writer() -> None:
        with open(pipe, "wb") as sink:
            sink.write(data[:half])
            sink.flush()
            cut.wait(60)
            with contextlib.suppress(BrokenPipeError):
                sink.write(data[half:])

    feeding = threading.Thread(target=writer)
    feeding.start()
    nas = make_nas(server)
    failure: list[BaseException] = []
    sending = threading.Thread(target=lambda: _catch(failure, nas.put_file, pipe, dest, sha(data)))
    sending.start()
    deadline = time.monotonic() + 60
    while not any(p.stat().st_size >= half // 2 for p in server.root.rglob("*.part")):
        assert time.monotonic() < deadline and sending.is_alive(), "nothing reached the server"
        time.sleep(0.01)
    server.kill()  # mid-file: half the bytes are on the server's disk
    cut.set()
    sending.join(60)
    feeding.join(60)
    assert len(failure) == 1 and is_transient(failure[0]), failure  # retried by the task
    server.start()
    assert not nas.exists(dest)  # a reader never sees a half design under its final name
    src = tmp_path / "whole.png"
    src.write_bytes(data)
    assert nas.put_file(src, dest, sha(data)).written  # a fresh connection after the cut
    assert nas.read_bytes(dest) == data
    nas.close()


def _catch(into: list, call, *args) -> None:
    try:
        call(*args)
    except BaseException as exc:  # noqa: BLE001 - handed to the test thread
        into.append(exc)


def test_names_with_spaces_and_unicode(server, tmp_path: Path) -> None:
    nas = make_nas(server)
    (src,) = source_files(tmp_path / "in", 1)
    dest = "users/u1/designs/ab/design with space ✓ é.png"
    assert nas.put_file(src, dest, sha(src.read_bytes())).written
    assert nas.read_bytes(dest) == src.read_bytes()
    nas.close()


def test_idle_connections_closed_at_end_of_run(server, tmp_path: Path) -> None:
    nas = make_nas(server)
    files = source_files(tmp_path / "in", 8)
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda f: put(nas, f), files))
    assert nas.pool.open_now >= 1
    nas.release()
    assert nas.pool.open_now == 0
    assert put(nas, source_files(tmp_path / "more", 1, size=1000)[0]).written  # still usable
    nas.close()


def test_asyncssh_fallback_server_works(tmp_path: Path) -> None:
    """The in-process server used where sshd is missing is itself a working NAS."""
    srv = AsyncSshServer(tmp_path / "a")
    srv.start()
    try:
        nas = make_nas(srv)
        files = source_files(tmp_path / "in", 3)
        threads = [threading.Thread(target=put, args=(nas, f)) for f in files]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(nas.list_files()) == 3
        srv.restart()
        assert put(nas, source_files(tmp_path / "more", 1)[0]).written
        nas.close()
    finally:
        srv.stop()


def test_upload_worker_processes(server, tmp_path: Path) -> None:
    from designflow.storage.sftp import ProcessSftpNas

    target = SftpTarget.from_url(server.url)
    creds = SftpCredentials(known_hosts=server.known_hosts, key_file=server.key_file)
    nas = ProcessSftpNas(target, SftpPool(target, creds, max_connections=4), processes=2)
    try:
        files = source_files(tmp_path / "in", 6)
        with ThreadPoolExecutor(max_workers=4) as pool:
            results = list(pool.map(lambda f: put(nas, f), files))
        assert all(r.written for r in results)
        assert sorted(nas.list_files()) == sorted(r.path for r in results)
        # Errors cross the process boundary with their type and message.
        with pytest.raises(Exception, match="changed after it was fingerprinted"):
            nas.put_file(files[0], design_path("u1", "b" * 64, "png"), "b" * 64)
        bad = ProcessSftpNas(
            target,
            SftpPool(
                target,
                SftpCredentials(known_hosts=server.wrong_known_hosts, key_file=server.key_file),
            ),
            1,
        )
        with pytest.raises(HostKeyError):
            put(bad, files[1], user="u2")
        bad.close()
        nas.release()  # workers exit with their connections; the next upload respawns them
        assert put(nas, source_files(tmp_path / "more", 1)[0]).written
    finally:
        nas.close()


def test_ci_runs_the_sftp_tests_against_openssh_whatever_is_asked(tmp_path, monkeypatch) -> None:
    """DESIGNFLOW_TEST_SFTP=asyncssh cannot switch the real sshd off under CI=true."""
    from tests.sftp_servers import SSHD, start_sftp_server

    monkeypatch.setenv("CI", "true")
    monkeypatch.setenv("DESIGNFLOW_TEST_SFTP", "asyncssh")
    if not SSHD:
        with pytest.raises(RuntimeError, match="sshd is required"):
            start_sftp_server(tmp_path / "ci")
        return
    server = start_sftp_server(tmp_path / "ci")
    try:
        assert server.kind == "openssh"
    finally:
        server.stop()


def test_a_nas_folder_that_refuses_writes_is_named_over_sftp(server, tmp_path: Path) -> None:
    """The NAS refuses the write (the folder made immutable: EPERM even for the root user the
    test server runs as): the error names the operation and the NAS folder, not retried."""
    import subprocess

    src = tmp_path / "in.png"
    src.write_bytes(b"design bytes over sftp")
    digest = sha(src.read_bytes())
    dest = design_path("locked", digest, "png")
    folder = server.root / os.path.dirname(dest)
    folder.mkdir(parents=True)
    if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
        pytest.fail("chattr +i is needed to refuse writes to root (an ext2/3/4 or tmpfs folder)")
    nas = make_nas(server)
    try:
        with pytest.raises(Exception) as caught:
            nas.put_file(src, dest, digest)
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=False)
        nas.close()
    assert str(caught.value) == f"cannot write {os.path.dirname(dest)}/: permission denied"
    assert not is_transient(caught.value)


def test_each_file_is_fsynced_on_the_server_before_its_rename(tmp_path: Path) -> None:
    """The promise "fsync, then rename into place" as the NAS itself saw it: OpenSSH's SFTP
    server logs every request at VERBOSE, and each design's temporary file is fsynced
    (fsync@openssh.com) before it is renamed to its final name."""
    from tests.sftp_servers import SSHD, OpenSshServer

    if not SSHD:
        assert os.environ.get("CI") != "true", "CI installs OpenSSH's sshd"
        pytest.skip("needs OpenSSH's sshd (its SFTP server's log)")
    server = OpenSshServer(tmp_path / "sftp", sftp_log_level="VERBOSE")
    server.start()
    try:
        nas = make_nas(server)
        results = [put(nas, src) for src in source_files(tmp_path / "in", 3)]
        nas.close()
        log = (server.folder / "sftp.log").read_text(errors="replace").splitlines()
    finally:
        server.stop()
    for result in results:
        final = result.path
        renamed = [i for i, line in enumerate(log) if "rename" in line and final in line]
        assert renamed, f"no rename to {final} in the server's log"
        # The line names the temporary file renamed; it was fsynced before that line.
        temporary = log[renamed[0]].split('old "')[1].split('"')[0]
        synced = [i for i, line in enumerate(log) if 'fsync "' in line and temporary in line]
        assert synced and synced[0] < renamed[0], (temporary, log[-20:])
