"""The pass and its state: what every sampler, batch sampler and dataset wrapper counts.

* :class:`EpochState`: the epoch number, the pass under way, resume, and the check that a
  saved state belongs to this object. One rule defines a *complete pass*: a pass that has
  handed out ``len()`` items is complete, whether or not anyone asks for one more, and the
  next pass (and ``state_dict()``) is the next epoch.
* :class:`Key`: the keys of a saved state, and :func:`describe_plan` /
  :func:`describe_weights`: what a state records of what its epoch was drawn from.

The shell around it (``seed``, ``epoch``, ranks, ``len``, the ``DistributedSampler``
attributes) is :mod:`torch_balance._epoch`.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from torch_balance._validation import check_int, check_seed, fail, internal
from torch_balance.feedback import plan_state
from torch_balance.sharding import pass_length
from torch_balance.strategies import Plan

__all__ = [
    "EpochState",
    "Key",
    "Pass",
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
    """The keys of a saved state that every sampler, batch sampler and stream shares."""

    KIND = "kind"
    SEED = "seed"
    EPOCH = "epoch"
    # Items of the global epoch handed out, over every rank: rank r of R has handed out
    # positions r, r + R, ... below it. The same on every rank, whatever the world size.
    POSITION = "position"
    WORLD = "num_replicas"  # the world size it was saved with: informative, never checked
    LEGACY = "yielded"  # this rank's count, in states saved before ``position`` existed
    # a stream reader's count, in stream states saved before they used ``position``
    LEGACY_STREAM = "emitted"
    # True where the position is the end of its epoch: said outright, because a pass whose
    # length is known only by reading it (an open-ended stream) cannot be told from its length
    COMPLETE = "complete"


class Pass:
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
        self._pass: Pass | None = None
        self._last: tuple[int, int] | None = None  # (epoch, length) of the last complete pass
        self._loaded_end: tuple[int, int] | None = None  # a loaded state that ended its epoch
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

    def begin(self, global_length: int, world: int, drop_last: bool) -> Pass:
        """Start this rank's pass over an epoch of ``global_length`` items shared by
        ``world`` ranks (the rest of it, when resuming)."""
        self._settle()
        epoch, start = self._epoch, 0
        if self._resume is not None and self._resume[0] == epoch:
            start = min(self._resume[1], global_length)
        self._resume = None
        length = pass_length(global_length, start, world, drop_last)
        current = Pass(epoch, start, world, length, global_length)
        self._pass = current
        return current

    def run(self, current: Pass, chunks: Iterator[list[Any]]) -> Iterator[Any]:
        """Hand out the items of ``chunks`` for the pass ``current``, keeping count."""
        return itertools.chain.from_iterable(self._tracked(current, chunks))

    def _tracked(self, current: Pass, chunks: Iterator[list[Any]]) -> Iterator[Any]:
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
        state = {
            Key.KIND: self.kind,
            Key.SEED: self.seed,
            Key.EPOCH: epoch,
            Key.POSITION: position,
            Key.WORLD: world,
        }
        if (epoch, position) in (self._last, self._loaded_end) and position:
            state[Key.COMPLETE] = True
        return state | settings(epoch)

    def load_state_dict(
        self, state: Any, settings: Callable[[int], dict[str, Any]], global_length: int
    ) -> None:
        if not isinstance(state, dict):
            fail("state_dict", "a dict from state_dict()", type(state).__name__, kind=TypeError)
        missing = {Key.KIND, Key.SEED, Key.EPOCH} - set(state)
        if Key.POSITION not in state and not {Key.LEGACY, Key.LEGACY_STREAM} & set(state):
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
        complete = state.get(Key.COMPLETE, False)
        if not isinstance(complete, bool):
            fail(f"state_dict[{Key.COMPLETE!r}]", "True or False", complete, kind=TypeError)
        ended = complete or position == global_length
        done = ended and chosen != epoch
        self._epoch = epoch + 1 if done else epoch
        self._last = None
        self._loaded_end = (epoch, position) if ended else None
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
    """The global position a state records (converted from a per-rank count, or a stream
    reader's, in states saved before positions were global)."""
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
    legacy = Key.LEGACY if Key.LEGACY in state else Key.LEGACY_STREAM
    world = check_int("state_dict['num_replicas']", state.get(Key.WORLD, 1), minimum=1)
    rank_length = -(-global_length // int(world))
    done = int(check_int(f"state_dict[{legacy!r}]", state[legacy], minimum=0, maximum=rank_length))
    return global_length if done == rank_length else min(done * int(world), global_length)


def describe_plan(plan: Plan, epoch: int) -> dict[str, Any]:
    """What a saved state records of a plan: its strategy and a digest of the epoch's counts."""
    return {
        "strategy": plan.description,
        "plan": _digest(plan.targets(epoch)),
        **plan_state(plan),
    }
