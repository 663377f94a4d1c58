"""The balanced-stream checks: one function per property, :data:`STREAM_CHECKS`,
:func:`check_stream`.

A stream is built by a factory ``make(seed=..., num_replicas=..., rank=...)`` (the source,
strategy, ``epoch_length`` and the rest fixed inside it). Samples are compared through
``key(sample)`` (default the sample itself), which must be hashable: pass one for samples that
hold arrays (``key=lambda s: s["__key__"]``). Labels, for the counts, are read by
``label_fn(sample)`` (default as the streams read them: the second item of a tuple, or the
``"label"``/``"cls"``/``"target"`` entry of a dict).
"""

from __future__ import annotations

import pickle
import warnings
from collections import Counter
from collections.abc import Callable, Hashable, Iterable
from typing import Any

from torch.utils.data import DataLoader

from torch_balance.streams.sources import label_reader
from torch_balance.testing._support import Factory, _require

__all__ = [
    "STREAM_CHECKS",
    "check_stream",
    "check_stream_counts",
    "check_stream_dataloader",
    "check_stream_determinism",
    "check_stream_epochs",
    "check_stream_lengths",
    "check_stream_pickles",
    "check_stream_resume",
    "check_stream_shards",
]

Key = Callable[[Any], Hashable]

_REPEAT_WARNING = "without set_epoch"


def _build(make: Factory, seed: int = 3, world: int = 1, rank: int = 0) -> Any:
    try:
        return make(seed=seed, num_replicas=world, rank=rank)
    except TypeError as error:
        if "argument" not in str(error):
            raise
        raise AssertionError(
            "conformance: the factory is called as make(seed=..., num_replicas=..., rank=...) "
            f"and raised TypeError: {error}. Pass the options on "
            "(make = lambda **options: BalancedMix(sources, 'over', **options))"
        ) from error


def _keys(items: Iterable[Any], key: Key | None) -> list[Hashable]:
    return [item if key is None else key(item) for item in items]


def _pass(stream: Any, key: Key | None) -> list[Hashable]:
    """One pass, silent about a repeated epoch (the checks that mean to repeat one say so)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", f"(?s).*{_REPEAT_WARNING}", UserWarning)
        return _keys(stream, key)


def _epoch(stream: Any, epoch: int, key: Key | None) -> list[Hashable]:
    stream.set_epoch(epoch)
    return _pass(stream, key)


def _length(stream: Any) -> int | None:
    """``len(stream)``, or None where it has none (a pass that its data ends)."""
    try:
        return len(stream)
    except TypeError:
        return None


def _worlds(make: Factory, worlds: tuple[int, ...]) -> tuple[int, ...]:
    """``worlds``, or none where the stream has no ``len()``: its pass ends where its data
    does, which only one rank can do (such streams refuse more than one)."""
    return worlds if _length(_build(make)) is not None else ()


def _promised(stream: Any) -> dict[Any, int] | None:
    """The per-class counts of one epoch, where the stream promises them (it has a plan):
    a manifest's :class:`BalancedIterableDataset`, a :class:`BalancedMix` per class whose
    class streams cycle (with ``exhausted="stop"`` the first to run out ends the epoch)."""
    if getattr(stream, "plan", None) is None or not hasattr(stream, "target_counts"):
        return None
    if getattr(stream, "exhausted", "cycle") == "stop":
        return None
    return {k: v for k, v in stream.target_counts().items() if v}


def check_stream_lengths(make: Factory, *, key: Key | None = None) -> None:
    """Every rank of a world emits as many samples per epoch, ``len()`` where it has one
    (a stream without one is checked on one rank: its data ends its pass).

    Example:
        >>> from torch_balance import BalancedMix
        >>> from torch_balance.testing import check_stream_lengths
        >>> web, books = list("abcdefgh"), list("xyz")
        >>> def make(**kw):
        ...     return BalancedMix([web, books], proportions=[1, 1], epoch_length=12, **kw)
        >>> check_stream_lengths(make)
    """
    for world in (1, *_worlds(make, (2, 3))):
        streams = [_build(make, world=world, rank=r) for r in range(world)]
        got = [len(_epoch(s, 1, key)) for s in streams]
        _require(len(set(got)) == 1, f"the ranks of {world} emitted {got} samples in epoch 1")
        length = _length(streams[0])
        _require(
            length is None or got[0] == length,
            f"a rank of {world} emitted {got[0]} samples but len() is {length}",
        )
        _require(got[0] > 0, f"a rank of {world} emitted nothing in epoch 1")


def check_stream_determinism(make: Factory, *, key: Key | None = None) -> None:
    """The same (seed, epoch) gives the same samples in the same order; another epoch or
    another seed gives another order.

    Example:
        >>> from torch_balance import BalancedMix
        >>> from torch_balance.testing import check_stream_determinism
        >>> web, books = list("abcdefgh"), list("xyz")
        >>> def make(**kw):
        ...     return BalancedMix([web, books], proportions=[1, 1], epoch_length=12, **kw)
        >>> check_stream_determinism(make)
    """
    stream = _build(make)
    first = _epoch(stream, 0, key)
    _require(_epoch(_build(make), 0, key) == first, "the same seed and epoch gave another order")
    _require(
        _epoch(_build(make), 5, key) == _epoch(stream, 5, key),
        "epoch 5 differs between equal streams",
    )
    _require(_epoch(stream, 1, key) != first, "epoch 1 repeats epoch 0")
    _require(_epoch(_build(make, seed=4), 0, key) != first, "another seed gave the same order")
    _require(_epoch(stream, 0, key) == first, "going back to epoch 0 gave another order")


def check_stream_epochs(make: Factory, *, key: Key | None = None) -> None:
    """``set_epoch`` chooses the epoch; a second pass without it repeats the draw and warns
    once (a stream never moves on to the next epoch by itself); ``set_epoch`` with the same
    number repeats it silently.

    Example:
        >>> from torch_balance import BalancedMix
        >>> from torch_balance.testing import check_stream_epochs
        >>> web, books = list("abcdefgh"), list("xyz")
        >>> def make(**kw):
        ...     return BalancedMix([web, books], proportions=[1, 1], epoch_length=12, **kw)
        >>> check_stream_epochs(make)
    """
    stream = _build(make)
    _require(stream.epoch == 0, f"a new stream is at epoch {stream.epoch}, not 0")
    stream.set_epoch(3)
    _require(stream.epoch == 3, f"after set_epoch(3), epoch is {stream.epoch}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")

        def told() -> int:
            return sum(_REPEAT_WARNING in str(w.message) for w in caught)

        first = _keys(stream, key)
        _require(told() == 0, "the first pass of epoch 3 warned about a repeated epoch")
        _require(stream.epoch == 3, f"after a pass of epoch 3, epoch is {stream.epoch}")
        again = _keys(stream, key)
        _require(again == first, "a second pass without set_epoch is not epoch 3 again")
        _require(told() == 1, "a second pass without set_epoch gave no warning")
        _keys(stream, key)
        _require(told() == 1, "the repeated-epoch warning was given more than once")
        other = _build(make)
        for epoch in (3, 4, 4):
            got = _epoch(other, epoch, key)
        _require(told() == 1, "set_epoch before each pass (the same epoch too) warned")
        _require(got == _epoch(_build(make), 4, key), "set_epoch(4) twice gave another epoch 4")
        _require(first != got, "set_epoch(4) after epoch 3 gave epoch 3 again")


def check_stream_counts(
    make: Factory, *, key: Key | None = None, label_fn: Callable[[Any], Any] | None = None
) -> None:
    """On one rank the epoch's per-class counts are ``target_counts()``, where the stream
    promises them (it has a plan: a manifest's ``BalancedIterableDataset``, a
    ``BalancedMix`` per class); other streams pass.

    Example:
        >>> from torch_balance import BalancedMix
        >>> from torch_balance.testing import check_stream_counts
        >>> by_class = {"cat": [("c0", "cat"), ("c1", "cat")], "dog": [("d0", "dog")]}
        >>> check_stream_counts(lambda **kw: BalancedMix(by_class, "over", **kw))
    """
    read = label_reader(label_fn)
    for epoch in (0, 2):
        stream = _build(make)
        stream.set_epoch(epoch)
        planned = _promised(stream)
        if planned is None:
            return
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", f"(?s).*{_REPEAT_WARNING}", UserWarning)
            got = dict(Counter(read(sample) for sample in stream))
        _require(got == planned, f"epoch {epoch} holds {got}, target_counts() says {planned}")


def check_stream_resume(make: Factory, *, key: Key | None = None) -> None:
    """A state saved mid-pass and loaded into a fresh stream continues exactly (also after a
    ``set_epoch`` of the same epoch, as a DDP loop calls it); one saved at the epoch's end
    continues with the next epoch; one saved on another rank of the same world loads and
    continues this rank's pass (where the stream runs on several ranks: it has ``len()``).

    Example:
        >>> from torch_balance import BalancedMix
        >>> from torch_balance.testing import check_stream_resume
        >>> web, books = list("abcdefgh"), list("xyz")
        >>> def make(**kw):
        ...     return BalancedMix([web, books], proportions=[1, 1], epoch_length=12, **kw)
        >>> check_stream_resume(make)
    """
    whole = _epoch(_build(make), 2, key)
    length = len(whole)
    for cut in sorted({1, length // 2, length - 1} - {0, length}):
        run = _build(make)
        run.set_epoch(2)
        items = iter(run)
        for _ in range(cut):
            next(items)
        state = pickle.loads(pickle.dumps(run.state_dict()))
        resumed = _build(make)
        resumed.load_state_dict(state)
        _require(_pass(resumed, key) == whole[cut:], f"resume after {cut} samples repeats or skips")
        again = _build(make)
        again.load_state_dict(state)
        again.set_epoch(2)
        _require(
            _pass(again, key) == whole[cut:], f"set_epoch(2) after resuming at {cut} restarts it"
        )
    ended = _build(make)
    _epoch(ended, 2, key)
    state = pickle.loads(pickle.dumps(ended.state_dict()))
    late = _build(make)
    late.load_state_dict(state)
    _require(
        _pass(late, key) == _epoch(_build(make), 3, key),
        "a state saved at the end of epoch 2 does not continue with epoch 3",
    )
    late = _build(make)
    late.load_state_dict(state)
    late.set_epoch(2)
    _require(_pass(late, key) == [], "set_epoch(2) after a state saved at its end replays it")
    # another rank's state, the same world (Lightning saves rank 0's)
    if not _worlds(make, (2,)):
        return
    ranks = [_epoch(_build(make, world=2, rank=r), 2, key) for r in range(2)]
    cut = max(len(ranks[0]) // 2, 1)
    saver = _build(make, world=2, rank=0)
    saver.set_epoch(2)
    items = iter(saver)
    for _ in range(cut):
        next(items)
    other = _build(make, world=2, rank=1)
    other.load_state_dict(pickle.loads(pickle.dumps(saver.state_dict())))
    _require(
        _pass(other, key) == ranks[1][cut:],
        f"rank 1, loading rank 0's state after {cut} samples, does not continue its own pass",
    )


def check_stream_shards(
    make: Factory, *, key: Key | None = None, label_fn: Callable[[Any], Any] | None = None
) -> None:
    """Each rank of a world reads its own samples (no sample on two ranks); where the stream
    promises counts, the ranks together hold the plan's per-class counts, scaled to their
    padded or trimmed length, within one sample per rank. A stream without ``len()`` (one
    rank only) passes.

    Example:
        >>> from torch_balance import BalancedMix
        >>> from torch_balance.testing import check_stream_shards
        >>> web, books = list("abcdefgh"), list("xyz")
        >>> def make(**kw):
        ...     return BalancedMix([web, books], proportions=[1, 1], epoch_length=12, **kw)
        >>> check_stream_shards(make)
    """
    read = label_reader(label_fn)
    for world in _worlds(make, (2, 3)):
        streams = [_build(make, world=world, rank=r) for r in range(world)]
        raw = []
        for stream in streams:
            stream.set_epoch(1)
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", f"(?s).*{_REPEAT_WARNING}", UserWarning)
                raw.append(list(stream))
        seen = [set(_keys(part, key)) for part in raw]
        for r in range(world):
            for s in range(r + 1, world):
                shared = seen[r] & seen[s]
                _require(
                    not shared,
                    f"ranks {r} and {s} of {world} both emitted {sorted(map(repr, shared))[:3]}",
                )
        planned = _promised(streams[0])
        if planned is None:
            continue
        got = Counter(read(sample) for part in raw for sample in part)
        total, emitted = sum(planned.values()), sum(got.values())
        for label, count in planned.items():
            expected = count * emitted / total
            _require(
                abs(got[label] - expected) <= world,
                f"the ranks of {world} emitted {got[label]} of class {label!r}; the plan's "
                f"{count} of {total}, scaled to {emitted}, is {expected:.1f}",
            )


def check_stream_pickles(make: Factory, *, key: Key | None = None) -> None:
    """A pickled copy emits the same epochs (DataLoader workers get one).

    Example:
        >>> from torch_balance import BalancedMix
        >>> from torch_balance.testing import check_stream_pickles
        >>> web, books = list("abcdefgh"), list("xyz")
        >>> def make(**kw):
        ...     return BalancedMix([web, books], proportions=[1, 1], epoch_length=12, **kw)
        >>> check_stream_pickles(make)
    """
    stream = _build(make)
    stream.set_epoch(4)
    copy = pickle.loads(pickle.dumps(stream))
    _require(_pass(copy, key) == _epoch(_build(make), 4, key), "a pickled copy emits another epoch")
    _require(
        _epoch(copy, 2, key) == _epoch(_build(make), 2, key),
        "a pickled copy emits another epoch 2",
    )


def check_stream_dataloader(
    make: Factory,
    *,
    key: Key | None = None,
    label_fn: Callable[[Any], Any] | None = None,
    workers: int = 2,
) -> None:
    """Through a DataLoader with worker processes: ``len()`` samples per epoch, the same
    samples in the same order for equal streams, ``set_epoch`` reaching persistent workers,
    and (where promised) the plan's per-class counts within one sample per worker.

    Example:
        >>> from torch_balance import BalancedMix
        >>> from torch_balance.testing import check_stream_dataloader
        >>> web, books = list("abcdefgh"), list("xyz")
        >>> def make(**kw):
        ...     return BalancedMix([web, books], proportions=[1, 1], epoch_length=12, **kw)
        >>> check_stream_dataloader(make, workers=1)
    """
    read = label_reader(label_fn)
    stream = _build(make)
    stream.set_epoch(1)
    raw = list(DataLoader(stream, batch_size=None, num_workers=workers))
    first = _keys(raw, key)
    length = _length(stream)
    _require(
        length is None or len(first) == length,
        f"{workers} DataLoader workers gave {len(first)} samples; len() is {length}",
    )
    planned = _promised(stream)
    if planned is not None:
        got = Counter(read(sample) for sample in raw)
        for label, count in planned.items():
            _require(
                abs(got[label] - count) <= workers,
                f"{workers} DataLoader workers gave {got[label]} of class {label!r}; "
                f"target_counts() says {count}",
            )
    persistent = _build(make)
    loader = DataLoader(persistent, batch_size=None, num_workers=workers, persistent_workers=True)
    epochs = {}
    for epoch in (1, 0, 1):
        persistent.set_epoch(epoch)
        epochs[epoch] = _keys(loader, key)
        _require(
            epoch != 1 or epochs[1] == first,
            "equal streams gave another epoch 1 through DataLoader workers",
        )
    _require(epochs[0] != first, "set_epoch(0) did not reach persistent DataLoader workers")


STREAM_CHECKS: dict[str, Callable[..., None]] = {
    "lengths": check_stream_lengths,
    "determinism": check_stream_determinism,
    "epochs": check_stream_epochs,
    "counts": check_stream_counts,
    "resume": check_stream_resume,
    "shards": check_stream_shards,
    "pickles": check_stream_pickles,
    "dataloader": check_stream_dataloader,
}

_LABELLED = ("counts", "shards", "dataloader")


def check_stream(
    make: Factory,
    *,
    key: Key | None = None,
    label_fn: Callable[[Any], Any] | None = None,
    dataloader_workers: int = 2,
) -> None:
    """Run every conformance check on the balanced stream built by ``make``.

    The checks are also public one by one (``check_stream_*``, listed in
    :data:`STREAM_CHECKS`, each called as ``check(make, key=...)``, those that count classes
    also with ``label_fn=``), so a test suite can report each separately.

    Args:
        make: ``make(seed=..., num_replicas=..., rank=...)``, a stream with ``set_epoch``,
            ``state_dict`` and ``load_state_dict`` (a ``BalancedIterableDataset``, a
            ``BalancedMix`` or yours); a stream that needs ``epoch_length`` with several
            ranks gets it from ``make``.
        key: ``key(sample) -> hashable`` by which samples are compared; default the sample.
        label_fn: ``label_fn(sample) -> label`` for the counts; default as the streams read
            labels.
        dataloader_workers: Worker processes for the DataLoader check (0 to skip it).

    Raises:
        AssertionError: Naming the first property that failed.

    Example:
        >>> from torch_balance import BalancedMix
        >>> web, books = list("abcdefgh"), list("xyz")
        >>> def make(**kw):
        ...     return BalancedMix([web, books], proportions=[1, 1], epoch_length=12, **kw)
        >>> check_stream(make, dataloader_workers=0)
    """
    for name, check in STREAM_CHECKS.items():
        if name == "dataloader" and not dataloader_workers:
            continue
        options: dict[str, Any] = {"key": key}
        if name in _LABELLED:
            options["label_fn"] = label_fn
        if name == "dataloader":
            options["workers"] = dataloader_workers
        check(make, **options)
