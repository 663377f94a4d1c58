"""Batch layouts: stratified batches and the P×K grid."""

from __future__ import annotations

import numpy as np
import torch

from torch_balance._validation import internal
from torch_balance.labels import LabelIndex

__all__ = ["class_balanced_grid", "class_sequence", "stratified_order"]


def stratified_order(
    picks: torch.Tensor, targets: np.ndarray, batch_size: int, g: torch.Generator
) -> torch.Tensor:
    """Arrange one epoch's draws into consecutive batches with stratified class counts.

    ``picks`` holds ``targets[c]`` draws of each class ``c``, grouped by class (as
    :func:`~torch_balance.draws.draw_epoch` returns them). With ``K`` draws in all, the result
    is cut into ``K // batch_size`` full batches and, when ``K % batch_size = m > 0``, a last
    batch of ``m``. Every full batch holds ``floor(B k_c / K)`` or ``ceil(B k_c / K)`` draws of
    class ``c``, and the last batch ``floor(m k_c / K)`` or ``ceil(m k_c / K)``: each count is
    within 1 of the epoch's proportion.

    How: each full batch first gets ``floor(B k_c / K)`` of every class and the short batch
    ``floor(m k_c / K)``; the short batch's missing places go to distinct classes with a
    fractional share, picked at random. What remains of each class is at most one per full
    batch; those leftovers are laid around a circle of the full batches class after class
    (classes in random order, from a random start), which gives every full batch the same
    number and no batch two leftovers of one class. Which draw of a class lands in which batch,
    the order of the full batches, and the order inside every batch are random; the short
    batch comes last.

    Args:
        picks: The epoch's draws grouped by class.
        targets: Draws per class (sums to ``len(picks)``).
        batch_size: ``B``.
        g: The epoch's generator.

    Returns:
        ``picks`` reordered so that batch ``b`` is ``result[b * B:(b + 1) * B]``.

    Example:
        >>> picks = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7, 8])
        >>> out = stratified_order(picks, np.array([6, 3]), 3, torch.Generator().manual_seed(0))
        >>> [sorted(int(i) >= 6 for i in out[b : b + 3]) for b in (0, 3, 6)]
        [[False, False, True], [False, False, True], [False, False, True]]
    """
    k = np.asarray(targets, dtype=np.int64)
    total = int(k.sum())
    internal(total == picks.shape[0], "stratified_order: targets do not sum to the draws")
    full, rem = divmod(total, batch_size)
    classes = k.shape[0]
    floor_full = (batch_size * k) // total
    floor_rem = (rem * k) // total
    short_extra = np.zeros(classes, dtype=np.int64)
    missing = rem - int(floor_rem.sum())
    if missing > 0:
        eligible = np.flatnonzero((rem * k) % total)
        chosen = torch.randperm(eligible.shape[0], generator=g)[:missing].numpy()
        short_extra[eligible[chosen]] = 1
    head = floor_rem + short_extra
    tokens = k - full * floor_full - head
    per_batch = batch_size - int(floor_full.sum())
    internal(
        bool((tokens >= 0).all() and (tokens <= max(full, 0)).all())
        and int(tokens.sum()) == full * per_batch,
        "stratified_order: leftover counts do not fit the batches",
    )
    # Place every draw directly (no sort). A full batch b is laid out as the "base" block,
    # floor(B k_c / K) places per class at fixed offsets, then its per_batch leftover places.
    # Leftover number tau (counted around the circle from a random offset) goes to batch
    # (offset + tau) % full, in the next free leftover place of that batch.
    base_offset = np.concatenate([[0], np.cumsum(floor_full)[:-1]])
    base_total = int(floor_full.sum())
    head_offset = np.concatenate([[0], np.cumsum(head)[:-1]])
    laid = np.zeros(classes, dtype=np.int64)
    offset = 0
    if full:
        circle = torch.randperm(classes, generator=g).numpy()
        offset = int(torch.randint(full, (1,), generator=g))
        laid[circle] = np.concatenate([[0], np.cumsum(tokens[circle])[:-1]])
    out = torch.empty_like(picks)
    first = 0
    for code in range(classes):
        n = int(k[code])
        if n == 0:
            continue
        parts = []
        h, f, t = int(head[code]), int(floor_full[code]), int(tokens[code])
        if h:
            parts.append(full * batch_size + int(head_offset[code]) + np.arange(h))
        if f and full:  # rank q * full + b goes to place q of the class in batch b
            rows = np.arange(full, dtype=np.int64) * batch_size + int(base_offset[code])
            parts.append((rows[None, :] + np.arange(f, dtype=np.int64)[:, None]).reshape(-1))
        if t:
            u = offset + int(laid[code]) + np.arange(t)
            batch = u % full
            place = u // full - (batch < offset)
            parts.append(batch * batch_size + base_total + place)
        places = torch.from_numpy(np.concatenate(parts) if len(parts) > 1 else parts[0])
        # which draw of the class takes which place: a random permutation of the class
        mine = picks[first : first + n].index_select(0, torch.randperm(n, generator=g))
        out.index_copy_(0, places, mine)
        first += n
    if full:
        grid = out[: full * batch_size].view(full, batch_size)
        grid.copy_(grid.index_select(0, torch.randperm(full, generator=g)))  # batch order
        step = max(1, (1 << 20) // batch_size)
        for row in range(0, full, step):  # order inside each batch, a block of rows at a time
            block = grid[row : row + step]
            shuffle = torch.rand(block.shape, generator=g).argsort(dim=1)
            block.copy_(block.gather(1, shuffle))
    if rem:
        tail = out[full * batch_size :]
        tail.copy_(tail.index_select(0, torch.randperm(rem, generator=g)))
    return out


def class_sequence(
    num_classes: int, classes_per_batch: int, num_batches: int, g: torch.Generator
) -> np.ndarray:
    """The classes of every batch: ``(num_batches, classes_per_batch)`` distinct class codes.

    The slots are filled by random permutations of all classes laid end to end, so over the
    epoch every class fills ``floor(S / C)`` or ``ceil(S / C)`` of the ``S`` slots. Where a
    batch straddles two permutations, the head of the second is reordered (the first classes
    that the batch does not already hold move to the front, the rest keep their order), so no
    batch repeats a class and each permutation stays a permutation.

    Example:
        >>> groups = class_sequence(5, 3, 4, torch.Generator().manual_seed(0))
        >>> all(len(set(row)) == 3 for row in groups.tolist())
        True
        >>> sorted(np.bincount(groups.reshape(-1), minlength=5).tolist())
        [2, 2, 2, 3, 3]
    """
    c, p = num_classes, classes_per_batch
    slots = num_batches * p
    rows = -(-slots // c)
    perms = torch.rand(rows, c, generator=g).argsort(dim=1).numpy().astype(np.int64)
    seam_rows = np.arange(1, rows)
    tail_len = (seam_rows * c) % p
    seam_rows, tail_len = seam_rows[tail_len > 0], tail_len[tail_len > 0]
    if seam_rows.shape[0] and c >= 3 * p - 2:
        # the part of a row that a fix may reorder never reaches the tail the next seam reads
        width = min(c, 2 * p - 1)
        marks = np.zeros((seam_rows.shape[0], c), dtype=bool)
        for back in range(1, p):
            has = tail_len >= back
            marks[np.flatnonzero(has), perms[seam_rows[has] - 1, c - back]] = True
        window = perms[seam_rows, :width]
        clash = np.take_along_axis(marks, window, axis=1)
        free = ~clash
        rank = np.cumsum(free, axis=1) - 1
        front = free & (rank < (p - tail_len)[:, None])
        order = np.argsort(~front, axis=1, kind="stable")
        perms[seam_rows, :width] = np.take_along_axis(window, order, axis=1)
    elif seam_rows.shape[0]:
        table = perms.tolist()
        for row, t in zip(seam_rows.tolist(), tail_len.tolist(), strict=True):
            held = set(table[row - 1][c - t :])
            need = p - t
            ahead: list[int] = []
            rest: list[int] = []
            for value in table[row]:
                if len(ahead) < need and value not in held:
                    ahead.append(value)
                else:
                    rest.append(value)
            table[row] = ahead + rest
        perms = np.asarray(table, dtype=np.int64)
    return perms.reshape(-1)[:slots].reshape(num_batches, p)


def _walk(n: int, need: int, g: torch.Generator) -> torch.Tensor:
    """``need`` positions in ``range(n)``: random permutations of it, one after another."""
    cycles = -(-need // n)
    if cycles == 1:
        return torch.randperm(n, generator=g)[:need]
    if n >= 512:
        return torch.cat([torch.randperm(n, generator=g) for _ in range(cycles)])[:need]
    # many short permutations at once
    return torch.rand(cycles, n, generator=g).argsort(dim=1).reshape(-1)[:need]


def class_balanced_grid(
    index: LabelIndex, groups: np.ndarray, samples_per_class: int, g: torch.Generator
) -> torch.Tensor:
    """Fill the class groups of :func:`class_sequence` with samples: ``(num_batches, P * K)``.

    Each class walks through random permutations of its samples, one after another, so within
    the epoch every sample of a class is used once before any is used again. A batch lists its
    classes in turn, ``K`` consecutive samples each.

    Example:
        >>> index = LabelIndex([0, 0, 1, 1, 1, 2])
        >>> g = torch.Generator().manual_seed(0)
        >>> grid = class_balanced_grid(index, np.array([[0, 1], [2, 1]]), 2, g)
        >>> [sorted(index.labels[row].tolist()) for row in grid.tolist()]
        [[0, 0, 1, 1], [1, 1, 2, 2]]
    """
    num_batches, p = groups.shape
    k = samples_per_class
    flat = groups.reshape(-1)
    appearances = np.bincount(flat, minlength=index.num_classes)
    pieces = []
    for code in np.flatnonzero(appearances).tolist():
        need = int(appearances[code]) * k
        members = index.members(code)
        n = members.shape[0]
        pieces.append(members.index_select(0, _walk(n, need, g)))
    draws = torch.cat(pieces).view(-1, k)
    slot_order = torch.from_numpy(np.argsort(flat, kind="stable"))
    grid = torch.empty_like(draws)
    grid[slot_order] = draws
    return grid.view(num_batches, p * k)
