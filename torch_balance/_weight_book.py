"""The weights a :class:`~torch_balance.WeightedSampler` draws with: the bookkeeping
(:class:`WeightBook`: the epoch's weights, newer ones waiting for the next epoch, their
digests), and the reports that :meth:`~torch_balance.WeightedSampler.update_weights`
combines into new weights (:func:`check_update`, :func:`combine_reports`).
"""

from __future__ import annotations

import hashlib
import numbers
from typing import Any, Literal

import numpy as np
import torch

from torch_balance._validation import Text, fail, real_values
from torch_balance.draws.weighted import ExactLayout

__all__ = ["REDUCE", "Reduce", "WeightBook", "check_update", "combine_reports", "weights_digest"]


def weights_digest(weights: torch.Tensor) -> str:
    """A short digest of float64 weights: what a saved state and the rank check compare.

    Example:
        >>> a = weights_digest(torch.tensor([1.0, 2.0], dtype=torch.float64))
        >>> a == weights_digest(torch.tensor([1.0, 2.0], dtype=torch.float64)), len(a)
        (True, 32)
    """
    h = hashlib.blake2b(digest_size=16)
    h.update(str(weights.shape[0]).encode() + b"\x00")
    h.update(weights.contiguous().numpy().tobytes())
    return h.hexdigest()


Reduce = Literal["mean", "sum", "max", "min"]
REDUCE = ("mean", "sum", "max", "min")


def check_update(n: int, indices: Any, values: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """``(indices, values)`` of :meth:`WeightedSampler.update_weights` as int64 and float64."""
    if isinstance(indices, torch.Tensor):
        if indices.is_floating_point() or indices.is_complex() or indices.dtype == torch.bool:
            fail(
                "indices", "integer sample indices", Text(f"dtype {indices.dtype}"), kind=TypeError
            )
        index = indices.detach().to("cpu", torch.int64)
    else:
        if isinstance(indices, (str, bytes)) or not hasattr(indices, "__len__"):
            fail("indices", "a 1-d sequence of sample indices", indices, kind=TypeError)
        array = np.asarray(indices)
        if array.size and (array.dtype.kind not in "iu"):
            fail("indices", "integer sample indices", Text(f"dtype {array.dtype}"), kind=TypeError)
        index = torch.from_numpy(array.astype(np.int64).reshape(array.shape))
    if index.dim() != 1:
        fail("indices", "a 1-d sequence of sample indices", Text(f"shape {tuple(index.shape)}"))
    bad = (index < 0) | (index >= n)
    if bool(bad.any()):
        i = int(bad.nonzero()[0])
        fail(
            "indices",
            f"sample indices in [0, {n})",
            Text(f"{int(index[i])} at position {i}"),
            "Report the dataset indices the loader handed out",
        )
    if isinstance(values, numbers.Real) and not isinstance(values, bool):
        value = torch.full((index.shape[0],), float(values), dtype=torch.float64)
    else:
        value = real_values("values", values).reshape(-1)
    if value.shape[0] != index.shape[0]:
        fail(
            "values",
            f"one value per index ({index.shape[0]})",
            Text(f"{value.shape[0]} values"),
        )
    bad = ~torch.isfinite(value) | (value < 0)
    if bool(bad.any()):
        i = int(bad.nonzero()[0])
        fail("values", "finite values >= 0", Text(f"{float(value[i])!r} at index {i}"))
    return index, value


def combine_reports(index: torch.Tensor, value: torch.Tensor, reduce: str) -> tuple[Any, Any]:
    """One value per reported sample: ``(unique indices, combined values)`` as numpy arrays,
    computed in one fixed order (the same bits on every rank)."""
    idx, val = index.numpy(), value.numpy()
    order = np.argsort(idx, kind="stable")
    idx, val = idx[order], val[order]
    unique, starts, counts = np.unique(idx, return_index=True, return_counts=True)
    if unique.shape[0] == 0:
        return unique, val
    if reduce == "max":
        return unique, np.maximum.reduceat(val, starts)
    if reduce == "min":
        return unique, np.minimum.reduceat(val, starts)
    sums = np.add.reduceat(val, starts)
    return unique, sums if reduce == "sum" else sums / counts


class WeightBook:
    """The weights of the epoch under way (or the next, between epochs) and the newer ones
    set meanwhile, which apply when the next epoch starts; their digests, computed when first
    needed (a pass over the weights); and the exact layout drawn for the current weights.

    Example:
        >>> book = WeightBook(torch.tensor([1.0, 2.0], dtype=torch.float64))
        >>> book.offer(torch.tensor([3.0, 1.0], dtype=torch.float64))
        >>> book.promote(mid_epoch=True); book.current.tolist(), book.latest().tolist()
        ([1.0, 2.0], [3.0, 1.0])
        >>> book.promote(mid_epoch=False); book.current.tolist(), book.next is None
        ([3.0, 1.0], True)
    """

    def __init__(self, values: torch.Tensor) -> None:
        self.current = values
        self._digest: str | None = None
        self.next: torch.Tensor | None = None
        self._next_digest: str | None = None
        self.layout: ExactLayout | None = None

    def promote(self, mid_epoch: bool) -> None:
        """At an epoch's start (not ``mid_epoch``), newer weights apply."""
        if self.next is not None and not mid_epoch:
            self.current, self._digest = self.next, self._next_digest
            self.next = self._next_digest = None
            self.layout = None

    def offer(self, values: torch.Tensor) -> None:
        """Newer weights, for the next epoch."""
        self.next, self._next_digest = values, None

    def restore(self, current: torch.Tensor, later: torch.Tensor | None) -> None:
        """The weights of a checkpoint: those of its epoch, and newer ones (or None)."""
        self.current, self._digest, self.layout = current, None, None
        self.next, self._next_digest = later, None

    def latest(self) -> torch.Tensor:
        """The newest weights (those waiting for the next epoch, if any)."""
        return self.next if self.next is not None else self.current

    def current_digest(self) -> str:
        if self._digest is None:
            self._digest = weights_digest(self.current)
        return self._digest

    def latest_digest(self) -> str:
        if self.next is None:
            return self.current_digest()
        if self._next_digest is None:
            self._next_digest = weights_digest(self.next)
        return self._next_digest
