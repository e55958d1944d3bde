"""SFTP upload throughput: designflow's pooled paramiko backend against OpenSSH's `sftp -b`.

Run: python -m bench.sftp [--files 50] [--mb 10] [--rounds 3]

Starts a local sshd on 127.0.0.1 (own config, host key and client key in a temp folder) and
uploads the same files, interleaved, like with like:
  warm: designflow's pool (connections and upload processes already open) against 4 `sftp`
        processes connected before the clock starts, fed `put` lines through stdin;
  cold: a fresh designflow NAS (its connections and processes started inside the timing)
        against 4 `sftp -b` processes started together, each with a quarter of the files;
  and, as before, one `sftp -b` over one connection.
Then the per-file cost of a pooled upload against a new connection per file, on small files.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from designflow.storage.nas import design_path
from designflow.storage.sftp import ProcessSftpNas, SftpCredentials, SftpNas, SftpPool, SftpTarget
from tests.sftp_servers import SSHD, OpenSshServer


def make_files(folder: Path, count: int, size: int, tag: str) -> list[tuple[Path, str]]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(count):
        path = folder / f"{tag}-{i:03d}.bin"
        data = os.urandom(size)
        path.write_bytes(data)
        out.append((path, hashlib.sha256(data).hexdigest()))
    return out


def new_nas(server: OpenSshServer, connections: int = 10, processes: int = 0) -> SftpNas:
    target = SftpTarget.from_url(server.url)
    creds = SftpCredentials(known_hosts=server.known_hosts, key_file=server.key_file)
    pool = SftpPool(target, creds, max_connections=connections)
    return ProcessSftpNas(target, pool, processes) if processes else SftpNas(target, pool)


def run_openssh(server: OpenSshServer, files: list[tuple[Path, str]], dest: Path) -> float:
    dest.mkdir(parents=True, exist_ok=True)
    batch = server.folder / "batch.txt"
    batch.write_text("".join(f'put "{p}" "{dest}/{p.name}"\n' for p, _ in files))
    cmd = [
        "sftp", "-q", "-b", str(batch), "-P", str(server.port), "-i", server.key_file,
        "-o", f"UserKnownHostsFile={server.known_hosts}", "-o", "StrictHostKeyChecking=yes",
        "-o", "BatchMode=yes", f"{server.user}@127.0.0.1",
    ]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def _sftp_cmd(server: OpenSshServer, *extra: str) -> list[str]:
    return [
        "sftp", "-q", *extra, "-P", str(server.port), "-i", server.key_file,
        "-o", f"UserKnownHostsFile={server.known_hosts}", "-o", "StrictHostKeyChecking=yes",
        "-o", "BatchMode=yes", f"{server.user}@127.0.0.1",
    ]  # fmt: skip


def _quarters(files: list[tuple[Path, str]]) -> list[list[tuple[Path, str]]]:
    return [files[i::4] for i in range(4)]


def start_warm_openssh(server: OpenSshServer) -> list[subprocess.Popen]:
    """4 connected `sftp` sessions reading commands from a pipe."""
    sessions = [
        subprocess.Popen(
            _sftp_cmd(server),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            bufsize=1,
        )  # fmt: skip
        for _ in range(4)
    ]
    _run_in_sessions(sessions, [[] for _ in sessions], server.root, "connect")
    return sessions


def _run_in_sessions(sessions, parts, dest: Path, marker: str) -> float:
    start = time.perf_counter()
    for session, part in zip(sessions, parts, strict=True):
        lines = "".join(f'put "{p}" "{dest}/{p.name}"\n' for p, _ in part)
        session.stdin.write(f"{lines}!echo {marker}\n")
        session.stdin.flush()
    for session in sessions:
        while marker not in session.stdout.readline():
            pass
    return time.perf_counter() - start


def run_openssh_warm(sessions, files, dest: Path) -> float:
    dest.mkdir(parents=True, exist_ok=True)
    return _run_in_sessions(sessions, _quarters(files), dest, f"done-{time.monotonic_ns()}")


def run_openssh_cold_parallel(server: OpenSshServer, files, dest: Path) -> float:
    dest.mkdir(parents=True, exist_ok=True)
    batches = []
    for i, part in enumerate(_quarters(files)):
        batch = server.folder / f"batch-{i}.txt"
        batch.write_text("".join(f'put "{p}" "{dest}/{p.name}"\n' for p, _ in part))
        batches.append(batch)
    start = time.perf_counter()
    procs = [
        subprocess.Popen(_sftp_cmd(server, "-b", str(b)), stdout=subprocess.DEVNULL)
        for b in batches
    ]
    assert all(p.wait() == 0 for p in procs)
    return time.perf_counter() - start


def run_designflow_cold(server: OpenSshServer, files, user: str) -> float:
    start = time.perf_counter()
    nas = new_nas(server, processes=2)
    try:
        run_designflow(nas, files, user)
    finally:
        nas.close()
    return time.perf_counter() - start


def run_designflow(nas: SftpNas, files: list[tuple[Path, str]], user: str) -> float:
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda f: nas.put_file(f[0], design_path(user, f[1], "png"), f[1]), files))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=50)
    parser.add_argument("--mb", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if not SSHD:
        raise SystemExit("this benchmark needs OpenSSH's sshd (apt-get install openssh-server)")

    work = Path(tempfile.mkdtemp(prefix="bench-sftp-"))
    server = OpenSshServer(work / "server")
    server.start()
    try:
        files = make_files(work / "src", args.files, int(args.mb * 1024 * 1024), "big")
        total_mb = sum(p.stat().st_size for p, _ in files) / 1e6
        runs: dict[str, list[float]] = {k: [] for k in (
            "sftp -b, 1 connection", "sftp x4 warm", "designflow warm", "designflow in-thread warm",
            "sftp -b x4 cold", "designflow cold")}  # fmt: skip
        nas = new_nas(server, processes=2)  # the default configuration
        in_thread = new_nas(server)  # DESIGNFLOW_NAS_UPLOAD_PROCESSES=0
        run_designflow(nas, files[:2], "warm")  # worker processes start once per run
        run_designflow(in_thread, files[:4], "warm-thread")
        sessions = start_warm_openssh(server)
        for r in range(args.rounds):
            shutil.rmtree(server.root, ignore_errors=True)
            server.root.mkdir()
            for n in (nas, in_thread):
                n._forget_dirs()  # the folders were removed under them
            runs["sftp -b, 1 connection"].append(
                run_openssh(server, files, server.root / "openssh")
            )
            runs["sftp x4 warm"].append(run_openssh_warm(sessions, files, server.root / f"warm{r}"))
            runs["designflow warm"].append(run_designflow(nas, files, f"round{r}"))
            runs["designflow in-thread warm"].append(run_designflow(in_thread, files, f"thread{r}"))
            runs["sftp -b x4 cold"].append(
                run_openssh_cold_parallel(server, files, server.root / f"cold{r}")
            )
            runs["designflow cold"].append(run_designflow_cold(server, files, f"cold{r}"))
            print(
                f"  round {r + 1}: "
                + ", ".join(f"{k} {total_mb / v[-1]:.0f} MB/s" for k, v in runs.items())
            )
        med = {k: statistics.median(v) for k, v in runs.items()}
        print(f"{args.files} files x {args.mb:g} MB over loopback, {args.rounds} rounds (medians)")
        for k, v in med.items():
            print(f"  {k:27}: {total_mb / v:7.1f} MB/s")
        print(f"warm, like with like: designflow / 4 warm sftp sessions = "
              f"{med['sftp x4 warm'] / med['designflow warm']:.2f}x")  # fmt: skip
        print(f"cold, like with like: designflow / 4 sftp -b at once    = "
              f"{med['sftp -b x4 cold'] / med['designflow cold']:.2f}x")  # fmt: skip
        print(
            f"in-thread handshakes, all rounds: {in_thread.pool.handshakes} (pool of {in_thread.pool.max_connections})"
        )
        for session in sessions:
            session.stdin.close()
            session.wait(10)
        nas.close()
        in_thread.close()

        small = make_files(work / "small", 41, 64 * 1024, "small")
        pooled = new_nas(server)
        pooled.put_file(*_args(small[0], "warm"))  # one connection opened before timing
        start = time.perf_counter()
        for f in small[1:21]:
            pooled.put_file(*_args(f, "pooled"))
        per_pooled = (time.perf_counter() - start) / 20
        pooled.close()
        start = time.perf_counter()
        for f in small[21:41]:
            fresh = new_nas(server)
            fresh.put_file(*_args(f, "fresh"))
            fresh.close()
        per_fresh = (time.perf_counter() - start) / 20
        print(f"64 KB file, pooled connection : {per_pooled * 1000:6.1f} ms/file")
        print(
            f"64 KB file, new connection    : {per_fresh * 1000:6.1f} ms/file  ({per_fresh / per_pooled:.1f}x)"
        )
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


def _args(f: tuple[Path, str], user: str) -> tuple[Path, str, str]:
    return f[0], design_path(user, f[1], "png"), f[1]


if __name__ == "__main__":
    main()
