"""Hugging Face ``Trainer``: a callback that keeps torch_balance datasets on the epoch.

The ``Trainer`` sets the epoch of its DataLoader, which reaches a torch_balance sampler you
return from ``_get_train_sampler`` but not a :class:`~torch_balance.ResampledDataset` or
:class:`~torch_balance.SMOTEDataset` given as ``train_dataset``. Add ``SetEpochCallback()``
to ``Trainer(callbacks=[...])``: at the start of each epoch (before the ``Trainer`` creates
the epoch's iterator) it sets the epoch of every torch_balance object in the train DataLoader.

The ``Trainer`` calls ``on_epoch_begin`` before it makes each epoch's iterator, the first
epoch of a resumed run included (before it skips the batches already trained), so a resumed
run draws what the uninterrupted one did, with or without DataLoader workers. One case is
not exact, and the callback warns of it when training begins: a balanced stream read by
several workers whose shares are not multiples of the batch size. Each worker then ends with
a short batch, the loader makes more batches than ``len()`` counts, and the ``Trainer``, which
plans its steps from ``len()``, leaves some out or (transformers 4) resumes off by them.
"""

from __future__ import annotations

import math
import numbers
import warnings
from typing import Any

from torch_balance._validation import fail
from torch_balance.integrations import EpochSetter, epoch_holders

try:
    from transformers import TrainerCallback
except ImportError as error:
    raise ImportError(
        "torch_balance.integrations.huggingface needs transformers: pip install transformers"
    ) from error

__all__ = ["SetEpochCallback"]


class SetEpochCallback(TrainerCallback):
    """Set the epoch of every torch_balance object in the train DataLoader each epoch.

    The epoch is the ``Trainer``'s own (``int(state.epoch)`` at the epoch's start), so a run
    resumed from a checkpoint draws the epochs the uninterrupted run would have drawn.

    Args:
        warn_if_unused: Warn once when the train DataLoader holds no torch_balance object.
    """

    def __init__(self, warn_if_unused: bool = True) -> None:
        self._set = EpochSetter(warn_if_unused)

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Warn when a stream's workers end in short batches (see the module text)."""
        note = _short_batches(kwargs.get("train_dataloader"))
        if note:
            warnings.warn(f"SetEpochCallback: {note}", UserWarning, stacklevel=2)

    def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Set the epoch of every torch_balance object in the train DataLoader."""
        # state.epoch is fractional progress; at an epoch's start it is that epoch's number
        epoch = state.epoch or 0.0
        if (
            isinstance(epoch, bool)
            or not isinstance(epoch, numbers.Real)
            or not math.isfinite(epoch)
            or epoch < 0
        ):
            fail(
                "state.epoch",
                "a finite number >= 0 (the Trainer's progress in epochs)",
                state.epoch,
                "A checkpoint's trainer_state.json may hold a bad epoch; fix or remove it",
            )
        self._set(kwargs.get("train_dataloader"), math.floor(float(epoch) + 1e-6))


def _short_batches(loader: Any) -> str | None:
    """Why ``loader`` makes more batches per epoch than ``len(loader)`` counts, or None.

    That happens when several DataLoader workers read a balanced stream and a worker's share
    of the epoch is not a multiple of the batch size: each worker's last batch is short.

    Example:
        >>> from torch.utils.data import DataLoader
        >>> from torch_balance import BalancedIterableDataset
        >>> data = [(i, i % 2) for i in range(12)]
        >>> stream = BalancedIterableDataset(data, "over", epoch_length=10)
        >>> _short_batches(DataLoader(stream, batch_size=5, num_workers=2)) is None
        True
        >>> print(_short_batches(DataLoader(stream, batch_size=4, num_workers=2)))
        ... # doctest: +ELLIPSIS
        BalancedIterableDataset: its 2 DataLoader workers emit 5, 5 samples per epoch, ...
    """
    from torch_balance.sharding import current_ranks
    from torch_balance.streams._shell import StreamShell
    from torch_balance.streams.sources import Slot

    workers = getattr(loader, "num_workers", 0)
    size = getattr(loader, "batch_size", None)
    if not isinstance(workers, int) or workers < 2 or not isinstance(size, int) or size < 1:
        return None
    for stream in epoch_holders(loader):
        if not isinstance(stream, StreamShell):
            continue
        world, rank = current_ranks(*stream._requested)
        slots = [Slot(rank, world, w, workers) for w in range(workers)]
        shares = [stream._pass_length(stream.epoch, slot) for slot in slots]
        if any(share is None for share in shares):
            continue  # an open-ended stream: the loader has no len() to disagree with
        made = sum(-(-share // size) for share in shares if share is not None)
        counted = -(-sum(share for share in shares if share is not None) // size)
        if made > counted:
            return (
                f"{type(stream).__name__}: its {workers} DataLoader workers emit "
                f"{', '.join(str(share) for share in shares)} samples per epoch, not multiples "
                f"of the batch size {size}, so the loader makes {made} batches per epoch where "
                f"len() counts {counted}. The Trainer plans its steps from len(): it leaves "
                "batches out, and a run resumed from a checkpoint may not match the "
                "uninterrupted one. Pick a batch size that divides each worker's share, or an "
                "epoch length that is a multiple of batch size x workers x ranks."
            )
    return None
