"""NAS uploads as a Prefect task: a batch at a time, retried with exponential backoff on
connection errors."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from prefect import task

from designflow.errors import PartlyFailed
from designflow.orchestration import resources
from designflow.orchestration.retry import io_retry
from designflow.storage.nas import PutResult
from designflow.storage.unrecorded import LEDGER


def _batch_run_name() -> str:
    from prefect.runtime import task_run

    uploads = task_run.parameters.get("uploads") or []
    first = Path(uploads[0]["source"]).name if uploads else "?"
    return f"upload {len(uploads)} file(s) from {first}"


# Files sent at once per batch: the SFTP pool's connections (or upload processes) do the
# work; 4 measured as fast as 8 on loopback and a LAN NAS.
NAS_UPLOAD_THREADS = 4


# One task run per batch, its files 4 at a time: a task run per file cost the Prefect server
# ~3 events per design (and the client a state round trip each). A retry (Prefect's, with
# its backoff) sends the batch again; files already on the NAS are found in place (one stat
# each), so only the missing ones travel again. Each file's outcome is returned, or carried
# by the PartlyFailed exception of the last attempt.
@task(name="upload-batch-to-nas", task_run_name=_batch_run_name, **io_retry())
def upload_batch_to_nas(uploads: list[dict]) -> list[PutResult]:
    """Publish a batch of designs at their content addresses (keys: source, dest, sha256)."""
    nas = resources.nas()

    def one(upload: dict) -> PutResult | BaseException:
        try:
            # The ledger knows the file is on the NAS until its row is recorded: an interrupt
            # in between removes it instead of leaving it unrecorded.
            with LEDGER.sending(upload["user_id"], upload["sha256"], upload["dest"]):
                put = nas.put_file(upload["source"], upload["dest"], upload["sha256"])
            if not put.written:
                LEDGER.already_there(upload["dest"])
            return put
        except Exception as exc:  # noqa: BLE001 - each file's outcome, raised below as a group
            return exc

    with ThreadPoolExecutor(max_workers=NAS_UPLOAD_THREADS) as pool:
        outcomes = list(pool.map(one, uploads))
    if any(isinstance(o, BaseException) for o in outcomes):
        raise PartlyFailed(outcomes, "file(s) of the batch")
    return outcomes
