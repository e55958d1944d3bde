"""Fingerprints: the four hashes, normalisation (files hashed as they look) and guards."""

from __future__ import annotations

from pathlib import Path

import imagehash
import pytest
from PIL import Image

from designflow.images.fingerprint import (
    Fingerprint,
    RejectedDesign,
    fingerprint_bytes,
    fingerprint_design,
    hamming,
    hash_to_int,
)
from designflow.settings import ImageLimits
from tests import images


def phash_of(image: Image.Image) -> int:
    """Reference: imagehash's phash of the image as it looks, at full size."""
    return hash_to_int(imagehash.phash(image.convert("RGB")))


def test_fingerprint_fields_and_stable_sha(tmp_path: Path) -> None:
    path = images.write_png(tmp_path / "a.png", seed=1)
    fp = fingerprint_design(path)
    assert isinstance(fp, Fingerprint)
    assert fp.format == "PNG" and (fp.width, fp.height) == (600, 720)
    assert fp.bytes == path.stat().st_size
    import hashlib

    assert fp.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    # Each hash is the one imagehash gives for the image as it looks, at full size (whash
    # from our 512 px reduction may differ in a bit or two).
    full = images.flatten(Image.open(path).convert("RGBA")).convert("RGB")
    assert fp.phash == hash_to_int(imagehash.phash(full))
    assert fp.ahash == hash_to_int(imagehash.average_hash(full))
    assert fp.dhash == hash_to_int(imagehash.dhash(full))
    assert hamming(fp.whash, hash_to_int(imagehash.whash(full))) <= 4
    assert fingerprint_design(path) == fp  # deterministic


def test_phash_close_to_full_size_imagehash(tmp_path: Path) -> None:
    for seed in range(5):
        path = images.write_png(tmp_path / f"d{seed}.png", seed=seed, size=(1800, 2160))
        fp = fingerprint_design(path)
        full = images.flatten(Image.open(path).convert("RGBA"))
        assert hamming(fp.phash, phash_of(full)) <= 4


def test_different_designs_have_distant_hashes(tmp_path: Path) -> None:
    a = fingerprint_design(images.write_png(tmp_path / "a.png", seed=10))
    b = fingerprint_design(images.write_png(tmp_path / "b.png", seed=11))
    assert hamming(a.phash, b.phash) > 12


def test_hash_to_int_round_trip() -> None:
    import numpy as np

    bits = np.zeros((8, 8), dtype=bool)
    bits[0, 0] = True  # most significant bit -> negative as signed
    assert hash_to_int(imagehash.ImageHash(bits)) == -(1 << 63)
    bits[:] = False
    bits[7, 7] = True
    assert hash_to_int(imagehash.ImageHash(bits)) == 1


def test_transparent_background_is_flattened_on_white(tmp_path: Path) -> None:
    rgba = images.design(20)
    path = tmp_path / "t.png"
    path.write_bytes(images.image_bytes(rgba))
    fp = fingerprint_design(path)
    on_white = phash_of(images.flatten(rgba))
    black = Image.new("RGB", rgba.size, (0, 0, 0))
    black.paste(rgba, mask=rgba.getchannel("A"))
    assert hamming(fp.phash, on_white) <= 4
    assert hamming(fp.phash, phash_of(black)) > hamming(fp.phash, on_white) + 8


def test_palette_png_with_transparency_hashed_as_it_looks(tmp_path: Path) -> None:
    path = tmp_path / "palette.png"
    looks_like = images.palette_png_with_transparency(path, seed=3)
    assert Image.open(path).mode == "P"
    fp = fingerprint_design(path)
    assert hamming(fp.phash, phash_of(images.flatten(looks_like))) <= 6


def test_16bit_png_hashed_as_it_looks(tmp_path: Path) -> None:
    path = tmp_path / "deep.png"
    looks_like = images.png_16bit_gray(path, seed=4)
    assert Image.open(path).mode.startswith("I")
    fp = fingerprint_design(path)
    assert hamming(fp.phash, phash_of(looks_like)) <= 6
    # Clipping instead of scaling would turn almost everything white: far from the original.
    assert hamming(fp.phash, phash_of(Image.new("L", looks_like.size, 255))) > 12


def test_cmyk_jpeg_hashed_as_it_looks(tmp_path: Path) -> None:
    path = tmp_path / "cmyk.jpg"
    looks_like = images.cmyk_jpeg(path, seed=5)
    assert Image.open(path).mode == "CMYK"
    fp = fingerprint_design(path)
    assert fp.format == "JPEG"
    assert hamming(fp.phash, phash_of(looks_like)) <= 6


def test_exif_rotated_jpeg_hashed_upright(tmp_path: Path) -> None:
    path = tmp_path / "rotated.jpg"
    upright = images.exif_rotated_jpeg(path, seed=6)
    fp = fingerprint_design(path)
    assert (fp.width, fp.height) == upright.size  # the size it is seen at
    assert hamming(fp.phash, phash_of(upright)) <= 6
    sideways = Image.open(path).convert("RGB")  # raw pixels, orientation ignored
    assert hamming(fp.phash, phash_of(sideways)) > 12


def test_animated_gif_uses_first_frame(tmp_path: Path) -> None:
    path = tmp_path / "anim.gif"
    first = images.animated_gif(path, seed=7)
    fp = fingerprint_design(path)
    assert fp.format == "GIF"
    assert hamming(fp.phash, phash_of(first)) <= 6


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda p: p.write_bytes(b""), "empty file"),
        (lambda p: p.write_text("this is not an image\n"), "not a PNG, JPEG"),
        (lambda p: images.truncated_png(p, 1), "truncated"),
        (lambda p: images.header_bomb_png(p), "decompression bomb"),
        (lambda p: images.real_bomb_png(p), "decompression bomb"),
        (lambda p: p.mkdir(), "is a directory"),
    ],
    ids=["empty", "text", "truncated", "header-bomb", "real-bomb", "directory"],
)
def test_bad_input_rejected_with_reason(tmp_path: Path, make, reason: str) -> None:
    path = tmp_path / "bad.png"
    make(path)
    with pytest.raises(RejectedDesign) as info:
        fingerprint_design(path)
    assert reason in info.value.reason
    assert str(path) in str(info.value)


def test_truncated_jpeg_rejected(tmp_path: Path) -> None:
    path = tmp_path / "cut.jpg"
    images.truncated_jpeg(path, 2)
    with pytest.raises(RejectedDesign, match="truncated"):
        fingerprint_design(path)


def test_real_bomb_is_small_on_disk(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    images.real_bomb_png(path)
    assert path.stat().st_size < 1_000_000  # the point of a bomb: tiny file, huge decode


def test_size_cap(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    images.noisy_png(path, 1, (400, 400))
    limits = ImageLimits(max_file_bytes=path.stat().st_size - 1)
    with pytest.raises(RejectedDesign, match="over the size cap"):
        fingerprint_design(path, limits)
    assert (
        fingerprint_design(path, ImageLimits(max_file_bytes=path.stat().st_size)).bytes
        == path.stat().st_size
    )


def test_dimension_cap(tmp_path: Path) -> None:
    path = images.write_png(tmp_path / "wide.png", seed=1, size=(2000, 100))
    with pytest.raises(RejectedDesign, match="over the cap of 1,000 px"):
        fingerprint_design(path, ImageLimits(max_dimension=1000))


def test_missing_and_unreadable(tmp_path: Path) -> None:
    with pytest.raises(RejectedDesign, match="file not found"):
        fingerprint_design(tmp_path / "nope.png")


def test_fingerprint_bytes_matches_file(tmp_path: Path) -> None:
    path = images.write_jpeg(tmp_path / "a.jpg", seed=9)
    assert fingerprint_bytes(path.read_bytes(), path) == fingerprint_design(path)


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
@pytest.mark.parametrize("size", [(1200, 900), (513, 1999), (700, 3), (3, 700), (1, 1)])
def test_png_fast_path_reduces_in_strips_exactly(mode: str, size: tuple[int, int]) -> None:
    """The strip-by-strip reduction gives the same bytes as reducing the whole image: every
    shape, including the sides that are not a multiple of the reduction factor."""
    import io

    import imagecodecs
    import numpy as np

    from designflow.images import fingerprint

    rng = np.random.default_rng(size[0] * 7 + size[1])
    pixels = rng.integers(0, 256, (size[1], size[0], len(mode)), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode).save(buffer, "PNG")
    data = buffer.getvalue()
    target = 64
    decoded = imagecodecs.spng_decode(data)
    height, width = decoded.shape[:2]
    factor = max(1, -(-max(width, height) // target))
    rows, cols = max(factor, height // factor * factor), max(factor, width // factor * factor)
    small = (max(1, cols // factor), max(1, rows // factor))
    expected = fingerprint._reduce_whole(decoded, rows, cols, small)
    got = fingerprint._decode_png_reduced(data, target, decoded.shape)
    assert got.size == expected.size == small
    assert np.array_equal(np.asarray(got), np.asarray(expected))
    # And both are what the definition says, computed independently in floating point:
    # grey (ITU-R 601), premultiplied by alpha, box-averaged, flattened on white.
    pixels = decoded[:rows, :cols].astype(np.float64)
    grey = pixels[..., :3] @ np.array([0.299, 0.587, 0.114])
    alpha = pixels[..., 3] if mode == "RGBA" else np.full(grey.shape, 255.0)

    def box_mean(plane):
        out_w, out_h = small
        return plane.reshape(out_h, plane.shape[0] // out_h, out_w, -1).mean(axis=(1, 3))

    reference = box_mean(grey * alpha / 255) + 255 - box_mean(alpha)
    assert np.abs(np.asarray(got, np.float64) - reference).max() <= 2


def test_reused_decode_buffer_leaks_nothing_between_designs(tmp_path: Path) -> None:
    """Designs of one size decoded one after another in a thread (one reused array) hash
    exactly as each does alone in a fresh thread."""
    from concurrent.futures import ThreadPoolExecutor

    paths = [images.write_png(tmp_path / f"d{i}.png", seed=40 + i) for i in range(3)]
    in_turn = [fingerprint_design(p) for p in paths]
    alone = []
    for p in paths:
        with ThreadPoolExecutor(max_workers=1) as fresh:
            alone.append(fresh.submit(fingerprint_design, p).result())
    assert in_turn == alone
    assert len({fp.phash for fp in in_turn}) == 3
