"""Waiting for designs another upload claimed (two uploads by one seller with files in
common: the second used to send the shared designs to the NAS again)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from designflow.catalog import Catalog, ExistingDesign

# How long a batch waits for another batch to store the designs it claimed. Past it, the
# waiter stores them itself: safe (the NAS write is content-addressed and idempotent, the
# insert ON CONFLICT), only wasteful.
CLAIM_WAIT_S = 120.0
POLL_S = 0.25


def wait_for_claimed(
    catalog: Catalog,
    user_id: str,
    sha256s: Sequence[str],
    timeout_s: float = CLAIM_WAIT_S,
    poll_s: float = POLL_S,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[dict[str, ExistingDesign], list[str]]:
    """Wait until each claimed content is stored by its claimer (its row exists) or given up
    (no live claim, no row). Returns (stored by the others, left for us to store)."""
    pending = list(sha256s)
    stored: dict[str, ExistingDesign] = {}
    ours: list[str] = []
    deadline = clock() + timeout_s
    while pending:
        found, abandoned = catalog.claimed_outcome(user_id, pending)
        stored.update(found)
        ours.extend(abandoned)
        pending = [sha for sha in pending if sha not in found and sha not in abandoned]
        if not pending or clock() >= deadline:
            break
        sleep(poll_s)
    return stored, ours + pending
