"""Samplers: the seed, epoch, rank and resume shell around the plan and the draws.

Data flows one way: labels -> :class:`~torch_balance.labels.LabelIndex` -> plan
(:mod:`torch_balance.strategies`) -> draws (:mod:`torch_balance.draws`) -> shard
(:mod:`torch_balance.distributed`) -> indices.
"""

from __future__ import annotations

import itertools
import numbers
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import Sampler

from torch_balance._validation import check_bool, check_int, check_seed, fail
from torch_balance.distributed import iter_shard, resolve_replicas, shard_length
from torch_balance.draws import draw_epoch, shuffle_order
from torch_balance.labels import LabelIndex, get_labels
from torch_balance.strategies import Plan, Strategy, make_plan

__all__ = [
    "BalancedSampler",
    "EpochShell",
    "EpochState",
    "RandomOverSampler",
    "RandomUnderSampler",
    "resolve_labels",
]


def _is_label_vector(data: Any) -> bool:
    """Arrays and tensors are labels; so is a list whose items are labels or label sets.

    A list of samples such as ``[(image, label), ...]`` is a dataset instead.
    """
    if isinstance(data, np.ndarray | torch.Tensor):
        return True
    if not isinstance(data, list | tuple):
        return False
    if not data or not isinstance(data[0], list | tuple | dict):
        return True
    return all(isinstance(v, numbers.Integral | str) for v in data[0])


def resolve_labels(
    dataset_or_labels: Any, label_fn: Callable[[Any, int], Any] | None = None
) -> LabelIndex:
    """Index the labels of a dataset, or of a label vector given directly."""
    if isinstance(dataset_or_labels, LabelIndex):
        return dataset_or_labels
    if label_fn is None and _is_label_vector(dataset_or_labels):
        return LabelIndex(dataset_or_labels)
    return LabelIndex(get_labels(dataset_or_labels, label_fn=label_fn))


class EpochState:
    """Epoch and mid-epoch position shared by every sampler: ``set_epoch`` and resume.

    A complete pass advances the epoch by one, so a sampler used without ``set_epoch`` still
    redraws every epoch; ``set_epoch(e)`` picks the epoch explicitly, as with
    ``DistributedSampler``, and is what DDP training loops should call.
    """

    def __init__(self, seed: int, fingerprint: Callable[[], str], kind: str) -> None:
        self.seed = check_seed(seed)
        self.epoch = 0
        self._fingerprint = fingerprint
        self._kind = kind
        self._resume: tuple[int, int] | None = None  # (epoch, items already yielded)
        self._live: tuple[int, int, int, Any] | None = None  # (epoch, base, size, list iterator)

    def set_epoch(self, epoch: int) -> None:
        epoch = check_int("epoch", epoch, minimum=0)
        if self._resume is not None and self._resume[0] != epoch:
            self._resume = None
        self.epoch = epoch

    def begin(self) -> tuple[int, int]:
        """Start a pass: return ``(epoch, items to skip)``."""
        epoch, skip = self.epoch, 0
        if self._resume is not None and self._resume[0] == epoch:
            skip = self._resume[1]
        self._resume = None
        self._live = (epoch, skip, 0, iter(()))
        return epoch, skip

    def run(self, epoch: int, chunks: Iterator[list[Any]], skip: int) -> Iterator[Any]:
        """Hand out the items of ``chunks`` while keeping count of them.

        The items flow through ``itertools.chain`` (no Python frame per item); the count is
        read from the current chunk's list iterator when a state is asked for.
        """
        return itertools.chain.from_iterable(self._tracked(epoch, chunks, skip))

    def _tracked(self, epoch: int, chunks: Iterator[list[Any]], skip: int) -> Iterator[Any]:
        base = skip
        for chunk in chunks:
            items = iter(chunk)
            self._live = (epoch, base, len(chunk), items)
            yield items
            base += len(chunk)
        self._live = (epoch, base, 0, iter(()))
        if self.epoch == epoch:
            self.epoch = epoch + 1

    def yielded(self) -> tuple[int, int]:
        """``(epoch, items handed out)`` of the current or last pass."""
        if self._live is None:
            if self._resume is not None:
                return self._resume
            return self.epoch, 0
        epoch, base, size, items = self._live
        remaining = items.__length_hint__() if size else 0
        return epoch, base + size - remaining

    def state_dict(self, extra: dict[str, Any]) -> dict[str, Any]:
        epoch, done = self.yielded()
        return {
            "kind": self._kind,
            "seed": self.seed,
            "epoch": epoch,
            "yielded": done,
            "fingerprint": self._fingerprint(),
            **extra,
        }

    def load_state_dict(self, state: dict[str, Any], extra: dict[str, Any], length: int) -> None:
        if not isinstance(state, dict):
            fail("state_dict", "a dict from state_dict()", type(state).__name__, kind=TypeError)
        missing = {"kind", "seed", "epoch", "yielded", "fingerprint"} - set(state)
        if missing:
            fail("state_dict", "a dict from state_dict()", f"a dict without {sorted(missing)}")
        if state["kind"] != self._kind:
            fail("state_dict", f"a state saved by {self._kind}", state["kind"])
        if state["fingerprint"] != self._fingerprint():
            fail(
                "state_dict",
                "a state saved for these labels",
                "a state saved for other labels",
                "Build the sampler on the same dataset it was saved with",
            )
        for key, value in extra.items():
            if state.get(key) != value:
                fail(
                    "state_dict",
                    f"{key}={value!r} as in this sampler",
                    state.get(key),
                    "Resume with the same sampler settings and world size",
                )
        done = check_int("state_dict['yielded']", state["yielded"], minimum=0, maximum=length)
        self.seed = check_seed(state["seed"])
        self.epoch = check_int("state_dict['epoch']", state["epoch"], minimum=0)
        self._resume = (self.epoch, done)
        self._live = None


class EpochShell:
    """``seed``, ``epoch``, ``set_epoch``, ``len`` and resume: the shell every sampler shares.

    A subclass sets ``_state`` (an :class:`EpochState`) and ``_length``, and says in
    ``_own_settings`` what else a saved state must agree on.
    """

    _state: EpochState
    _length: int
    num_replicas: int
    rank: int

    @property
    def seed(self) -> int:
        return self._state.seed

    @property
    def epoch(self) -> int:
        """The epoch the next pass will draw."""
        return self._state.epoch

    def __len__(self) -> int:
        return self._length

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch of the next pass (call it at the start of every epoch in DDP)."""
        self._state.set_epoch(epoch)

    def _own_settings(self) -> dict[str, Any]:
        """What else a saved state must agree on (beyond world size, rank and length)."""
        return {}

    def _settings(self) -> dict[str, Any]:
        return {
            "num_replicas": self.num_replicas,
            "rank": self.rank,
            "length": self._length,
            **self._own_settings(),
        }

    def state_dict(self) -> dict[str, Any]:
        """Where this rank stands: epoch, items handed out, and what they were drawn for."""
        return self._state.state_dict(self._settings())

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Resume from :meth:`state_dict`: the next pass continues where that one stopped.

        Raises:
            ValueError: If the state was saved for other labels, another world size or rank,
                or other settings.
        """
        self._state.load_state_dict(state_dict, self._settings(), self._length)


class BalancedSampler(EpochShell, Sampler[int]):
    """Over- or undersample a dataset at the index level, redrawn every epoch.

    Args:
        dataset_or_labels: A dataset (labels are read with :func:`get_labels`) or a 1-D array,
            tensor or sequence of labels.
        strategy: ``"over"``, ``"under"``, ``"instance"``, ``"sqrt"``, ``"class"``,
            ``Power(q)``, ``Progressive(T)``, ``Deferred(E)`` or a callable
            ``(counts, epoch) -> dict``; see :mod:`torch_balance.strategies`.
        sampling_strategy: imbalanced-learn's ``sampling_strategy`` for ``"over"`` and
            ``"under"``, with exactly its meaning.
        num_samples: Epoch length for power strategies, schedules and callables.
        replacement: Draw each class i.i.d. with replacement instead of walking through it.
        seed: Shared seed; must be the same on every rank.
        num_replicas: Number of ranks; default from ``torch.distributed`` or 1.
        rank: This rank; default from ``torch.distributed`` or 0.
        drop_last: Drop the tail of the epoch so that it divides evenly among ranks, instead of
            padding it.
        label_fn: ``label_fn(dataset, i) -> label``, to read labels a cheap way.

    Raises:
        TypeError: For arguments of the wrong type.
        ValueError: For invalid values, with the fix in the message.

    Example:
        >>> sampler = BalancedSampler([0, 0, 0, 0, 1], "over", seed=1)
        >>> len(sampler), sampler.target_counts()
        (8, {0: 4, 1: 4})
        >>> sorted(sampler)
        [0, 1, 2, 3, 4, 4, 4, 4]
    """

    def __init__(
        self,
        dataset_or_labels: Any,
        strategy: Strategy = "over",
        *,
        sampling_strategy: Any = "auto",
        num_samples: int | None = None,
        replacement: bool = False,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
        drop_last: bool = False,
        label_fn: Callable[[Any, int], Any] | None = None,
    ) -> None:
        self.replacement = check_bool("replacement", replacement)
        self.drop_last = check_bool("drop_last", drop_last)
        self.num_replicas, self.rank = resolve_replicas(num_replicas, rank)
        self.index = resolve_labels(dataset_or_labels, label_fn)
        self.plan: Plan = make_plan(
            self.index, strategy, sampling_strategy=sampling_strategy, num_samples=num_samples
        )
        self.strategy = strategy
        self._length = shard_length(self.plan.length, self.num_replicas, self.drop_last)
        self._state = EpochState(seed, self.index.fingerprint, type(self).__name__)

    def target_counts(self, epoch: int | None = None) -> dict[Any, int]:
        """Per-class composition of one global epoch (all ranks together, before padding).

        Args:
            epoch: Which epoch; default the epoch of the next pass.
        """
        return self.plan.as_dict(self.epoch if epoch is None else epoch)

    def epoch_indices(self, epoch: int | None = None) -> torch.Tensor:
        """The global epoch (before sharding) as one tensor, in iteration order."""
        epoch = self.epoch if epoch is None else check_int("epoch", epoch, minimum=0)
        picks = draw_epoch(self.plan, self.seed, epoch, replacement=self.replacement)
        return picks.index_select(0, shuffle_order(picks.shape[0], self.seed, epoch))

    def __iter__(self) -> Iterator[int]:
        epoch, skip = self._state.begin()
        picks = draw_epoch(self.plan, self.seed, epoch, replacement=self.replacement)
        order = shuffle_order(picks.shape[0], self.seed, epoch)
        chunks = iter_shard(picks, order, self.num_replicas, self.rank, self.drop_last, skip)
        return self._state.run(epoch, chunks, skip)

    def _own_settings(self) -> dict[str, Any]:
        return {"replacement": self.replacement}

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(strategy={self.strategy!r}, num_samples={self.plan.length}, "
            f"classes={self.index.num_classes}, seed={self.seed}, epoch={self.epoch}, "
            f"rank={self.rank}/{self.num_replicas})"
        )


class RandomOverSampler(BalancedSampler):
    """Random oversampling with imbalanced-learn's ``sampling_strategy``, redrawn each epoch.

    Shortcut for ``BalancedSampler(dataset_or_labels, "over", sampling_strategy=...)``.

    Example:
        >>> RandomOverSampler([0, 0, 0, 1, 2], sampling_strategy="minority").target_counts()
        {0: 3, 1: 3, 2: 1}
    """

    def __init__(
        self, dataset_or_labels: Any, sampling_strategy: Any = "auto", **kwargs: Any
    ) -> None:
        if "strategy" in kwargs:
            fail(
                "strategy",
                "no strategy argument (this sampler is 'over')",
                kwargs["strategy"],
                "Use BalancedSampler to choose a strategy",
                kind=TypeError,
            )
        super().__init__(dataset_or_labels, "over", sampling_strategy=sampling_strategy, **kwargs)


class RandomUnderSampler(BalancedSampler):
    """Random undersampling with imbalanced-learn's ``sampling_strategy``, redrawn each epoch.

    Successive epochs walk through each undersampled class, so every sample is used before
    any is used again. Shortcut for ``BalancedSampler(dataset_or_labels, "under", ...)``.

    Example:
        >>> RandomUnderSampler([0, 0, 0, 1, 2]).target_counts()
        {0: 1, 1: 1, 2: 1}
    """

    def __init__(
        self, dataset_or_labels: Any, sampling_strategy: Any = "auto", **kwargs: Any
    ) -> None:
        if "strategy" in kwargs:
            fail(
                "strategy",
                "no strategy argument (this sampler is 'under')",
                kwargs["strategy"],
                "Use BalancedSampler to choose a strategy",
                kind=TypeError,
            )
        super().__init__(dataset_or_labels, "under", sampling_strategy=sampling_strategy, **kwargs)
