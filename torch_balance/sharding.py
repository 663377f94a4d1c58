"""Sharding one global epoch across ranks, with ``DistributedSampler``'s rules.

Every rank builds the same global epoch (same seed, same epoch) and keeps positions
``rank, rank + R, rank + 2R, ...``. Without ``drop_last`` the epoch is padded by repeating its
first indices so that every rank gets ``ceil(K / R)``; with ``drop_last`` the tail is dropped so
that every rank gets ``floor(K / R)``. Either way every rank yields the same number of indices,
so collective operations in DDP never wait on a rank that ran out early.

Ranks are looked up when an epoch starts (:func:`current_ranks`), not when a sampler is built,
so a sampler made before ``init_process_group`` (in a ``LightningModule.__init__``, say) still
shards once the group is up.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable, Iterator
from typing import Any, NoReturn

import numpy as np
import torch

from torch_balance._collective import group_ranks, trainer_sharder
from torch_balance._threads import Prefetch, helper_allowed, run_ahead
from torch_balance._validation import check_bool, check_int, fail

__all__ = [
    "check_replicas",
    "current_ranks",
    "iter_shard",
    "iter_shard_chunks",
    "pass_length",
    "reader_positions",
    "shard_length",
]

CHUNK = 1 << 16
BLOCK = 1 << 18
LIST_CHUNK = 1 << 14


def check_replicas(num_replicas: Any, rank: Any) -> tuple[int | None, int | None]:
    """Validate ``num_replicas`` and ``rank`` as given (None means: ask when an epoch starts).

    Example:
        >>> check_replicas(None, None), check_replicas(4, 2)
        ((None, None), (4, 2))
    """
    num_replicas = check_int("num_replicas", num_replicas, minimum=1, allow_none=True)
    rank = check_int("rank", rank, minimum=0, allow_none=True)
    if num_replicas is not None and rank is not None and rank >= num_replicas:
        _bad_rank(num_replicas, rank)
    return num_replicas, rank


def _bad_rank(num_replicas: int, rank: int) -> NoReturn:
    fail(
        "rank",
        f"an integer in [0, {num_replicas - 1}]",
        rank,
        f"Ranks run from 0 to num_replicas - 1 = {num_replicas - 1}",
    )


def current_ranks(num_replicas: int | None, rank: int | None, group: Any = None) -> tuple[int, int]:
    """``(num_replicas, rank)`` for an epoch that starts now.

    Values given explicitly are kept. A missing one comes from ``group`` (the data-parallel
    group named with ``process_group=``), else from ``torch.distributed``'s default group when
    it is up, else it is 1 (or 0). When accelerate runs on several processes and no group is
    named, its ``prepare()`` shards the batches itself
    (:func:`~torch_balance._collective.trainer_sharder`), so the answer is ``(1, 0)``: the
    whole epoch, for it to split. The answer depends only on this process's state, never on
    who asks.

    Raises:
        ValueError: If ``rank`` does not fit the world size.

    Example:
        >>> current_ranks(None, None)
        (1, 0)
        >>> current_ranks(4, 2)
        (4, 2)
    """
    if num_replicas is None or rank is None:
        if group is None and trainer_sharder() is not None:
            if num_replicas is None and rank is None:
                return 1, 0
            _warn_told_ranks(num_replicas, rank)
        size, me = group_ranks(group)
        num_replicas = size if num_replicas is None else num_replicas
        rank = me if rank is None else rank
    elif group is None and trainer_sharder() is not None:
        _warn_told_ranks(num_replicas, rank)
    if rank >= num_replicas:
        _bad_rank(num_replicas, rank)
    return num_replicas, rank


_WARNED: set[str] = set()


def _warn_told_ranks(num_replicas: int | None, rank: int | None) -> None:
    """Ranks given by hand while accelerate shards prepared loaders: right only for a loader
    that does not go through ``prepare()``; said once per process."""
    if "ranks" in _WARNED:
        return
    _WARNED.add("ranks")
    warnings.warn(
        f"num_replicas={num_replicas}, rank={rank} given while accelerate runs on several "
        "processes: a DataLoader that goes through accelerator.prepare() is sharded by "
        "accelerate as well, and each rank would see 1/num_replicas**2 of the epoch. Leave "
        "num_replicas and rank unset for prepared loaders (the sampler then yields the whole "
        "epoch and accelerate splits it)",
        UserWarning,
        stacklevel=4,
    )


def shard_length(length: int, num_replicas: int, drop_last: bool) -> int:
    """Indices each rank yields for a global epoch of ``length``.

    Example:
        >>> shard_length(10, 4, drop_last=False), shard_length(10, 4, drop_last=True)
        (3, 2)
    """
    check_bool("drop_last", drop_last)
    if drop_last:
        per_rank = length // num_replicas
        if per_rank == 0:
            fail(
                "drop_last",
                f"False when the epoch ({length}) is shorter than num_replicas ({num_replicas})",
                drop_last,
                "Every rank would get nothing; use drop_last=False or a longer epoch",
            )
        return per_rank
    return -(-length // num_replicas)


def pass_length(length: int, start: int, num_replicas: int, drop_last: bool) -> int:
    """Indices each rank yields in a pass over positions ``[start, length)`` of a global epoch.

    A pass that starts at 0 is :func:`shard_length`'s; one resumed at global position
    ``start`` shares what is left by the same rules (padded, or cut with ``drop_last``), so a
    state saved with R ranks continues with R' ranks from the same place.

    Example:
        >>> pass_length(10, 0, 4, False), pass_length(10, 6, 3, False), pass_length(10, 6, 3, True)
        (3, 2, 1)
    """
    if start == 0:
        return shard_length(length, num_replicas, drop_last)
    left = max(length - start, 0)
    return left // num_replicas if drop_last else -(-left // num_replicas)


def reader_positions(
    length: int,
    num_replicas: int,
    rank: int,
    drop_last: bool,
    worker: int = 0,
    num_workers: int = 1,
    chunk: int = CHUNK,
) -> Iterator[np.ndarray]:
    """The global positions one reader (a rank's DataLoader worker) holds in an epoch of
    ``length``, ``chunk`` at a time: the rank's positions as :func:`iter_shard` keeps them
    (``rank``, ``rank + R``, ...; past the end the epoch's start again, or the tail dropped
    with ``drop_last``), then every ``num_workers``-th of those from ``worker`` on.

    Nothing of the epoch is built: the cost follows the reader's own positions, ``chunk``
    of them in memory at a time.

    Example:
        >>> [p.tolist() for p in reader_positions(10, 4, 3, False, chunk=2)]
        [[3, 7], [1]]
        >>> [p.tolist() for p in reader_positions(10, 2, 1, False, worker=1, num_workers=2)]
        [[3, 7]]
    """
    count = shard_length(length, num_replicas, drop_last)
    step = num_workers * chunk
    for begin in range(worker, count, step):
        items = np.arange(begin, min(begin + step, count), num_workers, dtype=np.int64)
        positions = items * num_replicas + rank
        if positions.shape[0] and int(positions[-1]) >= length:
            positions %= length  # the padding repeats the epoch's start
        yield positions


def iter_shard(
    values: torch.Tensor,
    order: torch.Tensor,
    num_replicas: int,
    rank: int,
    drop_last: bool,
    start: int = 0,
    *,
    helper: bool | None = None,
) -> Iterator[list[int]]:
    """Yield this rank's part of ``values[order]`` as lists of Python ints.

    ``order`` is the shuffled global epoch (positions into ``values``); the pass covers its
    positions from the global position ``start`` on (0 for a whole epoch, more for a resumed
    one), and this rank keeps ``start + rank``, ``start + rank + R``, ... (see
    :func:`pass_length` for the padding and ``drop_last``). The gather runs a
    block of ``BLOCK`` positions at a time, in a helper thread where one may run (see
    :mod:`torch_balance._threads`; ``helper`` forces the choice), and every block is handed
    out as lists of ``LIST_CHUNK`` ints: 16K ints (about 0.6 MB of Python objects) stay in a
    core's L2 cache while the training loop reads them, where 64K did not. No list of the
    whole epoch is ever built.

    Example:
        >>> values, order = torch.tensor([10, 11, 12]), torch.tensor([2, 0, 1])
        >>> [list(iter_shard(values, order, 2, r, drop_last=False)) for r in (0, 1)]
        [[[12, 11]], [[10, 12]]]
        >>> list(iter_shard(values, order, 1, 0, drop_last=False, start=1))
        [[10, 11]]
    """
    count = pass_length(order.shape[0], start, num_replicas, drop_last)
    if helper is None:
        helper = helper_allowed(count)
    blocks = run_ahead(_gathered(values, order, num_replicas, rank, count, start), helper=helper)
    for block in blocks:
        array = block.numpy()
        for begin in range(0, array.shape[0], LIST_CHUNK):
            yield array[begin : begin + LIST_CHUNK].tolist()


def _gathered(
    values: torch.Tensor,
    order: torch.Tensor,
    num_replicas: int,
    rank: int,
    count: int,
    start: int,
) -> Iterator[torch.Tensor]:
    """This rank's ``count`` items of ``values[order]`` from global position ``start`` on, a
    block at a time."""
    length = order.shape[0]
    for begin in range(0, count, BLOCK):
        stop = min(begin + BLOCK, count)
        if num_replicas == 1:
            yield values.index_select(0, order[start + begin : start + stop])
            continue
        yield values.index_select(
            0, order.index_select(0, _positions(begin, stop, length, num_replicas, rank, start))
        )


def _positions(
    begin: int, stop: int, length: int, num_replicas: int, rank: int, start: int
) -> torch.Tensor:
    """Global positions of this rank's items ``begin`` to ``stop`` of a pass from ``start``;
    padding past the end repeats the epoch's start."""
    positions = torch.arange(begin, stop, dtype=torch.int64) * num_replicas + (start + rank)
    if start + (stop - 1) * num_replicas + rank >= length:
        positions = positions.remainder_(length)
    return positions


def iter_shard_chunks(
    chunk: Callable[[int], torch.Tensor],
    chunk_size: int,
    length: int,
    num_replicas: int,
    rank: int,
    drop_last: bool,
    start: int = 0,
    *,
    helper: bool | None = None,
) -> Iterator[list[int]]:
    """:func:`iter_shard` for an epoch made of chunks drawn one at a time.

    ``chunk(c)`` returns positions ``[c * chunk_size, (c + 1) * chunk_size)`` of the global
    epoch (the last chunk may be shorter). The rank keeps positions ``start + rank``,
    ``start + rank + R``, ... with the same padding and ``drop_last`` rules. Where helpers may
    run, chunks are drawn up to three ahead on two threads (and, for more than one rank, this
    rank's blocks cut from them on a third), ahead of the lists handed out; the epoch is never
    held whole, and every thread is joined when the iterator ends, fails or is closed.

    Example:
        >>> epoch = torch.arange(10, 20)
        >>> def chunk(c): return epoch[c * 4 : (c + 1) * 4]
        >>> [sum(iter_shard_chunks(chunk, 4, 10, 3, r, drop_last=False), []) for r in range(3)]
        [[10, 13, 16, 19], [11, 14, 17, 10], [12, 15, 18, 11]]
    """
    count = pass_length(length, start, num_replicas, drop_last)
    if helper is None:
        helper = helper_allowed(count)
    # Chunks are drawn up to 3 ahead on two threads: the chunks are most of the work, and
    # each has its own generator. One rank hands each chunk out as it is (its positions are
    # consecutive); with more, a third thread cuts this rank's blocks from them.
    chunks = Prefetch(chunk, -(-length // chunk_size), helper=helper)
    if num_replicas == 1:
        blocks: Iterator[torch.Tensor] = _chunk_tails(chunks, chunk_size, length, start)
    else:
        blocks = run_ahead(
            _chunk_blocks(chunks, chunk_size, length, num_replicas, rank, count, start),
            helper=helper,
        )
    try:
        for block in blocks:
            array = block.numpy()
            for begin in range(0, array.shape[0], LIST_CHUNK):
                yield array[begin : begin + LIST_CHUNK].tolist()
    finally:
        close = getattr(blocks, "close", None)
        if close is not None:  # stops and joins the block thread before the chunk threads
            close()
        chunks.close()


def _chunk_tails(
    chunk: Callable[[int], torch.Tensor], size: int, length: int, start: int
) -> Iterator[torch.Tensor]:
    """One rank's whole epoch from ``start`` on: each chunk in turn, the first cut at ``start``."""
    for c in range(start // size, -(-length // size)):
        values = chunk(c)
        yield values[start - c * size :] if c == start // size else values


def _chunk_blocks(
    chunk: Callable[[int], torch.Tensor],
    size: int,
    length: int,
    num_replicas: int,
    rank: int,
    count: int,
    start: int,
) -> Iterator[torch.Tensor]:
    """This rank's ``count`` items from global position ``start`` on (of several ranks), a
    block at a time, each chunk drawn once (the first chunk again for the padding)."""
    held: tuple[int, torch.Tensor] | None = None

    def get(c: int) -> torch.Tensor:
        nonlocal held
        if held is None or held[0] != c:
            held = (c, chunk(c))
        return held[1]

    for begin in range(0, count, BLOCK):
        stop = min(begin + BLOCK, count)
        positions = _positions(begin, stop, length, num_replicas, rank, start)
        ids = torch.div(positions, size, rounding_mode="floor")
        cuts = [0, *(torch.nonzero(ids[1:] != ids[:-1]).reshape(-1) + 1).tolist(), len(ids)]
        pieces = []
        for a, b in itertools.pairwise(cuts):
            c = int(ids[a])
            pieces.append(get(c).index_select(0, positions[a:b] - c * size))
        yield torch.cat(pieces)
