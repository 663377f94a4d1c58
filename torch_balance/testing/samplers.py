"""The sampler checks: one function per property, :data:`CHECKS`, :func:`check_sampler`."""

from __future__ import annotations

import pickle
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
from torch.utils.data import DataLoader, DistributedSampler

from torch_balance.testing._support import (
    Factory,
    IndexDataset,
    _build,
    _check_inputs,
    _epoch,
    _flat,
    _require,
    _rng_snapshot,
    _same_rng,
    conformance_labels,
)

# What each check calls on a sampler besides iterating it. A sampler without one of them fails
# the check with a message naming the property checked, not with an AttributeError.
_NEEDS: dict[str, tuple[str, ...]] = {
    "check_sampler_basics": ("__len__", "set_epoch"),
    "check_sampler_complete_pass": ("__len__", "set_epoch", "state_dict", "epoch"),
    "check_sampler_checkpoints": ("set_epoch", "state_dict", "load_state_dict"),
    "check_sampler_refuses_foreign_states": ("set_epoch", "state_dict", "load_state_dict"),
    "check_sampler_states_any_world": ("__len__", "set_epoch", "state_dict", "load_state_dict"),
    "check_sampler_shards": ("set_epoch",),
    "check_sampler_pickles": ("set_epoch",),
    "check_sampler_dataloader": ("set_epoch",),
}


def _needs(sampler: Any, check: Callable[..., None]) -> None:
    """Fail ``check`` by name when ``sampler`` lacks a method or attribute the check uses.

    Example:
        >>> _needs(range(3), check_sampler_shards)
        Traceback (most recent call last):
        ...
        AssertionError: conformance: check_sampler_shards (Equal lengths on every rank; ...
    """
    missing = [name for name in _NEEDS[check.__name__] if not hasattr(sampler, name)]
    if missing:
        doc = (check.__doc__ or "").strip().split("\n\n")[0]
        prop = " ".join(doc.replace("``", "").split()).rstrip(".")
        listed = ", ".join(f"{m}()" if m != "epoch" else m for m in missing)
        raise AssertionError(
            f"conformance: {check.__name__} ({prop}) cannot run: {type(sampler).__name__} has "
            f"no {listed}. Add {'it' if len(missing) == 1 else 'them'} (set_epoch(epoch) "
            "chooses the epoch, state_dict()/load_state_dict(state) save and restore the "
            "position), or run only the checks that apply (torch_balance.testing.CHECKS)"
        )


def check_sampler_basics(make: Factory, labels: Any, *, check_counts: bool = True) -> None:
    """Length, index bounds, determinism in (seed, epoch), new epochs, composition, global RNGs."""
    label_array = _check_inputs(make, labels)
    n = label_array.shape[0]
    before = _rng_snapshot()
    sampler = _build(make, labels)
    _needs(sampler, check_sampler_basics)
    first = _epoch(sampler, 0)
    flat = _flat(first)
    _require(_same_rng(before, _rng_snapshot()), "building or iterating touched a global RNG")
    _require(len(first) == len(sampler), f"yielded {len(first)} items but len() is {len(sampler)}")
    _require(all(0 <= i < n for i in flat), "an index is out of range")
    again = _build(make, labels)
    _require(_epoch(again, 0) == first, "the same seed and epoch gave another order")
    _require(_epoch(again, 5) == _epoch(sampler, 5), "epoch 5 differs between equal samplers")
    _require(_epoch(sampler, 1) != first, "epoch 1 repeats epoch 0")
    _require(_epoch(_build(make, labels, seed=4), 0) != first, "another seed gave the same order")
    fresh = _build(make, labels)
    _require(
        list(fresh) == first and list(fresh) == _epoch(again, 1),
        "a complete pass does not advance to the next epoch",
    )
    if check_counts and hasattr(sampler, "target_counts"):
        drawn = Counter(label_array[flat].tolist())
        planned = {k: v for k, v in sampler.target_counts(0).items() if v}
        _require(dict(drawn) == planned, f"epoch holds {dict(drawn)}, plan says {planned}")


def check_sampler_complete_pass(make: Factory, labels: Any) -> None:
    """A pass that handed out ``len()`` items is complete, without anyone asking for more."""
    reference = _build(make, labels)
    _needs(reference, check_sampler_complete_pass)
    epoch_3 = _epoch(reference, 3)
    sampler = _build(make, labels)
    sampler.set_epoch(2)
    items = iter(sampler)
    for _ in range(len(sampler)):
        next(items)  # exactly len() items, as a loop that stops after len(loader) batches
    state = sampler.state_dict()
    _require(
        isinstance(state, dict) and "epoch" in state and "position" in state,
        "state_dict() holds the 'epoch' and the 'position' in it (items handed out)",
    )
    whole = len(_epoch(_build(make, labels), 2))
    _require(
        (state["epoch"], state["position"]) == (2, whole),
        f"after a complete pass of epoch 2 the state says epoch {state['epoch']}, position "
        f"{state['position']}; expected epoch 2 done ({whole} of {whole})",
    )
    _require(sampler.epoch == 3, f"after a complete pass of epoch 2, epoch is {sampler.epoch}")
    _require(list(sampler) == epoch_3, "the pass after a complete one is not the next epoch")
    sampler.set_epoch(7)
    state = sampler.state_dict()
    _require(
        (state["epoch"], state["position"]) == (7, 0),
        f"after set_epoch(7) the state says epoch {state['epoch']}, position {state['position']}",
    )


def check_sampler_checkpoints(make: Factory, labels: Any) -> None:
    """A checkpoint taken at any moment restores to exactly the uninterrupted sequence."""
    reference = _build(make, labels)
    _needs(reference, check_sampler_checkpoints)
    reference.set_epoch(2)
    epochs = {2: list(reference), 3: list(reference), 4: list(reference)}
    length = len(epochs[2])
    for cut in sorted({0, 1, length // 2, length - 1, length}):
        run = _build(make, labels)
        run.set_epoch(2)
        items = iter(run)
        for _ in range(cut):
            next(items)
        state = pickle.loads(pickle.dumps(run.state_dict()))
        resumed = _build(make, labels)
        resumed.load_state_dict(state)
        rest, later = (epochs[2][cut:], epochs[3]) if cut < length else (epochs[3], epochs[4])
        _require(list(resumed) == rest, f"resume after {cut} items repeats or skips")
        _require(list(resumed) == later, f"after resuming at {cut} items the next epoch is wrong")
        # a DDP loop calls set_epoch(e) again after loading: it must not restart the epoch
        if 0 < cut < length:
            again = _build(make, labels)
            again.load_state_dict(state)
            again.set_epoch(2)
            _require(list(again) == rest, f"set_epoch(2) after resuming at {cut} restarts epoch 2")
            # a copy pickled mid-pass continues where the pass stood
            copy = pickle.loads(pickle.dumps(run))
            _require(list(copy) == rest, f"a sampler pickled after {cut} items does not continue")
        if cut == length:  # saved at the epoch's end, resumed by a loop that sets epoch 2
            again = _build(make, labels)
            again.load_state_dict(state)
            again.set_epoch(2)
            _require(list(again) == [], "set_epoch(2) after a state saved at its end replays it")
            _require(list(again) == epochs[3], "after the empty rest of epoch 2, not epoch 3")
            # ... and in the other order, as StatefulDataLoader loads it when the pass begins
            late = _build(make, labels)
            late.set_epoch(2)
            late.load_state_dict(state)
            _require(
                list(late) == [],
                "a state saved at the end of epoch 2, loaded after set_epoch(2), replays it",
            )
            _require(list(late) == epochs[3], "after the empty rest of epoch 2, not epoch 3")
    moved = _build(make, labels)
    moved.set_epoch(2)
    next(iter(moved))
    moved.set_epoch(5)
    restored = _build(make, labels)
    restored.load_state_dict(moved.state_dict())
    _require(
        list(restored) == _epoch(_build(make, labels), 5),
        "a state after set_epoch(5) is not epoch 5",
    )


def check_sampler_refuses_foreign_states(make: Factory, labels: Any) -> None:
    """``load_state_dict`` refuses states saved for other labels or another seed."""
    label_array = _check_inputs(make, labels)
    sampler = _build(make, labels)
    _needs(sampler, check_sampler_refuses_foreign_states)
    sampler.set_epoch(1)
    next(iter(sampler))
    state = sampler.state_dict()
    foreign = {
        "other labels": _build(make, np.concatenate([label_array, label_array[:7]])),
        "another seed": _build(make, labels, seed=4),
    }
    for what, other in foreign.items():
        try:
            other.load_state_dict(state)
        except ValueError:
            continue
        raise AssertionError(f"conformance: a state saved for {what} was accepted")


def check_sampler_shards(make: Factory, labels: Any) -> None:
    """Equal lengths on every rank; together the shards are the padded or trimmed epoch."""
    first = _build(make, labels)
    _needs(first, check_sampler_shards)
    whole = _epoch(first, 0)
    for world in (2, 3):
        for drop_last in (False, True):
            shards = [
                _epoch(_build(make, labels, world=world, rank=r, drop_last=drop_last), 0)
                for r in range(world)
            ]
            lengths = {len(s) for s in shards}
            _require(len(lengths) == 1, f"ranks got {sorted(len(s) for s in shards)} items")
            merged = [item for step in zip(*shards, strict=True) for item in step]
            size = len(merged)
            if drop_last:
                _require(merged == whole[:size], "drop_last shards are not the epoch's head")
            else:
                padded = (whole * (size // max(len(whole), 1) + 1))[:size]
                _require(merged == padded, "padded shards are not the epoch plus its head")


def check_sampler_states_any_world(make: Factory, labels: Any) -> None:
    """A state saved on any rank loads on every rank; with another number of ranks it
    continues the same global epoch from the same global position (2 -> 1, 1 -> 2, 2 -> 3)."""
    first = _build(make, labels)
    _needs(first, check_sampler_states_any_world)
    whole = _epoch(first, 2)
    for before, after in ((2, 2), (2, 1), (1, 2), (2, 3)):
        savers = [_build(make, labels, world=before, rank=r) for r in range(before)]
        cut = max(len(savers[0]) // 2, 1)
        for saver in savers:
            saver.set_epoch(2)
            items = iter(saver)
            for _ in range(cut):
                next(items)
        states = [saver.state_dict() for saver in savers]
        _require(
            all(state == states[0] for state in states),
            f"ranks of {before} saved different states after {cut} items each",
        )
        resumed = [_build(make, labels, world=after, rank=r) for r in range(after)]
        for r, sampler in enumerate(resumed):
            sampler.load_state_dict(states[(r + 1) % before])  # another rank's state
        rests = [list(sampler) for sampler in resumed]
        _require(
            len({len(rest) for rest in rests}) == 1,
            f"{before} -> {after} ranks: resumed ranks got {[len(r) for r in rests]} items",
        )
        merged = [item for step in zip(*rests, strict=True) for item in step]
        done = min(cut * before, len(whole))
        expected = (whole[done:] + whole * (len(merged) // max(len(whole), 1) + 1))[: len(merged)]
        _require(
            merged == expected and len(merged) >= len(whole) - done,
            f"{before} -> {after} ranks: the resumed ranks do not continue the global epoch "
            f"from position {done}",
        )
        for r, sampler in enumerate(resumed):
            _require(
                list(sampler) == _epoch(_build(make, labels, world=after, rank=r), 3),
                f"{before} -> {after} ranks: the pass after the resumed one is not epoch 3",
            )


def check_sampler_distributed_attributes(make: Factory, labels: Any) -> None:
    """A ``DistributedSampler`` keeps its contract: ``num_replicas``, ``rank``, ``epoch``,
    ``shuffle``, ``seed``, ``drop_last``, ``num_samples``, ``total_size`` and ``dataset`` in
    ``DistributedSampler``'s meaning, which trainers read (a sampler that is not one passes).

    ``num_samples`` and ``total_size`` are compared with those of a ``DistributedSampler``
    over an epoch of the same length on the same ranks.
    """
    whole = len(_epoch(_build(make, labels), 0))
    n = _check_inputs(make, labels).shape[0]
    for world, rank, drop_last in ((1, 0, False), (3, 1, False), (3, 2, True), (4, 3, False)):
        sampler = _build(make, labels, world=world, rank=rank, drop_last=drop_last)
        if not isinstance(sampler, DistributedSampler):
            return
        where = f"with num_replicas={world}, rank={rank}, drop_last={drop_last}"
        reference: DistributedSampler[int] = DistributedSampler(
            IndexDataset(whole), num_replicas=world, rank=rank, shuffle=False, drop_last=drop_last
        )
        attributes = {
            "num_replicas": world,
            "rank": rank,
            "seed": 3,
            "drop_last": drop_last,
            "num_samples": reference.num_samples,
            "total_size": reference.total_size,
        }
        for name, expected in attributes.items():
            got = getattr(sampler, name, AttributeError)
            _require(
                got == expected,
                f"{name} is {got!r} {where}; DistributedSampler's is {expected!r}",
            )
        _require(
            isinstance(getattr(sampler, "shuffle", None), bool), f"shuffle is not a bool {where}"
        )
        dataset: Any = getattr(sampler, "dataset", None)
        _require(
            hasattr(dataset, "__len__") and len(dataset) == n,
            f"dataset is {type(dataset).__name__}, not one of {n} samples {where}",
        )
        sampler.set_epoch(4)
        _require(sampler.epoch == 4, f"after set_epoch(4), epoch is {sampler.epoch!r} {where}")
        got = len(list(sampler))
        _require(
            got == sampler.num_samples == len(sampler),
            f"a pass yielded {got} indices, num_samples is {sampler.num_samples} {where}",
        )


def check_sampler_pickles(make: Factory, labels: Any) -> None:
    """A pickled copy draws the same epochs."""
    sampler = _build(make, labels)
    _needs(sampler, check_sampler_pickles)
    _require(
        _epoch(pickle.loads(pickle.dumps(sampler)), 4) == _epoch(sampler, 4),
        "a pickled copy draws another epoch",
    )


def check_sampler_dataloader(make: Factory, labels: Any, workers: int = 2) -> None:
    """A DataLoader with worker processes sees the sampler's order."""
    _check_inputs(make, labels, {"workers": workers})
    sampler = _build(make, labels)
    _needs(sampler, check_sampler_dataloader)
    sampler.set_epoch(6)
    expected = list(sampler)
    sampler.set_epoch(6)
    n = _check_inputs(make, labels).shape[0]
    if expected and isinstance(expected[0], list):
        loader = DataLoader(IndexDataset(n), batch_sampler=sampler, num_workers=workers)
    else:
        loader = DataLoader(IndexDataset(n), sampler=sampler, batch_size=8, num_workers=workers)
    got = [int(i) for batch in loader for i in batch]
    _require(got == _flat(expected), "a DataLoader with workers saw another order")


CHECKS: dict[str, Callable[[Factory, Any], None]] = {
    "basics": check_sampler_basics,
    "complete_pass": check_sampler_complete_pass,
    "checkpoints": check_sampler_checkpoints,
    "foreign_states": check_sampler_refuses_foreign_states,
    "states_any_world": check_sampler_states_any_world,
    "shards": check_sampler_shards,
    "distributed_attributes": check_sampler_distributed_attributes,
    "pickles": check_sampler_pickles,
}


def check_sampler(
    make: Factory,
    labels: Any = None,
    *,
    check_counts: bool = True,
    dataloader_workers: int = 2,
) -> None:
    """Run every conformance check on the sampler built by ``make``.

    The checks are also public one by one (``check_sampler_*``, listed in :data:`CHECKS`), so
    a test suite can report each separately.

    Args:
        make: ``make(labels, seed=..., num_replicas=..., rank=..., drop_last=...)``.
        labels: The labels to build it on; default :func:`conformance_labels`.
        check_counts: Compare the composition of an epoch with ``target_counts``.
        dataloader_workers: Worker processes for the DataLoader check (0 to skip it).

    Raises:
        AssertionError: Naming the first property that failed.

    Example:
        >>> from torch_balance import BalancedSampler
        >>> check_sampler(lambda y, **kw: BalancedSampler(y, "under", **kw), dataloader_workers=0)
    """
    labels = conformance_labels() if labels is None else labels
    _check_inputs(
        make, labels, {"check_counts": check_counts, "dataloader_workers": dataloader_workers}
    )
    check_sampler_basics(make, labels, check_counts=check_counts)
    for name, check in CHECKS.items():
        if name != "basics":
            check(make, labels)
    if dataloader_workers:
        check_sampler_dataloader(make, labels, dataloader_workers)
