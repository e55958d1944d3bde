"""Exact duplicate detection: within a batch by sha256, then against the user's history.

A duplicate is an outcome, not an error: it is reported with the id of the design it copies.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from designflow.catalog import ExistingDesign
from designflow.fingerprint import Fingerprint


@dataclass
class ExactDedup:
    to_store: list[Fingerprint] = field(default_factory=list)
    # (copy, design it copies) for designs already in the catalog
    exact: list[tuple[Fingerprint, ExistingDesign]] = field(default_factory=list)
    # (copy, first file of this upload with the same bytes)
    in_batch: list[tuple[Fingerprint, Fingerprint]] = field(default_factory=list)
    # copies of designs this same upload stored in an earlier batch
    earlier_batch: list[tuple[Fingerprint, ExistingDesign]] = field(default_factory=list)


def unique_by_sha256(
    fingerprints: Sequence[Fingerprint],
) -> tuple[list[Fingerprint], list[tuple[Fingerprint, Fingerprint]]]:
    """First occurrence of each content in input order, and the later copies with their first."""
    first: dict[str, Fingerprint] = {}
    copies: list[tuple[Fingerprint, Fingerprint]] = []
    for fp in fingerprints:
        if fp.sha256 in first:
            copies.append((fp, first[fp.sha256]))
        else:
            first[fp.sha256] = fp
    return list(first.values()), copies


def classify_exact(
    fingerprints: Sequence[Fingerprint],
    existing: Mapping[str, ExistingDesign],
    upload_run_id: uuid.UUID | None = None,
) -> ExactDedup:
    """Split a batch into what to store and what it duplicates (`existing`: by sha256)."""
    unique, copies = unique_by_sha256(fingerprints)
    out = ExactDedup()
    for fp in unique:
        match = existing.get(fp.sha256)
        if match is None:
            out.to_store.append(fp)
        elif upload_run_id is not None and match.flow_run_id == upload_run_id:
            out.earlier_batch.append((fp, match))
        else:
            out.exact.append((fp, match))
    for copy, original in copies:
        match = existing.get(original.sha256)
        if match is None:
            out.in_batch.append((copy, original))
        elif upload_run_id is not None and match.flow_run_id == upload_run_id:
            out.earlier_batch.append((copy, match))
        else:
            out.exact.append((copy, match))
    return out
