"""The dataset-wrapper checks: :data:`DATASET_CHECKS`, :func:`check_dataset`."""

from __future__ import annotations

import pickle
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
from torch.utils.data import DataLoader

from torch_balance.testing._support import (
    Factory,
    _check_inputs,
    _dataset_epoch,
    _require,
    _rng_snapshot,
    _same,
    _same_rng,
    conformance_labels,
)


def _make_dataset(make: Factory, labels: Any, seed: int) -> Any:
    """``make(labels, seed=seed)``, failing by name when the result is no dataset wrapper."""
    _check_inputs(make, labels)
    try:
        dataset = make(labels, seed=seed)
    except TypeError as error:
        if "argument" not in str(error):
            raise
        raise AssertionError(
            f"conformance: the factory is called as make(labels, seed=...) and raised "
            f"TypeError: {error}. Pass the seed on, or accept it"
        ) from error
    missing = [m for m in ("__len__", "__getitem__", "set_epoch") if not hasattr(dataset, m)]
    _require(
        not missing,
        f"the factory built a {type(dataset).__name__}, which has no "
        f"{', '.join(m + '()' for m in missing)}: check_dataset checks dataset wrappers "
        "(set_epoch, len and items); check samplers with check_sampler",
    )
    return dataset


def check_dataset_basics(make: Factory, labels: Any, *, check_counts: bool = True) -> None:
    """Length, bounds, determinism in (seed, epoch), new epochs, composition, global RNGs."""
    label_array = _check_inputs(make, labels)
    n = label_array.shape[0]
    before = _rng_snapshot()
    dataset = _make_dataset(make, labels, 3)
    first = _dataset_epoch(dataset, 0)
    _require(_same_rng(before, _rng_snapshot()), "building or reading touched a global RNG")
    _require(len(first) > 0, "epoch 0 is empty")
    if hasattr(dataset, "epoch_indices"):
        drawn = np.asarray(dataset.epoch_indices(0))
        _require(drawn.shape[0] == len(dataset), "epoch_indices() and len() disagree")
        _require(bool(((drawn >= 0) & (drawn < n)).all()), "an index is out of range")
    again = make(labels, seed=3)
    _require(_same(_dataset_epoch(again, 0), first), "the same seed and epoch gave other items")
    _require(
        _same(_dataset_epoch(again, 5), _dataset_epoch(dataset, 5)),
        "epoch 5 differs between equal datasets",
    )
    _require(not _same(_dataset_epoch(dataset, 1), first), "epoch 1 repeats epoch 0")
    _require(
        not _same(_dataset_epoch(make(labels, seed=4), 0), first),
        "another seed gave the same items",
    )
    _require(_same(_dataset_epoch(dataset, 0), first), "going back to epoch 0 gave other items")
    if check_counts and hasattr(dataset, "target_counts") and hasattr(dataset, "labels"):
        held = Counter(np.asarray(dataset.labels).tolist())
        planned = {k: v for k, v in dataset.target_counts(0).items() if v}
        _require(dict(held) == planned, f"epoch holds {dict(held)}, plan says {planned}")


def check_dataset_pickles(make: Factory, labels: Any) -> None:
    """A pickled copy holds the same items, for the epoch it was pickled at and for others."""
    dataset = _make_dataset(make, labels, 3)
    dataset.set_epoch(4)
    copy = pickle.loads(pickle.dumps(dataset))
    _require(
        _same(_dataset_epoch(copy, 4), _dataset_epoch(dataset, 4)),
        "a pickled copy holds other items",
    )
    _require(
        _same(_dataset_epoch(copy, 2), _dataset_epoch(make(labels, seed=3), 2)),
        "a pickled copy draws another epoch 2",
    )


def check_dataset_dataloader(make: Factory, labels: Any, workers: int = 2) -> None:
    """``set_epoch`` in the main process reaches persistent DataLoader workers."""
    _check_inputs(make, labels, {"workers": workers})
    dataset = _make_dataset(make, labels, 3)
    loader = DataLoader(dataset, batch_size=None, num_workers=workers, persistent_workers=True)
    for epoch in (0, 3, 1):
        dataset.set_epoch(epoch)
        got = list(loader)
        expected = _dataset_epoch(make(labels, seed=3), epoch)
        _require(_same(got, expected), f"persistent workers saw other items in epoch {epoch}")


DATASET_CHECKS: dict[str, Callable[[Factory, Any], None]] = {
    "basics": check_dataset_basics,
    "pickles": check_dataset_pickles,
}


def check_dataset(
    make: Factory,
    labels: Any = None,
    *,
    check_counts: bool = True,
    dataloader_workers: int = 2,
) -> None:
    """Run every conformance check on the dataset wrapper built by ``make(labels, seed=...)``.

    Args:
        make: ``make(labels, seed=...)``, a wrapper with ``set_epoch``, ``len`` and items.
        labels: The labels to build it on; default :func:`conformance_labels`.
        check_counts: Compare its ``labels`` with ``target_counts`` (where it has both).
        dataloader_workers: Worker processes for the DataLoader check (0 to skip it).

    Raises:
        AssertionError: Naming the first property that failed.

    Example:
        >>> from torch_balance import ResampledDataset
        >>> from torch_balance.testing import IndexDataset
        >>> def make(y, seed):
        ...     return ResampledDataset(IndexDataset(len(y)), "under", labels=y, seed=seed)
        >>> check_dataset(make, dataloader_workers=0)
    """
    labels = conformance_labels() if labels is None else labels
    _check_inputs(
        make, labels, {"check_counts": check_counts, "dataloader_workers": dataloader_workers}
    )
    check_dataset_basics(make, labels, check_counts=check_counts)
    check_dataset_pickles(make, labels)
    if dataloader_workers:
        check_dataset_dataloader(make, labels, dataloader_workers)
