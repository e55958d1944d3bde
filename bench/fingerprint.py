"""Fingerprinting 50 large designs: designflow against imagehash on the full-size image.

Run: python -m bench.fingerprint [--count 50] [--rounds 3] [--threads 2]

(a) designflow: `fingerprint_design` (read once, decode once, one ~512 px reduction, four hashes)
(b) baseline:   decode the full image, then imagehash's phash, average_hash, dhash and whash
                on it, the way the seed did (whash on the full image dominates).
(b2) reasonable baseline: decode the full image with Pillow, flatten it on white, reduce it
                once to 512 px, run imagehash's four functions on that, sha256 the file: what a
                careful implementation with off-the-shelf parts does, so a/b2 says what our own
                code adds (libspng, strip reduction, reused buffers, our hashes).
Both use the same thread count, interleaved a/b per round; medians are printed with a/b.
Accuracy: designflow's phash against imagehash's phash of the full-size image flattened on
white (the same picture, no reduction), on every image.
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import imagehash
from PIL import Image

from bench.designs import decode_only, large_designs
from designflow.images.fingerprint import (
    FLATTEN_BACKGROUND,
    fingerprint_design,
    hamming,
    hash_to_int,
)


def baseline_fingerprint(path: Path) -> dict[str, int]:
    image = Image.open(path)
    image.load()
    return {
        "phash": hash_to_int(imagehash.phash(image)),
        "ahash": hash_to_int(imagehash.average_hash(image)),
        "dhash": hash_to_int(imagehash.dhash(image)),
        "whash": hash_to_int(imagehash.whash(image)),
    }


def shared_reduction_fingerprint(path: Path) -> dict[str, int | str]:
    import hashlib

    data = path.read_bytes()
    image = Image.open(io.BytesIO(data))
    image.load()
    if image.mode != "RGBA":
        image = image.convert("RGBA")
    flat = Image.new("RGB", image.size, FLATTEN_BACKGROUND)
    flat.paste(image, mask=image.getchannel("A"))
    flat.thumbnail((512, 512), Image.Resampling.BOX)
    return {
        "sha256": hashlib.sha256(data).hexdigest(),
        "phash": hash_to_int(imagehash.phash(flat)),
        "ahash": hash_to_int(imagehash.average_hash(flat)),
        "dhash": hash_to_int(imagehash.dhash(flat)),
        "whash": hash_to_int(imagehash.whash(flat)),
    }


def reference_phash(path: Path) -> int:
    image = Image.open(path).convert("RGBA")
    flat = Image.new("RGB", image.size, FLATTEN_BACKGROUND)
    flat.paste(image, mask=image.getchannel("A"))
    return hash_to_int(imagehash.phash(flat))


def timed(fn, paths: list[Path], threads: int) -> tuple[float, list]:
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        results = list(pool.map(fn, paths))
    return time.perf_counter() - start, results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--skip-baseline", action="store_true", help="only designflow against decoding alone"
    )
    args = parser.parse_args()

    paths = large_designs(args.count)
    sizes = [p.stat().st_size for p in paths]
    print(f"{len(paths)} designs 4500x5400 RGBA PNG, {min(sizes) / 1e6:.1f}-{max(sizes) / 1e6:.1f} MB "
          f"(total {sum(sizes) / 1e6:.0f} MB), {args.threads} threads, {args.rounds} rounds")  # fmt: skip

    ours: list[float] = []
    base: list[float] = []
    shared: list[float] = []
    decode: list[float] = []
    fingerprints = []
    for round_ in range(args.rounds):
        t, fingerprints = timed(fingerprint_design, paths, args.threads)
        ours.append(t)
        decode.append(timed(decode_only, paths, args.threads)[0])
        shared.append(timed(shared_reduction_fingerprint, paths, args.threads)[0])
        if not args.skip_baseline:
            base.append(timed(baseline_fingerprint, paths, args.threads)[0])
        print(f"  round {round_ + 1}: designflow {ours[-1]:.2f} s, decode only {decode[-1]:.2f} s, "
              f"shared 512 px baseline {shared[-1]:.2f} s"
              + (f", seed baseline {base[-1]:.2f} s" if base else ""))  # fmt: skip

    a, d = statistics.median(ours), statistics.median(decode)
    n = len(paths)
    print(f"designflow : {a:7.2f} s  ({1000 * a / n:6.1f} ms/image)")
    print(f"decode only: {d:7.2f} s  ({1000 * d / n:6.1f} ms/image)  [libspng, reused array]")
    print(f"designflow/decode only: {a / d:.2f}x (everything a fingerprint adds to decoding)")
    s2 = statistics.median(shared)
    print(f"baseline b2: {s2:7.2f} s  ({1000 * s2 / n:6.1f} ms/image)  "
          "[Pillow decode + flatten, one 512 px reduction, imagehash x4, sha256]")  # fmt: skip
    print(
        f"ratio b2/designflow: {s2 / a:.1f}x (what designflow's own code adds over careful stock parts)"
    )
    if not base:
        return
    b = statistics.median(base)
    print(
        f"baseline b : {b:7.2f} s  ({1000 * b / n:6.1f} ms/image)  [the seed: imagehash x4 on the full image]"
    )
    print(f"ratio b/designflow: {b / a:.1f}x faster (target >= 10x)")

    _, refs = timed(reference_phash, paths, args.threads)
    distances = [hamming(fp.phash, ref) for fp, ref in zip(fingerprints, refs, strict=True)]
    print(f"phash vs full-size imagehash phash: max {max(distances)} bits, "
          f"median {statistics.median(distances)} bits (target <= 4 on every image)")  # fmt: skip


if __name__ == "__main__":
    main()
