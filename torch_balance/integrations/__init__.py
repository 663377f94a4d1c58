"""Trainer integrations: keep every torch_balance object on the trainer's epoch.

Trainers call ``set_epoch`` on the sampler they iterate, never on the dataset, so a
:class:`~torch_balance.ResampledDataset`, a :class:`~torch_balance.SMOTEDataset` or a balanced
stream (:class:`~torch_balance.BalancedIterableDataset`, :class:`~torch_balance.BalancedMix`)
under Lightning or the Hugging Face ``Trainer`` would serve the same draw every epoch. The callbacks
here fix that:

* :class:`torch_balance.integrations.lightning.SetEpochCallback` (Lightning),
* :class:`torch_balance.integrations.huggingface.SetEpochCallback` (``transformers.Trainer``),

and :func:`set_epoch` does the same in a loop of your own. Lightning, accelerate and
transformers are optional: each callback imports its trainer only when used.
"""

from __future__ import annotations

import warnings
from typing import Any

from torch_balance._epoch import EpochShell, check_epoch
from torch_balance._validation import check_bool

__all__ = ["EpochSetter", "epoch_holders", "set_epoch"]

# Attributes through which loaders, wrappers and trainers hold what they iterate: the torch
# DataLoader, accelerate's DataLoaderShard/BatchSamplerShard, Lightning's CombinedLoader,
# Subset and ConcatDataset, and our own wrappers.
_LINKS = (
    "dataset",
    "datasets",
    "sampler",
    "batch_sampler",
    "base_dataloader",
    "iterables",
)


def _holds_epoch(obj: Any) -> bool:
    from torch_balance.datasets import ResampledDataset
    from torch_balance.smote import SMOTEDataset
    from torch_balance.streams._shell import StreamShell

    return isinstance(obj, EpochShell | ResampledDataset | SMOTEDataset | StreamShell)


def epoch_holders(root: Any) -> list[Any]:
    """Every torch_balance sampler, batch sampler and dataset wrapper reachable from ``root``.

    ``root`` may be a DataLoader (also one prepared by accelerate), a dataset, a sampler, or a
    list, tuple or dict of them (as Lightning's ``trainer.train_dataloader`` can be).

    Example:
        >>> from torch.utils.data import DataLoader
        >>> from torch_balance import RandomOverSampler, ResampledDataset
        >>> data = ResampledDataset(list(range(5)), labels=[0, 0, 0, 1, 1])
        >>> loader = DataLoader(data, sampler=RandomOverSampler([0, 0, 0, 1, 1, 1]))
        >>> sorted(type(h).__name__ for h in epoch_holders(loader))
        ['RandomOverSampler', 'ResampledDataset']
    """
    found: dict[int, Any] = {}
    seen: set[int] = set()  # every object once: cycles end, and no depth limit is needed
    stack: list[Any] = [root]
    while stack:
        obj = stack.pop()
        if obj is None or id(obj) in seen:
            continue
        seen.add(id(obj))
        if _holds_epoch(obj):
            found[id(obj)] = obj
        if isinstance(obj, list | tuple):
            stack.extend(obj)
            continue
        if isinstance(obj, dict):
            stack.extend(obj.values())
            continue
        if isinstance(obj, EpochShell):
            continue  # its ``sampler`` is only a handle back to itself
        for name in _LINKS:
            try:
                child = getattr(obj, name, None)
            except Exception:  # a property that cannot answer here is not a link
                continue
            if child is not None and not isinstance(child, str | bytes | int | float):
                stack.append(child)
    return list(found.values())


def set_epoch(root: Any, epoch: int) -> list[Any]:
    """Call ``set_epoch(epoch)`` on every torch_balance object reachable from ``root``.

    Call it at the start of each epoch, before ``iter(loader)`` (a loader prefetches).

    Returns:
        The objects whose epoch was set.

    Example:
        >>> from torch_balance import ResampledDataset
        >>> data = ResampledDataset(list(range(5)), "under", labels=[0, 0, 0, 1, 1])
        >>> [type(h).__name__ for h in set_epoch([data], 3)], data.epoch
        (['ResampledDataset'], 3)
    """
    epoch = check_epoch(epoch)
    holders = epoch_holders(root)
    for holder in holders:
        holder.set_epoch(epoch)
    return holders


class EpochSetter:
    """What both trainer callbacks do: :func:`set_epoch`, with one warning if it finds nothing.

    Example:
        >>> import warnings
        >>> setter = EpochSetter(warn_if_unused=True)
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     setter([], 0), setter([], 1)
        ([], [])
        >>> len(caught)
        1
    """

    def __init__(self, warn_if_unused: bool) -> None:
        self.warn_if_unused = check_bool("warn_if_unused", warn_if_unused)
        self._warned = False

    def __call__(self, root: Any, epoch: int) -> list[Any]:
        holders = set_epoch(root, epoch)
        if not holders and self.warn_if_unused and not self._warned:
            self._warned = True
            warnings.warn(
                "SetEpochCallback: the train DataLoader holds no torch_balance sampler or "
                "dataset, so there is nothing to advance",
                UserWarning,
                stacklevel=3,
            )
        return holders
