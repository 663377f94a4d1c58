"""Lightning: a callback that keeps torch_balance datasets and samplers on the trainer's epoch.

Lightning calls ``set_epoch`` on the sampler of the train DataLoader (for torch_balance
samplers and batch samplers that is enough), but never on the dataset. With a
:class:`~torch_balance.ResampledDataset`, :class:`~torch_balance.SMOTEDataset` or a balanced
stream add
``SetEpochCallback()`` to ``Trainer(callbacks=[...])``; it sets the epoch of every
torch_balance object in the train DataLoader at the start of each training epoch, before
Lightning creates the epoch's iterator. Works with ``lightning`` and ``pytorch_lightning``.
"""

from __future__ import annotations

from typing import Any

from torch_balance.integrations import EpochSetter

try:
    from lightning.pytorch import Callback
except ImportError:  # pragma: no cover - the older package name
    try:
        from pytorch_lightning import Callback  # type: ignore[assignment]
    except ImportError as error:
        raise ImportError(
            "torch_balance.integrations.lightning needs Lightning: pip install lightning"
        ) from error

__all__ = ["SetEpochCallback"]


class SetEpochCallback(Callback):
    """Set the epoch of every torch_balance object in the train DataLoader each epoch.

    Args:
        warn_if_unused: Warn once when the train DataLoader holds no torch_balance object.
    """

    def __init__(self, warn_if_unused: bool = True) -> None:
        self._set = EpochSetter(warn_if_unused)

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self._set(trainer.train_dataloader, trainer.current_epoch)
