"""The shell every sampler and batch sampler shares, around the pass and its state.

* :class:`EpochShell`: ``seed``, ``epoch``, ``set_epoch``, ``len``, ranks looked up when an
  epoch starts, ``state_dict`` / ``load_state_dict``, ``repr`` from one hook.
* :class:`SamplerShell`: an :class:`EpochShell` that is a ``DistributedSampler``, with its
  attributes in their meaning (trainers read them from anything that passes
  ``isinstance(s, DistributedSampler)``).

The pass and its saved state are :mod:`torch_balance._epoch_state` (re-exported here).
Elsewhere: the shared-memory epoch of dataset wrappers (:mod:`torch_balance._shared_epoch`),
the opening labels -> index -> plan (:func:`torch_balance.strategies.plan_for`), per-sample
weights put in class order (:func:`torch_balance.draws.group_sample_weights`).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DistributedSampler, Sampler

from torch_balance._collective import check_group, trainer_sharder
from torch_balance._epoch_state import (
    EpochState,
    Key,
    Pass,
    check_epoch,
    describe_plan,
    describe_weights,
)
from torch_balance._validation import check_bool, check_seed, refuse_sampler_input
from torch_balance.feedback import feedback_of, restoring
from torch_balance.sharding import check_replicas, current_ranks, iter_shard, shard_length

__all__ = [
    "EpochShell",
    "EpochState",
    "Key",
    "Pass",
    "SamplerShell",
    "check_epoch",
    "describe_plan",
    "describe_weights",
]


class EpochShell:
    """``seed``, ``epoch``, ``set_epoch``, ``len``, ranks and resume: the shell every sampler
    and batch sampler shares.

    A subclass calls :meth:`_open` in its ``__init__``, sets ``_global_length`` (items, or
    batches, in one global epoch), says in ``_own_settings`` what else a saved state must
    agree on, and gives this rank's share of an epoch in ``_chunks`` (the one ``__iter__``
    is here). ``num_replicas`` and ``rank`` left as None are looked up when each epoch starts
    (:func:`~torch_balance.sharding.current_ranks`), so where the sampler is built does not
    matter, and a trainer that shards batches itself gets the whole epoch.
    """

    _state: EpochState
    _global_length: int
    _requested: tuple[int | None, int | None]
    _group: Any
    drop_last: bool

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        if args and isinstance(args[0], Sampler):
            refuse_sampler_input(cls, args[0], kwargs)
        return super().__new__(cls)

    def _open(
        self, seed: int, num_replicas: Any, rank: Any, drop_last: Any, process_group: Any
    ) -> None:
        self.drop_last = check_bool("drop_last", drop_last)
        self._requested = check_replicas(num_replicas, rank)
        self._group = check_group(process_group)
        self._state = EpochState(seed, type(self).__name__)

    def _ranks(self) -> tuple[int, int]:
        return current_ranks(*self._requested, self._group)

    @property
    def process_group(self) -> Any:
        """The data-parallel group whose ranks share the epoch (None: the default group).

        Writable, like ``num_replicas`` and ``rank``: a trainer integration that knows the
        data-parallel group (Lightning's ``ModelParallelStrategy``) names it here.
        """
        return self._group

    @process_group.setter
    def process_group(self, value: Any) -> None:
        self._group = check_group(value)

    def _ready(self) -> None:
        """End of ``__init__``: fail now on a length that cannot be sharded, where we can."""
        len(self)
        feedback = feedback_of(getattr(self, "plan", None))
        if feedback is not None:
            feedback._attach(self)

    def _unstarted_epoch(self) -> int:
        return self._state.unstarted()

    # Writable, as in DistributedSampler: assigning goes through the same checks.
    @property
    def seed(self) -> int:
        """The base seed, the same on every rank; assigning it is checked as in ``__init__``."""
        return self._state.seed

    @seed.setter
    def seed(self, value: int) -> None:
        self._state.seed = check_seed(value)

    @property
    def epoch(self) -> int:
        """The epoch the next pass will draw (or the one under way)."""
        return self._state.epoch

    @epoch.setter
    def epoch(self, value: int) -> None:
        self.set_epoch(value)

    @property
    def num_replicas(self) -> int:
        """Ranks sharing the epoch, as of now."""
        return self._ranks()[0]

    @num_replicas.setter
    def num_replicas(self, value: int | None) -> None:
        self._requested = check_replicas(value, self._requested[1])

    @property
    def rank(self) -> int:
        """This process's rank, as of now."""
        return self._ranks()[1]

    @rank.setter
    def rank(self, value: int | None) -> None:
        self._requested = check_replicas(self._requested[0], value)

    @property
    def global_length(self) -> int:
        """Items (batches, for a batch sampler) in one global epoch: every rank together,
        before padding or ``drop_last``. Fixed at construction."""
        return self._global_length

    def _rank_length(self, world: int) -> int:
        return shard_length(self._global_length, world, self.drop_last)

    def __len__(self) -> int:
        """The number of indices this rank gets in one pass (the whole epoch on one rank)."""
        return self._rank_length(self._ranks()[0])

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch of the next pass (trainers call it at the start of every epoch)."""
        self._state.set_epoch(epoch)

    def _epoch_arg(self, epoch: int | None) -> int:
        return self.epoch if epoch is None else check_epoch(epoch)

    def _begin(self) -> tuple[Pass, int, int]:
        """Start a pass: ``(pass, num_replicas, rank)`` with the ranks of this moment."""
        if not self._state.told and self._group is None and self._requested == (None, None):
            _warn_untold(self)
        world, rank = self._ranks()
        self._rank_length(world)  # refuses a length that cannot be sharded
        return self._state.begin(self._global_length, world, self.drop_last), world, rank

    def __iter__(self) -> Iterator[Any]:
        """One pass: this rank's share of the epoch, from where the state stands."""
        current, world, rank = self._begin()
        return self._state.run(current, self._chunks(current, world, rank))

    def _chunks(self, current: Pass, world: int, rank: int) -> Iterator[list[Any]]:
        """This rank's items of the pass ``current`` (from global position
        ``current.start``), in lists: the source of each class's epoch, sharded."""
        raise NotImplementedError

    def _own_settings(self, epoch: int) -> dict[str, Any]:
        """What else a saved state must agree on (beyond the labels)."""
        return {}

    def _fingerprint(self) -> str:
        index: Any = getattr(self, "index")  # noqa: B009 (every subclass has one)
        return str(index.fingerprint())

    def _settings(self, epoch: int) -> dict[str, Any]:
        # The most telling difference is named first. Nothing here depends on the rank or the
        # world size: a state loads on every rank, and with another number of ranks.
        return {
            "fingerprint": self._fingerprint(),
            **self._own_settings(epoch),
            "global_length": self._global_length,
        }

    def state_dict(self) -> dict[str, Any]:
        """Where the run stands: epoch, global position, and what the epoch was drawn for.

        The position counts items of the global epoch handed out over every rank, so the
        state is the same on every rank (save it from any one) and loads with another number
        of ranks. After a complete pass of epoch ``e`` it records ``e`` as done: loaded, the
        next pass is ``e + 1`` (or nothing, after ``set_epoch(e)``). After ``set_epoch(e)``
        it describes the start of ``e``. This dict is the checkpoint: save it with the model
        and hand it to :meth:`load_state_dict` (``StatefulDataLoader`` does both).
        """
        return self._state.state_dict(self._settings, self._ranks()[0])

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Resume from :meth:`state_dict`: the next pass continues where that one stopped.

        A state saved on any rank, with any number of ranks, continues the same global epoch
        from the same global position.

        Raises:
            ValueError: If the state was saved with another seed, for other labels, another
                strategy or plan, epoch length or batch settings; the message names what
                differs.
        """
        with restoring(getattr(self, "plan", None), state_dict):  # a Feedback's history
            self._state.load_state_dict(state_dict, self._settings, self._global_length)

    def extra_repr(self) -> str:
        """What this sampler adds to its ``repr`` before the seed, epoch and rank (the one
        hook every sampler fills in, as torchvision's ``VisionDataset.extra_repr``)."""
        return ""

    def __repr__(self) -> str:
        world, rank = self._ranks()
        extra = self.extra_repr()
        where = f"seed={self.seed}, epoch={self.epoch}, rank={rank}/{world}"
        return f"{type(self).__name__}({extra + ', ' if extra else ''}{where})"


def _warn_untold(shell: EpochShell) -> None:
    """A first pass under accelerate that nobody chose the epoch of.

    accelerate's prepared loaders set the epoch before every pass, except through
    ``skip_first_batches`` (the Hugging Face ``Trainer`` resuming mid-epoch), whose wrapper
    ``set_epoch`` does not reach the sampler: the pass would silently draw epoch 0.
    """
    sharder = trainer_sharder()
    if sharder is None or getattr(shell, "_untold_warned", False):
        return
    shell._untold_warned = True  # type: ignore[attr-defined]
    warnings.warn(
        f"{type(shell).__name__} starts a pass under {sharder} without its epoch having been "
        f"set (it draws epoch {shell._state.epoch}). A loader wrapped by skip_first_batches "
        "(a resumed run) does not pass set_epoch on: with the Hugging Face Trainer add "
        "torch_balance.integrations.huggingface.SetEpochCallback(); in your own loop call "
        "torch_balance.integrations.set_epoch(loader, epoch) on the skipped loader",
        UserWarning,
        stacklevel=4,
    )


class SamplerShell(EpochShell, DistributedSampler[int]):
    """An :class:`EpochShell` that is a ``DistributedSampler`` (without its constructor), with
    its attributes in ``DistributedSampler``'s meaning.

    Trainers treat anything that passes ``isinstance(s, DistributedSampler)`` as already
    sharded (Lightning does not wrap it again) and may read its attributes, so every one is
    there: ``num_replicas``, ``rank``, ``epoch``, ``seed`` and ``drop_last`` from the shell,
    and ``num_samples`` (this rank's indices per epoch, ``len(self)``), ``total_size``
    (``num_samples * num_replicas``: the global epoch padded or cut), ``shuffle`` (always
    True) and ``dataset`` here. A constructor argument named ``num_samples`` keeps its own
    meaning (the global epoch's length, :attr:`global_length`).

    A subclass sets ``_dataset`` in ``__init__``: the dataset it samples from, or None when
    it was given labels or weights (``dataset`` is then ``range(n)``, whose item ``i`` is
    ``i``), and gives its epoch as ``_source(epoch) -> (values, order)``; the shell's
    ``__iter__`` shards it.
    """

    _dataset: Any = None

    # DistributedSampler stores these four in its constructor; here they are read-only,
    # derived from the ranks of the moment (hence the overrides mypy flags).

    def _num_indices(self) -> int:
        """How many samples the indices run over (``len(dataset)``)."""
        return len(getattr(self, "index"))  # noqa: B009 (a sampler without an index overrides)

    @property
    def dataset(self) -> Any:  # type: ignore[override]
        """The dataset the indices point into; ``range(n)`` when built from labels or weights."""
        return self._dataset if self._dataset is not None else range(self._num_indices())

    @property
    def shuffle(self) -> bool:  # type: ignore[override]
        """Always True: every epoch is drawn in a random order from (seed, epoch)."""
        return True

    def _source(self, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(values, order)``: the global epoch is ``values[order]``."""
        raise NotImplementedError

    def _chunks(self, current: Pass, world: int, rank: int) -> Iterator[list[Any]]:
        values, order = self._source(current.epoch)
        return iter_shard(values, order, world, rank, self.drop_last, current.start)

    @property
    def num_samples(self) -> int:  # type: ignore[override]
        """This rank's indices per epoch, as of now (``len(self)``; as in
        ``DistributedSampler``). The global epoch's length is :attr:`global_length`."""
        return len(self)

    @property
    def total_size(self) -> int:  # type: ignore[override]
        """``num_samples * num_replicas``: the global epoch after padding or ``drop_last``."""
        world = self._ranks()[0]
        return self._rank_length(world) * world
