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
import sys
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any, NoReturn

import torch
import torch.distributed as dist

from torch_balance._threads import Prefetch, helper_allowed, run_ahead
from torch_balance._validation import check_bool, check_int, fail

__all__ = [
    "batch_sharder",
    "check_replicas",
    "current_ranks",
    "iter_shard",
    "iter_shard_chunks",
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


def _accelerate_codes() -> dict[Any, str]:
    """Code objects of accelerate's batch sharders, when accelerate is imported."""
    module = sys.modules.get("accelerate.data_loader")
    if module is None:
        return {}
    cached = _SHARDER_CODES.get(id(module))
    if cached is not None:
        return cached
    codes: dict[Any, str] = {}
    for name in ("BatchSamplerShard", "DataLoaderDispatcher", "IterableDatasetShard"):
        cls = getattr(module, name, None)
        for value in vars(cls).values() if cls is not None else ():
            code = getattr(value, "__code__", None)
            if code is not None:
                codes[code] = f"accelerate's {name}"
    _SHARDER_CODES[id(module)] = codes
    return codes


_SHARDER_CODES: dict[int, dict[Any, str]] = {}


def batch_sharder() -> str | None:
    """Name the trainer component that is sharding our output by rank itself, if any.

    accelerate's ``prepare()`` (and so the Hugging Face ``Trainer``) wraps a DataLoader's batch
    sampler in a ``BatchSamplerShard`` (or rank 0 reads every batch in a
    ``DataLoaderDispatcher``; an ``IterableDataset`` is wrapped in an ``IterableDatasetShard``
    when batches are not dispatched) and hands rank ``r`` every R-th batch. A sampler that shards as
    well leaves each rank 1/R² of the epoch. No public flag says whether a DataLoader has been
    prepared, so this looks at who is calling: when a sharder's method is on the call stack of
    ``len()`` or ``iter()``, the sampler hands out the global epoch and lets it shard.

    Example:
        >>> batch_sharder() is None
        True
    """
    codes = _accelerate_codes()
    if not codes:
        return None
    frame: FrameType | None = sys._getframe(1)
    for _ in range(_STACK_DEPTH):
        if frame is None:
            return None
        found = codes.get(frame.f_code)
        if found is not None:
            return found
        frame = frame.f_back
    return None


_STACK_DEPTH = 24


def current_ranks(num_replicas: int | None, rank: int | None) -> tuple[int, int]:
    """``(num_replicas, rank)`` for an epoch that starts now.

    Values given explicitly are kept. A missing one comes from ``torch.distributed`` when its
    process group is up, else it is 1 (or 0). When a trainer shards the batches itself (see
    :func:`batch_sharder`), the answer is ``(1, 0)``: the whole epoch, for it to split.

    Raises:
        ValueError: If ``num_replicas`` > 1 was given but a trainer shards the batches again,
            or if ``rank`` does not fit the world size.

    Example:
        >>> current_ranks(None, None)
        (1, 0)
        >>> current_ranks(4, 2)
        (4, 2)
    """
    sharder = batch_sharder()
    if sharder is not None:
        if (num_replicas or 1) > 1 or (rank or 0) > 0:
            fail(
                "num_replicas",
                f"None (or 1) when {sharder} shards the batches across ranks",
                num_replicas,
                "Leave num_replicas and rank unset: the sampler then yields the whole epoch and "
                "accelerate gives each rank its share (otherwise each rank would see "
                "1/num_replicas**2 of it)",
            )
        return 1, 0
    initialised = dist.is_available() and dist.is_initialized()
    world = (
        num_replicas if num_replicas is not None else dist.get_world_size() if initialised else 1
    )
    me = rank if rank is not None else dist.get_rank() if initialised else 0
    if me >= world:
        _bad_rank(world, me)
    return world, me


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
    """Yield this rank's part of ``values[order]`` as lists of Python ints, from ``start`` on.

    ``order`` is the shuffled global epoch (positions into ``values``). The gather runs a
    block of ``BLOCK`` positions at a time, in a helper thread where one may run (see
    :mod:`torch_balance._threads`; ``helper`` forces the choice), and every block is handed
    out as lists of ``LIST_CHUNK`` ints: 16K ints (about 0.6 MB of Python objects) stay in a
    core's L2 cache while the training loop reads them, where 64K did not. No list of the
    whole epoch is ever built.

    Example:
        >>> values, order = torch.tensor([10, 11, 12]), torch.tensor([2, 0, 1])
        >>> [list(iter_shard(values, order, 2, r, drop_last=False)) for r in (0, 1)]
        [[[12, 11]], [[10, 12]]]
    """
    length = order.shape[0]
    per_rank = shard_length(length, num_replicas, drop_last)
    if helper is None:
        helper = helper_allowed(per_rank - start)
    blocks = run_ahead(_gathered(values, order, num_replicas, rank, per_rank, start), helper=helper)
    for block in blocks:
        array = block.numpy()
        for begin in range(0, array.shape[0], LIST_CHUNK):
            yield array[begin : begin + LIST_CHUNK].tolist()


def _gathered(
    values: torch.Tensor,
    order: torch.Tensor,
    num_replicas: int,
    rank: int,
    per_rank: int,
    start: int,
) -> Iterator[torch.Tensor]:
    """This rank's ``values[order[positions]]`` from ``start`` on, a block at a time."""
    length = order.shape[0]
    for begin in range(start, per_rank, BLOCK):
        stop = min(begin + BLOCK, per_rank)
        if num_replicas == 1:
            yield values.index_select(0, order[begin:stop])
            continue
        positions = torch.arange(begin, stop, dtype=torch.int64) * num_replicas + rank
        if (stop - 1) * num_replicas + rank >= length:  # padding repeats the epoch's start
            positions = positions.remainder_(length)
        yield values.index_select(0, order.index_select(0, positions))


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
    epoch (the last chunk may be shorter). The rank keeps positions ``rank, rank + R, ...``
    with the same padding and ``drop_last`` rules. Where helpers may run, chunks are drawn up
    to three ahead on two threads (and, for more than one rank, this rank's blocks cut from
    them on a third), ahead of the lists handed out; the epoch is never held whole, and every
    thread is joined when the iterator ends, fails or is closed.

    Example:
        >>> epoch = torch.arange(10, 20)
        >>> def chunk(c): return epoch[c * 4 : (c + 1) * 4]
        >>> [sum(iter_shard_chunks(chunk, 4, 10, 3, r, drop_last=False), []) for r in range(3)]
        [[10, 13, 16, 19], [11, 14, 17, 10], [12, 15, 18, 11]]
    """
    per_rank = shard_length(length, num_replicas, drop_last)
    if helper is None:
        helper = helper_allowed(per_rank - start)
    # Chunks are drawn up to 3 ahead on two threads: the chunks are most of the work, and
    # each has its own generator. One rank hands each chunk out as it is (its positions are
    # consecutive); with more, a third thread cuts this rank's blocks from them.
    chunks = Prefetch(chunk, -(-length // chunk_size), helper=helper)
    if num_replicas == 1:
        blocks: Iterator[torch.Tensor] = _chunk_tails(chunks, chunk_size, length, start)
    else:
        blocks = run_ahead(
            _chunk_blocks(chunks, chunk_size, length, num_replicas, rank, per_rank, start),
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
    per_rank: int,
    start: int,
) -> Iterator[torch.Tensor]:
    """This rank's items from ``start`` on (of several ranks), a block at a time, each chunk
    drawn once (the first chunk again for the padding)."""
    held: tuple[int, torch.Tensor] | None = None

    def get(c: int) -> torch.Tensor:
        nonlocal held
        if held is None or held[0] != c:
            held = (c, chunk(c))
        return held[1]

    for begin in range(start, per_rank, BLOCK):
        stop = min(begin + BLOCK, per_rank)
        positions = torch.arange(begin, stop, dtype=torch.int64) * num_replicas + rank
        if (stop - 1) * num_replicas + rank >= length:  # padding repeats the epoch's start
            positions = positions.remainder_(length)
        ids = torch.div(positions, size, rounding_mode="floor")
        cuts = [0, *(torch.nonzero(ids[1:] != ids[:-1]).reshape(-1) + 1).tolist(), len(ids)]
        pieces = []
        for a, b in itertools.pairwise(cuts):
            c = int(ids[a])
            pieces.append(get(c).index_select(0, positions[a:b] - c * size))
        yield torch.cat(pieces)
