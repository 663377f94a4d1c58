"""Lightning: a callback that keeps torch_balance datasets and samplers on the trainer's epoch.

Lightning calls ``set_epoch`` on the sampler of the train DataLoader (for torch_balance
samplers and batch samplers that is enough), but never on the dataset. With a
:class:`~torch_balance.ResampledDataset`, :class:`~torch_balance.SMOTEDataset` or a balanced
stream add
``SetEpochCallback()`` to ``Trainer(callbacks=[...])``; it sets the epoch of every
torch_balance object in the train DataLoader at the start of each training epoch, before
Lightning creates the epoch's iterator. Works with ``lightning`` and ``pytorch_lightning``.

The first epoch of every ``fit`` is the exception Lightning makes: it creates that epoch's
iterator (and, with DataLoader workers or a loader without a length, starts reading it)
before any callback hook runs, and a fit resumed from a checkpoint runs its first epoch
without ``on_train_epoch_start``. So at ``on_train_start`` the callback sets the epoch the fit
is about to train and loads the saved positions, and where the iterator was made with another
epoch or position it makes the iterator again, as Lightning does at every later epoch.
"""

from __future__ import annotations

import warnings
from typing import Any

from torch.utils.data import DataLoader

from torch_balance._epoch import EpochShell
from torch_balance._validation import Text, check_int, check_state_dict, fail
from torch_balance.integrations import EpochSetter, epoch_holders

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
    """Set the epoch of every torch_balance object in the train DataLoader each epoch, and
    resume its samplers mid-epoch.

    Lightning saves the state of a ``StatefulDataLoader`` in its checkpoints, but a plain
    ``DataLoader`` has none: resumed mid-epoch, Lightning restarts the epoch's iterator and
    trains the batches that were left, which would be the epoch's *first* batches again. This
    callback's own state (saved by Lightning in the checkpoint, from rank 0) records where the
    torch_balance samplers and batch samplers of a plain train DataLoader stood, counted from
    the batches Lightning completed (not from what the loader fetched ahead), and the resumed
    fit continues them from there. States are the same on every rank, so rank 0's loads on all.

    Under ``ModelParallelStrategy`` it also hands the strategy's data-parallel group to samplers
    built without ranks or ``process_group``, so tensor-parallel peers draw the same batches.

    Args:
        warn_if_unused: Warn once when the train DataLoader holds no torch_balance object.
    """

    def __init__(self, warn_if_unused: bool = True) -> None:
        self._set = EpochSetter(warn_if_unused)
        self._trainer: Any = None
        self._pending: list[dict[str, Any]] | None = None

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        """Remember the trainer, whose loader and progress the state is read from."""
        self._trainer = trainer

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        """Hand resumed positions to the samplers before the first batch is drawn."""
        # Resumed mid-epoch, Lightning skips on_train_epoch_start for that epoch: the saved
        # positions go in here, before the first batch is drawn.
        self._trainer = trainer
        _adopt_data_parallel(trainer)
        loader = trainer.train_dataloader
        epoch = int(trainer.current_epoch)
        # Lightning's own samplers (a DistributedSampler it put in) get their epoch from it only
        # after this hook: the iterator made again below needs theirs now
        held = [*epoch_holders(loader), *_loader_samplers(loader)]
        stale = any(getattr(h, "epoch", epoch) != epoch for h in held)
        for sampler in _loader_samplers(loader):
            sampler.set_epoch(epoch)
        self._set(loader, epoch)
        done = _resumed_after(trainer)
        if hasattr(loader, "state_dict"):
            # a StatefulDataLoader loaded the state of a pass that had ended (a checkpoint at
            # an epoch's last batch): this epoch is a new pass, not the empty rest of that one
            # (with workers the loaded state is theirs: only a stale epoch here says so)
            if not done and (stale or (trainer.ckpt_path is not None and not _workers(trainer))):
                _restart_iterator(trainer)
        elif self._resume(trainer) or stale:
            _restart_iterator(trainer)
        unplaced = [type(h).__name__ for h in epoch_holders(loader) if not _keeps_place(h)]
        if done and unplaced and not hasattr(loader, "state_dict"):
            warnings.warn(
                f"SetEpochCallback: resumed after batch {done} of epoch {epoch} with a plain "
                f"DataLoader, whose {', '.join(unplaced)} keeps no position: Lightning restarts "
                "its pass, so this epoch trains its first batches again. Use torchdata's "
                "StatefulDataLoader to resume mid-epoch exactly (its state holds the position)",
                UserWarning,
                stacklevel=2,
            )

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        """Set the epoch of every torch_balance object in the train DataLoader."""
        self._trainer = trainer
        _adopt_data_parallel(trainer)
        self._set(trainer.train_dataloader, trainer.current_epoch)
        self._resume(trainer)

    def _resume(self, trainer: Any) -> bool:
        """Load the saved positions of this epoch's samplers; whether any was loaded."""
        pending, self._pending = self._pending, None
        if not pending:
            return False
        holders = epoch_holders(trainer.train_dataloader)
        samplers = [h for h in holders if isinstance(h, EpochShell)]
        loaded = False
        for sampler, state in zip(samplers, pending, strict=False):
            if state.get("epoch") == trainer.current_epoch:
                sampler.load_state_dict(state)
                loaded = True
        return loaded

    def state_dict(self) -> dict[str, Any]:
        """The positions of the train DataLoader's samplers, counted from completed batches."""
        trainer = self._trainer
        loader = getattr(trainer, "train_dataloader", None) if trainer is not None else None
        if not isinstance(loader, DataLoader) or hasattr(loader, "state_dict"):
            return {}  # a StatefulDataLoader's state is Lightning's to save
        # batches whose step ran (saved from on_train_batch_end, before Lightning counts the
        # batch as completed); the loader may have fetched further ahead
        done = _batches_done(trainer)
        states = []
        for holder in epoch_holders(loader):
            if not isinstance(holder, EpochShell):
                continue
            per_batch = loader.batch_size if loader.sampler is holder else 1
            state = holder.state_dict()
            total = state["global_length"]
            state["epoch"] = int(trainer.current_epoch)
            state["position"] = min(done * int(per_batch or 1) * holder.num_replicas, total)
            states.append(state)
        return {"samplers": states}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Keep the saved sampler positions until the resumed fit starts."""
        check_state_dict("state_dict", state_dict, "SetEpochCallback.state_dict()")
        samplers = state_dict.get("samplers")
        if samplers is not None:
            name = "state_dict['samplers']"
            if not isinstance(samplers, list):
                fail(
                    name, "a list of sampler states", Text(type(samplers).__name__), kind=TypeError
                )
            for i, state in enumerate(samplers):
                if not isinstance(state, dict):
                    fail(f"{name}[{i}]", "a sampler state (a dict)", state, kind=TypeError)
                check_int(f"{name}[{i}]['epoch']", state.get("epoch"), minimum=0)
        self._pending = list(samplers) if samplers else None


def _loader_samplers(root: Any) -> list[Any]:
    """The samplers Lightning sets the epoch of, in each train DataLoader (``sampler`` and
    ``batch_sampler.sampler``)."""
    loaders = root if isinstance(root, (list, tuple)) else [root]
    if isinstance(root, dict):
        loaders = list(root.values())
    found = []
    for loader in loaders:
        for sampler in (
            getattr(loader, "sampler", None),
            getattr(getattr(loader, "batch_sampler", None), "sampler", None),
        ):
            if callable(getattr(sampler, "set_epoch", None)) and sampler not in found:
                found.append(sampler)
    return found


def _keeps_place(holder: Any) -> bool:
    """Whether the callback's state resumes ``holder`` mid-epoch (a sampler, not a dataset)."""
    return isinstance(holder, EpochShell)


def _batches_done(trainer: Any) -> int:
    """Batches of the current epoch Lightning counts as processed (0 at an epoch's start)."""
    loop = getattr(getattr(trainer, "fit_loop", None), "epoch_loop", None)
    return int(loop.batch_progress.current.processed) if loop is not None else 0


def _resumed_after(trainer: Any) -> int:
    """The batch of the current epoch a fit resumed after, 0 at an epoch's start (Lightning
    still counts the batches of a finished epoch when the checkpoint was at its last one)."""
    done = _batches_done(trainer)
    total = getattr(trainer, "num_training_batches", float("inf"))
    return done if done < total else 0


def _workers(trainer: Any) -> bool:
    """Whether a train DataLoader of the fit loop has worker processes."""
    fetcher = getattr(getattr(trainer, "fit_loop", None), "_data_fetcher", None)
    loaders = getattr(getattr(fetcher, "combined_loader", None), "flattened", None) or []
    return any(getattr(loader, "num_workers", 0) for loader in loaders)


def _restart_iterator(trainer: Any) -> None:
    """Make the fit loop's train iterator again, as Lightning does before every epoch after
    a fit's first: the one it made before any hook ran holds another epoch or position.

    Only where no DataLoader workers were started: with workers, forking a second set while
    the first starts was seen to leave a worker waiting forever on a lock of the interpreter
    (CPython 3.11), so that case is said, not redone."""
    fetcher = getattr(getattr(trainer, "fit_loop", None), "_data_fetcher", None)
    if fetcher is None or _workers(trainer):
        warnings.warn(
            "SetEpochCallback: Lightning made this fit's first train iterator (and its "
            "DataLoader workers read ahead) before the callback could set the resumed epoch "
            f"{trainer.current_epoch} or position, so this epoch's first batches may come "
            "from the wrong draw. Resume with num_workers=0 for an exact first epoch (later "
            "epochs are exact either way)",
            UserWarning,
            stacklevel=3,
        )
        return
    iter(fetcher)


def _adopt_data_parallel(trainer: Any) -> None:
    """Under ``ModelParallelStrategy`` the strategy states the data-parallel group (its mesh's
    ``"data_parallel"`` dimension, from which Lightning builds its own samplers): samplers left
    to find their ranks take it, so tensor-parallel peers get the same batches."""
    try:
        from lightning.pytorch.strategies import ModelParallelStrategy
    except ImportError:  # pragma: no cover - Lightning before 2.4
        return
    strategy = getattr(trainer, "strategy", None)
    if not isinstance(strategy, ModelParallelStrategy):
        return
    group = strategy.device_mesh["data_parallel"]
    for holder in epoch_holders(getattr(trainer, "train_dataloader", None)):
        told = holder._requested != (None, None) if isinstance(holder, EpochShell) else True
        if isinstance(holder, EpochShell) and not told and holder.process_group is None:
            holder.process_group = group
