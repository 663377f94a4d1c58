"""One seed's split of a source: a balanced test set, imbalanced training data, validation.

:func:`make_split` turns a :class:`~torch_balance.bench.sources.Source` and a seed into a
:class:`Split` (indices only) in three steps, each a small function below: cut the test set
(:func:`_cut_test`), choose each class's imbalanced size (:func:`_class_targets`), then draw
each class's subset and hold out its validation share (:func:`_draw_train_val`).
:func:`materialize` loads the images of a split. Every draw comes from
``_rng.generator(seed, Stream.BENCH_..., ...)``, so a split is a pure function of its seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from torch_balance._rng import Stream, generator
from torch_balance._validation import check_int, fail
from torch_balance.bench.sources import Source

__all__ = [
    "FEW_TEST_IMAGES",
    "PROFILES",
    "Split",
    "Tensors",
    "class_counts",
    "long_tail_counts",
    "make_split",
    "materialize",
    "small_test_warning",
    "step_counts",
]

PROFILES = ("longtail", "step")
VAL_FRACTION = 0.2
TEST_FRACTION = 0.2
MIN_PER_CLASS = 3
# Below this many test images a class's recall moves in steps of 10 % or more: warned about.
FEW_TEST_IMAGES = 10


@dataclass
class Split:
    """Indices of one seed's split, and how its imbalance was built.

    ``train``/``val`` index the training pool (or ``val`` the given validation set when
    ``val_given``); ``test`` indexes the test pool (or the training pool when
    ``test_from_pool``).
    """

    seed: int
    profile: str
    ratio: float | None
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    train_counts: np.ndarray
    val_counts: np.ndarray
    test_counts: np.ndarray
    target_counts: np.ndarray
    minority: list[int]
    test_from_pool: bool
    val_given: bool
    notes: list[str] = field(default_factory=list)


@dataclass
class Tensors:
    """The images (uint8 ``[N, C, H, W]``) and labels (int64) of one split."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


@dataclass
class _TestCut:
    """The test set, and what stays available for training in each class."""

    indices: np.ndarray
    counts: np.ndarray
    available: list[np.ndarray]
    from_pool: bool


def class_counts(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Images per class, as an int64 vector of length ``num_classes``.

    Example:
        >>> class_counts(np.array([0, 2, 2]), 3).tolist()
        [1, 0, 2]
    """
    return np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes).astype(np.int64)


def long_tail_counts(n_max: int, ratio: float, num_classes: int) -> np.ndarray:
    """``n_i = floor(n_max * ratio**(-i / (C - 1)))`` for rank ``i`` (Cao et al., NeurIPS 2019).

    Example:
        >>> long_tail_counts(100, 10, 3).tolist()
        [100, 31, 10]
    """
    if num_classes == 1:
        return np.array([n_max], dtype=np.int64)
    ranks = np.arange(num_classes, dtype=np.float64)
    values = n_max * np.power(float(ratio), -ranks / (num_classes - 1))
    # A hair of slack so that exact powers are not floored one below by rounding error.
    return np.floor(values + 1e-9).astype(np.int64)


def step_counts(n_max: int, ratio: float, num_classes: int) -> np.ndarray:
    """Step imbalance (Buda et al., 2018): the last ``C // 2`` ranks get ``n_max / ratio``.

    Example:
        >>> step_counts(100, 10, 4).tolist()
        [100, 100, 10, 10]
    """
    counts = np.full(num_classes, n_max, dtype=np.int64)
    minority = num_classes // 2
    if minority:
        counts[num_classes - minority :] = math.floor(n_max / float(ratio) + 1e-9)
    return counts


def make_split(
    source: Source,
    *,
    profile: str = "longtail",
    ratio: float | None = None,
    seed: int = 0,
    val_fraction: float = VAL_FRACTION,
) -> Split:
    """Split ``source`` for one seed and make its training part imbalanced.

    Protocol: a balanced test set (the source's own, or ``test_per_class`` images of every
    class cut from the pool); the rest of the pool is made imbalanced with ``profile`` and
    ``ratio`` around ``n_max`` (the smallest class's pool size), with a random assignment of
    classes to ranks (Buda et al., 2018); a stratified ``val_fraction`` of that imbalanced
    data (at least one image per class) becomes the validation set. Every draw comes from
    ``_rng.generator(seed, ...)``.

    Args:
        source: The data.
        profile: ``"longtail"`` or ``"step"``.
        ratio: Largest over smallest class size; ``None`` keeps a natural source's counts.
        seed: Seeds the test cut, the class ranks and the subsets.
        val_fraction: Share of each imbalanced class held out for validation.

    Returns:
        The split.

    Raises:
        ValueError: For an unknown profile, a ratio below 1, or a class too small.

    Example:
        >>> from torch_balance.bench.sources import load_source
        >>> source = load_source("digits")
        >>> split = make_split(source, ratio=10, seed=0)
        >>> int(split.test_counts.min()) == int(split.test_counts.max()) == 50
        True
        >>> int(split.train_counts.max() + split.val_counts.max()) == 124
        True
    """
    if profile not in PROFILES:
        fail("--profile", "one of " + ", ".join(PROFILES), profile)
    if ratio is not None and (not isinstance(ratio, int | float) or not ratio >= 1.0):
        fail("--ratio", "a number >= 1", ratio, "1 means balanced; 100 is the usual long tail")
    if not 0.0 < val_fraction < 1.0:
        fail("val_fraction", "a number in (0, 1)", val_fraction)
    seed = check_int("seed", seed, minimum=0)
    num_classes = source.num_classes
    pool_labels = np.asarray(source.train_labels, dtype=np.int64)

    test = _cut_test(source, pool_labels, seed)
    sizes = np.array([a.size for a in test.available], dtype=np.int64)
    targets, minority = _class_targets(source, sizes, profile, ratio, seed)
    train, val = _draw_train_val(source, test.available, targets, val_fraction, seed)

    notes: list[str] = []
    if source.val_labels is None:
        val_counts = class_counts(pool_labels[val], num_classes)
    else:
        val_counts = class_counts(source.val_labels, num_classes)
        notes.append("validation: the given val/ folder")
    if not test.from_pool and len(set(test.counts.tolist())) > 1:
        notes.append("test: the given test set is not balanced; accuracy follows its mix")
    few = small_test_warning(source, test.counts, test.from_pool)
    if few:
        notes.append(few)
    return Split(
        seed=seed,
        profile=profile,
        ratio=ratio,
        train=train,
        val=val,
        test=test.indices,
        train_counts=class_counts(pool_labels[train], num_classes),
        val_counts=val_counts,
        test_counts=test.counts,
        target_counts=targets,
        minority=minority,
        test_from_pool=test.from_pool,
        val_given=source.val_labels is not None,
        notes=notes,
    )


def small_test_warning(source: Source, counts: np.ndarray, from_pool: bool) -> str | None:
    """A warning when some class has fewer than :data:`FEW_TEST_IMAGES` test images, else None.

    Example:
        >>> from torch_balance.bench.sources import load_source
        >>> source = load_source("digits")
        >>> print(small_test_warning(source, np.array([50] * 9 + [2]), from_pool=False))
        warning: 1 of 10 classes has fewer than 10 test images (class '9' has 2): ...
        >>> small_test_warning(source, np.full(10, 50), from_pool=True) is None
        True
    """
    few = [c for c in range(len(counts)) if counts[c] < FEW_TEST_IMAGES]
    if not few:
        return None
    c = min(few, key=lambda k: int(counts[k]))
    least = int(counts[c])
    where = (
        "the test images of every class are cut from the pool, "
        f"{TEST_FRACTION:.0%} of the smallest class: add images to the small classes, or give "
        "the folder train/ and test/ sub-folders"
        if from_pool
        else "add test images to those classes"
    )
    effect = (
        f"their recall moves in steps of {100 / least:.0f} %, so the table's differences between"
        " methods may be noise"
        if least
        else "a class without test images has no recall"
    )
    return (
        f"warning: {len(few)} of {len(counts)} classes {'has' if len(few) == 1 else 'have'} fewer"
        f" than {FEW_TEST_IMAGES} test"
        f" images (class {source.classes[c]!r} has {least}): {effect}; {where}"
    )


def _permutation(n: int, seed: int, *keys: int) -> np.ndarray:
    return torch.randperm(n, generator=generator(seed, *keys)).numpy()


def _members(labels: np.ndarray, c: int) -> np.ndarray:
    return np.flatnonzero(labels == c)


def _cut_test(source: Source, pool_labels: np.ndarray, seed: int) -> _TestCut:
    """The source's own test set, or a balanced one cut from the pool."""
    num_classes = source.num_classes
    if source.test_labels is not None:
        return _TestCut(
            indices=np.arange(len(source.test_labels)),
            counts=class_counts(source.test_labels, num_classes),
            available=[_members(pool_labels, c) for c in range(num_classes)],
            from_pool=False,
        )
    pool_counts = class_counts(pool_labels, num_classes)
    smallest = int(pool_counts.min())
    needed = MIN_PER_CLASS if source.val_labels is None else 2
    if smallest < needed:
        c = int(pool_counts.argmin())
        fail(
            source.name,
            f"at least {needed} images in every class for a train/validation/test split",
            f"class {source.classes[c]!r} with {smallest} image(s)",
            "Add images to that class, remove it, or provide train/, val/ and test/ folders",
        )
    per_class = source.test_per_class or max(1, int(smallest * TEST_FRACTION))
    test_parts, available = [], []
    for c in range(num_classes):
        members = _members(pool_labels, c)
        order = members[_permutation(members.size, seed, Stream.BENCH_TEST, c)]
        test_parts.append(order[:per_class])
        available.append(np.sort(order[per_class:]))
    return _TestCut(
        indices=np.concatenate(test_parts),
        counts=np.full(num_classes, per_class, dtype=np.int64),
        available=available,
        from_pool=True,
    )


def _tail(num_classes: int) -> int:
    """How many classes the tail third holds (at least one when there are two or more)."""
    return max(1, round(num_classes / 3)) if num_classes > 1 else 0


def _class_targets(
    source: Source, sizes: np.ndarray, profile: str, ratio: float | None, seed: int
) -> tuple[np.ndarray, list[int]]:
    """Each class's imbalanced size (training + validation) and the minority classes."""
    num_classes = source.num_classes
    ranks = _permutation(num_classes, seed, Stream.BENCH_CLASSES)  # ranks[i] = class of rank i
    if ratio is None and source.natural:
        targets = sizes.copy()
        order = np.argsort(-sizes, kind="stable")
        minority = sorted(int(c) for c in order[num_classes - _tail(num_classes) :])
    else:
        effective = 1.0 if ratio is None else float(ratio)
        n_max = int(sizes.min())
        by_rank = (long_tail_counts if profile == "longtail" else step_counts)(
            n_max, effective, num_classes
        )
        targets = np.empty(num_classes, dtype=np.int64)
        targets[ranks] = by_rank
        rare = num_classes // 2 if profile == "step" else _tail(num_classes)
        minority = sorted(int(c) for c in ranks[num_classes - rare :])
    need = 1 if source.val_labels is not None else 2
    if int(targets.min()) < need and ratio is None and source.natural:
        c = int(targets.argmin())
        fail(
            source.name,
            f"at least {need} training images in every class (one is held out for validation)",
            f"class {source.classes[c]!r} with {int(targets[c])}",
            "Add images to that class, remove it, or give the folder a val/ sub-folder",
        )
    if int(targets.min()) < need:
        c = int(targets.argmin())
        fail(
            "--ratio",
            f"a ratio that leaves every class at least {need} training images",
            ratio,
            f"class {source.classes[c]!r} would keep {int(targets[c])} of {int(sizes[c])};"
            " use a smaller --ratio or more data",
        )
    return targets, minority


def _draw_train_val(
    source: Source,
    available: list[np.ndarray],
    targets: np.ndarray,
    val_fraction: float,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Each class's subset of ``targets[c]`` images, then its validation share.

    Returns training indices into the pool, and validation indices into the pool (or into
    the source's own validation set when it has one).
    """
    train_parts, val_parts = [], []
    for c, members in enumerate(available):
        chosen = members[
            _permutation(members.size, seed, Stream.BENCH_SUBSET, c)[: int(targets[c])]
        ]
        if source.val_labels is None:
            n_val = min(max(1, round(val_fraction * chosen.size)), chosen.size - 1)
            val_parts.append(np.sort(chosen[:n_val]))
            train_parts.append(np.sort(chosen[n_val:]))
        else:
            train_parts.append(np.sort(chosen))
    if source.val_labels is None:
        return np.concatenate(train_parts), np.concatenate(val_parts)
    return np.concatenate(train_parts), np.arange(len(source.val_labels))


def materialize(source: Source, split: Split) -> Tensors:
    """Load the images of ``split`` (uint8) with their labels (int64).

    Example:
        >>> from torch_balance.bench.sources import load_source
        >>> source = load_source("digits")
        >>> data = materialize(source, make_split(source, ratio=10, seed=0))
        >>> data.x_test.shape, data.x_train.dtype
        (torch.Size([500, 1, 8, 8]), torch.uint8)
    """
    pool = np.asarray(source.train_labels, dtype=np.int64)

    def labels(values: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(values, dtype=np.int64))

    x_train, y_train = source.load_train(split.train), labels(pool[split.train])
    if split.val_given:
        if source.load_val is None or source.val_labels is None:
            fail("source", "a loader for its validation set", source.name)
        x_val, y_val = source.load_val(split.val), labels(source.val_labels[split.val])
    else:
        x_val, y_val = source.load_train(split.val), labels(pool[split.val])
    if split.test_from_pool:
        x_test, y_test = source.load_train(split.test), labels(pool[split.test])
    else:
        if source.load_test is None or source.test_labels is None:
            fail("source", "a loader for its test set", source.name)
        x_test, y_test = source.load_test(split.test), labels(source.test_labels[split.test])
    return Tensors(x_train, y_train, x_val, y_val, x_test, y_test)
