"""The conformance suite every torch_balance sampler passes, public so you can run it on yours.

:func:`check_sampler` takes a factory ``make(labels, **options) -> sampler`` and checks
length, index bounds, determinism in (seed, epoch), that a new epoch changes the order, that
the composition matches ``target_counts``, resume mid-epoch and into the next epoch,
sharding across ranks, pickling, a DataLoader with worker processes, and that the global
RNGs of torch, numpy and ``random`` are left alone.

Options passed to the factory: ``seed``, ``num_replicas``, ``rank`` and ``drop_last``.
Batch samplers (yielding lists of indices) are checked on their flattened output and must
shard whole batches.
"""

from __future__ import annotations

import pickle
import random
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any, cast

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

__all__ = ["IndexDataset", "check_sampler", "conformance_labels"]

Factory = Callable[..., Any]


def conformance_labels(kind: str = "int") -> np.ndarray:
    """A small long-tailed label vector (counts 40, 20, 10, 5, 3) in a fixed shuffled order.

    Example:
        >>> sorted(Counter(conformance_labels().tolist()).values())
        [3, 5, 10, 20, 40]
    """
    counts = [40, 20, 10, 5, 3]
    labels = np.repeat(np.arange(len(counts)), counts)
    order = torch.randperm(labels.shape[0], generator=torch.Generator().manual_seed(7)).numpy()
    labels = labels[order]
    if kind == "str":
        names = np.array(["ant", "bee", "cat", "dog", "eel"], dtype=object)
        return names[labels]
    return labels


class IndexDataset(Dataset):
    """Item ``i`` is ``i``: what a DataLoader hands out shows the sampler's order."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        return i


def _flat(items: Iterable[Any]) -> list[int]:
    out: list[int] = []
    for item in items:
        if isinstance(item, list):
            out.extend(int(i) for i in item)
        else:
            out.append(int(item))
    return out


def _epoch(sampler: Any, epoch: int) -> list[Any]:
    sampler.set_epoch(epoch)
    return list(sampler)


def _require(condition: bool, what: str) -> None:
    if not condition:
        raise AssertionError(f"conformance: {what}")


def _rng_snapshot() -> tuple[Any, ...]:
    numpy_state = cast(Any, np.random.get_state())
    return (torch.get_rng_state(), numpy_state[1].copy(), random.getstate())


def _same_rng(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    return bool(torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2])


def check_sampler(
    make: Factory,
    labels: Any = None,
    *,
    check_counts: bool = True,
    dataloader_workers: int = 2,
) -> None:
    """Run the conformance checks on the sampler built by ``make``.

    Args:
        make: ``make(labels, seed=..., num_replicas=..., rank=..., drop_last=...)``.
        labels: The labels to build it on; default :func:`conformance_labels`.
        check_counts: Compare the composition of an epoch with ``target_counts``.
        dataloader_workers: Worker processes for the DataLoader check (0 to skip it).

    Raises:
        AssertionError: Naming the first property that failed.

    Example:
        >>> from torch_balance import BalancedSampler
        >>> check_sampler(lambda y, **kw: BalancedSampler(y, "under", **kw), dataloader_workers=0)
    """
    labels = conformance_labels() if labels is None else labels
    label_array = np.asarray(labels)
    n = label_array.shape[0]
    before = _rng_snapshot()
    sampler = make(labels, seed=3, num_replicas=1, rank=0, drop_last=False)
    first = _epoch(sampler, 0)
    flat = _flat(first)
    _require(_same_rng(before, _rng_snapshot()), "building or iterating touched a global RNG")

    # length and bounds
    _require(len(first) == len(sampler), f"yielded {len(first)} items but len() is {len(sampler)}")
    _require(all(0 <= i < n for i in flat), "an index is out of range")

    # determinism in (seed, epoch), and a new epoch changes the order
    again = make(labels, seed=3, num_replicas=1, rank=0, drop_last=False)
    _require(_epoch(again, 0) == first, "the same seed and epoch gave another order")
    _require(_epoch(again, 5) == _epoch(sampler, 5), "epoch 5 differs between equal samplers")
    _require(_epoch(sampler, 1) != first, "epoch 1 repeats epoch 0")
    other_seed = make(labels, seed=4, num_replicas=1, rank=0, drop_last=False)
    _require(_epoch(other_seed, 0) != first, "another seed gave the same order")
    fresh = make(labels, seed=3, num_replicas=1, rank=0, drop_last=False)
    _require(
        list(fresh) == first and list(fresh) == _epoch(again, 1),
        "a complete pass does not advance to the next epoch",
    )

    # composition
    if check_counts and hasattr(sampler, "target_counts"):
        drawn = Counter(label_array[flat].tolist())
        planned = {k: v for k, v in sampler.target_counts(0).items() if v}
        _require(dict(drawn) == planned, f"epoch holds {dict(drawn)}, plan says {planned}")

    # resume mid-epoch, at the end, and into the next epoch
    for cut in (0, 1, len(first) // 2, len(first)):
        run = make(labels, seed=3, num_replicas=1, rank=0, drop_last=False)
        run.set_epoch(2)
        expected_rest = list(run)[cut:]
        run.set_epoch(2)
        iterator = iter(run)
        for _ in range(cut):
            next(iterator)
        state = pickle.loads(pickle.dumps(run.state_dict()))
        resumed = make(labels, seed=3, num_replicas=1, rank=0, drop_last=False)
        resumed.load_state_dict(state)
        resumed.set_epoch(2)
        _require(list(resumed) == expected_rest, f"resume after {cut} items repeats or skips")
        _require(list(resumed) == _epoch(again, 3), "after a resumed epoch the next is wrong")
    other = make(
        np.concatenate([label_array, label_array[:7]]),
        seed=3,
        num_replicas=1,
        rank=0,
        drop_last=False,
    )
    try:
        other.load_state_dict(sampler.state_dict())
    except ValueError:
        pass
    else:
        raise AssertionError("conformance: a state saved for other labels was accepted")

    # sharding: equal lengths, and the shards together are the padded or trimmed epoch
    for world in (2, 3):
        for drop_last in (False, True):
            shards = [
                _epoch(make(labels, seed=3, num_replicas=world, rank=r, drop_last=drop_last), 0)
                for r in range(world)
            ]
            lengths = {len(s) for s in shards}
            _require(len(lengths) == 1, f"ranks got {sorted(len(s) for s in shards)} items")
            whole = first
            merged = [item for step in zip(*shards, strict=True) for item in step]
            size = len(merged)
            if drop_last:
                _require(merged == whole[:size], "drop_last shards are not the epoch's head")
            else:
                padded = (whole * (size // max(len(whole), 1) + 1))[:size]
                _require(merged == padded, "padded shards are not the epoch plus its head")

    # pickling
    _require(
        _epoch(pickle.loads(pickle.dumps(sampler)), 4) == _epoch(sampler, 4),
        "a pickled copy draws another epoch",
    )

    # DataLoader with worker processes
    if dataloader_workers:
        sampler.set_epoch(6)
        expected = _flat(list(sampler))
        sampler.set_epoch(6)
        batched = isinstance(first[0], list) if first else False
        if batched:
            loader = DataLoader(
                IndexDataset(n), batch_sampler=sampler, num_workers=dataloader_workers
            )
        else:
            loader = DataLoader(
                IndexDataset(n), sampler=sampler, batch_size=8, num_workers=dataloader_workers
            )
        got = [int(i) for batch in loader for i in batch]
        _require(got == expected, "a DataLoader with workers saw another order")
