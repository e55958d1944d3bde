"""An interrupted upload leaves no file on the NAS that the catalog does not record.

Ctrl-C, SIGTERM or a cancelled run can land between a batch's NAS sends and its insert. The
files it sent (designflow.storage.unrecorded) are settled while this process still holds the
batch's claims (a concurrent upload of the same content waits on them): recorded ones stay,
the others are removed. The seller's next run of the same command sends them again.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field

from designflow.catalog import Catalog
from designflow.storage.nas import Nas
from designflow.storage.unrecorded import LEDGER

log = logging.getLogger(__name__)


@dataclass
class Settled:
    removed: list[str] = field(default_factory=list)
    # An insert still running when the wait ended may yet record them: left in place for
    # the next run (or `verify --repair`) to adopt.
    left: list[str] = field(default_factory=list)


def settle_unrecorded(catalog: Catalog, nas: Nas, wait_s: float = 3.0) -> Settled:
    """Stop this process's sends and inserts; remove the files they put on the NAS that no
    catalog row records."""
    sent, quiet = LEDGER.stop(wait_s)
    settled = Settled()
    if not sent:
        return settled
    if not quiet:
        settled.left = [f.dest for f in sent]
        return settled
    by_user: dict[str, list] = defaultdict(list)
    for f in sent:
        by_user[f.user_id].append(f)
    for user_id, files in by_user.items():
        recorded = catalog.find_by_sha256(user_id, [f.sha256 for f in files])
        for f in files:
            if f.sha256 in recorded:
                continue
            try:
                nas.remove(f.dest)
                settled.removed.append(f.dest)
            except Exception as exc:  # noqa: BLE001 - the NAS may be what was interrupted
                log.warning("could not remove %s from the NAS: %s", f.dest, exc)
                settled.left.append(f.dest)
    return settled
