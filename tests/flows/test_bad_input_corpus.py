"""The bad-input corpus (tests/bad_inputs.py, 28 kinds) in one upload: each file gets its
intended outcome, the good ones are stored as they look, and the batch goes on."""

from __future__ import annotations

import hashlib
from pathlib import Path

from designflow.catalog import Catalog
from designflow.flows.upload import upload_designs
from designflow.ingest import progress
from tests.bad_inputs import CASES
from tests.conftest import DesignflowEnv

EXPLICIT = {
    "path with ../",
    "absolute path",
    "symlink to a system file, given by name",
}  # given one by one, as a caller would


def test_every_kind_gets_its_outcome_and_the_batch_goes_on(
    designflow_env: DesignflowEnv, monkeypatch
) -> None:
    monkeypatch.setenv("DESIGNFLOW_MAX_FILE_MB", "3")
    corpus = designflow_env.inputs / "corpus"
    explicit = designflow_env.inputs / "explicit"
    corpus.mkdir()
    explicit.mkdir()
    given: dict[str, object] = {}
    for case in CASES:
        path = case.make(explicit if case.kind in EXPLICIT else corpus)
        given[str(path)] = case
    assert len(CASES) >= 25

    vanishing = corpus / "vanishing.png"

    def delete_after_listing(event: progress.Progress) -> None:
        if event.message == "starting":  # the files are listed, none is read yet
            vanishing.unlink()

    unsubscribe = progress.subscribe(delete_after_listing)
    try:
        report = upload_designs(
            paths=[str(corpus)] + [p for p, c in given.items() if c.kind in EXPLICIT],
            user_id="corpus", batch_max_images=8,
        )  # fmt: skip
    finally:
        unsubscribe()

    outcomes = {s["file"]: ("stored", "") for s in report["stored"]}
    outcomes |= {r["file"]: ("rejected", r["reason"]) for r in report["rejected"]}
    outcomes |= {d["file"]: (f"duplicate {d['kind']}", "") for d in report["duplicates"]}
    assert report["failed"] == []
    wrong = []
    for path, case in given.items():
        got, reason = outcomes.get(path, ("missing from the report", ""))
        if got != case.outcome or case.reason not in reason:
            wrong.append(
                f"{case.kind}: expected {case.outcome} {case.reason!r}, got {got} {reason!r}"
            )
    assert wrong == [], "\n".join(wrong)

    rows = {r["sha256"]: r for r in Catalog(designflow_env.database_url).designs_of_user("corpus")}
    stored = [s for s in report["stored"]]
    assert len(rows) == len(stored) == sum(c.outcome == "stored" for c in CASES)
    for s in stored:  # on the NAS under its content address, with the bytes given
        data = Path(s["file"]).read_bytes() if Path(s["file"]).exists() else None
        on_nas = (designflow_env.nas_root / s["nas_path"]).read_bytes()
        assert hashlib.sha256(on_nas).hexdigest() == s["sha256"] and s["sha256"] in rows
        if data is not None:
            assert data == on_nas
        assert s["nas_path"].startswith("users/corpus/designs/") and ".." not in s["nas_path"]
    by_name = {r["original_name"]: r for r in rows.values()}
    assert (by_name["wide.png"]["width"], by_name["wide.png"]["height"]) == (20000, 3)
    assert by_name["really-a-png.jpg"]["format"] == "PNG"
    assert by_name["really-a-png.jpg"]["nas_path"].endswith(".png")  # named by content
