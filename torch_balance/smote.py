"""SMOTE in embedding space: a batched encoder pass, a torch-native SMOTE, its variants.

:func:`embed` runs an encoder over a dataset once and returns its embeddings and labels.
:class:`SMOTE` over-samples them with imbalanced-learn's semantics (same per-class counts,
same ``sampling_strategy`` rules, same output layout) but in torch, on the CPU or a GPU, with an
exact chunked nearest-neighbour search. ``SMOTE(resampler=...)`` applies any imbalanced-learn
over-sampler (``BorderlineSMOTE``, ``SVMSMOTE``, ``ADASYN``, ``KMeansSMOTE``, ...) through the
same interface. :class:`SMOTEDataset` is the dataset a classifier head is retrained on: real
embeddings plus synthetic ones, redrawn by ``set_epoch``.

How a synthetic row is made (Chawla et al., JAIR 2002): for class c needing m new rows, draw a
base sample x uniformly from class c, one of its k nearest same-class neighbours x_nn
uniformly (exact Euclidean distance, the base itself excluded by index, so duplicates of the
base still count as neighbours), and u ~ U[0, 1); the new row is x + u * (x_nn - x). All draws
come, on the CPU, from one ``torch.Generator`` seeded from (seed, epoch), so a CUDA run draws
exactly what a CPU run draws.

The neighbour search, per class of n rows and query chunks of b rows, uses O(b * n) extra
memory. Candidates come from float32 distances (``||x||^2 - 2 q.x`` by matrix product); they
are re-ranked with float64 distances computed from the differences, ties broken by the lower
index. A row is accepted only if a rounding-error bound proves that no sample outside its
candidates can be nearer; other rows are redone in float64, and rows that still cannot be
proven (exact duplicates, ties) by an exhaustive float64 scan. The result is the exact
neighbour list under the order (float64 distance, index), whatever the chunk size or device.
"""

from __future__ import annotations

import hashlib
import numbers
import os
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from torch_balance._epoch import SharedEpoch, check_epoch
from torch_balance._rng import Stream, generator
from torch_balance._validation import (
    check_bool,
    check_index,
    check_int,
    check_map_style,
    check_seed,
    fail,
    internal,
)
from torch_balance.labels import LabelIndex, as_label_array, get_labels
from torch_balance.strategies import _imblearn_targets

__all__ = ["SMOTE", "SMOTEDataset", "embed"]

# Elements of the default score block (query chunk x class size; 64 MiB in float32).
_SCORES = 1 << 24


class _Text:
    """Shows a description instead of a ``repr`` in error messages."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


# --------------------------------------------------------------------------------------------
# Devices and argument checks
# --------------------------------------------------------------------------------------------


def _check_device(device: Any) -> torch.device | None:
    if device is None:
        return None
    if not isinstance(device, str | torch.device):
        fail("device", "None, a string such as 'cuda' or a torch.device", device, kind=TypeError)
    try:
        return torch.device(device)
    except RuntimeError:
        fail("device", "a device name such as 'cpu', 'cuda' or 'cuda:1'", device)


def _module_device(module: torch.nn.Module) -> torch.device:
    for parameter in module.parameters():
        return parameter.device
    for buffer in module.buffers():
        return buffer.device
    return torch.device("cpu")


def _check_module(name: str, module: Any) -> torch.nn.Module:
    if not isinstance(module, torch.nn.Module):
        fail(name, "a torch.nn.Module", type(module).__name__, kind=TypeError)
    return module


def _check_strategy(sampling_strategy: Any) -> Any:
    if isinstance(sampling_strategy, bool) or not (
        # A list gets imbalanced-learn's ValueError (lists are for cleaning methods).
        isinstance(sampling_strategy, str | numbers.Real | Mapping | list)
        or callable(sampling_strategy)
    ):
        fail(
            "sampling_strategy",
            "a string, a float (binary only), a dict {class: count} or a callable",
            sampling_strategy,
            "See imbalanced-learn's SMOTE for the meaning of each",
            kind=TypeError,
        )
    return sampling_strategy


def _as_matrix(X: Any) -> torch.Tensor:
    """``X`` as a 2-D floating tensor, sharing memory with a numpy input."""
    if isinstance(X, np.ndarray):
        if X.dtype.kind != "f":
            fail(
                "X",
                "a floating-point array",
                _Text(f"dtype {X.dtype}"),
                "Use X.astype(np.float32)",
                kind=TypeError,
            )
        tensor = torch.from_numpy(np.ascontiguousarray(X))
    elif isinstance(X, torch.Tensor):
        if not X.is_floating_point():
            fail(
                "X",
                "a floating-point tensor",
                _Text(f"dtype {X.dtype}"),
                "Use X.float()",
                kind=TypeError,
            )
        tensor = X.detach()
    else:
        fail("X", "a torch.Tensor or numpy array", type(X).__name__, kind=TypeError)
    if tensor.ndim != 2:
        fail(
            "X",
            "a 2-D matrix (samples x features)",
            _Text(f"shape {tuple(tensor.shape)}"),
            "Flatten each sample: X.reshape(len(X), -1)",
        )
    if tensor.shape[0] == 0 or tensor.shape[1] == 0:
        fail("X", "at least one sample and one feature", _Text(f"shape {tuple(tensor.shape)}"))
    bad = torch.nonzero(~torch.isfinite(tensor).all(dim=1)).flatten()
    if bad.numel():
        fail(
            "X",
            "finite values",
            _Text(f"NaN or inf in rows {bad[:10].tolist()}"),
            "Drop or fix those rows",
        )
    return tensor


# --------------------------------------------------------------------------------------------
# The encoder pass
# --------------------------------------------------------------------------------------------


def _batch_parts(batch: Any) -> tuple[Any, Any]:
    """(inputs, labels or None) of one collated batch."""
    if isinstance(batch, list | tuple):
        if len(batch) == 0:
            fail("dataset", "items (input, label) or bare inputs", "an empty tuple item")
        return batch[0], batch[1] if len(batch) > 1 else None
    return batch, None


def _to_device(inputs: Any, device: torch.device) -> Any:
    if isinstance(inputs, torch.Tensor):
        return inputs.to(device, non_blocking=True)
    return inputs


def _cheap_labels(dataset: Any) -> np.ndarray | None:
    """The labels if :func:`get_labels` reads them without loading samples, else None.

    Where get_labels would scan the dataset (it warns first), the encoder pass collects the
    labels from its own batches instead, so the samples are loaded once, not twice.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "error", message="get_labels: no label attribute known", category=UserWarning
        )
        try:
            return get_labels(dataset, progress=False)
        except (TypeError, ValueError, UserWarning):
            return None


def _embed(
    dataset: Any,
    encoder: torch.nn.Module,
    *,
    batch_size: int,
    num_workers: int,
    device: torch.device | None,
    progress: bool,
) -> tuple[torch.Tensor, np.ndarray, tuple[int, ...]]:
    """The encoder pass; also returns the shape of one input (for the cache and the decoder)."""
    from tqdm import tqdm

    check_map_style("dataset", dataset)
    total = len(dataset)
    if total == 0:
        fail("dataset", "at least one sample", "an empty dataset")
    labels = _cheap_labels(dataset)
    run_on = device if device is not None else _module_device(encoder)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    out: torch.Tensor | None = None
    input_shape: tuple[int, ...] = ()
    batch_labels: list[Any] = []
    start = 0
    was_training = encoder.training
    encoder.eval()
    try:
        with torch.no_grad():
            for batch in tqdm(loader, desc="embed", disable=not progress, leave=False):
                inputs, targets = _batch_parts(batch)
                rows = len(inputs)
                if out is None and isinstance(inputs, torch.Tensor):
                    input_shape = tuple(inputs.shape[1:])
                result = encoder(_to_device(inputs, run_on))
                if not isinstance(result, torch.Tensor):
                    fail(
                        "encoder",
                        "a module returning one tensor",
                        type(result).__name__,
                        "Wrap it so that it returns only the embedding tensor",
                        kind=TypeError,
                    )
                if result.ndim != 2:
                    fail(
                        "encoder",
                        "2-D outputs (batch x features)",
                        _Text(f"outputs of shape {tuple(result.shape)}"),
                        "Flatten them: torch.nn.Sequential(encoder, torch.nn.Flatten()), or "
                        "pool first (e.g. torch.nn.AdaptiveAvgPool2d(1) then Flatten)",
                    )
                if result.shape[0] != rows:
                    fail(
                        "encoder",
                        f"one output row per input of the batch ({rows})",
                        _Text(f"{result.shape[0]} rows (output shape {tuple(result.shape)})"),
                        "The encoder must keep the batch dimension first",
                    )
                finite = torch.isfinite(result).all(dim=1)
                if not bool(finite.all()):
                    bad = (torch.nonzero(~finite).flatten().cpu() + start)[:10].tolist()
                    fail(
                        "encoder",
                        "finite embeddings",
                        _Text(f"NaN or inf in the embeddings of samples {bad}"),
                        "Check those inputs and the encoder's numerical stability",
                    )
                if out is None:
                    out = torch.empty(total, result.shape[1], dtype=torch.float32)
                elif result.shape[1] != out.shape[1]:
                    fail(
                        "encoder",
                        f"the same embedding width for every batch ({out.shape[1]})",
                        result.shape[1],
                    )
                out[start : start + rows] = result.detach().to("cpu", torch.float32)
                start += rows
                if labels is None and targets is not None:
                    batch_labels.extend(
                        targets.tolist() if isinstance(targets, torch.Tensor) else list(targets)
                    )
    finally:
        encoder.train(was_training)
    internal(out is not None and start == total, "embed saw fewer rows than len(dataset)")
    if labels is None:
        if len(batch_labels) != total:
            fail(
                "dataset",
                "items (input, label), or labels get_labels can read",
                _Text(f"{type(dataset).__name__} whose items carry no label"),
                "Give it .targets, or return (input, label) from __getitem__",
                kind=TypeError,
            )
        labels = as_label_array(batch_labels)
    if labels.shape[0] != total:
        fail("dataset", f"one label per sample ({total})", f"{labels.shape[0]} labels")
    assert out is not None  # for mypy; checked above
    return out, labels, input_shape


def embed(
    dataset: Any,
    encoder: torch.nn.Module,
    *,
    batch_size: int = 256,
    num_workers: int = 0,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> tuple[torch.Tensor, np.ndarray]:
    """Run ``encoder`` over ``dataset`` once and return its embeddings and labels.

    The encoder runs in eval mode under ``torch.no_grad()``; its previous mode is restored
    afterwards, even on error. Batches are read in order (no shuffle), so row ``i`` is sample
    ``i``. Use the dataset's evaluation transforms: random augmentation makes the embeddings
    (and a cache of them) depend on the draw.

    Args:
        dataset: A map-style dataset whose items are ``(input, label, ...)`` or bare inputs.
        encoder: A module mapping a batch of inputs to a ``[batch, d]`` tensor.
        batch_size: Inputs per forward pass.
        num_workers: DataLoader workers reading the dataset.
        device: Where the encoder runs (it is not moved); default the device of its
            parameters, the CPU for a module without any.
        progress: Show a tqdm progress bar.

    Returns:
        ``(embeddings, labels)``: a float32 ``Tensor[N, d]`` on the CPU and a 1-D numpy array
        of N labels (read by :func:`~torch_balance.get_labels` when it can, else from the
        batches).

    Raises:
        TypeError: For a dataset without ``__getitem__``/``__len__``, an encoder that is not
            a module or returns no tensor, or items without labels that cannot be read.
        ValueError: For outputs that are not 2-D, have another row count than the batch, or
            hold NaN/inf (the message names the samples).

    Example:
        >>> from torch.utils.data import TensorDataset
        >>> images = torch.arange(24, dtype=torch.float32).reshape(6, 1, 2, 2)
        >>> data = TensorDataset(images, torch.tensor([0, 0, 0, 0, 1, 1]))
        >>> X, y = embed(data, torch.nn.Flatten(), batch_size=4, progress=False)
        >>> tuple(X.shape), y.tolist()
        ((6, 4), [0, 0, 0, 0, 1, 1])
    """
    _check_module("encoder", encoder)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    num_workers = check_int("num_workers", num_workers, minimum=0)
    check_bool("progress", progress)
    embeddings, labels, _ = _embed(
        dataset,
        encoder,
        batch_size=batch_size,
        num_workers=num_workers,
        device=_check_device(device),
        progress=progress,
    )
    return embeddings, labels


# --------------------------------------------------------------------------------------------
# Exact k nearest neighbours within one class
# --------------------------------------------------------------------------------------------


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


_GROUP = 32  # columns per group in the candidate selection
_BIG = 1 << 22  # elements per temporary of the one-pass preparations (32 MiB in float64)


class _Centered:
    """One class's rows centred on their float64 mean, cast to a working dtype, and laid out
    for the score product: ``[c, |c|^2, 0...]`` rows (padded to a multiple of 8) by columns
    padded with zeros to a multiple of ``_GROUP``."""

    def __init__(self, data: torch.Tensor, mean: torch.Tensor, dtype: torch.dtype) -> None:
        n, d = data.shape
        self.dtype = dtype
        self.width = (d + 1 + 7) // 8 * 8
        self.columns = -(-n // _GROUP) * _GROUP
        self.values = torch.empty(n, d, dtype=dtype, device=data.device)
        if data.dtype == dtype:
            # In the data's own precision: subtracting the rounded mean shifts every row by the
            # same vector (distances unchanged) and rounds each entry relative to itself.
            torch.sub(data, mean.to(dtype), out=self.values)
        else:
            step = max(1, _BIG // d)
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
    grouped = scores.view(b, groups, _GROUP)
    chosen = grouped.amin(dim=2).topk(kc, dim=1, largest=False, sorted=False).indices
    inside = grouped.gather(1, chosen.unsqueeze(2).expand(b, kc, _GROUP)).view(b, -1)
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
    buffer = torch.empty(min(chunk, r), centered.columns, dtype=centered.dtype, device=device)
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


def _class_neighbors(
    data: torch.Tensor, rows: torch.Tensor | None, k: int, chunk_size: int | None
) -> torch.Tensor:
    """The ``k`` nearest other rows of ``data`` for each of ``rows`` (default: all).

    Args:
        data: ``[n, d]`` floating rows of one class, on the device to compute on.
        rows: Local row indices (any device), or None for every row.
        k: Neighbours per row, ``1 <= k < n``.
        chunk_size: Query rows per block; None picks one that keeps a block near 64 MiB.

    Returns:
        ``[len(rows), k]`` int64 local indices on the CPU, nearest first, ties by index.
    """
    n, d = data.shape
    internal(1 <= k < n, f"k={k} neighbours asked of a class of {n}")
    device = data.device
    rows = torch.arange(n, device=device) if rows is None else rows.to(device)
    chunk = chunk_size or max(1, min(2048, _SCORES // n))
    out = torch.full((rows.shape[0], k), -1, dtype=torch.long, device=device)
    mean = torch.zeros(d, dtype=torch.float64, device=device)
    step = max(1, _BIG // d)
    for lo in range(0, n, step):
        mean += data[lo : lo + step].double().sum(dim=0)
    mean /= n
    todo = torch.arange(rows.shape[0], device=device)
    for dtype in (torch.float32, torch.float64):
        centered = _Centered(data, mean, dtype)
        part = torch.empty(todo.shape[0], k, dtype=torch.long, device=device)
        left = _certified_stage(data, centered, rows[todo], k, chunk, part)
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


# --------------------------------------------------------------------------------------------
# SMOTE
# --------------------------------------------------------------------------------------------


class _Draw:
    """The synthetic rows of one draw: class codes, base/neighbour indices, steps, rows."""

    def __init__(
        self,
        codes: torch.Tensor,
        rows: torch.Tensor,
        base: torch.Tensor | None = None,
        neighbor: torch.Tensor | None = None,
        steps: torch.Tensor | None = None,
    ) -> None:
        self.codes, self.rows = codes, rows
        self.base, self.neighbor, self.steps = base, neighbor, steps


class SMOTE:
    """SMOTE over-sampling of embeddings in torch, with imbalanced-learn's semantics.

    ``fit_resample`` gives the same per-class counts as
    ``imblearn.over_sampling.SMOTE(sampling_strategy=..., k_neighbors=...)`` and the same
    layout: the original rows first, then the synthetic rows grouped by class in sorted class
    order. Each synthetic row is ``x + u * (x_nn - x)`` for a base ``x`` drawn uniformly from
    its class, ``x_nn`` drawn uniformly from the base's ``k_neighbors`` nearest same-class
    samples (exact Euclidean, the base excluded) and ``u ~ U[0, 1)``. Only the neighbours of
    the drawn bases are searched.

    With ``resampler=`` any imbalanced-learn over-sampler (``BorderlineSMOTE``,
    ``SVMSMOTE``, ``ADASYN``, ``KMeansSMOTE``, ``RandomOverSampler(shrinkage=...)``) runs
    instead, on numpy copies, configured by its own parameters (its ``random_state`` and
    those of nested estimators are replaced by ones drawn from ``seed`` and the epoch).

    Args:
        sampling_strategy: imbalanced-learn's ``sampling_strategy``: ``"auto"``,
            ``"minority"``, ``"not minority"``, ``"not majority"``, ``"all"``, a float
            (binary problems), a dict ``{class: target count}`` or a callable
            ``y -> dict``.
        k_neighbors: Neighbours per base sample; every class that gets new rows needs more
            than ``k_neighbors`` samples.
        seed: All draws are a pure function of the seed; the global RNGs are never touched.
        device: Where the neighbour search and the interpolation run; default the device of
            a tensor ``X``, the CPU for numpy.
        chunk_size: Query rows per block of the neighbour search (extra memory about
            ``chunk_size * class size * 4`` bytes); default keeps a block near 64 MiB. The
            result does not depend on it.
        resampler: An imbalanced-learn over-sampler to use instead of the native SMOTE. Set
            its ``sampling_strategy`` and neighbours on it; leave this class's at default.

    Attributes:
        sampling_strategy_: ``{class: number of new rows}`` after ``fit_resample``.
        base_indices_: For each synthetic row, the index in ``X`` of its base sample.
        neighbor_indices_: For each synthetic row, the index in ``X`` of its neighbour.
        steps_: For each synthetic row, its ``u``. These three are None with a resampler.

    Example:
        >>> X = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0],
        ...                   [5.0, 5.0], [6.0, 5.0], [5.0, 6.0]])
        >>> y = torch.tensor([0, 0, 0, 0, 1, 1, 1])
        >>> smote = SMOTE(k_neighbors=2, seed=0)
        >>> X_res, y_res = smote.fit_resample(X, y)
        >>> tuple(X_res.shape), y_res.tolist()
        ((8, 2), [0, 0, 0, 0, 1, 1, 1, 1])
        >>> base, nn, u = smote.base_indices_[0], smote.neighbor_indices_[0], smote.steps_[0]
        >>> bool(torch.allclose(X_res[7], X[base] + u * (X[nn] - X[base])))
        True
    """

    def __init__(
        self,
        sampling_strategy: Any = "auto",
        k_neighbors: int = 5,
        *,
        seed: int = 0,
        device: str | torch.device | None = None,
        chunk_size: int | None = None,
        resampler: Any = None,
    ) -> None:
        self.sampling_strategy = _check_strategy(sampling_strategy)
        self.k_neighbors = check_int(
            "k_neighbors", k_neighbors, minimum=1, fix="SMOTE needs at least one neighbour"
        )
        self.seed = check_seed(seed)
        self.device = _check_device(device)
        self.chunk_size = check_int("chunk_size", chunk_size, minimum=1, allow_none=True)
        if resampler is not None:
            if not hasattr(resampler, "fit_resample") or not hasattr(resampler, "get_params"):
                fail(
                    "resampler",
                    "an imbalanced-learn over-sampler (e.g. BorderlineSMOTE())",
                    type(resampler).__name__,
                    kind=TypeError,
                )
            if getattr(resampler, "_sampling_type", "over-sampling") != "over-sampling":
                fail(
                    "resampler",
                    "an over-sampler (under-samplers and cleaners drop real rows)",
                    type(resampler).__name__,
                )
            changed = [
                name
                for name, value, default in (
                    ("sampling_strategy", sampling_strategy, "auto"),
                    ("k_neighbors", k_neighbors, 5),
                )
                if not (type(value) is type(default) and value == default)
            ]
            if changed:
                fail(
                    changed[0],
                    "its default when a resampler is given",
                    sampling_strategy if changed[0] == "sampling_strategy" else k_neighbors,
                    f"Set it on the resampler: {type(resampler).__name__}({changed[0]}=...)",
                )
        self.resampler = resampler
        self.sampling_strategy_: dict[Any, int] | None = None
        self.base_indices_: torch.Tensor | None = None
        self.neighbor_indices_: torch.Tensor | None = None
        self.steps_: torch.Tensor | None = None

    def __repr__(self) -> str:
        if self.resampler is not None:
            return f"SMOTE(resampler={self.resampler!r}, seed={self.seed})"
        return (
            f"SMOTE(sampling_strategy={self.sampling_strategy!r}, "
            f"k_neighbors={self.k_neighbors}, seed={self.seed})"
        )

    # -- the functional core -----------------------------------------------------------------

    def _new_counts(self, index: LabelIndex) -> np.ndarray:
        """Number of new rows per class (class order), with imbalanced-learn's rules."""
        targets = _imblearn_targets(index, "over", self.sampling_strategy)
        new = targets - index.counts
        k = self.k_neighbors
        for code in np.flatnonzero(new > 0):
            n = int(index.counts[code])
            if n <= k:
                cls = index.keys()[code]
                fix = (
                    f"Pass k_neighbors={n - 1} or smaller, or leave class {cls!r} out of "
                    "sampling_strategy (a dict or callable)"
                    if n > 1
                    else f"SMOTE needs two samples of a class; leave class {cls!r} out of "
                    "sampling_strategy (a dict or callable) or use RandomOverSampler for it"
                )
                fail(
                    "k_neighbors",
                    "fewer neighbours than the samples of every class that gets new rows "
                    f"(class {cls!r} has {n})",
                    k,
                    fix,
                )
        return new

    def _work_device(self, X: torch.Tensor) -> torch.device:
        return self.device if self.device is not None else X.device

    def _neighbor_tables(
        self, X: torch.Tensor, index: LabelIndex, new: np.ndarray
    ) -> dict[int, torch.Tensor]:
        """Full neighbour table (local indices) of every class that gets new rows."""
        device = self._work_device(X)
        tables = {}
        for code in np.flatnonzero(new > 0).tolist():
            data = X.index_select(0, index.members(code).to(X.device).long()).to(device)
            tables[code] = _class_neighbors(data, None, self.k_neighbors, self.chunk_size)
        return tables

    def _draw(
        self,
        X: torch.Tensor,
        index: LabelIndex,
        new: np.ndarray,
        epoch: int,
        tables: dict[int, torch.Tensor] | None = None,
        out: torch.Tensor | None = None,
    ) -> _Draw:
        """The synthetic rows of ``epoch`` (tables: precomputed neighbours, else searched;
        out: where to write the rows, for the native SMOTE)."""
        g = generator(self.seed, Stream.SMOTE, epoch)
        if self.resampler is not None:
            return self._draw_variant(X, index, g)
        device = self._work_device(X)
        work = torch.float64 if X.dtype == torch.float64 else torch.float32
        k = self.k_neighbors
        plans = []
        # Every draw first, in class order, from the one generator: the stream does not
        # depend on the neighbour search, the device or the chunk size.
        for code in np.flatnonzero(new > 0).tolist():
            m = int(new[code])
            base = torch.randint(int(index.counts[code]), (m,), generator=g)
            pick = torch.randint(k, (m,), generator=g)
            # float32 steps for every dtype: the same stream, and u < 1 stays below 1.
            steps = torch.rand(m, generator=g, dtype=torch.float32)
            plans.append((code, base, pick, steps))
        codes, bases, neighbors, all_steps = [], [], [], []
        for code, base, pick, steps in plans:
            members = index.members(code).long()
            if tables is not None:
                local = tables[code][base, pick]
            else:
                data = X.index_select(0, members.to(X.device)).to(device)
                # Only the drawn bases need neighbours (the unique ones, in index order).
                drawn = torch.zeros(data.shape[0], dtype=torch.bool)
                drawn[base] = True
                unique = torch.nonzero(drawn).flatten()
                slot = torch.cumsum(drawn, dim=0).sub_(1)
                found = _class_neighbors(data, unique, k, self.chunk_size)
                local = found[slot[base], pick]
            codes.append(torch.full((base.shape[0],), code, dtype=torch.long))
            bases.append(members[base])
            neighbors.append(members[local])
            all_steps.append(steps)
        if not plans:
            empty = torch.empty(0, dtype=torch.long)
            return _Draw(
                empty,
                X.new_empty(0, X.shape[1]),
                empty,
                empty,
                torch.empty(0, dtype=torch.float32),
            )
        base_all, nn_all, steps_all = torch.cat(bases), torch.cat(neighbors), torch.cat(all_steps)
        total = base_all.shape[0]
        rows = X.new_empty(total, X.shape[1]) if out is None else out
        internal(tuple(rows.shape) == (total, X.shape[1]), "synthetic output of the wrong shape")
        step = max(1, _BIG // X.shape[1])
        for lo in range(0, total, step):  # in pieces: no full-size temporaries
            x = X.index_select(0, base_all[lo : lo + step].to(X.device)).to(device, work)
            x_nn = X.index_select(0, nn_all[lo : lo + step].to(X.device)).to(device, work)
            u = steps_all[lo : lo + step].to(device, work).unsqueeze(1)
            rows[lo : lo + step] = torch.addcmul(x, u, x_nn.sub_(x)).to(rows.device, rows.dtype)
        return _Draw(torch.cat(codes), rows, base_all, nn_all, steps_all)

    def _draw_variant(self, X: torch.Tensor, index: LabelIndex, g: torch.Generator) -> _Draw:
        from sklearn.base import clone

        estimator = clone(self.resampler)
        # Every random_state, nested ones too (KMeansSMOTE's kmeans_estimator), comes from
        # (seed, epoch): a None would read numpy's global RNG.
        keys = sorted(
            key
            for key in estimator.get_params(deep=True)
            if key == "random_state" or key.endswith("__random_state")
        )
        draws = torch.randint(2**31 - 1, (len(keys),), generator=g).tolist()
        if keys:
            estimator.set_params(**dict(zip(keys, draws, strict=True)))
        X_np = X.detach().cpu().numpy()
        n = X_np.shape[0]
        X_res, y_res = estimator.fit_resample(X_np, index.labels)
        X_res, y_res = np.asarray(X_res), np.asarray(y_res)
        name = type(self.resampler).__name__
        if X_res.shape[0] < n or not np.array_equal(X_res[:n], X_np):
            fail(
                "resampler",
                "an over-sampler that returns the original rows first, unchanged",
                name,
            )
        new_labels = y_res[n:]
        position = {c: i for i, c in enumerate(index.keys())}
        codes = np.array([position[c] for c in new_labels.tolist()], dtype=np.int64)
        planned = dict(getattr(estimator, "sampling_strategy_", {}))
        made = np.bincount(codes, minlength=index.num_classes)
        skipped = [c for c, m in planned.items() if m > 0 and made[position[c]] == 0]
        if skipped:
            warnings.warn(
                f"{name} made no new samples for class(es) {skipped} although its "
                f"sampling_strategy asked for {[planned[c] for c in skipped]} (e.g. "
                "BorderlineSMOTE finds no sample 'in danger'); those classes stay as they are",
                UserWarning,
                stacklevel=4,
            )
        self.sampling_strategy_ = {c: int(m) for c, m in planned.items()}
        rows = torch.from_numpy(np.ascontiguousarray(X_res[n:])).to(X.device, X.dtype)
        return _Draw(torch.from_numpy(codes), rows)

    # -- the public shell ----------------------------------------------------------------------

    def fit_resample(self, X: Any, y: Any) -> tuple[Any, Any]:
        """Over-sample ``(X, y)``; return ``(X_res, y_res)`` of the same kinds as given.

        Args:
            X: ``[N, d]`` floating torch tensor or numpy array, finite.
            y: N class labels (tensor, array or sequence).

        Returns:
            ``(X_res, y_res)``: the N original rows, then the synthetic rows grouped by class
            in sorted class order. A tensor ``X`` gives a tensor on its device and dtype; a
            tensor ``y`` gives a tensor, anything else a numpy array.

        Raises:
            TypeError: For a non-floating or non-array ``X`` or float labels.
            ValueError: For a ``sampling_strategy`` imbalanced-learn rejects (same cases),
                a class with ``k_neighbors`` or fewer samples that gets new rows, NaN/inf in
                ``X``, or ``len(X) != len(y)``.
        """
        tensor = _as_matrix(X)
        index = LabelIndex(y)
        if len(index) != tensor.shape[0]:
            fail("y", f"one label per row of X ({tensor.shape[0]})", f"{len(index)} labels")
        if self.resampler is None:
            new = self._new_counts(index)
            self.sampling_strategy_ = {
                c: int(m) for c, m in zip(index.keys(), new.tolist(), strict=True)
            }
        else:
            new = np.zeros(index.num_classes, dtype=np.int64)
        n = tensor.shape[0]
        if self.resampler is None:
            # The output is allocated once; the synthetic rows are written into its tail.
            X_res = tensor.new_empty(n + int(new.sum()), tensor.shape[1])
            X_res[:n] = tensor
            draw = self._draw(tensor, index, new, 0, out=X_res[n:])
        else:
            draw = self._draw(tensor, index, new, 0)
            X_res = torch.cat([tensor, draw.rows])
        self.base_indices_, self.neighbor_indices_, self.steps_ = (
            draw.base,
            draw.neighbor,
            draw.steps,
        )
        new_labels = index.classes[draw.codes.numpy()]
        if isinstance(y, torch.Tensor):
            y_res: Any = torch.cat([y, torch.as_tensor(new_labels, dtype=y.dtype, device=y.device)])
        else:
            y_res = np.concatenate([index.labels, new_labels.astype(index.labels.dtype)])
        return (X_res.numpy() if isinstance(X, np.ndarray) else X_res), y_res


# --------------------------------------------------------------------------------------------
# The dataset for retraining a head
# --------------------------------------------------------------------------------------------


def _digest_state(module: torch.nn.Module) -> str:
    digest = hashlib.blake2b(digest_size=16)
    digest.update(type(module).__qualname__.encode())
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        if isinstance(tensor, torch.Tensor):
            flat = tensor.detach().cpu().contiguous()
            digest.update(f"{flat.dtype}{tuple(flat.shape)}".encode())
            digest.update(flat.reshape(-1).view(torch.uint8).numpy().tobytes())
        else:
            digest.update(repr(tensor).encode())
    return digest.hexdigest()


def _digest_labels(labels: np.ndarray) -> str:
    digest = hashlib.blake2b(digest_size=16)
    if labels.dtype.kind in "biu":
        digest.update(labels.dtype.str.encode())
        digest.update(np.ascontiguousarray(labels).tobytes())
    else:
        digest.update(repr(labels.tolist()).encode())
    return digest.hexdigest()


def _first_input_shape(dataset: Any) -> tuple[int, ...] | None:
    item = dataset[0]
    inputs = item[0] if isinstance(item, list | tuple) else item
    shape = getattr(inputs, "shape", None)
    return None if shape is None else tuple(int(s) for s in shape)


def _fingerprint(
    dataset: Any, encoder: torch.nn.Module, labels: np.ndarray | None
) -> dict[str, Any]:
    return {
        "dataset length": len(dataset),
        "labels": None if labels is None else _digest_labels(labels),
        "encoder state_dict": _digest_state(encoder),
        "input shape": _first_input_shape(dataset),
    }


def _load_or_embed(
    dataset: Any,
    encoder: torch.nn.Module,
    cache: str | os.PathLike | None,
    **kwargs: Any,
) -> tuple[torch.Tensor, np.ndarray, tuple[int, ...]]:
    if cache is None:
        return _embed(dataset, encoder, **kwargs)
    path = os.fspath(cache)
    if os.path.exists(path):
        stored = torch.load(path, weights_only=True)
        now = _fingerprint(dataset, encoder, _cheap_labels(dataset))
        for key, value in now.items():
            then = stored["fingerprint"].get(key)
            if key == "input shape" and value is not None:
                value = list(value)
            if value is not None and then != value:
                fail(
                    "cache",
                    f"a file made for this dataset and encoder ({key}: {value})",
                    _Text(f"{path!r}, made for {key}: {then}"),
                    f"Delete {path!r} to recompute the embeddings, or pass another cache path",
                )
        raw = stored["labels"]
        labels = raw.numpy() if isinstance(raw, torch.Tensor) else as_label_array(list(raw))
        return stored["embeddings"], labels, tuple(stored["input_shape"])
    embeddings, labels, shape = _embed(dataset, encoder, **kwargs)
    fingerprint = _fingerprint(dataset, encoder, labels)
    if fingerprint["input shape"] is not None:
        fingerprint["input shape"] = list(fingerprint["input shape"])
    torch.save(
        {
            "fingerprint": fingerprint,
            "embeddings": embeddings,
            "labels": torch.from_numpy(labels) if labels.dtype.kind in "biu" else labels.tolist(),
            "input_shape": list(shape),
        },
        path,
    )
    return embeddings, labels, shape


class SMOTEDataset(Dataset):
    """Real embeddings plus SMOTE'd ones: the dataset a classifier head is retrained on.

    The encoder runs once (:func:`embed`); the neighbour tables are built once; each epoch's
    synthetic rows are drawn from ``(seed, epoch)``. Item ``i`` is ``(embedding, label)``:
    the real rows first (row ``i`` is sample ``i`` of ``dataset``), then the synthetic rows
    grouped by class. This is classifier re-training (cRT, Kang et al., ICLR 2020) with SMOTE
    in feature space instead of re-sampling; shuffle with the DataLoader.

    ``set_epoch(e)`` redraws the synthetic rows in the main process into shared memory, so
    DataLoader workers, persistent ones included, read the new rows. Nothing of the encoder
    is kept: the dataset pickles cheaply.

    Args:
        dataset: A map-style dataset of ``(input, label)`` items (or inputs with labels that
            :func:`~torch_balance.get_labels` reads).
        encoder: The frozen backbone, mapping inputs to ``[batch, d]``.
        sampling_strategy: As for :class:`SMOTE`.
        k_neighbors: As for :class:`SMOTE`.
        seed: The seed; epoch ``e`` is a pure function of ``(seed, e)``.
        resampler: An imbalanced-learn over-sampler to use instead (see :class:`SMOTE`).
        decoder: Optional module mapping embeddings back to inputs (as in DeepSMOTE); each
            draw's synthetic rows are decoded into :attr:`synthetic_inputs`, which must have
            the inputs' shape.
        cache: A file for the embeddings: written the first time, read afterwards, refused
            (``ValueError``) when the dataset length, labels, encoder weights or input shape
            no longer match.
        batch_size: For the encoder (and decoder) passes.
        num_workers: DataLoader workers for the encoder pass.
        device: Where the encoder, the neighbour search and the decoder run.
        chunk_size: As for :class:`SMOTE`.
        progress: Show a progress bar during the encoder pass.

    Attributes:
        embeddings: The real rows, float32 ``[N, d]``.
        synthetic: This epoch's synthetic rows ``[M, d]``.
        is_synthetic: Bool tensor, True for the synthetic items.
        synthetic_inputs: The decoded synthetic rows, or None without a decoder.
        smote: The :class:`SMOTE` object; its ``base_indices_``, ``neighbor_indices_`` and
            ``steps_`` describe this epoch's synthetic rows.

    Example:
        >>> from torch.utils.data import TensorDataset
        >>> images = torch.arange(32, dtype=torch.float32).reshape(8, 2, 2) % 7
        >>> base = TensorDataset(images, torch.tensor([0, 0, 0, 0, 0, 1, 1, 1]))
        >>> ds = SMOTEDataset(base, torch.nn.Flatten(), k_neighbors=2, progress=False)
        >>> len(ds), ds.is_synthetic.sum().item(), ds[9][1]
        (10, 2, 1)
        >>> before = ds.synthetic.clone()
        >>> ds.set_epoch(1)
        >>> bool(torch.equal(before, ds.synthetic))
        False
    """

    def __init__(
        self,
        dataset: Any,
        encoder: torch.nn.Module,
        *,
        sampling_strategy: Any = "auto",
        k_neighbors: int = 5,
        seed: int = 0,
        resampler: Any = None,
        decoder: torch.nn.Module | None = None,
        cache: str | os.PathLike | None = None,
        batch_size: int = 256,
        num_workers: int = 0,
        device: str | torch.device | None = None,
        chunk_size: int | None = None,
        progress: bool = True,
    ) -> None:
        _check_module("encoder", encoder)
        if decoder is not None:
            _check_module("decoder", decoder)
        if cache is not None and not isinstance(cache, str | os.PathLike):
            fail("cache", "None or a file path", cache, kind=TypeError)
        self.smote = SMOTE(
            sampling_strategy,
            k_neighbors,
            seed=seed,
            device=device,
            chunk_size=chunk_size,
            resampler=resampler,
        )
        self.seed = self.smote.seed
        self._batch_size = check_int("batch_size", batch_size, minimum=1)
        embeddings, labels, shape = _load_or_embed(
            dataset,
            encoder,
            cache,
            batch_size=self._batch_size,
            num_workers=check_int("num_workers", num_workers, minimum=0),
            device=self.smote.device,
            progress=check_bool("progress", progress),
        )
        self.embeddings: torch.Tensor = embeddings.share_memory_()
        self.index = LabelIndex(labels)
        self.input_shape: tuple[int, ...] = shape
        self._decoder = decoder
        if self.smote.resampler is None:
            self._new = self.smote._new_counts(self.index)
            self.smote.sampling_strategy_ = dict(
                zip(self.index.keys(), self._new.tolist(), strict=True)
            )
            self._tables: dict[int, torch.Tensor] | None = self.smote._neighbor_tables(
                self.embeddings, self.index, self._new
            )
        else:
            self._new = np.zeros(self.index.num_classes, dtype=np.int64)
            self._tables = None
        self._epoch = SharedEpoch()
        self._valid = torch.ones(1, dtype=torch.bool).share_memory_()
        self.synthetic_inputs: torch.Tensor | None = None
        self._store(self._generate(0))

    def _generate(self, epoch: int) -> _Draw:
        draw = self.smote._draw(self.embeddings, self.index, self._new, epoch, self._tables)
        self.smote.base_indices_ = draw.base
        self.smote.neighbor_indices_ = draw.neighbor
        self.smote.steps_ = draw.steps
        return draw

    def _decode(self, rows: torch.Tensor) -> torch.Tensor:
        decoder = self._decoder
        internal(decoder is not None, "decode without a decoder")
        assert decoder is not None  # for mypy
        device = self.smote.device or _module_device(decoder)
        parts = []
        was_training = decoder.training
        decoder.eval()
        try:
            with torch.no_grad():
                for lo in range(0, rows.shape[0], self._batch_size):
                    out = decoder(rows[lo : lo + self._batch_size].to(device))
                    expected = (min(self._batch_size, rows.shape[0] - lo), *self.input_shape)
                    if not isinstance(out, torch.Tensor) or tuple(out.shape) != expected:
                        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out)
                        fail(
                            "decoder",
                            f"outputs of the inputs' shape (batch, *{self.input_shape}) = "
                            f"{expected}",
                            _Text(f"outputs of shape {got}"),
                            "Make the decoder end with a reshape to the input shape, e.g. "
                            f"torch.nn.Unflatten(1, {self.input_shape})",
                        )
                    parts.append(out.detach().to("cpu", torch.float32))
        finally:
            decoder.train(was_training)
        if not parts:
            return torch.empty(0, *self.input_shape)
        return torch.cat(parts)

    def _store(self, draw: _Draw) -> None:
        decoded = self._decode(draw.rows) if self._decoder is not None else None
        same = (
            hasattr(self, "synthetic")
            and self.synthetic.shape == draw.rows.shape
            and (decoded is None or self.synthetic_inputs is not None)
        )
        if same:
            self.synthetic.copy_(draw.rows)
            self._codes.copy_(draw.codes)
            if decoded is not None and self.synthetic_inputs is not None:
                self.synthetic_inputs.copy_(decoded)
            return
        if hasattr(self, "synthetic"):
            # Workers that still hold the old buffers must not read them silently.
            self._valid.fill_(False)
            self._valid = torch.ones(1, dtype=torch.bool).share_memory_()
        self.synthetic: torch.Tensor = draw.rows.float().contiguous().share_memory_()
        self._codes: torch.Tensor = draw.codes.clone().share_memory_()
        self.synthetic_inputs = None if decoded is None else decoded.share_memory_()

    @property
    def epoch(self) -> int:
        return self._epoch.get()

    def set_epoch(self, epoch: int) -> None:
        """Redraw the synthetic rows for ``epoch`` (a pure function of seed and epoch)."""
        epoch = check_epoch(epoch)
        if epoch != self.epoch:
            self._store(self._generate(epoch))
            self._epoch.set(epoch)

    @property
    def is_synthetic(self) -> torch.Tensor:
        """True for the synthetic items of this epoch."""
        flags = torch.zeros(len(self), dtype=torch.bool)
        flags[self.embeddings.shape[0] :] = True
        return flags

    @property
    def labels(self) -> np.ndarray:
        """The label of every item of this epoch."""
        synthetic = self.index.classes[self._codes.numpy()].astype(self.index.labels.dtype)
        return np.concatenate([self.index.labels, synthetic])

    def __len__(self) -> int:
        return int(self.embeddings.shape[0] + self.synthetic.shape[0])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, Any]:
        i = check_index(i, len(self))
        n = self.embeddings.shape[0]
        if not bool(self._valid[0]):
            raise RuntimeError(
                "SMOTEDataset: the number of synthetic rows changed at set_epoch, and this "
                "worker still holds the old rows. Use persistent_workers=False with a "
                "resampler whose output size varies (e.g. KMeansSMOTE)"
            )
        if i < n:
            label = self.index.labels[i]
            row = self.embeddings[i]
        else:
            label = self.index.classes[int(self._codes[i - n])]
            row = self.synthetic[i - n]
        return row, label.item() if hasattr(label, "item") else label

    def __repr__(self) -> str:
        return (
            f"SMOTEDataset(real={self.embeddings.shape[0]}, synthetic={self.synthetic.shape[0]}, "
            f"dim={self.embeddings.shape[1]}, classes={self.index.num_classes}, "
            f"seed={self.seed}, epoch={self.epoch})"
        )
