"""SFTP upload throughput: designflow's pooled paramiko backend against OpenSSH's `sftp -b`.

Run: python -m bench.sftp [--files 50] [--mb 10] [--rounds 3]

Starts a local sshd on 127.0.0.1 (own config, host key and client key in a temp folder),
uploads the same files with (a) `sftp -b` and (b) SftpNas with 4 worker threads, interleaved,
and prints both throughputs and b/a. Then the per-file cost of a pooled upload against a
new connection per file, on small files.
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
        theirs, ours, threads_only = [], [], []
        nas = new_nas(server, processes=2)  # the default configuration
        in_thread = new_nas(server)  # DESIGNFLOW_NAS_UPLOAD_PROCESSES=0
        run_designflow(nas, files[:2], "warm")  # worker processes start once per run
        for r in range(args.rounds):
            shutil.rmtree(server.root, ignore_errors=True)
            server.root.mkdir()
            for n in (nas, in_thread):
                n._forget_dirs()  # the folders were removed under them
            theirs.append(run_openssh(server, files, server.root / "openssh"))
            ours.append(run_designflow(nas, files, f"round{r}"))
            threads_only.append(run_designflow(in_thread, files, f"thread{r}"))
            print(
                f"  round {r + 1}: sftp -b {total_mb / theirs[-1]:6.1f} MB/s,"
                f" designflow {total_mb / ours[-1]:6.1f} MB/s, in-thread {total_mb / threads_only[-1]:6.1f} MB/s"
            )
        a, b, c = (
            statistics.median(theirs),
            statistics.median(ours),
            statistics.median(threads_only),
        )
        print(f"{args.files} files x {args.mb:g} MB over loopback, {args.rounds} rounds (medians)")
        print(f"OpenSSH sftp -b                      : {total_mb / a:7.1f} MB/s")
        print(
            f"designflow (4 tasks, 2 upload procs) : {total_mb / b:7.1f} MB/s  = {a / b:.2f}x OpenSSH (target >= 0.9)"
        )
        print(
            f"designflow in-thread, 4 connections  : {total_mb / c:7.1f} MB/s  = {a / c:.2f}x OpenSSH"
        )
        print(
            f"in-thread handshakes, all rounds     : {in_thread.pool.handshakes} (pool of {in_thread.pool.max_connections})"
        )
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
