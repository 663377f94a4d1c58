"""What the sampler and dataset checks share: the labels, the index dataset, small helpers."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from typing import Any, cast

import numpy as np
import torch
from torch.utils.data import Dataset

from torch_balance._validation import check_bool, check_index, check_int, fail

__all__ = ["Factory", "IndexDataset", "conformance_labels"]

Factory = Callable[..., Any]


def conformance_labels(kind: str = "int") -> np.ndarray:
    """A small long-tailed label vector (counts 40, 20, 10, 5, 3) in a fixed shuffled order.

    Example:
        >>> from collections import Counter
        >>> sorted(Counter(conformance_labels().tolist()).values())
        [3, 5, 10, 20, 40]
    """
    if not isinstance(kind, str) or kind not in ("int", "str"):
        fail("kind", "'int' or 'str'", kind)
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
        self.n = int(check_int("n", n, minimum=0, maximum=2**62))

    def __len__(self) -> int:
        """The dataset length, ``n``."""
        return self.n

    def __getitem__(self, i: int) -> int:
        """The index itself (refused outside ``[0, n)``: a sampler's index out of range shows)."""
        index = check_index(i, self.n)
        if int(i) < 0:
            fail("index", f"an integer in [0, {self.n})", i, "A sampler yielded a negative index")
        return index


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


def _check_inputs(make: Any, labels: Any, options: dict[str, Any] | None = None) -> np.ndarray:
    """The checks' own arguments: a callable factory and a label vector (returned as an
    array); ``options`` are ``check_counts`` and ``dataloader_workers`` where given."""
    from torch_balance.labels import as_label_array

    if not callable(make):
        fail(
            "make",
            "a factory make(labels, **options) that builds the object to check",
            make,
            "Pass e.g. lambda labels, **options: MySampler(labels, **options)",
            kind=TypeError,
        )
    for name, value in (options or {}).items():
        if name == "check_counts":
            check_bool(name, value)
        else:
            check_int(name, value, minimum=1 if name == "workers" else 0, maximum=64)
    return as_label_array(labels, "labels")


def _build(
    make: Factory,
    labels: Any,
    seed: int = 3,
    world: int = 1,
    rank: int = 0,
    drop_last: bool = False,
) -> Any:
    _check_inputs(make, labels)
    try:
        return make(labels, seed=seed, num_replicas=world, rank=rank, drop_last=drop_last)
    except TypeError as error:
        if "argument" not in str(error):
            raise
        raise AssertionError(
            "conformance: the factory is called as make(labels, seed=..., num_replicas=..., "
            f"rank=..., drop_last=...) and raised TypeError: {error}. Pass the options on "
            "(make = lambda labels, **options: MySampler(labels, **options)), or accept and "
            "ignore those that do not apply"
        ) from error


def _same(a: Any, b: Any) -> bool:
    """Equal items, tensors compared by value (an item may be a tensor, a tuple or a number)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, tuple | list) and isinstance(b, tuple | list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _dataset_epoch(dataset: Any, epoch: int) -> list[Any]:
    dataset.set_epoch(epoch)
    return [dataset[i] for i in range(len(dataset))]
