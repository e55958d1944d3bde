"""The ingest service: the fate of every file of one batch, decided without Prefect.

The flow feeds it the answers of each step (fingerprints, the catalog's exact and near
matches, each NAS upload's outcome, the insert's result) and asks what to do next; the
service keeps the books. Every file ends in exactly one list of the batch report:

    stored       on the NAS and in the catalog (our own insert seen again on a retry too)
    duplicates   exact (in the catalog), in-batch (same bytes earlier in the upload),
                 near (looks like an active design); a concurrent upload that won the
                 race to insert the same bytes makes ours an exact duplicate of its design
    rejected     bad input: undecodable, too large, changed after fingerprinting
    failed       a good file the NAS or the catalog could not take after retries; a copy
                 or near twin of a file that was not stored shares its fate

A step that fails (catalog unavailable) fails every file whose fate is still open.
"""

from __future__ import annotations

import os
import posixpath
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from designflow.catalog import ExistingDesign, NewDesign, RecordResult
from designflow.errors import is_transient
from designflow.images.fingerprint import Fingerprint
from designflow.images.similarity import NearMatch, NearQuery
from designflow.ingest.dedup import classify_exact, classify_near, near_queries
from designflow.ingest.report import (
    BatchReport,
    DuplicateDesign,
    FailedFile,
    RejectedFile,
    StoredDesign,
)
from designflow.storage.nas import SourceChangedError, design_path


def stored_name(name: str) -> str:
    """A file name as the catalog keeps it. A name that is not valid UTF-8 (bytes such as
    0xff 0xfe, which Python carries as surrogate escapes) cannot be stored in a text column;
    its undecodable bytes are written as \\xff escapes instead (readable, and the escape
    text says which bytes they were)."""
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        return os.fsencode(name).decode("utf-8", "backslashreplace")


def new_design_row(
    fp: Fingerprint,
    user_id: str,
    batch_id: uuid.UUID,
    run_id: uuid.UUID | None,
    near: NearOf | None = None,
) -> NewDesign:
    """The catalog row of a fingerprinted file that is on the NAS."""
    return NewDesign(
        user_id=user_id, sha256=fp.sha256, phash=fp.phash, ahash=fp.ahash, dhash=fp.dhash,
        whash=fp.whash, width=fp.width, height=fp.height, bytes=fp.bytes, format=fp.format,
        original_name=stored_name(fp.name), nas_path=design_path(user_id, fp.sha256, fp.extension),
        batch_id=batch_id, flow_run_id=run_id, nd_phash=fp.nd_phash, nd_dhash=fp.nd_dhash,
        near_duplicate_of=near.design_id if near else None,
        near_duplicate_of_sha256=near.twin_sha256 if near else None,
        near_distance=near.distance if near else None, views=fp.views, reduction=fp.reduction,
    )  # fmt: skip


@dataclass(frozen=True)
class NearOf:
    """A design stored although it resembles another (allow_near_duplicates): an existing
    design, or a file stored by the same batch (resolved to its id in the insert)."""

    design_id: int | None
    twin_sha256: str | None
    distance: int


@dataclass(frozen=True)
class NasUpload:
    """One file to put on the NAS at its content address."""

    fingerprint: Fingerprint
    dest: str

    @property
    def source(self) -> str:
        return self.fingerprint.local_copy or self.fingerprint.path

    @property
    def sha256(self) -> str:
        return self.fingerprint.sha256


@dataclass(frozen=True)
class NearChoices:
    """What the seller chose for near duplicates of their stored designs."""

    allow: bool = False  # store them anyway, marked as near duplicates
    replace_with_better: bool = False  # store a better version as the design's new version


class BatchIngest:
    def __init__(
        self,
        user_id: str,
        upload_run_id: str | None,
        batch_index: int = 1,
        allow_near_duplicates: bool = False,
        near_distance: int = 8,
        near_confirm: int = 26,
        log: Callable[[str], None] = lambda message: None,
        batch_id: uuid.UUID | None = None,
        debug: Callable[[str], None] = lambda message: None,
        replace_with_better: bool = False,
    ) -> None:
        """`replace_with_better`: a near duplicate with more pixels than the stored design is
        stored as its new version (the old one superseded) instead of reported."""
        self.user_id = user_id
        self.run_id = uuid.UUID(upload_run_id) if upload_run_id else None
        self.batch_id = batch_id or uuid.uuid4()
        self.allow_near = allow_near_duplicates
        self.replace_better = replace_with_better
        self._replaces: dict[str, int] = {}  # sha256 -> the stored design it replaces
        self.distance, self.confirm = near_distance, near_confirm
        self.log, self.debug = log, debug
        self.report = BatchReport(batch_index=batch_index, batch_id=str(self.batch_id))
        self._fingerprints: list[Fingerprint] = []
        self._pending: dict[str, str] = {}  # path -> why it waits (files with no fate yet)
        self._in_batch: list[tuple[Fingerprint, Fingerprint]] = []
        self._near_in_batch: list[tuple[Fingerprint, Fingerprint, int]] = []
        self._near_of: dict[str, NearOf] = {}
        self._near_why: dict[str, str] = {}  # what the verifier saw, by sha256
        self._to_store: list[Fingerprint] = []
        self._on_nas: list[Fingerprint] = []
        self._contested: list[NasUpload] = []
        self._elsewhere: dict[str, ExistingDesign] = {}
        self._clock = time.perf_counter()
        self._fingerprint_ms: float | None = None

    # -- steps -----------------------------------------------------------------------------

    def fingerprinted(
        self, results: Sequence[Fingerprint | RejectedFile], waited_ms: float | None = None
    ) -> list[str]:
        """The batch's fingerprints (or rejections); returns the sha256s to look up.
        `waited_ms`: fingerprints computed ahead, the time the batch still waited for them."""
        self._fingerprints = [r for r in results if isinstance(r, Fingerprint)]
        self.report.rejected.extend(r for r in results if isinstance(r, RejectedFile))
        # A source on the NAS that could not be read (the NAS down after retries).
        self.report.failed.extend(r for r in results if isinstance(r, FailedFile))
        self._pending = {fp.path: "fingerprinted" for fp in self._fingerprints}
        self._fingerprint_ms = waited_ms if waited_ms is not None else self._lap()
        self._clock = time.perf_counter()
        self.log(
            f"fingerprinted {len(self._fingerprints)} file(s), {len(self.report.rejected)} rejected"
        )
        return sorted({fp.sha256 for fp in self._fingerprints})

    def all_near_queries(self) -> list[NearQuery]:
        """The near-duplicate queries of every fingerprint of the batch, asked together with
        the exact lookup in one catalog call (`looked_up` ignores the answers for files the
        exact lookup settles): one task run per batch instead of two. A second file with the
        same bytes in the batch asks nothing (it follows the first); files whose bytes the
        seller already had were not decoded and ask nothing either."""
        first = {}
        for i, fp in enumerate(self._fingerprints):
            first.setdefault(fp.sha256, i)
        return [
            q for q in near_queries(self._fingerprints)
            if first[self._fingerprints[q.key].sha256] == q.key
        ]  # fmt: skip

    def looked_up(
        self,
        existing: dict[str, ExistingDesign],
        matches: Sequence[NearMatch],
        reductions: Mapping[int, bytes] | None = None,
    ) -> list[NasUpload]:
        """The catalog's answers to the sha256s and to `all_near_queries`: exact and
        in-batch duplicates settled, then near ones among the rest; returns what to put on
        the NAS."""
        self.known(existing)
        # Near matches are keyed by position among all fingerprints; `near` wants positions
        # among the files still to store.
        position = {id(fp): i for i, fp in enumerate(self._to_store)}
        still_open = []
        for match in matches:
            key = position.get(id(self._fingerprints[match.key]))
            if key is not None:
                still_open.append(replace(match, key=key))
        return self.near(still_open, reductions)

    def known(self, existing: dict[str, ExistingDesign]) -> None:
        """The catalog's designs with these sha256s: exact and in-batch duplicates are
        settled; the rest are still to store (their near queries were asked already, with
        all_near_queries)."""
        dedup = classify_exact(self._fingerprints, existing, self.run_id)
        for fp, match in dedup.exact:
            self._settle_duplicate(fp, match.id, 0, "exact", match.nas_path)
        for fp, match in dedup.earlier_batch:
            self._settle_duplicate(fp, match.id, 0, "in-batch", match.nas_path)
        self._in_batch = dedup.in_batch
        # Known when it was read, gone by the lookup (deleted meanwhile): never stored with
        # the empty hashes of a file that was not decoded.
        for fp in [fp for fp in dedup.to_store if not fp.decoded]:
            self._pending.pop(fp.path, None)
            self.report.failed.append(
                FailedFile(fp.path, "its design was removed during the upload: upload it again")
            )
        self._to_store = [fp for fp in dedup.to_store if fp.decoded]

    def near(
        self, matches: Sequence[NearMatch], reductions: Mapping[int, bytes] | None = None
    ) -> list[NasUpload]:
        """The user's designs that resemble the new ones (candidates the verifier agreed
        with: `reductions` are the candidates'); returns what to put on the NAS."""
        near = classify_near(self._to_store, matches, self.distance, self.confirm, reductions)
        for file, candidate, why in near.turned_down:
            self.debug(f"{file}: not a near duplicate of {candidate}: {why}")
        self._near_why = near.why
        if self.allow_near:
            to_store = list(self._to_store)
            self._near_of.update(
                {fp.sha256: NearOf(m.design_id, None, m.distance) for fp, m in near.near}
            )
            self._near_of.update(
                {fp.sha256: NearOf(None, twin.sha256, d) for fp, twin, d in near.in_batch}
            )
        else:
            to_store = list(near.to_store)
            for fp, m in near.near:
                # The same bytes stored since our exact lookup (a concurrent upload): the
                # match's content address says so.
                same = posixpath.basename(m.nas_path).split(".")[0] == fp.sha256
                if self.replace_better and not same and is_better(fp, m):
                    self._replaces[fp.sha256] = m.design_id
                    to_store.append(fp)
                    self.log(f"{fp.name}: a better version of design {m.design_id} "
                             f"({fp.width}x{fp.height} against {m.width}x{m.height}): replacing it")  # fmt: skip
                    continue
                self._settle_duplicate(
                    fp, m.design_id, m.distance, "exact" if same else "near", m.nas_path,
                    "" if same else m.why, better_than=None if same else m,
                )  # fmt: skip
            self._near_in_batch = near.in_batch
        self._to_store = to_store
        self._dedup_ms = self._lap()
        self.log(
            f"{len(to_store)} new, {len(self.report.duplicates)} duplicate(s) so far, "
            f"{len(self._in_batch)} in-batch copies, {len(near.near) + len(near.in_batch)} "
            f"near duplicate(s){' (stored anyway)' if self.allow_near else ''}"
        )
        return [
            NasUpload(fp, design_path(self.user_id, fp.sha256, fp.extension)) for fp in to_store
        ]

    def claimed(self, held: dict[str, uuid.UUID], uploads: list[NasUpload]) -> list[NasUpload]:
        """The claim's answer (contents another live batch is storing): returns the uploads
        that are ours to send; the others wait for `stored_elsewhere`."""
        self._contested = [u for u in uploads if u.sha256 in held]
        if self._contested:
            self.log(
                f"{len(self._contested)} design(s) are being stored by another upload: waiting for it"
            )
        return [u for u in uploads if u.sha256 not in held]

    def contested(self) -> list[str]:
        return [u.sha256 for u in self._contested]

    def stored_elsewhere(self, found: dict[str, ExistingDesign]) -> list[NasUpload]:
        """Designs the other upload stored are exact duplicates of its rows; returns the
        contested uploads it did not store (ours to send after all)."""
        ours = []
        for upload in self._contested:
            match = found.get(upload.sha256)
            if match is None:
                ours.append(upload)
                continue
            self._elsewhere[upload.sha256] = match
            self._settle_duplicate(upload.fingerprint, match.id, 0, "exact", match.nas_path)
        self._contested = []
        return ours

    def uploaded(self, upload: NasUpload, error: BaseException | None, reason: str = "") -> None:
        """One NAS upload's outcome: None when the file is on the NAS. A file that changed
        after it was fingerprinted is bad input (rejected); anything else failed."""
        fp = upload.fingerprint
        if error is None:
            self._on_nas.append(fp)
            return
        self._pending.pop(fp.path, None)
        if isinstance(error, SourceChangedError):
            self.report.rejected.append(RejectedFile(fp.path, str(error).split(": ", 1)[-1]))
        else:
            reason = reason or f"{type(error).__name__}: {error}"
            # "after retries" only where a retry could have helped: a refused host key or
            # wrong credentials fail at the first attempt.
            how = "after retries" if is_transient(error) else "(not retried)"
            self.report.failed.append(FailedFile(fp.path, f"NAS upload failed {how}: {reason}"))

    def rows(self) -> list[NewDesign]:
        """Catalog rows for the files already on the NAS (a row never points at a missing
        file)."""
        self._nas_ms = self._lap()
        return [
            replace(
                new_design_row(
                    fp, self.user_id, self.batch_id, self.run_id, self._near_of.get(fp.sha256)
                ),
                replaces=self._replaces.get(fp.sha256),
            )
            for fp in self._on_nas
        ]

    def recorded(self, result: RecordResult) -> BatchReport:
        """The insert's result settles the rest of the batch."""
        out = self.report
        for fp in self._on_nas:
            self._pending.pop(fp.path, None)
            if fp.sha256 in result.inserted:
                dest = design_path(self.user_id, fp.sha256, fp.extension)
                out.stored.append(
                    StoredDesign(
                        fp.path,
                        result.inserted[fp.sha256],
                        fp.sha256,
                        dest,
                        replaces=self._replaces.get(fp.sha256),
                    )  # fmt: skip
                )
                continue
            match = result.already_present[fp.sha256]
            if match.batch_id == self.batch_id:  # our own insert, committed before a retry
                out.stored.append(StoredDesign(fp.path, match.id, fp.sha256, match.nas_path))
            else:  # a concurrent upload of the same content won the race
                self._settle_duplicate(fp, match.id, 0, "exact", match.nas_path)
        stored = {s.sha256: s for s in out.stored}
        stored.update(  # stored by a concurrent upload: copies follow its row
            {sha: StoredDesign("", m.id, sha, m.nas_path) for sha, m in self._elsewhere.items()}
        )
        for copy, original in self._in_batch:
            self._follow(
                copy, original, stored.get(original.sha256), 0, "in-batch", "same content as"
            )
        for copy, original, d in self._near_in_batch:
            self._follow(copy, original, stored.get(original.sha256), d, "near", "resembles")
        if self.allow_near:
            ids = {s.sha256: s.design_id for s in out.stored}
            out.stored = [self._with_near(s, ids) for s in out.stored]
        return self.finish()

    def unavailable(self, reason: str) -> BatchReport:
        """A catalog step failed after its retries: every file without a fate fails with
        the reason (the files already on the NAS are recorded by a re-run, or adopted by
        `designflow verify --repair`)."""
        sent = {fp.path for fp in self._on_nas}
        for path in list(self._pending):
            why = reason
            if path in sent:  # said, so that nobody mistakes it for lost or for stored
                why = f"{reason}; on the NAS, not recorded: the next upload of it or `designflow verify --repair` adopts it"
            self.report.failed.append(FailedFile(path, why))
        self._pending.clear()
        self.report.unavailable = reason
        return self.finish()

    def skipped(self, reason: str) -> BatchReport:
        """The run already knows the catalog is down (an earlier batch spent the retries):
        every fingerprinted file fails at once with that reason."""
        return self.unavailable(reason)

    def finish(self) -> BatchReport:
        timings = {
            "fingerprint": self._fingerprint_ms or 0.0,
            "dedup": getattr(self, "_dedup_ms", 0.0),
            "nas": getattr(self, "_nas_ms", 0.0),
            "insert": self._lap(),
        }
        self.report.timings_ms = timings
        self.log(
            f"recorded {len(self.report.stored)} design(s); fingerprint {timings['fingerprint']:.0f} ms, "
            f"dedup {timings['dedup']:.0f} ms, NAS {timings['nas']:.0f} ms, insert {timings['insert']:.0f} ms"
        )
        return self.report

    # -- bookkeeping -----------------------------------------------------------------------

    def _lap(self) -> float:
        now = time.perf_counter()
        elapsed, self._clock = round((now - self._clock) * 1000, 1), now
        return elapsed

    def _settle_duplicate(
        self, fp: Fingerprint, of: int, distance: int, kind: str, nas_path: str, why: str = "",
        better_than: NearMatch | None = None,
    ) -> None:  # fmt: skip
        self._pending.pop(fp.path, None)
        duplicate = DuplicateDesign(fp.path, of, distance, kind, nas_path, why,  # type: ignore[arg-type]
                                    thumbnail=fp.thumbnail if kind == "near" else b"")  # fmt: skip
        if better_than is not None and is_better(fp, better_than):
            duplicate = replace(duplicate, better=True, size=f"{fp.width}x{fp.height}",
                                stored_size=f"{better_than.width}x{better_than.height}")  # fmt: skip
        self.report.duplicates.append(duplicate)

    def _follow(
        self,
        copy: Fingerprint,
        original: Fingerprint,
        twin: StoredDesign | None,
        distance: int,
        kind: str,
        relation: str,
    ) -> None:
        """A copy (or near twin) of another file of the batch shares that file's fate."""
        if twin is not None:
            why = self._near_why.get(copy.sha256, "") if kind == "near" else ""
            self._settle_duplicate(copy, twin.design_id, distance, kind, twin.nas_path, why)
            return
        self._pending.pop(copy.path, None)
        self.report.failed.append(
            FailedFile(copy.path, f"{relation} {original.path}, which was not stored")
        )

    def _with_near(self, stored: StoredDesign, ids: dict[str, int]) -> StoredDesign:
        near = self._near_of.get(stored.sha256)
        if near is None:
            return stored
        of = near.design_id if near.design_id is not None else ids.get(near.twin_sha256 or "")
        return StoredDesign(
            stored.file, stored.design_id, stored.sha256, stored.nas_path, of, near.distance
        )


# More pixels by more than this share: a better version, not a re-encode of the same size.
BETTER_PIXELS = 1.02


def is_better(fp: Fingerprint, stored: NearMatch) -> bool:
    """A near duplicate with more pixels than the stored design it matches (a larger export
    of the same artwork): the version a print-on-demand seller would rather keep."""
    # The new file's design pixels (a copy on a larger canvas has more pixels, not more
    # design) against all of the stored one's: a padded stored design is never "worse".
    stored_pixels = stored.width * stored.height
    design_pixels = fp.width * fp.height * (fp.content_share or 1.0)
    return stored_pixels > 0 and design_pixels > stored_pixels * BETTER_PIXELS
