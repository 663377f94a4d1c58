"""Rare-class sampling for segmentation: probabilities, the sampler, and the crop that gets
the chosen class (torch_balance.rare_class, torch_balance.rare_class_crop)."""

from __future__ import annotations

import os
import pickle
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from test_hostile import HOSTILE, _use
from test_masks import write_mask
from torch.utils.data import DataLoader, Subset

from torch_balance import (
    ClassIndex,
    MaskFolder,
    RareClassCrop,
    RareClassDataset,
    RareClassSampler,
    class_pixel_counts,
    rare_class_probabilities,
)


def daformer_probabilities(counts: np.ndarray, temperature: float, min_pixels: int) -> Any:
    """DAFormer's get_rcs_class_probs, written the way its code does it (torch.softmax over the
    classes), restricted to the classes with an image of at least min_pixels."""
    freq = torch.tensor(counts.sum(axis=0), dtype=torch.float64)
    freq = freq / freq.sum()
    keep = torch.from_numpy((counts >= min_pixels).any(axis=0))
    out = torch.zeros_like(freq)
    out[keep] = torch.softmax((1 - freq[keep]) / temperature, dim=-1)
    return out.numpy()


def long_tail_counts(seed: int, images: int = 60, classes: int = 8) -> np.ndarray:
    rng = np.random.default_rng(seed)
    presence = rng.random((images, classes)) < np.linspace(0.9, 0.05, classes)
    sizes = rng.integers(1, 4000, size=(images, classes)) * np.logspace(0, -2, classes)
    return (presence * sizes).astype(np.int64)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("temperature", [0.01, 0.1, 2.0])
def test_probabilities_match_the_formula(seed: int, temperature: float) -> None:
    counts = long_tail_counts(seed)
    min_pixels = 30
    got = rare_class_probabilities(counts, temperature, min_pixels)
    np.testing.assert_allclose(got, daformer_probabilities(counts, temperature, min_pixels), 1e-9)
    assert got.sum() == pytest.approx(1.0)
    # the rarer class gets more, among classes that have a qualifying image
    f = counts.sum(axis=0) / counts.sum()
    drawn = np.flatnonzero(got > 0)
    order = drawn[np.argsort(f[drawn])]
    assert np.all(np.diff(got[order]) <= 1e-15)


def test_classes_without_a_qualifying_image_are_left_out() -> None:
    counts = np.array([[1000, 10, 0, 0], [900, 0, 99, 0], [800, 0, 100, 0]])
    p = rare_class_probabilities(counts, 0.5, min_pixels=100)
    assert p[1] == 0 and p[3] == 0 and p[0] > 0 and p[2] > 0
    assert p.sum() == pytest.approx(1.0)
    sampler = RareClassSampler(counts, temperature=0.5, min_pixels=100)
    assert sampler.images_per_class.tolist() == [3, 0, 1, 0]
    classes = sampler.epoch_picks()[1]
    assert set(classes.tolist()) <= {0, 2}
    with pytest.raises(ValueError, match=r"min_pixels: expected at most 1000.*lower min_pixels"):
        rare_class_probabilities(counts, min_pixels=1001)


def test_bad_arguments() -> None:
    counts = [[10, 1], [5, 5]]
    with pytest.raises(TypeError, match="temperature"):
        RareClassSampler(counts, temperature="hot")
    for bad in (0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="temperature: expected a positive finite"):
            RareClassSampler(counts, temperature=bad)
    with pytest.raises(ValueError, match="min_pixels"):
        RareClassSampler(counts, min_pixels=0)
    with pytest.raises(TypeError, match="integer pixel counts"):
        RareClassSampler(np.array(counts, dtype=np.float32))
    with pytest.raises(ValueError, match="2-D"):
        RareClassSampler([1, 2, 3])
    with pytest.raises(ValueError, match=">= 0"):
        RareClassSampler([[1, -2]], min_pixels=1)
    with pytest.raises(ValueError, match=r"pixel_counts: .*one row per image, got ragged rows"):
        RareClassSampler([[1, 2], [3]], min_pixels=1)
    with pytest.raises(ValueError, match="only zeros"):
        RareClassSampler([[0, 0]], min_pixels=1)
    with pytest.raises(TypeError, match="class_pixel_counts"):
        RareClassSampler(MaskFolder.__new__(MaskFolder))
    with pytest.raises(ValueError, match="num_samples"):
        RareClassSampler(counts, min_pixels=1, num_samples=0)


def test_picks_follow_the_probabilities_and_qualify() -> None:
    counts = long_tail_counts(3, images=80)
    sampler = RareClassSampler(counts, temperature=0.05, min_pixels=20, num_samples=40_000)
    images, classes = sampler.epoch_picks(0)
    assert len(sampler) == 40_000
    assert (counts[images.numpy(), classes.numpy()] >= 20).all()
    p = sampler.class_probabilities
    seen = np.bincount(classes.numpy(), minlength=counts.shape[1]) / 40_000
    sigma = np.sqrt(p * (1 - p) / 40_000)
    assert np.all(np.abs(seen - p) <= 5 * sigma + 1e-12)
    assert sampler.class_counts(0) == dict(enumerate(np.bincount(classes, minlength=8).tolist()))
    # within a class, its qualifying images are drawn uniformly
    rare = int(np.argmax(p))
    members = np.flatnonzero(counts[:, rare] >= 20)
    drawn = images.numpy()[classes.numpy() == rare]
    share = np.bincount(drawn, minlength=counts.shape[0])[members] / drawn.shape[0]
    assert np.abs(share - 1 / members.shape[0]).max() < 5 * np.sqrt(1 / drawn.shape[0])


def test_picks_carry_their_class_epoch_and_position_through_shards_and_resume() -> None:
    counts = long_tail_counts(1, images=30)
    whole = RareClassSampler(counts, min_pixels=20, seed=5)
    assert len(whole) == 30  # default epoch: the number of images
    whole.set_epoch(4)
    images, classes = whole.epoch_picks(4)
    for world in (1, 2, 4):
        for rank in range(world):
            shard = RareClassSampler(counts, min_pixels=20, seed=5, num_replicas=world, rank=rank)
            shard.set_epoch(4)
            for k, pick in enumerate(shard):
                assert isinstance(pick, ClassIndex) and pick.epoch == 4
                p = pick.position
                assert p == (rank + k * world) % 30  # padding repeats the epoch's head
                assert (int(pick), pick.class_id) == (int(images[p]), int(classes[p]))
    run = RareClassSampler(counts, min_pixels=20, seed=5)
    run.set_epoch(4)
    items = iter(run)
    head = [next(items) for _ in range(11)]
    resumed = RareClassSampler(counts, min_pixels=20, seed=5)
    resumed.load_state_dict(run.state_dict())
    rest = list(resumed)
    assert [(p.class_id, p.position) for p in head + rest] == [
        (int(c), i) for i, c in enumerate(classes)
    ]
    other = RareClassSampler(counts, min_pixels=21, seed=5)
    with pytest.raises(ValueError, match="min_pixels"):
        other.load_state_dict(run.state_dict())


def test_class_index_is_an_int_everywhere() -> None:
    pick = ClassIndex(3, class_id=7, epoch=2, position=9)
    assert pick == 3 and hash(pick) == hash(3) and isinstance(pick, int)
    assert np.arange(10)[pick] == 3 and torch.arange(10)[pick].item() == 3
    assert Subset(list(range(10)), [5, 6, 7, 8])[pick] == 8
    copy = pickle.loads(pickle.dumps(pick))
    assert (copy.class_id, copy.epoch, copy.position) == (7, 2, 9)
    assert repr(copy) == "ClassIndex(3, class_id=7)"
    sampler = RareClassSampler([[10, 1], [5, 5]], min_pixels=1, seed=2)
    assert repr(sampler).startswith(
        "RareClassSampler(temperature=0.01, min_pixels=1, global_length=2, images=2, classes=2/2"
    )


def test_crop_retries_until_the_class_is_in_it() -> None:
    rng = np.random.default_rng(0)
    image = np.arange(40 * 60 * 3).reshape(40, 60, 3)
    full = {"rare class crop": 0, "plain crop": 0}
    crop = RareClassCrop(20, max_tries=10, min_pixels=36, seed=0)
    for position in range(200):
        mask = np.zeros((40, 60), dtype=np.uint8)
        y, x = rng.integers(0, 35), rng.integers(0, 55)
        mask[y : y + 6, x : x + 6] = 5  # 36 pixels somewhere
        pick = ClassIndex(0, class_id=5, epoch=0, position=position)
        cut_image, cut = crop(image, mask, pick)
        assert cut.shape == (20, 20) and cut_image.shape == (20, 20, 3)
        top, left = divmod(int(cut_image[0, 0, 0]) // 3, 60)  # the image is cut where the mask is
        np.testing.assert_array_equal(cut, mask[top : top + 20, left : left + 20])
        assert (cut == 5).any()
        full["rare class crop"] += int((cut == 5).sum() == 36)
        full["plain crop"] += int((crop(image, mask, position)[1] == 5).sum() == 36)
        again = crop(image, mask, pickle.loads(pickle.dumps(pick)))[1]
        np.testing.assert_array_equal(again, cut)  # a pure function of (seed, epoch, position)
    # a uniform window holds the whole square about one time in seven; ten tries, four in five
    assert full["rare class crop"] >= 150 and full["plain crop"] <= 50, full
    # a 3x3 square in a corner: the tries miss it, the window around one of its pixels does not
    corner = np.zeros((40, 60), dtype=np.uint8)
    corner[37:, :3] = 5
    for tries in (1, 3):
        greedy = RareClassCrop(10, max_tries=tries, min_pixels=1000, seed=1)
        assert all((greedy(image, corner, ClassIndex(0, 5, 0, p))[1] == 5).any() for p in range(50))


def test_crop_kinds_of_input_and_plain_indices() -> None:
    mask = np.zeros((6, 9), dtype=np.uint8)
    mask[0, 8] = 2
    crop = RareClassCrop((4, 20), seed=3)  # wider than the image: kept whole
    pil_image, pil_mask = crop(Image.new("RGB", (9, 6)), Image.fromarray(mask), ClassIndex(0, 2))
    assert pil_image.size == (9, 4) and pil_mask.size == (9, 4)
    assert (np.asarray(pil_mask) == 2).any()
    tensor_image, tensor_mask = crop(torch.zeros(3, 6, 9), torch.from_numpy(mask)[None], 4)
    assert tensor_image.shape == (3, 4, 9) and tensor_mask.shape == (1, 4, 9)
    plain = [crop(np.zeros((6, 9)), mask, 4)[1].tolist() for _ in range(3)]
    assert plain[0] == plain[1] == plain[2]  # a plain index: its own fixed window
    with pytest.raises(ValueError, match="image: expected the size of its mask"):
        crop(np.zeros((5, 9)), mask, 0)
    with pytest.raises(TypeError, match="mask"):
        crop(np.zeros((6, 9)), [[0]], 0)
    with pytest.raises(ValueError, match="max_tries"):
        RareClassCrop(4, max_tries=0)
    with pytest.raises(ValueError, match="size"):
        RareClassCrop((4, 4, 4))
    with pytest.raises(TypeError, match=r"an \(image, mask\) pair"):
        RareClassDataset([np.zeros(3)], crop)[0]


def to_tensors(image: Any, mask: Any) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(np.array(image)), torch.from_numpy(np.array(mask))


def segmentation_folder(root: Path) -> MaskFolder:
    """12 pairs of 24x32: background 0, class 1 on the left half, class 2 as a 3x3 square
    in 3 images and class 3 as a 5x5 square in 2."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(12):
        mask = np.zeros((24, 32), dtype=np.uint8)
        mask[:, :16] = 1
        if i in (2, 5, 9):
            y, x = rng.integers(0, 21), rng.integers(0, 29)
            mask[y : y + 3, x : x + 3] = 2
        if i in (4, 10):
            y, x = rng.integers(0, 19), rng.integers(0, 27)
            mask[y : y + 5, x : x + 5] = 3
        Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(
            root / "images" / f"{i:02d}.png"
        )
        Image.fromarray(mask).save(root / "masks" / f"{i:02d}.png")
    return MaskFolder(root, transforms=None)


def test_the_chosen_class_reaches_the_crop_in_worker_processes(tmp_path: Path) -> None:
    folder = segmentation_folder(tmp_path)
    counts = class_pixel_counts(folder, 4, progress=False)
    sampler = RareClassSampler(counts, temperature=0.1, min_pixels=5, num_samples=24, seed=1)
    assert set(sampler.class_counts(0)) == {0, 1, 2, 3}
    dataset = RareClassDataset(folder, RareClassCrop(8, max_tries=4, seed=2), to_tensors)
    loader = DataLoader(dataset, sampler=sampler, batch_size=4, num_workers=2)
    sampler.set_epoch(0)
    picks = list(sampler)
    sampler.set_epoch(0)
    masks = torch.cat([batch[1] for batch in loader])
    assert masks.shape == (24, 8, 8)
    assert {p.class_id for p in picks} >= {2, 3}
    for pick, mask in zip(picks, masks, strict=True):
        assert (mask == pick.class_id).any(), f"{pick!r} lost its class in the crop"
        torch.testing.assert_close(mask, dataset[pick][1])  # the same crop in every process
    assert sampler.epoch == 1


# ---- hostile arguments (the pool and the contract of tests/test_hostile.py) ------------------

COUNTS = np.array([[500, 30, 0], [400, 0, 60], [450, 20, 0], [480, 0, 0]])
MASK_DIR = Path(tempfile.mkdtemp(prefix="torch_balance-hostile-masks-"))
MASK_FILES = [
    write_mask(MASK_DIR / f"{i}.png", np.array([[0, 1], [2, 255]]), mode)
    for i, mode in enumerate("LP")
]
PAIRS = [(np.zeros((4, 4)), np.eye(4, dtype=np.uint8))]


def _in_mask_dir(value: Any) -> Any:
    """A path value moved under MASK_DIR (a hostile string must not write where tests run)."""
    if isinstance(value, (str, os.PathLike)):
        return MASK_DIR / f"cache-{abs(hash(os.fspath(value)))}"
    return value


HOSTILE_CASES: list[tuple[str, Callable[[Any], Any]]] = [
    ("pixel_counts", lambda v: RareClassSampler(v, min_pixels=1)),
    ("temperature", lambda v: RareClassSampler(COUNTS, temperature=v, min_pixels=1)),
    ("min_pixels", lambda v: RareClassSampler(COUNTS, min_pixels=v)),
    ("num_samples", lambda v: RareClassSampler(COUNTS, min_pixels=1, num_samples=v)),
    ("seed", lambda v: RareClassSampler(COUNTS, min_pixels=1, seed=v)),
    ("num_replicas", lambda v: RareClassSampler(COUNTS, min_pixels=1, num_replicas=v)),
    ("rank", lambda v: RareClassSampler(COUNTS, min_pixels=1, num_replicas=2, rank=v)),
    ("drop_last", lambda v: RareClassSampler(COUNTS, min_pixels=1, drop_last=v)),
    ("epoch", lambda v: RareClassSampler(COUNTS, min_pixels=1).epoch_picks(v)),
    ("state_dict", lambda v: RareClassSampler(COUNTS, min_pixels=1).load_state_dict(v)),
    ("pixel_counts", lambda v: rare_class_probabilities(v, min_pixels=1)),
    ("temperature", lambda v: rare_class_probabilities(COUNTS, v, 1)),
    ("source", lambda v: class_pixel_counts(v, 3, progress=False)),
    ("num_classes", lambda v: class_pixel_counts(MASK_FILES, v, progress=False)),
    ("ignore_index", lambda v: class_pixel_counts(MASK_FILES, 3, ignore_index=v)),
    ("id_map", lambda v: class_pixel_counts(MASK_FILES, 3, id_map=v, progress=False)),
    ("fingerprint", lambda v: class_pixel_counts(MASK_FILES, 3, fingerprint=v)),
    ("num_threads", lambda v: class_pixel_counts(MASK_FILES, 3, num_threads=v)),
    ("refresh", lambda v: class_pixel_counts(MASK_FILES, 3, refresh=v)),
    ("progress", lambda v: class_pixel_counts(MASK_FILES, 3, progress=v)),
    ("root", lambda v: MaskFolder(v)),
    ("size", lambda v: RareClassCrop(v)),
    ("max_tries", lambda v: RareClassCrop(4, max_tries=v)),
    ("min_pixels", lambda v: RareClassCrop(4, min_pixels=v)),
    ("seed", lambda v: RareClassCrop(4, seed=v)),
    ("dataset", lambda v: RareClassDataset(v, RareClassCrop(2))),
    ("crop", lambda v: RareClassDataset(PAIRS, v)),
    ("cache", lambda v: class_pixel_counts(MASK_FILES, 3, cache=_in_mask_dir(v), progress=False)),
    ("pick", lambda v: RareClassCrop(2)(np.zeros((4, 4)), np.eye(4, dtype=np.uint8), v)),
]


@pytest.mark.parametrize(
    ("name", "call"), HOSTILE_CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(HOSTILE_CASES)]
)
@settings(
    max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
@given(value=HOSTILE)
def test_hostile_argument(name: str, call: Callable[[Any], Any], value: Any) -> None:
    try:
        built = call(value)
    except (TypeError, ValueError) as error:
        message = str(error)
        assert name in message.split(":")[0] or name in message, (
            f"{type(error).__name__} for {value!r} does not name {name!r}: {message}"
        )
        return
    if isinstance(built, RareClassCrop):
        built(np.zeros((6, 6)), np.eye(6, dtype=np.uint8), ClassIndex(0, 1))
    elif isinstance(built, RareClassDataset) and len(built):
        try:  # items that are not (image, mask) pairs show at the first access
            built[ClassIndex(0, 1)]
        except TypeError as error:
            assert str(error).startswith("dataset[0]: expected an (image, mask) pair")
    elif isinstance(built, RareClassSampler) and len(built) <= 10**5:
        _use(built)  # a legal epoch of 10**8 picks would take minutes to draw: its length only


@settings(max_examples=200, deadline=None)
@given(
    rows=st.integers(1, 30),
    cols=st.integers(1, 30),
    size=st.tuples(st.integers(1, 40), st.integers(1, 40)),
    tries=st.integers(1, 5),
    spots=st.lists(st.tuples(st.integers(0, 29), st.integers(0, 29)), max_size=4),
    position=st.integers(0, 1000),
)
def test_crop_windows_stay_inside_and_find_a_present_class(
    rows: int, cols: int, size: tuple[int, int], tries: int, spots: list, position: int
) -> None:
    mask = np.zeros((rows, cols), dtype=np.uint8)
    for y, x in spots:
        mask[y % rows, x % cols] = 7
    crop = RareClassCrop(size, max_tries=tries, seed=5)
    pick = ClassIndex(0, class_id=7, epoch=1, position=position)
    top, left, height, width = crop.window(mask, 7, crop.generator_for(pick))
    assert (height, width) == (min(size[0], rows), min(size[1], cols))
    assert 0 <= top <= rows - height and 0 <= left <= cols - width
    if spots:
        assert (mask[top : top + height, left : left + width] == 7).any()
