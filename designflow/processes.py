"""Worker processes that end with the process that made them.

A spawned pool worker (SFTP uploads, small-file fingerprints) waits for work on a pipe; when
its parent is killed, or exits without shutting the pool down, nothing tells it, and it was
found alive, re-parented to init, long after a `designflow web` had stopped. Each worker
watches its parent's pid instead (prctl's parent-death signal fires when the parent *thread*
that made the worker ends, and pool workers are made from short-lived task threads).
"""

from __future__ import annotations

import os
import threading
import time

PARENT_POLL_S = 1.0


def exit_with_parent(poll_s: float = PARENT_POLL_S) -> None:
    """In a worker process: exit at once when the parent is gone (pool initializer)."""
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(poll_s)
            if os.getppid() != parent:  # re-parented: the parent died
                os._exit(1)

    threading.Thread(target=watch, name="designflow-parent-watch", daemon=True).start()
