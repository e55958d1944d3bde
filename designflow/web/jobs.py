"""Running an HTTP upload: through the `upload-designs` deployment when a Prefect server is
configured (priorities, retries, status and the UI all apply), else as `designflow upload`
in a child process on Prefect's temporary server, as the CLI runs it.

Either way the job's record in the catalog (web_jobs) says where it stands; the report keeps
the names the seller's browser or web app gave, not the staging paths.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from designflow.catalog import Catalog
from designflow.storage.nas import LocalNas, Nas
from designflow.web.staging import StagedFile

# The staging prefix on the NAS for runs a worker takes (a source root like
# nas:web-uploads/{user_id} allows it per seller).
NAS_STAGING = "web-uploads"
log = logging.getLogger(__name__)
STOP_SECONDS = 30.0


class JobRunner:
    def __init__(self, catalog: Catalog, nas: Nas, api: Any | None, staging: Path) -> None:
        """`api`: a designflow.orchestration.trigger.PrefectApi when a server is configured."""
        self.catalog, self.nas, self.api, self.staging = catalog, nas, api, staging
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="web-job")
        self._children: set[subprocess.Popen] = set()
        self._lock = threading.Lock()
        # Jobs started and not yet recorded as finished: a stop waits for them.
        self._running = 0
        self._changed = threading.Condition(self._lock)
        self._stopping = threading.Event()
        # Runs on workers name files by their nas: path: the names the client gave, per job
        # (kept while this process lives; after a restart the report shows the NAS names).
        self._names: dict[uuid.UUID, dict[str, str]] = {}

    def folder_for(self, job_id: uuid.UUID, user_id: str) -> Path:
        """Where a job's files are staged: inside a local-folder NAS when runs go to workers
        (they read it as nas:...), else under the web process's own staging folder."""
        if self.api is not None and isinstance(self.nas, LocalNas):
            return self.nas.root / NAS_STAGING / user_id / str(job_id)
        return self.staging / user_id / str(job_id)

    def start(
        self, job_id: uuid.UUID, user_id: str, files: list[StagedFile], options: dict,
        urls: list[str] | None = None,
    ) -> None:  # fmt: skip
        """`urls`: https:// sources the run downloads itself, reported by their URL."""
        urls = urls or []
        self.catalog.create_job(job_id, user_id, len(files) + len(urls))
        names = {str(f.path): f.name for f in files} | {url: url for url in urls}
        run = self._through_deployment if self.api is not None else self._in_child_process
        self._pool.submit(self._counted, run, job_id, user_id, files, names, options, urls)

    def _counted(self, run, *args) -> None:
        with self._lock:
            self._running += 1
        try:
            run(*args)
        finally:
            with self._lock:
                self._running -= 1
                self._changed.notify_all()

    def _wait_for_jobs(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        with self._lock:
            while self._running and time.monotonic() < deadline:
                self._changed.wait(deadline - time.monotonic())

    # -- a Prefect server: the deployment ----------------------------------------------------

    def _through_deployment(self, job_id, user_id, files, names, options, urls) -> None:
        try:
            paths = self._on_nas(job_id, user_id, files) if files else []
            display = {p: names[str(f.path)] for p, f in zip(paths, files, strict=True)}
            display.update({url: url for url in urls})
            run = self.api.create_flow_run(
                "upload-designs/upload-designs",
                {"paths": paths + urls, "user_id": user_id, **options},
                None,
                str(job_id),  # a retried create returns the same run
            )
            self.catalog.update_job(job_id, status="running", flow_run_id=run["id"])
            self._names[job_id] = display
        except Exception as exc:  # noqa: BLE001 - the job says why; the web process goes on
            self.catalog.update_job(job_id, status="failed", error=_plain(exc))

    def _on_nas(self, job_id: uuid.UUID, user_id: str, files: list[StagedFile]) -> list[str]:
        prefix = f"{NAS_STAGING}/{user_id}/{job_id}"
        if isinstance(self.nas, LocalNas):
            return [f"nas:{prefix}/{f.path.parent.name}/{f.path.name}" for f in files]  # there
        out = []
        for f in files:
            digest = hashlib.sha256(f.path.read_bytes()).hexdigest()
            name = f"{prefix}/{f.path.parent.name}/{f.path.name}"
            self.nas.put_file(f.path, name, digest)
            out.append(f"nas:{name}")
        shutil.rmtree(files[0].path.parent.parent, ignore_errors=True)
        return out

    def refresh(self, job: dict) -> dict:
        """A job run by a deployment: its state read from the server, its report once final."""
        if (
            self.api is None
            or job["status"] not in ("pending", "running")
            or not job["flow_run_id"]
        ):
            return job
        run = self.api.call("GET", f"/flow_runs/{job['flow_run_id']}")
        kind = run["state"]["type"]
        if kind not in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
            return job
        report = _persisted_report(job["flow_run_id"])
        if report is not None:
            report = _renamed(report, self._names.get(job["id"], {}))
        status = "completed" if kind == "COMPLETED" else "failed"
        error = None if status == "completed" else run["state"].get("message") or kind.lower()
        self.catalog.update_job(job["id"], status=status, report=report, error=error)
        self._discard_staged(job["user_id"], job["id"])
        return {**job, "status": status, "report": report, "error": error}

    def _discard_staged(self, user_id: str, job_id: uuid.UUID) -> None:
        """The run is over: the job's files staged on the NAS are not needed any more (the
        designs it stored have their own copies)."""
        prefix = f"{NAS_STAGING}/{user_id}/{job_id}"
        if isinstance(self.nas, LocalNas):
            shutil.rmtree(self.nas.root / prefix, ignore_errors=True)
            return
        try:
            for path in self.nas.list_files(prefix):
                self.nas.remove(path)
        except Exception:  # noqa: BLE001 - left for the operator; the job's answer stands
            log.warning("staged files of job %s not removed from the NAS", job_id)

    # -- no server: `designflow upload` in a child process -----------------------------------

    def _in_child_process(self, job_id, user_id, files, names, options, urls) -> None:
        folder = self.folder_for(job_id, user_id)
        sources = ([str(folder)] if files else []) + urls
        command = [sys.executable, "-m", "designflow.cli", "upload", *sources,
                   "--user", user_id, "--json", *_cli_options(options)]  # fmt: skip
        try:
            if self._stopping.is_set():
                raise RuntimeError("the web server is stopping; upload again")
            self.catalog.update_job(job_id, status="running")
            child = subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
            with self._lock:
                self._children.add(child)
            out, err = child.communicate()
            with self._lock:
                self._children.discard(child)
            report = _renamed(json.loads(out), names) if out.strip().startswith("{") else None
            if child.returncode == 0:
                self.catalog.update_job(job_id, status="completed", report=report)
            else:
                last = (err.strip().splitlines() or [f"exit code {child.returncode}"])[-1]
                self.catalog.update_job(job_id, status="failed", report=report, error=last[:500])
        except Exception as exc:  # noqa: BLE001
            self.catalog.update_job(job_id, status="failed", error=_plain(exc))
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def stop(self, grace_s: float = STOP_SECONDS) -> None:
        """SIGTERM: no new job starts; running uploads get `grace_s` to finish, then end."""
        self._stopping.set()
        self._pool.shutdown(wait=False, cancel_futures=True)
        # Until each started job has recorded its outcome, not just until its child exits:
        # the process ends by the signal right after this (uvicorn), threads and all, and a
        # job whose child had not been started yet when the stop came was left "running".
        self._wait_for_jobs(grace_s)
        with self._lock:
            children = list(self._children)
        for child in children:  # past the grace
            child.terminate()
            child.wait(10)
        self._wait_for_jobs(10)
        self.nas.close()  # its upload worker processes end with it


def _cli_options(options: dict) -> list[str]:
    out = []
    if options.get("allow_near_duplicates"):
        out.append("--allow-near-duplicates")
    if options.get("replace_with_better"):
        out.append("--replace-with-better")
    if options.get("mockup_templates"):
        out += ["--mockups", ",".join(options["mockup_templates"])]
    if options.get("priority"):
        out += ["--priority", options["priority"]]
    return out


def _renamed(report: dict, names: dict[str, str]) -> dict:
    """The report with each staged path replaced by the name the client gave."""
    for section in ("stored", "duplicates", "rejected", "failed", "skipped"):
        for row in report.get(section, []):
            row["file"] = names.get(row.get("file", ""), Path(row.get("file", "")).name)
    return report


def _persisted_report(flow_run_id) -> dict | None:
    from designflow.orchestration.results import upload_report

    try:
        return upload_report(flow_run_id)
    except Exception:  # noqa: BLE001 - the state is known; the report may be unreadable here
        return None


def _plain(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]
