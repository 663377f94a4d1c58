"""Per-image class pixel counts read from PNG label masks (torch_balance.labels.masks)."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from torch.utils.data import Subset

import torch_balance.labels.masks as masks_module
from torch_balance import MaskFolder, class_pixel_counts
from torch_balance.labels.masks import mask_paths, value_counts

PALETTE = [v for i in range(256) for v in (i, (i * 7) % 256, (i * 13) % 256)]


def write_mask(path: Path, ids: np.ndarray, mode: str = "P") -> Path:
    image = Image.fromarray(ids.astype(np.uint8), mode="L")
    if mode == "P":
        image = image.convert("P")  # keeps the values as palette indices
        image.putpalette(PALETTE)
    image.save(path)
    return path


def random_masks(folder: Path, n: int, num_classes: int, seed: int = 0) -> tuple[list[Path], Any]:
    """n small masks, palette and grey alternating, with some ignored pixels; and their counts."""
    rng = np.random.default_rng(seed)
    paths, rows = [], []
    for i in range(n):
        ids = rng.integers(0, num_classes, size=(7 + i % 3, 9))
        ids[rng.random(ids.shape) < 0.1] = 255
        paths.append(write_mask(folder / f"m{i:03d}.png", ids, "P" if i % 2 else "L"))
        rows.append(np.bincount(ids[ids != 255].ravel(), minlength=num_classes))
    return paths, np.array(rows, dtype=np.int64)


def test_counts_palette_and_grey_against_numpy(tmp_path: Path) -> None:
    paths, expected = random_masks(tmp_path, 12, 5)
    assert Image.open(paths[1]).mode == "P" and Image.open(paths[0]).mode == "L"
    for threads in (1, 3):
        counts = class_pixel_counts(paths, 5, num_threads=threads, progress=False)
        assert counts.dtype == np.int64 and counts.shape == (12, 5)
        np.testing.assert_array_equal(counts, expected)


def test_ignore_index_and_id_map(tmp_path: Path) -> None:
    ids = np.array([[0, 1, 2], [7, 255, 255]])
    path = write_mask(tmp_path / "a.png", ids)
    assert class_pixel_counts([path], 8, progress=False).tolist() == [[1, 1, 1, 0, 0, 0, 0, 1]]
    other = write_mask(tmp_path / "b.png", np.array([[0, 1, 2], [7, 7, 3]]))
    assert class_pixel_counts([other], 4, ignore_index=7, progress=False).tolist() == [[1, 1, 1, 1]]
    # labelIds -> trainIds style: values left out of the map are ignored
    assert class_pixel_counts([path], 2, id_map={7: 0, 2: 1}, progress=False).tolist() == [[1, 1]]
    table = np.full(256, 255)
    table[[0, 1]] = [1, 0]
    assert class_pixel_counts([path], 2, id_map=table, progress=False).tolist() == [[1, 1]]
    with pytest.raises(ValueError, match=r"id_map\[7\].*class id in \[0, 2\)"):
        class_pixel_counts([path], 2, id_map={7: 5}, progress=False)
    with pytest.raises(ValueError, match=r"mask file .*a.png.*pixel value\(s\) \[255\]"):
        class_pixel_counts([path], 8, ignore_index=None, progress=False)


def test_hostile_masks_name_the_file(tmp_path: Path) -> None:
    rgb = tmp_path / "rgb.png"
    Image.new("RGB", (3, 3)).save(rgb)
    with pytest.raises(ValueError, match=r"mask file '.*rgb.png'.*mode 'RGB'"):
        class_pixel_counts([rgb], 3, progress=False)
    high = write_mask(tmp_path / "high.png", np.array([[0, 1], [9, 3]]))
    with pytest.raises(ValueError, match=r"mask file '.*high.png'.*\[9\]"):
        class_pixel_counts([high], 4, progress=False)
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"\x89PNG not really")
    good = write_mask(tmp_path / "good.png", np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"mask file '.*junk.png'.*readable"):
        class_pixel_counts([good, junk, good], 4, num_threads=2, progress=False)
    with pytest.raises(ValueError, match=r"mask file '.*missing.png'"):
        class_pixel_counts([tmp_path / "missing.png"], 4, progress=False)
    with pytest.raises(TypeError, match="Wrap one path in a list"):
        class_pixel_counts(str(good), 4)
    with pytest.raises(TypeError, match=r"source\[1\]: expected a path"):
        class_pixel_counts([good, 3], 4)
    with pytest.raises(TypeError, match="a list of mask paths"):
        class_pixel_counts(object(), 4)
    with pytest.raises(ValueError, match="num_classes"):
        class_pixel_counts([good], 0)
    with pytest.raises(ValueError, match="fingerprint"):
        class_pixel_counts([good], 2, fingerprint="mtime")
    with pytest.raises(TypeError, match="cache: expected a file path"):
        class_pixel_counts([good], 2, cache=5)


def test_cache_is_reused_then_refused_when_stale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths, expected = random_masks(tmp_path, 6, 4)
    cache = tmp_path / "cache" / "counts.npz"
    np.testing.assert_array_equal(class_pixel_counts(paths, 4, cache=cache), expected)
    assert cache.exists()

    def never(*args: Any) -> Any:
        raise AssertionError("a mask was decoded although the cache is valid")

    with monkeypatch.context() as patch:
        patch.setattr(masks_module, "count_mask", never)
        np.testing.assert_array_equal(class_pixel_counts(paths, 4, cache=cache), expected)
        with pytest.raises(ValueError, match=r"num_classes=5.*Delete .*refresh=True"):
            class_pixel_counts(paths, 5, cache=cache)
        with pytest.raises(ValueError, match="ignore_index=None"):
            class_pixel_counts(paths, 4, ignore_index=None, cache=cache)
        with pytest.raises(ValueError, match=r"stale cache.*1 file\(s\) not in it.*m005"):
            class_pixel_counts(
                [*paths[:5], paths[5].rename(tmp_path / "m005b.png")], 4, cache=cache
            )
    paths[5] = tmp_path / "m005b.png"
    paths[5].rename(tmp_path / "m005.png")
    paths[5] = tmp_path / "m005.png"
    # the same file rewritten: size or modification time changes
    write_mask(paths[2], np.full((7, 9), 3))
    stat = os.stat(paths[2])
    os.utime(paths[2], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    with pytest.raises(ValueError, match=r"stale cache.*1 file\(s\) changed.*m002.png"):
        class_pixel_counts(paths, 4, cache=cache)
    fresh = class_pixel_counts(paths, 4, cache=cache, refresh=True)
    assert fresh[2].tolist() == [0, 0, 0, 63]
    np.testing.assert_array_equal(class_pixel_counts(paths, 4, cache=cache), fresh)


def test_content_fingerprint_survives_a_touch(tmp_path: Path) -> None:
    paths, expected = random_masks(tmp_path, 3, 4)
    by_content, by_stat = tmp_path / "content.npz", tmp_path / "stat.npz"
    class_pixel_counts(paths, 4, cache=by_content, fingerprint="content")
    class_pixel_counts(paths, 4, cache=by_stat)
    stat = os.stat(paths[0])
    os.utime(paths[0], ns=(stat.st_atime_ns, stat.st_mtime_ns + 5 * 10**9))
    np.testing.assert_array_equal(
        class_pixel_counts(paths, 4, cache=by_content, fingerprint="content"), expected
    )
    with pytest.raises(ValueError, match="changed"):
        class_pixel_counts(paths, 4, cache=by_stat)
    with pytest.raises(ValueError, match="fingerprint='stat'"):
        class_pixel_counts(paths, 4, cache=by_content)
    (tmp_path / "bad.npz").write_bytes(b"nonsense")
    with pytest.raises(ValueError, match="a cache file written by class_pixel_counts"):
        class_pixel_counts(paths, 4, cache=tmp_path / "bad.npz")


def pairs_folder(root: Path, n: int) -> tuple[Path, Any]:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(n):
        # images that cannot be decoded: the counts must never open them
        (root / "images" / f"s{i}.jpg").write_bytes(b"not an image")
    _, expected = random_masks(root / "masks", n, 3, seed=1)
    for i in range(n):
        (root / "masks" / f"m{i:03d}.png").rename(root / "masks" / f"s{i}.png")
    return root, expected


def test_mask_folder_and_subset(tmp_path: Path) -> None:
    root, expected = pairs_folder(tmp_path / "data", 4)
    folder = MaskFolder(root)
    assert len(folder) == 4
    np.testing.assert_array_equal(class_pixel_counts(folder, 3, progress=False), expected)
    subset = Subset(folder, [3, 1])
    np.testing.assert_array_equal(class_pixel_counts(subset, 3, progress=False), expected[[3, 1]])
    Image.new("RGB", (9, 7)).save(root / "images" / "s0.jpg")
    image, mask = folder[0]
    assert image.mode == "RGB" and mask.mode == "L" and mask.size == (9, 7)
    (root / "images" / "extra.jpg").write_bytes(b"x")
    with pytest.raises(ValueError, match="'extra' without a file in masks/"):
        MaskFolder(root)
    with pytest.raises(ValueError, match=r"labels.*is missing"):
        MaskFolder(root, masks="labels")


def test_torchvision_voc_segmentation_without_reading_images(tmp_path: Path) -> None:
    datasets = pytest.importorskip("torchvision.datasets")
    voc = tmp_path / "VOCdevkit" / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (voc / sub).mkdir(parents=True)
    stems = ["2007_000032", "2007_000039", "2007_000063"]
    (voc / "ImageSets/Segmentation/train.txt").write_text("\n".join(stems) + "\n")
    _, expected = random_masks(voc / "SegmentationClass", 3, 21)
    for i, stem in enumerate(stems):
        (voc / "SegmentationClass" / f"m{i:03d}.png").rename(
            voc / "SegmentationClass" / f"{stem}.png"
        )
        (voc / "JPEGImages" / f"{stem}.jpg").write_bytes(b"never decoded")
    dataset = datasets.VOCSegmentation(str(tmp_path), year="2012", image_set="train")
    np.testing.assert_array_equal(class_pixel_counts(dataset, 21, progress=False), expected)


def test_torchvision_cityscapes_semantic_column(tmp_path: Path) -> None:
    datasets = pytest.importorskip("torchvision.datasets")
    images = tmp_path / "leftImg8bit" / "train" / "aachen"
    targets = tmp_path / "gtFine" / "train" / "aachen"
    images.mkdir(parents=True)
    targets.mkdir(parents=True)
    stems = [f"aachen_00000{i}_000019" for i in range(2)]
    _, expected = random_masks(targets, 2, 34)
    for i, stem in enumerate(stems):
        (images / f"{stem}_leftImg8bit.png").write_bytes(b"never decoded")
        (targets / f"m{i:03d}.png").rename(targets / f"{stem}_gtFine_labelIds.png")
        (targets / f"{stem}_gtFine_instanceIds.png").write_bytes(b"never read")
    dataset = datasets.Cityscapes(str(tmp_path), target_type=["instance", "semantic"])
    order = [stems.index(Path(p).name.split("_gtFine")[0]) for p in mask_paths(dataset)]
    np.testing.assert_array_equal(class_pixel_counts(dataset, 34, progress=False), expected[order])
    # Cityscapes' labelIds -> its 19 trainIds (here: ids 7 and 8 only, the rest ignored)
    mapped = class_pixel_counts(dataset, 19, id_map={7: 0, 8: 1}, progress=False)
    np.testing.assert_array_equal(mapped[:, :2], expected[order][:, 7:9])
    instance = datasets.Cityscapes(str(tmp_path), target_type="instance")
    with pytest.raises(ValueError, match="target_type='semantic'"):
        class_pixel_counts(instance, 34)


@st.composite
def label_masks(draw: st.DrawFn) -> np.ndarray:
    """Piecewise-constant masks (rectangles on a background), sometimes with noise."""
    rows, cols = draw(st.integers(1, 40)), draw(st.integers(1, 60))
    mask = np.full((rows, cols), draw(st.integers(0, 255)), dtype=np.uint8)
    for _ in range(draw(st.integers(0, 6))):
        top, left = draw(st.integers(0, rows - 1)), draw(st.integers(0, cols - 1))
        height, width = draw(st.integers(1, rows)), draw(st.integers(1, cols))
        mask[top : top + height, left : left + width] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        noise = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
        spots = noise.random(mask.shape) < draw(st.floats(0.0, 1.0))
        mask[spots] = noise.integers(0, 256, size=int(spots.sum()))
    return mask


@settings(max_examples=150, deadline=None)
@given(label_masks())
def test_value_counts_by_runs_equal_the_plain_histogram(mask: np.ndarray) -> None:
    image = Image.fromarray(mask, mode="L")
    plain = np.asarray(image.histogram(), dtype=np.int64)
    flat = np.frombuffer(image.tobytes(), dtype=np.uint8)
    np.testing.assert_array_equal(value_counts(flat), plain)
    np.testing.assert_array_equal(value_counts(flat, image), plain)
    np.testing.assert_array_equal(
        value_counts(mask.ravel()), np.bincount(mask.ravel(), minlength=256)
    )


def unique_counts(
    mask: np.ndarray, num_classes: int, ignore_index: int | None, id_map: dict[int, int] | None
) -> tuple[np.ndarray, list[int]]:
    """The plain count: np.unique over the pixels, each value mapped by hand; and the values
    that are not a class id (sorted)."""
    expected = np.zeros(num_classes, dtype=np.int64)
    bad = []
    for value, count in zip(*np.unique(mask, return_counts=True), strict=True):
        if id_map is not None:
            if int(value) not in id_map:
                continue
            cls = id_map[int(value)]
        else:
            cls = int(value)
        if cls == ignore_index:
            continue
        if cls >= num_classes:
            bad.append(int(value))
        else:
            expected[cls] += count
    return expected, bad


MASK_FILES = [  # (format, PIL mode, save options, highest value it holds)
    ("png", "L", {}, 255),
    ("png", "P", {}, 255),
    ("png", "P", {"bits": 4}, 15),
    ("png", "P", {"bits": 1}, 1),
    ("gif", "P", {"optimize": False}, 255),
    ("tiff", "L", {}, 255),
    ("tiff", "P", {"compression": "tiff_lzw"}, 255),
    ("bmp", "P", {}, 255),
]


@settings(max_examples=120, deadline=None)
@given(
    st.lists(label_masks(), min_size=1, max_size=4),
    st.sampled_from(MASK_FILES),
    st.integers(1, 256),
    st.sampled_from([None, 0, 3, 255]),
    st.booleans(),
    st.sampled_from([1, 3]),
)
def test_counts_equal_a_plain_count_on_every_mode(
    raw: list[np.ndarray],
    kind: tuple[str, str, dict[str, Any], int],
    num_classes: int,
    ignore_index: int | None,
    mapped: bool,
    threads: int,
) -> None:
    """The scan (decoding into reused buffers, counting by runs) against np.unique on the
    same pixels, in every mode and bit depth it reads, with and without helper threads."""
    fmt, mode, options, top = kind
    id_map = {v: v % num_classes for v in range(0, 256, 3)} if mapped else None
    with tempfile.TemporaryDirectory() as folder:
        paths, rows, bad = [], [], []
        for i, mask in enumerate(raw):
            mask = (mask.astype(np.int64) % (top + 1)).astype(np.uint8)
            image = Image.fromarray(mask, mode="L")
            if mode == "P":
                image = image.convert("P")
                image.putpalette(PALETTE)
            path = Path(folder) / f"{i}.{fmt}"
            image.save(path, **options)
            with Image.open(path) as stored:
                assert stored.mode == mode
                np.testing.assert_array_equal(np.asarray(stored), mask)
            expected, values = unique_counts(mask, num_classes, ignore_index, id_map)
            paths.append(path)
            rows.append(expected)
            bad.append(values)
        first = next((i for i, values in enumerate(bad) if values), None)
        if first is not None and threads == 1:
            with pytest.raises(ValueError, match=re.escape(f"pixel value(s) {bad[first][:5]}")):
                class_pixel_counts(
                    paths,
                    num_classes,
                    ignore_index=ignore_index,
                    id_map=id_map,
                    num_threads=threads,
                    progress=False,
                )
            return
        if first is not None:
            with pytest.raises(ValueError, match="pixel value"):
                class_pixel_counts(
                    paths,
                    num_classes,
                    ignore_index=ignore_index,
                    id_map=id_map,
                    num_threads=threads,
                    progress=False,
                )
            return
        counts = class_pixel_counts(
            paths,
            num_classes,
            ignore_index=ignore_index,
            id_map=id_map,
            num_threads=threads,
            progress=False,
        )
        np.testing.assert_array_equal(counts, np.array(rows))


def test_png_masks_decode_into_the_scan_buffer(tmp_path: Path) -> None:
    """The fast path is taken: a PNG decodes straight into the thread's buffer (no copy), and
    a mask larger than the last grows it."""
    table = np.r_[np.arange(255), -1]
    scan = masks_module._Scan(4, table)
    for size, mode in (((5, 3), "L"), ((40, 30), "P")):
        ids = np.arange(size[0] * size[1]).reshape(size[::-1]) % 4
        path = write_mask(tmp_path / f"{mode}.png", ids, mode)
        with Image.open(path) as image:
            pixels = masks_module._decode(image, scan)
        assert np.shares_memory(pixels, scan.pixels)
        np.testing.assert_array_equal(pixels, ids.ravel())
        expected = np.bincount(ids.ravel(), minlength=4)
        np.testing.assert_array_equal(masks_module.count_mask(str(path), 4, table, scan), expected)
