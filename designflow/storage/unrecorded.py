"""Files this process put on the NAS that no catalog row records yet.

A design is sent to the NAS first and recorded in the catalog after, so an interrupt (Ctrl-C,
SIGTERM, a cancelled run) between the two used to leave files that nothing refers to until a
later run or `verify --repair` adopted them. The ledger knows which ones they are: when the
run stops, `stop()` ends the sends and inserts in flight (a send checks between chunks, an
insert started is waited for) and hands back the files to settle; the ingest side removes
those the catalog does not know (designflow.ingest.interrupts).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from designflow.errors import PermanentError


class Interrupted(PermanentError):
    """The run is stopping: no new send or insert starts, a send in flight ends at its next
    chunk."""

    def __init__(self, what: str = "") -> None:
        super().__init__(f"{what + ': ' if what else ''}the upload was interrupted")


@dataclass(frozen=True)
class SentFile:
    user_id: str
    sha256: str
    dest: str


class UnrecordedLedger:
    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._files: dict[str, SentFile] = {}
        self._busy = 0
        self.stopping = threading.Event()

    def check(self, what: str = "") -> None:
        """Raise Interrupted once the run is stopping (a send checks between chunks)."""
        if self.stopping.is_set():
            raise Interrupted(what)

    @contextlib.contextmanager
    def sending(self, user_id: str, sha256: str, dest: str) -> Iterator[None]:
        """Around one NAS put. The file counts as sent from the start: a put cut short may
        have renamed its file into place already. A put that wrote nothing (the file was
        there) calls `already_there`."""
        with self._begin(dest):
            self._files[dest] = SentFile(user_id, sha256, dest)
        try:
            yield
        finally:
            self._end()

    def already_there(self, dest: str) -> None:
        with self._changed:
            self._files.pop(dest, None)

    @contextlib.contextmanager
    def recording(self) -> Iterator[None]:
        """Around a catalog insert: `stop()` waits for it, so that a file is never removed
        while the row that records it is being committed."""
        with self._begin("catalog insert"):
            pass
        try:
            yield
        finally:
            self._end()

    def recorded_sha256s(self, user_id: str, sha256s: Iterable[str]) -> None:
        shas = set(sha256s)
        with self._changed:
            for dest, sent in list(self._files.items()):
                if sent.user_id == user_id and sent.sha256 in shas:
                    del self._files[dest]

    def stop(self, wait_s: float = 3.0) -> tuple[list[SentFile], bool]:
        """Stop every send and insert; returns the files sent and not known to be recorded,
        and whether everything in flight ended within `wait_s` (if not, an insert may
        still commit: the caller must not remove anything)."""
        self.stopping.set()
        deadline = time.monotonic() + wait_s
        with self._changed:
            while self._busy and time.monotonic() < deadline:
                self._changed.wait(max(0.0, deadline - time.monotonic()))
            files, self._files = list(self._files.values()), {}
            return files, self._busy == 0

    def resume(self) -> None:
        """A new run in the same process (tests, a worker's next run) starts afresh."""
        with self._changed:
            self._files.clear()
            self.stopping.clear()

    @contextlib.contextmanager
    def _begin(self, what: str) -> Iterator[None]:
        with self._changed:
            self.check(what)
            self._busy += 1
            yield

    def _end(self) -> None:
        with self._changed:
            self._busy -= 1
            self._changed.notify_all()


# One per process: the sends and inserts of every run this process makes.
LEDGER = UnrecordedLedger()
