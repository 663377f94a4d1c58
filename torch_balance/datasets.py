"""Dataset wrappers: the same epoch plan as the samplers, as an index-level view."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from torch_balance._epoch import check_epoch
from torch_balance._shared_epoch import SameDrawWatch, SharedEpoch
from torch_balance._validation import (
    Text,
    check_bool,
    check_index,
    check_map_style,
    check_seed,
    check_state_dict,
    fail,
)
from torch_balance.draws import EpochDraw, group_sample_weights
from torch_balance.feedback import feedback_of
from torch_balance.strategies import Strategy, plan_for

__all__ = ["ResampledDataset"]


class ResampledDataset(Dataset):
    """A resampled view of ``dataset``: item ``i`` is ``dataset[epoch_indices()[i]]``.

    Nothing is copied: each access reads the underlying dataset, so its transforms run per
    access and every oversampled copy is augmented afresh. Use it when your trainer builds
    its own sampler (``RandomSampler``, ``DistributedSampler``): the balancing lives in the
    dataset, the shuffling in their sampler.

    ``set_epoch(e)`` redraws. The epoch is kept in shared memory, so DataLoader workers,
    persistent ones included, see the new epoch at their next access. Trainers call
    ``set_epoch`` on their sampler, not on the dataset: under Lightning or the Hugging Face
    ``Trainer`` add the ``SetEpochCallback`` of :mod:`torch_balance.integrations`, and in your
    own loop call ``set_epoch`` before ``iter(loader)`` (a loader prefetches), or every epoch
    trains on the same draw.

    Args:
        dataset: Any map-style dataset.
        strategy: As for :class:`~torch_balance.BalancedSampler`.
        sampling_strategy: imbalanced-learn's ``sampling_strategy`` for ``"over"``/``"under"``.
        num_samples: Epoch length for power strategies, schedules and callables.
        replacement: Draw each class i.i.d. with replacement.
        seed: The seed; the mapping is a pure function of (seed, epoch).
        shuffle: Shuffle the mapping (the default). ``False`` groups it by class: only for
            use under a sampler that shuffles (``DataLoader(..., shuffle=True)``, a
            ``DistributedSampler``), or every batch holds one or two classes.
        label_fn: ``label_fn(dataset, i) -> label``, to read labels a cheap way.
        labels: The labels, if you already have them (skips :func:`get_labels`).
        sample_weights: Per-sample weights that choose the members filling each class's
            count, as for :class:`~torch_balance.BalancedSampler`.

    A :class:`~torch_balance.Feedback` strategy is refused here: DataLoader workers hold
    copies of the dataset (persistent ones for the whole run) that would not see its updates.
    Use it with ``BalancedSampler`` or ``StratifiedBatchSampler``, which stay in the main
    process.

    Example:
        >>> base = [("img0", 0), ("img1", 0), ("img2", 0), ("img3", 1)]
        >>> ds = ResampledDataset(base, "over", labels=[0, 0, 0, 1])
        >>> len(ds), sorted(ds.epoch_indices().tolist())
        (6, [0, 1, 2, 3, 3, 3])
        >>> ds[1]
        ('img3', 1)
    """

    def __init__(
        self,
        dataset: Any,
        strategy: Strategy = "over",
        *,
        sampling_strategy: Any = "auto",
        num_samples: int | None = None,
        replacement: bool = False,
        seed: int = 0,
        shuffle: bool = True,
        label_fn: Callable[[Any, int], Any] | None = None,
        labels: Any = None,
        sample_weights: Any = None,
    ) -> None:
        check_map_style("dataset", dataset)
        self.dataset = dataset
        self.seed = check_seed(seed)
        self.shuffle = check_bool("shuffle", shuffle)
        self.replacement = check_bool("replacement", replacement)
        self.index, self.plan = plan_for(
            dataset if labels is None else labels,
            strategy,
            sampling_strategy=sampling_strategy,
            num_samples=num_samples,
            label_fn=label_fn,
        )
        if len(self.index) != len(dataset):
            fail(
                "labels",
                f"one label per sample of the dataset ({len(dataset)})",
                f"{len(self.index)} labels",
            )
        if feedback_of(self.plan) is not None:
            fail(
                "strategy",
                "a strategy whose targets are fixed at construction",
                Text("a Feedback"),
                "DataLoader workers' copies of a dataset would not see its updates: use "
                "BalancedSampler(..., Feedback(...)) or StratifiedBatchSampler instead",
            )
        weights = group_sample_weights(self.index, self.plan, sample_weights)
        self._epoch_draw = EpochDraw(self.plan, weights, self.replacement)
        self._epoch = SharedEpoch()
        self._watch = SameDrawWatch()
        self._drawn_for = -1
        self._source: torch.Tensor | None = None

    @property
    def epoch(self) -> int:
        """The epoch the next read draws from (shared with DataLoader workers)."""
        return self._epoch.get()

    def set_epoch(self, epoch: int) -> None:
        """Redraw for ``epoch``; reaches DataLoader workers through shared memory."""
        self._epoch.set(check_epoch(epoch))
        self._watch.reset()

    def state_dict(self) -> dict[str, int]:
        """The epoch, which a ``torchdata`` ``StatefulDataLoader`` saves with each worker's
        state and loads into the workers before they read again (the position within the
        epoch is the loader's sampler's to keep).

        Example:
            >>> data = ResampledDataset(list(range(4)), "over", labels=[0, 0, 0, 1])
            >>> data.set_epoch(3)
            >>> data.state_dict()
            {'epoch': 3}
        """
        return {"epoch": self.epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the epoch of :meth:`state_dict`.

        Raises:
            TypeError: If ``state_dict`` is not a dict or its ``epoch`` not an integer.
            ValueError: If its ``epoch`` is negative.

        Example:
            >>> data = ResampledDataset(list(range(4)), "over", labels=[0, 0, 0, 1])
            >>> data.load_state_dict({"epoch": 2})
            >>> data.epoch
            2
        """
        check_state_dict("state_dict", state_dict, "ResampledDataset.state_dict()")
        self.set_epoch(check_epoch(state_dict.get("epoch")))

    def target_counts(self, epoch: int | None = None) -> dict[Any, int]:
        """Per-class composition of the epoch (default: the current one)."""
        return self.plan.as_dict(self.epoch if epoch is None else check_epoch(epoch))

    def epoch_indices(self, epoch: int | None = None) -> torch.Tensor:
        """For each item of ``epoch`` (default the current one), its index in ``dataset``."""
        if epoch is not None and check_epoch(epoch) != self.epoch:
            return self._draw(epoch)
        epoch = self.epoch
        if self._source is None or self._drawn_for != epoch:
            self._source, self._drawn_for = self._draw(epoch), epoch
        return self._source

    def _draw(self, epoch: int) -> torch.Tensor:
        if not self.shuffle:
            return self._epoch_draw.picks(self.seed, epoch)
        picks, order = self._epoch_draw.shuffled(self.seed, epoch)
        return picks.index_select(0, order)

    @property
    def labels(self) -> np.ndarray:
        """The label of every item of this epoch."""
        return self.index.labels[self.epoch_indices().numpy()]

    def __len__(self) -> int:
        """The epoch length, the plan's total."""
        return self.plan.length

    def __getitem__(self, i: int) -> Any:
        """The wrapped dataset's item at position ``i`` of the current epoch."""
        self._watch.read("ResampledDataset", self.plan.length, self._epoch)
        return self.dataset[int(self.epoch_indices()[check_index(i, self.plan.length)])]

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_source"], state["_drawn_for"] = None, -1
        return state

    def __repr__(self) -> str:
        return (
            f"ResampledDataset({type(self.dataset).__name__}, length={len(self)}, "
            f"classes={self.index.num_classes}, seed={self.seed}, epoch={self.epoch})"
        )
