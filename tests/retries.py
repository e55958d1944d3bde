"""Seeing Prefect's task retries from a test: the engine logs each one ("Task run failed with
exception: ... - Retry 1/3 will start ..."). Fault tests wait for this line before they heal
the fault, so the fault is known to have met the run, and a retry is known to have happened."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class RetryWatch(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []
        self.first = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if " - Retry " in message and "will start" in message:
            self.lines.append(message)
            self.first.set()


@contextmanager
def watch_retries() -> Iterator[RetryWatch]:
    watch = RetryWatch()
    logger = logging.getLogger("prefect.task_runs")
    logger.addHandler(watch)
    try:
        yield watch
    finally:
        logger.removeHandler(watch)
