"""Exact k nearest neighbours within one class, chunked, on the CPU or a GPU.

The neighbour search, per class of n rows and query chunks of b rows, uses O(b * n) extra
memory. Candidates come from float32 distances (``||x||^2 - 2 q.x`` by matrix product); they
are re-ranked with float64 distances computed from the differences, ties broken by the lower
index. A row is accepted only if a rounding-error bound proves that no sample outside its
candidates can be nearer; other rows are redone in float64, and rows that still cannot be
proven (exact duplicates, ties) by an exhaustive float64 scan. The result is the exact
neighbour list under the order (float64 distance, index), whatever the chunk size or device.

A :class:`Scratch` passed from one class to the next keeps the score block's memory: a fresh
block of that size costs about as much in first-touch page faults as the product filling it.
"""

from __future__ import annotations

import math

import torch

from torch_balance._validation import internal

__all__ = ["Scratch", "class_neighbors"]

# Elements of the default score block (query chunk x class size; 64 MiB in float32).
_SCORES = 1 << 24


def _unit_roundoff(dtype: torch.dtype, device: torch.device) -> float:
    """Unit roundoff of a matrix product in ``dtype`` under the current precision settings."""
    if dtype == torch.float64:
        return 2.0**-53
    precision = torch.get_float32_matmul_precision()
    if precision == "medium":
        return 2.0**-8  # bfloat16 products may be used
    if precision == "high" or (device.type == "cuda" and torch.backends.cuda.matmul.allow_tf32):
        return 2.0**-11  # TF32
    return 2.0**-24


def _select(dist: torch.Tensor, idx: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row, the ``k`` smallest entries under the order (distance, index)."""
    by_index = idx.argsort(dim=1, stable=True)
    dist, idx = dist.gather(1, by_index), idx.gather(1, by_index)
    by_dist = dist.argsort(dim=1, stable=True)[:, :k]
    return dist.gather(1, by_dist), idx.gather(1, by_dist)


def _exact_distances(data: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """float64 squared distances from the differences: ``[len(rows), cols.shape[1]]``."""
    b, width = cols.shape
    query = data.index_select(0, rows).double()
    diff = data.index_select(0, cols.reshape(-1)).double().view(b, width, -1)
    diff.sub_(query.unsqueeze(1))
    return diff.mul_(diff).sum(dim=-1)


def _temp_elements(device: torch.device) -> int:
    """Elements per elementwise temporary: moderate on the CPU (fresh large buffers cost page
    faults; many small operations cost thread synchronisation), large on a GPU."""
    return 1 << 20 if device.type == "cpu" else 1 << 22


# Columns per group in the candidate selection. Per row the selection reads every score once
# (the group minima), then selects among columns / _GROUP minima and among kc * _GROUP scores:
# on a 2-core AVX-512 CPU 64 beat 32 (and 96, 128) for classes of 4k to 72k rows.
_GROUP = 64
BIG = 1 << 22  # elements per temporary of the one-pass preparations (32 MiB in float64)


class _Centered:
    """One class's rows centred on their float64 mean, cast to a working dtype, and laid out
    for the score product: ``[c, |c|^2, 0...]`` rows by columns padded with zeros to a
    multiple of ``_GROUP``. The rows are padded to a multiple of 8 on a GPU (aligned loads) but
    only of 2 on the CPU, where MKL's float32 product measured fastest with an even width
    (d=128: 130 beat 129 and 136; d=64: 66 matched 65 and beat 64 and 72)."""

    def __init__(self, data: torch.Tensor, mean: torch.Tensor, dtype: torch.dtype) -> None:
        n, d = data.shape
        self.dtype = dtype
        multiple = 2 if data.device.type == "cpu" else 8
        self.width = (d + multiple) // multiple * multiple  # d + 1, rounded up
        self.columns = -(-n // _GROUP) * _GROUP
        self.values = torch.empty(n, d, dtype=dtype, device=data.device)
        if data.dtype == dtype:
            # In the data's own precision: subtracting the rounded mean shifts every row by the
            # same vector (distances unchanged) and rounds each entry relative to itself.
            torch.sub(data, mean.to(dtype), out=self.values)
        else:
            step = max(1, BIG // d)
            for lo in range(0, n, step):
                self.values[lo : lo + step] = (data[lo : lo + step].double() - mean).to(dtype)
        # score = |x|^2 - 2 q.x as one product: [-2q, 1, 0] . [x, |x|^2, 0].
        self.reference = torch.zeros(self.width, self.columns, dtype=dtype, device=data.device)
        self.reference[:d, :n] = self.values.T
        self.reference[d, :n] = (self.values * self.values).sum(dim=1)
        # Query side, prepared once: [-2c, 1, 0] (scaling by -2 is exact).
        self.queries = torch.zeros(n, self.width, dtype=dtype, device=data.device)
        torch.mul(self.values, -2.0, out=self.queries[:, :d])
        self.queries[:, d] = 1.0
        self.norms64 = torch.linalg.vector_norm(self.values, dim=1, dtype=torch.float64)
        self.max_norm = float(self.norms64.max())
        self.unit = _unit_roundoff(dtype, data.device)


class Scratch:
    """Memory for the score blocks, kept from one :func:`class_neighbors` call to the next.

    A block of tens of MiB freshly allocated for each class is paid for in page faults on
    its first write (on a 2-core CPU as long again as the product that fills it); a caller
    searching class after class passes one ``Scratch`` to every call. It holds the largest
    block asked of it until it is dropped.

    Example:
        >>> scratch = Scratch()
        >>> block = scratch.take((4, 8), torch.float32, torch.device("cpu"))
        >>> block.shape, scratch.take((2, 8), torch.float32, torch.device("cpu")).shape
        (torch.Size([4, 8]), torch.Size([2, 8]))
    """

    def __init__(self) -> None:
        self._memory: torch.Tensor | None = None

    def take(
        self, shape: tuple[int, int], dtype: torch.dtype, device: torch.device
    ) -> torch.Tensor:
        """An uninitialised ``shape`` block, reusing the held memory when it is large enough."""
        need = shape[0] * shape[1]
        memory = self._memory
        fits = memory is not None and memory.dtype == dtype and memory.device == device
        if memory is None or not fits or memory.numel() < need:
            self._memory = None  # the old block goes before the new one is made
            memory = self._memory = torch.empty(need, dtype=dtype, device=device)
        return memory[:need].view(shape)


def _candidates(scores: torch.Tensor, n: int, kc: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``kc`` smallest scores of each row (ascending) and their columns.

    Rows are cut into groups of ``_GROUP`` columns; the ``kc`` groups with the smallest
    minima hold the ``kc`` smallest entries (an entry outside them is at least its group's
    minimum, itself at least ``kc`` distinct entries inside them), so only those groups are
    searched: a pass of group minima instead of a full per-row selection.
    """
    b, columns = scores.shape
    groups = columns // _GROUP
    if groups <= kc:
        values, cols = scores.topk(kc, dim=1, largest=False, sorted=True)
        return values, cols
    chosen = scores.view(b, groups, _GROUP).amin(dim=2)
    chosen = chosen.topk(kc, dim=1, largest=False, sorted=False).indices
    # The chosen groups as whole rows of a [b * groups, _GROUP] view: copying contiguous
    # blocks is several times faster than an elementwise gather.
    flat = chosen + torch.arange(0, b * groups, groups, device=scores.device).unsqueeze(1)
    inside = scores.view(b * groups, _GROUP).index_select(0, flat.view(-1)).view(b, -1)
    values, where = inside.topk(kc, dim=1, largest=False, sorted=True)
    cols = torch.add(where % _GROUP, chosen.gather(1, where // _GROUP), alpha=_GROUP)
    return values, cols


def _certified_stage(
    data: torch.Tensor,
    centered: _Centered,
    rows: torch.Tensor,
    k: int,
    chunk: int,
    out: torch.Tensor,
    scratch: Scratch,
) -> torch.Tensor:
    """Candidates by matrix product, proven or re-ranked; returns the rows left unproven.

    With ``E`` a bound on the error of a computed score (plus ``|q|^2``) against the true
    squared distance: a row whose ``k + 1`` smallest scores are more than ``2E`` apart from
    each other has its exact neighbour list, in order, straight from the scores. Other rows
    are re-ranked by float64 distances over ``kc`` candidates and accepted when the k-th of
    those is below ``(largest candidate score) + |q|^2 - E``, a lower bound for any sample
    outside the candidates. The per-chunk loop holds only the product and the selection;
    the rest runs once over all rows (few large operations, not many small ones).
    """
    n, d = data.shape
    device = data.device
    r = rows.shape[0]
    kc = min(n - 1, k + max(k, 8))
    everything = kc == n - 1
    gaps = k if kc > k else k - 1  # consecutive gaps that fix the order (and membership)
    slack = (d + 8) * 2.0 * centered.unit
    buffer = scratch.take((min(chunk, r), centered.columns), centered.dtype, device)
    values = torch.empty(r, kc, dtype=centered.dtype, device=device)
    cand = torch.empty(r, kc, dtype=torch.long, device=device)
    steps = torch.arange(min(chunk, r), device=device)
    for lo in range(0, r, chunk):
        block = rows[lo : lo + chunk]
        b = block.shape[0]
        scores = buffer[:b]
        # The |q|^2 term is the same along a row and left out of the score.
        torch.mm(centered.queries.index_select(0, block), centered.reference, out=scores)
        scores[:, n:] = float("inf")
        scores[steps[:b], block] = float("inf")
        values[lo : lo + b], cand[lo : lo + b] = _candidates(scores, n, kc)
    del buffer
    values64 = values.double()
    q_norm = centered.norms64.index_select(0, rows)
    error = slack * (q_norm + centered.max_norm) ** 2
    fast = torch.isfinite(values64[:, kc - 1])
    if gaps > 0:
        spacing = values64[:, 1 : gaps + 1] - values64[:, :gaps]
        fast &= spacing.amin(dim=1) > 2.0 * error
    out.copy_(cand[:, :k])
    slow = torch.nonzero(~fast).flatten()
    pending: list[torch.Tensor] = []
    sub = max(1, _temp_elements(device) // (kc * d))
    for s in range(0, slow.shape[0], sub):
        part = slow[s : s + sub]
        picked = cand.index_select(0, part)
        exact = _exact_distances(data, rows.index_select(0, part), picked)
        dist, best = _select(exact, picked, k)
        out[part] = best
        if not everything:
            floor = values64.index_select(0, part)[:, kc - 1] + q_norm[part] ** 2
            floor = floor - error[part]
            proven = torch.isfinite(floor) & (dist[:, -1] < floor)
            pending.append(part[~proven])
    if not pending:
        return torch.empty(0, dtype=torch.long, device=device)
    return torch.cat(pending)


def _exhaustive_stage(data: torch.Tensor, rows: torch.Tensor, k: int) -> torch.Tensor:
    """Exact float64 scan of the whole class for ``rows`` (ties, duplicates)."""
    n, d = data.shape
    width = max(1, min(n, _temp_elements(data.device) // (4 * d)))
    group = max(1, _temp_elements(data.device) // (width * d))
    result = torch.empty(rows.shape[0], k, dtype=torch.long, device=data.device)
    for lo in range(0, rows.shape[0], group):
        block = rows[lo : lo + group]
        b = block.shape[0]
        best_d = torch.empty(b, 0, dtype=torch.float64, device=data.device)
        best_i = torch.empty(b, 0, dtype=torch.long, device=data.device)
        for start in range(0, n, width):
            cols = torch.arange(start, min(n, start + width), device=data.device)
            cols = cols.unsqueeze(0).expand(b, -1)
            dist = _exact_distances(data, block, cols)
            dist[cols == block.unsqueeze(1)] = float("inf")
            best_d, best_i = _select(
                torch.cat([best_d, dist], dim=1), torch.cat([best_i, cols], dim=1), k
            )
        result[lo : lo + b] = best_i
    return result


def _in_safe_range(data: torch.Tensor) -> torch.Tensor:
    """``data`` scaled by a power of two into a range where squared distances neither
    overflow nor vanish (around 1e19 and up they overflow float32, and float64 from 1e154).

    Scaling by a power of two is exact, and every distance scales alike, so the neighbours do
    not change; data already in range is returned as it is.
    """
    if data.numel() == 0:
        return data
    low, high = torch.aminmax(data)  # one pass, no |data| temporary
    peak = max(-float(low), float(high))
    if peak == 0.0 or _SAFE_LOW <= peak <= _SAFE_HIGH:
        return data
    return data * (2.0 ** -math.floor(math.log2(peak)))


_SAFE_LOW, _SAFE_HIGH = 2.0**-30, 2.0**30


def class_neighbors(
    data: torch.Tensor,
    rows: torch.Tensor | None,
    k: int,
    chunk_size: int | None,
    scratch: Scratch | None = None,
) -> torch.Tensor:
    """The ``k`` nearest other rows of ``data`` for each of ``rows`` (default: all).

    Args:
        data: ``[n, d]`` floating rows of one class, on the device to compute on.
        rows: Local row indices (any device), or None for every row.
        k: Neighbours per row, ``1 <= k < n``.
        chunk_size: Query rows per block; None picks one that keeps a block near 64 MiB.
        scratch: Memory for the score blocks, shared by the calls of one search over several
            classes; None makes a block for this call only.

    Returns:
        ``[len(rows), k]`` int64 local indices on the CPU, nearest first, ties by index.

    Example:
        >>> data = torch.tensor([[0.0], [1.0], [3.0], [7.0]])
        >>> class_neighbors(data, None, 2, None).tolist()
        [[1, 2], [0, 2], [1, 0], [2, 1]]
        >>> class_neighbors(data, torch.tensor([3]), 1, 1).tolist()
        [[2]]
    """
    n, d = data.shape
    internal(1 <= k < n, f"k={k} neighbours asked of a class of {n}")
    data = _in_safe_range(data)
    device = data.device
    rows = torch.arange(n, device=device) if rows is None else rows.to(device)
    if chunk_size is None:
        # Rows by the block budget, rounded down to a multiple of 8: an odd row count made
        # the float32 product about 10% slower (2-core AVX-512 EPYC, MKL, 233 against 232).
        fit = min(2048, _SCORES // n)
        chunk_size = fit // 8 * 8 if fit >= 8 else max(1, fit)
    chunk = chunk_size
    out = torch.full((rows.shape[0], k), -1, dtype=torch.long, device=device)
    scratch = Scratch() if scratch is None else scratch
    mean = torch.zeros(d, dtype=torch.float64, device=device)
    step = max(1, BIG // d)
    for lo in range(0, n, step):
        mean += data[lo : lo + step].double().sum(dim=0)
    mean /= n
    todo = torch.arange(rows.shape[0], device=device)
    for dtype in (torch.float32, torch.float64):
        centered = _Centered(data, mean, dtype)
        part = torch.empty(todo.shape[0], k, dtype=torch.long, device=device)
        left = _certified_stage(data, centered, rows[todo], k, chunk, part, scratch)
        done = torch.ones(todo.shape[0], dtype=torch.bool, device=device)
        done[left] = False
        out[todo[done]] = part[done]
        todo = todo[left]
        del centered
        if todo.numel() == 0:
            break
    if todo.numel():
        out[todo] = _exhaustive_stage(data, rows[todo], k)
    internal(bool((out >= 0).all()), "a neighbour row was left unfilled")
    return out.cpu()
