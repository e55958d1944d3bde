"""What an upload did, file by file: the shape of `designflow upload --json`.

Other tools read this report; the top-level fields `flow_run_id`, `stored`, `duplicates` and
`rejected`, and the fields inside each entry, are kept stable. New fields may be added.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from designflow.ingest import progress

DuplicateKind = Literal["exact", "in-batch", "near"]


@dataclass(frozen=True)
class StoredDesign:
    file: str
    design_id: int
    sha256: str
    nas_path: str
    # Only with --allow-near-duplicates: the design this one resembles, and how closely.
    near_duplicate_of: int | None = None
    distance: int | None = None
    # Only with --replace-with-better: the stored design this better version replaced.
    replaces: int | None = None

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if self.near_duplicate_of is None:
            del out["near_duplicate_of"], out["distance"]
        if self.replaces is None:
            del out["replaces"]
        return out


@dataclass(frozen=True)
class DuplicateDesign:
    file: str
    duplicate_of: int  # id of the design already in the catalog (or stored by this upload)
    distance: int  # Hamming distance of the phash; 0 for exact and in-batch copies
    kind: DuplicateKind
    nas_path: str = ""  # where the matched design lives
    # For near duplicates: what the comparison saw ("same artwork: cropped (64% of it
    # shown), rotated ~2.9 degrees"); empty for exact copies.
    why: str = ""
    # A near duplicate with more pixels than the stored design: the better version of it
    # ("4500x5400" against "3375x4050"), worth storing instead (the report says so).
    better: bool = False
    size: str = ""
    stored_size: str = ""
    # The file's small picture (its fingerprint's), for the UI's summary; not in --json.
    thumbnail: bytes = field(default=b"", repr=False)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        del out["thumbnail"]
        if not self.better:
            del out["better"], out["size"], out["stored_size"]
        return out


@dataclass(frozen=True)
class RejectedFile:
    file: str
    reason: str


@dataclass(frozen=True)
class SkippedFile:
    """A file in a folder that is not a design (another format, a hidden file): listed so
    that every file the seller pointed at is accounted for."""

    file: str
    reason: str


@dataclass(frozen=True)
class FailedFile:
    """A good file that could not be stored this time (NAS or catalog unavailable after
    retries). Nothing was recorded for it; uploading it again completes it."""

    file: str
    reason: str


@dataclass
class BatchReport:
    batch_index: int
    batch_id: str
    stored: list[StoredDesign] = field(default_factory=list)
    duplicates: list[DuplicateDesign] = field(default_factory=list)
    rejected: list[RejectedFile] = field(default_factory=list)
    failed: list[FailedFile] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)
    # Why the catalog could not be used after its retries ("" when it could): the run's
    # later batches fail at once with it instead of spending the retries again.
    unavailable: str = ""

    @property
    def files(self) -> int:
        return len(self.stored) + len(self.duplicates) + len(self.rejected) + len(self.failed)


@dataclass
class UploadReport:
    flow_run_id: str | None
    user_id: str
    stored: list[StoredDesign] = field(default_factory=list)
    duplicates: list[DuplicateDesign] = field(default_factory=list)
    rejected: list[RejectedFile] = field(default_factory=list)
    failed: list[FailedFile] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)
    batches: int = 0
    timings_ms: dict[str, float] = field(default_factory=dict)
    # Mockups: background runs enqueued (async mode) or mockups made inline (sync mode).
    mockup_runs: list[dict[str, Any]] = field(default_factory=list)
    mockups: list[dict[str, Any]] = field(default_factory=list)
    mockup_error: str | None = None
    # Etsy draft listings published inline (sync mockups); async runs report them themselves.
    listings: list[dict[str, Any]] = field(default_factory=list)
    listing_skipped: str | None = None

    # The upload's plan, for progress events (not part of the report's fields).
    planned_files: int = field(default=0, repr=False)
    planned_batches: int = field(default=0, repr=False)
    _files_done: int = field(default=0, repr=False)

    def begin(self, files: int, batches: int) -> None:
        """The plan is known: progress is published against it from here on."""
        self.planned_files, self.planned_batches = files, batches
        self._publish(0, "starting")

    def add_batch(self, batch: BatchReport) -> None:
        self.stored.extend(batch.stored)
        self.duplicates.extend(batch.duplicates)
        self.rejected.extend(batch.rejected)
        self.failed.extend(batch.failed)
        self.batches += 1
        for stage, ms in batch.timings_ms.items():
            self.timings_ms[stage] = round(self.timings_ms.get(stage, 0.0) + ms, 1)
        self._publish(self._files_done + batch.files,
                      f"batch {batch.batch_index}/{self.planned_batches} done")  # fmt: skip

    def finish(self, total_ms: float) -> None:
        self.timings_ms["total"] = round(total_ms, 1)
        self._publish(self.planned_files, self.summary_line())

    def _publish(self, done: int, message: str) -> None:
        self._files_done = min(done, self.planned_files)
        event = progress.Progress(self._files_done, self.planned_files, message, self.flow_run_id)
        progress.publish(event)

    def summary_line(self) -> str:
        return (
            f"{len(self.stored)} stored, {len(self.duplicates)} duplicates, "
            f"{len(self.rejected)} rejected, {len(self.failed)} failed"
            + (f", {len(self.skipped)} skipped" if self.skipped else "")
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "flow_run_id": self.flow_run_id,
            "user_id": self.user_id,
            "stored": [s.as_dict() for s in self.stored],
            "duplicates": [d.as_dict() for d in self.duplicates],
            "rejected": [asdict(r) for r in self.rejected],
            "failed": [asdict(f) for f in self.failed],
            "skipped": [asdict(s) for s in self.skipped],
            "batches": self.batches,
            "timings_ms": self.timings_ms,
            "mockup_runs": self.mockup_runs,
            "mockups": self.mockups,
            "mockup_error": self.mockup_error,
            "listings": self.listings,
            "listing_skipped": self.listing_skipped,
            "counts": {
                "stored": len(self.stored),
                "duplicates": len(self.duplicates),
                "rejected": len(self.rejected),
                "failed": len(self.failed),
                "skipped": len(self.skipped),
            },
        }

    def outcome_rows(self) -> list[dict[str, Any]]:
        """One row per file, for the table artifact and the terminal summary. `design_id` is
        the design stored from the file; a duplicate names the one it copies in
        `duplicate_of` with its `distance`; the long NAS path comes last so that a 1400 px
        screen keeps the rest in view."""
        rows: list[dict[str, Any]] = []
        for s in self.stored:
            detail = (
                ""
                if s.near_duplicate_of is None
                else f"kept as a near duplicate of {s.near_duplicate_of}"
            )
            rows.append(_row(s.file, "stored", detail, design_id=s.design_id,
                             duplicate_of=s.near_duplicate_of, distance=s.distance,
                             nas_path=s.nas_path))  # fmt: skip
        for d in self.duplicates:
            rows.append(_row(d.file, f"duplicate ({d.kind})", d.why, duplicate_of=d.duplicate_of,
                             distance=d.distance, nas_path=d.nas_path))  # fmt: skip
        for outcome, entries in (("rejected", self.rejected), ("failed", self.failed),
                                 ("skipped", self.skipped)):  # fmt: skip
            rows.extend(_row(e.file, outcome, e.reason) for e in entries)
        return rows

    def nothing_usable(self) -> bool:
        """Nothing the seller named could be read: every name was refused before any file
        was looked at (a mistyped path, a folder of other formats)."""
        return not (self.stored or self.duplicates or self.failed or self.batches) and bool(
            self.rejected or self.skipped
        )


def _row(file: str, outcome: str, detail: str = "", design_id: int | None = None,
         duplicate_of: int | None = None, distance: int | None = None,
         nas_path: str = "") -> dict[str, Any]:  # fmt: skip
    return {"file": file, "outcome": outcome, "design_id": design_id, "duplicate_of": duplicate_of,
            "distance": distance, "detail": detail or "", "nas_path": nas_path}  # fmt: skip
