"""Sharding one global epoch across ranks, with ``DistributedSampler``'s rules.

Every rank builds the same global epoch (same seed, same epoch) and keeps positions
``rank, rank + R, rank + 2R, ...``. Without ``drop_last`` the epoch is padded by repeating its
first indices so that every rank gets ``ceil(K / R)``; with ``drop_last`` the tail is dropped so
that every rank gets ``floor(K / R)``. Either way every rank yields the same number of indices,
so collective operations in DDP never wait on a rank that ran out early.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.distributed as dist

from torch_balance._validation import check_bool, check_int, fail

__all__ = ["iter_shard", "resolve_replicas", "shard_length"]

CHUNK = 1 << 16


def resolve_replicas(num_replicas: int | None, rank: int | None) -> tuple[int, int]:
    """Fill in ``num_replicas`` and ``rank`` from ``torch.distributed`` when it is initialised.

    Example:
        >>> resolve_replicas(None, None)
        (1, 0)
        >>> resolve_replicas(4, 2)
        (4, 2)
    """
    initialised = dist.is_available() and dist.is_initialized()
    if num_replicas is None:
        num_replicas = dist.get_world_size() if initialised else 1
    if rank is None:
        rank = dist.get_rank() if initialised else 0
    num_replicas = check_int("num_replicas", num_replicas, minimum=1)
    rank = check_int(
        "rank",
        rank,
        minimum=0,
        maximum=num_replicas - 1,
        fix=f"Ranks run from 0 to num_replicas - 1 = {num_replicas - 1}",
    )
    return num_replicas, rank


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
) -> Iterator[list[int]]:
    """Yield this rank's part of ``values[order]`` as lists of Python ints, from ``start`` on.

    ``order`` is the shuffled global epoch (positions into ``values``). Work and memory are
    per chunk of ``CHUNK`` positions, so no list of the whole epoch is ever built.
    """
    length = order.shape[0]
    per_rank = shard_length(length, num_replicas, drop_last)
    if num_replicas == 1:
        for begin in range(start, per_rank, CHUNK):
            stop = min(begin + CHUNK, per_rank)
            yield values.index_select(0, order[begin:stop]).tolist()
        return
    for begin in range(start, per_rank, CHUNK):
        stop = min(begin + CHUNK, per_rank)
        positions = torch.arange(begin, stop, dtype=torch.int64) * num_replicas + rank
        if (stop - 1) * num_replicas + rank >= length:
            positions = positions.remainder_(length)
        yield values.index_select(0, order.index_select(0, positions)).tolist()
