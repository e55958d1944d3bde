"""In-process progress events, so front ends (the CLI's progress bar, the Prefect UI's
progress artifact) follow an upload without the pipeline knowing who is listening. The upload
report publishes them (designflow.ingest.report.UploadReport)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Progress:
    done: int
    total: int
    message: str
    # The flow run the upload belongs to: a listener follows one run when a process holds
    # several (a sweep's uploads, tests).
    run: str | None = None


Listener = Callable[[Progress], None]
_listeners: list[Listener] = []
_lock = threading.Lock()


def subscribe(listener: Listener) -> Callable[[], None]:
    with _lock:
        _listeners.append(listener)

    def unsubscribe() -> None:
        with _lock:
            if listener in _listeners:
                _listeners.remove(listener)

    return unsubscribe


def publish(event: Progress) -> None:
    with _lock:
        listeners = list(_listeners)
    for listener in listeners:
        try:
            listener(event)
        except Exception:  # a broken display must never break an upload
            pass
