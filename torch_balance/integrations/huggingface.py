"""Hugging Face ``Trainer``: a callback that keeps torch_balance datasets on the epoch.

The ``Trainer`` sets the epoch of its DataLoader, which reaches a torch_balance sampler you
return from ``_get_train_sampler`` but not a :class:`~torch_balance.ResampledDataset` or
:class:`~torch_balance.SMOTEDataset` given as ``train_dataset``. Add ``SetEpochCallback()``
to ``Trainer(callbacks=[...])``: at the start of each epoch (before the ``Trainer`` creates
the epoch's iterator) it sets the epoch of every torch_balance object in the train DataLoader.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from torch_balance._validation import fail
from torch_balance.integrations import EpochSetter

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
