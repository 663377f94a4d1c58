"""The epoch layer: what every sampler, batch sampler and dataset wrapper shares.

* :class:`EpochState`: the epoch number, the pass under way, resume, and the check that a
  saved state belongs to this object. One rule defines a *complete pass*: a pass that has
  handed out ``len()`` items is complete, whether or not anyone asks for one more, and the
  next pass (and ``state_dict()``) is the next epoch.
* :class:`EpochShell`: the shell around it: ``seed``, ``epoch``, ``set_epoch``, ``len``,
  ranks looked up when an epoch starts, ``state_dict`` / ``load_state_dict``.
* :class:`Key`: the keys of a saved state, and :func:`describe_plan` /
  :func:`describe_weights`: what a state records of what its epoch was drawn from.

Elsewhere: the shared-memory epoch of dataset wrappers (:mod:`torch_balance._shared_epoch`),
the opening labels -> index -> plan (:func:`torch_balance.strategies.plan_for`), per-sample
weights put in class order (:func:`torch_balance.draws.group_sample_weights`).
"""

from __future__ import annotations

import hashlib
import itertools
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import Sampler

from torch_balance._collective import check_group, trainer_sharder
from torch_balance._validation import (
    check_bool,
    check_int,
    check_seed,
    fail,
    internal,
    refuse_sampler_input,
)
from torch_balance.feedback import feedback_of, plan_state, restoring
from torch_balance.sharding import check_replicas, current_ranks, pass_length, shard_length
from torch_balance.strategies import Plan

__all__ = [
    "EpochShell",
    "EpochState",
    "Key",
    "check_epoch",
    "describe_plan",
    "describe_weights",
]

MAX_EPOCH = 2**62


def check_epoch(epoch: Any) -> int:
    """An epoch number: an integer in ``[0, 2**62]``.

    Example:
        >>> check_epoch(3)
        3
    """
    return int(
        check_int(
            "epoch",
            epoch,
            minimum=0,
            maximum=MAX_EPOCH,
            fix="Pass the trainer's epoch counter (0, 1, 2, ...)",
        )
    )


def describe_weights(weights: torch.Tensor | None) -> dict[str, Any]:
    """What a saved state records of per-sample weights: a digest, or None without weights
    (a state saved before weights existed has no entry, which reads as None)."""
    return {"sample_weights": None if weights is None else _digest(weights.numpy())}


class Key:
    """The keys of a saved state that every sampler and batch sampler shares."""

    KIND = "kind"
    SEED = "seed"
    EPOCH = "epoch"
    # Items of the global epoch handed out, over every rank: rank r of R has handed out
    # positions r, r + R, ... below it. The same on every rank, whatever the world size.
    POSITION = "position"
    WORLD = "num_replicas"  # the world size it was saved with: informative, never checked
    LEGACY = "yielded"  # this rank's count, in states saved before ``position`` existed


class _Pass:
    """One pass over this rank's share of an epoch, from global position ``start`` on.

    Items flow out through ``itertools.chain`` (no Python frame per item); how many went out
    is read from the current chunk's list iterator only when someone asks.
    """

    __slots__ = ("base", "epoch", "global_length", "items", "length", "size", "start", "world")

    def __init__(self, epoch: int, start: int, world: int, length: int, global_length: int):
        self.epoch = epoch
        self.start = start  # global position the pass began at
        self.world = world
        self.length = length  # items this rank hands out in this pass
        self.global_length = global_length
        self.base = 0  # items handed out before the current chunk
        self.size = 0  # length of the current chunk
        self.items: Any = iter(())

    def handed_out(self) -> int:
        remaining = self.items.__length_hint__() if self.size else 0
        return self.base + self.size - remaining

    def position(self) -> int:
        """Global position reached: every rank has handed out the same count."""
        done = self.handed_out()
        if done >= self.length:
            return self.global_length
        return self.start + done * self.world


def _digest(*parts: Any) -> str:
    h = hashlib.blake2b(digest_size=12)
    for part in parts:
        h.update(part.tobytes() if isinstance(part, np.ndarray) else repr(part).encode())
        h.update(b"\x00")
    return h.hexdigest()


class EpochState:
    """Epoch, the pass under way, and resume: the state part of every sampler.

    ``set_epoch(e)`` picks the epoch of the next pass, as with ``DistributedSampler``. A
    complete pass (one that handed out its ``length`` items) moves on to the next epoch, so a
    sampler that nobody calls ``set_epoch`` on still redraws every epoch, and a loop that
    stops after ``len(loader)`` batches sees the same epochs as one that runs the iterator dry.

    Positions are global (see :class:`Key`), so a state saved on any rank loads on every rank,
    and with another world size it continues the same global epoch from the same place. A
    state saved at the end of epoch ``e`` records ``e`` as complete: loaded, the next pass is
    ``e + 1``, and after ``set_epoch(e)`` the rest of ``e`` (nothing), as torchdata's
    ``StatefulDistributedSampler`` does.
    """

    def __init__(self, seed: int, kind: str) -> None:
        self.seed = check_seed(seed)
        self.kind = kind
        self._epoch = 0
        # (epoch, global position) where the next pass of that epoch starts; the position
        # may be the epoch's length (a state saved at its end)
        self._resume: tuple[int, int] | None = None
        self._pass: _Pass | None = None
        self._last: tuple[int, int] | None = None  # (epoch, length) of the last complete pass
        self.told = False  # set_epoch or load_state_dict was called, or a pass completed
        self._chosen: int | None = None  # set by set_epoch for the next pass, not yet begun

    @property
    def epoch(self) -> int:
        """The epoch the next pass draws (or the one under way)."""
        self._settle()
        return self._pass.epoch if self._pass is not None else self._epoch

    def set_epoch(self, epoch: int) -> None:
        epoch = check_epoch(epoch)
        self.told = True
        self._chosen = epoch
        self._settle()
        if self._pass is not None and self._pass.epoch != epoch:
            self._pass = None  # a pass under way no longer moves the epoch on
        # A pass of this very epoch stays: trainers that build the iterator first (Lightning's
        # first epoch with a StatefulDataLoader) set its epoch after, and it still counts.
        if self._resume is not None and self._resume[0] != epoch:
            self._resume = None
        self._epoch = epoch

    def _settle(self) -> None:
        """Close the pass under way if it has handed out everything."""
        current = self._pass
        if current is not None and current.handed_out() >= current.length:
            self._pass = None
            self._epoch = current.epoch + 1
            self._last = (current.epoch, current.global_length)
            self.told = True
            self._chosen = None

    def begin(self, global_length: int, world: int, drop_last: bool) -> _Pass:
        """Start this rank's pass over an epoch of ``global_length`` items shared by
        ``world`` ranks (the rest of it, when resuming)."""
        self._settle()
        epoch, start = self._epoch, 0
        if self._resume is not None and self._resume[0] == epoch:
            start = min(self._resume[1], global_length)
        self._resume = None
        length = pass_length(global_length, start, world, drop_last)
        current = _Pass(epoch, start, world, length, global_length)
        self._pass = current
        return current

    def run(self, current: _Pass, chunks: Iterator[list[Any]]) -> Iterator[Any]:
        """Hand out the items of ``chunks`` for the pass ``current``, keeping count."""
        return itertools.chain.from_iterable(self._tracked(current, chunks))

    def _tracked(self, current: _Pass, chunks: Iterator[list[Any]]) -> Iterator[Any]:
        for chunk in chunks:
            current.base += current.size
            current.items = iter(chunk)
            current.size = len(chunk)
            yield current.items
        current.base += current.size
        current.size = 0
        current.items = iter(())
        internal(
            current.base == current.length,
            f"a pass handed out {current.base} items, its length is {current.length}",
        )
        self._settle()

    def unstarted(self) -> int:
        """The first epoch no pass has started drawing: where new feedback takes effect."""
        self._settle()
        if self._pass is not None:
            return self._pass.epoch + 1
        if self._resume is not None:
            return max(self._resume[0] + 1, self._epoch)
        return self._epoch

    def mid_epoch(self) -> bool:
        """A pass is under way, or the next one resumes part-way through its epoch."""
        self._settle()
        if self._pass is not None:
            return True
        return self._resume is not None and self._resume[0] == self._epoch

    def position(self) -> tuple[int, int]:
        """``(epoch, global position)`` this object stands at.

        After a complete pass of epoch ``e`` (and no ``set_epoch`` since) that is ``e`` and its
        length: the epoch is done, and the next pass is ``e + 1``.
        """
        self._settle()
        if self._pass is not None:
            return self._pass.epoch, self._pass.position()
        if self._resume is not None and self._resume[0] in (self._epoch, self._epoch - 1):
            return self._resume
        if self._last is not None and self._last[0] == self._epoch - 1:
            return self._last
        return self._epoch, 0

    def state_dict(self, settings: Callable[[int], dict[str, Any]], world: int) -> dict[str, Any]:
        epoch, position = self.position()
        return {
            Key.KIND: self.kind,
            Key.SEED: self.seed,
            Key.EPOCH: epoch,
            Key.POSITION: position,
            Key.WORLD: world,
        } | settings(epoch)

    def load_state_dict(
        self, state: Any, settings: Callable[[int], dict[str, Any]], global_length: int
    ) -> None:
        if not isinstance(state, dict):
            fail("state_dict", "a dict from state_dict()", type(state).__name__, kind=TypeError)
        missing = {Key.KIND, Key.SEED, Key.EPOCH} - set(state)
        if Key.POSITION not in state and Key.LEGACY not in state:
            missing.add(Key.POSITION)
        if missing:
            fail("state_dict", "a dict from state_dict()", f"a dict without {sorted(missing)}")
        if state[Key.KIND] != self.kind:
            fail("state_dict['kind']", f"a state saved by {self.kind}", state[Key.KIND])
        epoch = check_epoch(state[Key.EPOCH])
        expected = settings(epoch)
        if state.get("fingerprint") != expected.pop("fingerprint"):
            fail(
                "state_dict",
                "a state saved for these labels",
                "a state saved for other labels",
                "Build the sampler on the same dataset it was saved with",
            )
        if state[Key.SEED] != self.seed:
            fail(
                "state_dict['seed']",
                f"{self.seed}, this sampler's seed",
                state[Key.SEED],
                f"Build the sampler with seed={state[Key.SEED]!r} to resume that run",
            )
        for key, value in expected.items():
            if state.get(key) != value:
                fail(
                    f"state_dict[{key!r}]",
                    f"{value!r}, as in this sampler",
                    state.get(key),
                    "Resume with the same strategy and settings it was saved with",
                )
        position = _saved_position(state, global_length)
        # set_epoch(e) chose e for the next pass; a pass begun since but with nothing handed
        # out (torchdata builds the iterator, then loads) still counts as that choice
        unused = self._pass is None or self._pass.handed_out() == 0
        chosen = self._chosen if unused else None
        self._pass = None
        self._resume = (epoch, position) if position else None
        # A state saved at an epoch's end: the next pass is the next epoch, unless the loop
        # has already chosen this epoch for it (torchdata's StatefulDataLoader loads the state
        # when the pass begins, after the loop's set_epoch(e)): then the rest of e, nothing.
        done = position == global_length and chosen != epoch
        self._epoch = epoch + 1 if done else epoch
        self._last = None
        self.told = True

    def __getstate__(self) -> dict[str, Any]:
        # A copy taken mid-pass continues where the pass stood.
        epoch, position = self.position()
        state = self.__dict__.copy()
        state["_pass"] = None
        if self._pass is not None:
            state["_epoch"] = epoch + 1 if position == self._pass.global_length else epoch
            state["_resume"] = (epoch, position) if position else None
        return state


def _saved_position(state: dict[str, Any], global_length: int) -> int:
    """The global position a state records (converted from a per-rank count in states saved
    before positions were global)."""
    if Key.POSITION in state:
        return int(
            check_int(
                f"state_dict[{Key.POSITION!r}]",
                state[Key.POSITION],
                minimum=0,
                maximum=global_length,
                fix="Pass a state saved by state_dict() of a sampler on the same data",
            )
        )
    world = check_int("state_dict['num_replicas']", state.get(Key.WORLD, 1), minimum=1)
    rank_length = -(-global_length // int(world))
    done = int(
        check_int(f"state_dict[{Key.LEGACY!r}]", state[Key.LEGACY], minimum=0, maximum=rank_length)
    )
    return global_length if done == rank_length else min(done * int(world), global_length)


class EpochShell:
    """``seed``, ``epoch``, ``set_epoch``, ``len``, ranks and resume: the shell every sampler
    and batch sampler shares.

    A subclass calls :meth:`_open` in its ``__init__``, sets ``_global_length`` (items, or
    batches, in one global epoch) and says in ``_own_settings`` what else a saved state must
    agree on. ``num_replicas`` and ``rank`` left as None are looked up when each epoch starts
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

    def _begin(self) -> tuple[_Pass, int, int]:
        """Start a pass: ``(pass, num_replicas, rank)`` with the ranks of this moment."""
        if not self._state.told and self._group is None and self._requested == (None, None):
            _warn_untold(self)
        world, rank = self._ranks()
        self._rank_length(world)  # refuses a length that cannot be sharded
        return self._state.begin(self._global_length, world, self.drop_last), world, rank

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


def describe_plan(plan: Plan, epoch: int) -> dict[str, Any]:
    """What a saved state records of a plan: its strategy and a digest of the epoch's counts."""
    return {
        "strategy": plan.description,
        "plan": _digest(plan.targets(epoch)),
        **plan_state(plan),
    }
