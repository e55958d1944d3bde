"""Compressed PNG metadata: Adobe's megabytes of XMP are stored; zTXt and iCCP chunks that
inflate to 1 GiB or 512 MiB are refused as metadata decompression bombs, not "corrupt",
before any decoder inflates them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from designflow.images.fingerprint import RejectedDesign, fingerprint_design
from tests import images


def test_a_design_with_megabytes_of_xmp_is_stored(tmp_path: Path) -> None:
    # 12 MB of XMP text that compresses to ~5 MB, as a Photoshop export with history
    path = images.png_with_metadata(
        tmp_path / "xmp.png", 11, b"iTXt", b"XML:com.adobe.xmp", 12_000_000
    )
    assert path.stat().st_size > 2_800_000
    plain = images.image_bytes(images.design(11, (400, 480)))
    fp = fingerprint_design(path)
    assert (fp.width, fp.height) == (400, 480)
    (tmp_path / "plain.png").write_bytes(plain)
    assert fp.phash == fingerprint_design(tmp_path / "plain.png").phash  # same pixels


@pytest.mark.parametrize(
    ("kind", "keyword", "inflated"),
    [
        (b"zTXt", b"Comment", 1 << 30),
        (b"iCCP", b"ICC Profile", 512 << 20),
        (b"iTXt", b"XML:com.adobe.xmp", 256 << 20),
    ],
)
def test_metadata_bombs_are_refused_with_that_reason(
    tmp_path: Path, kind: bytes, keyword: bytes, inflated: int
) -> None:
    path = images.png_with_metadata(
        tmp_path / "bomb.png", 12, kind, keyword, inflated, compressible=True
    )
    with pytest.raises(RejectedDesign) as refused:
        fingerprint_design(path)
    assert "metadata decompression bomb" in refused.value.reason
    assert kind.decode() in refused.value.reason
    # Inflated and discarded in steps: a fresh process, whose peak no earlier test raised,
    # grows by far less than the payload while it refuses the file.
    probe = (
        "import resource, sys\n"
        "from designflow.images.fingerprint import RejectedDesign, fingerprint_design\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "try:\n    fingerprint_design(sys.argv[1])\nexcept RejectedDesign:\n    pass\n"
        "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)\n"
    )
    grown = subprocess.run(
        [sys.executable, "-c", probe, str(path)], capture_output=True, text=True, timeout=120
    )
    assert grown.returncode == 0, grown.stderr
    assert int(grown.stdout) < 128, f"the refusing process grew by {grown.stdout.strip()} MB"
