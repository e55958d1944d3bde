"""A memory budget for decoding: the decoded pixels all fingerprints of a process hold at
once stay under `ImageLimits.decode_budget_bytes` (DESIGNFLOW_DECODE_BUDGET_MB, 512 MB).

Each decode reserves its estimated peak before it starts and waits while the budget is
spent; a decode larger than the whole budget runs alone. Measured before: one 100 Mpx
16-bit grey PNG (3 MB of file) took 1.3 GB to fingerprint, four in one upload 4.7 GB.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

# Bytes Pillow holds per pixel once an image of this mode is loaded (multi-band images are
# stored 4 bytes a pixel), and the largest working copy we make next to it (a conversion,
# an EXIF rotation): together the peak of one decode.
_STORED = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2, "I": 4, "F": 4}


def decode_peak_bytes(width: int, height: int, mode: str) -> int:
    stored = _STORED.get(mode, 4)
    return width * height * (stored + 4)


class DecodeBudget:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._used = 0

    @contextmanager
    def reserve(self, nbytes: int, capacity: int) -> Iterator[None]:
        nbytes = min(nbytes, capacity)  # larger than the whole budget: runs alone
        with self._cond:
            self._cond.wait_for(lambda: self._used + nbytes <= capacity or self._used == 0)
            self._used += nbytes
        try:
            yield
        finally:
            with self._cond:
                self._used -= nbytes
                self._cond.notify_all()


DECODES = DecodeBudget()
