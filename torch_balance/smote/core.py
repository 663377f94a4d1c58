"""SMOTE's functional core: the checked parameters (:class:`SMOTEParams`), the embeddings
checked (:func:`as_matrix`), the plan (:func:`new_counts`), the neighbour tables
(:func:`neighbor_tables`) and one draw of synthetic rows (:func:`synthesize`).
:class:`~torch_balance.smote.smote.SMOTE` is the estimator shell around them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from torch_balance._imblearn import imblearn_targets
from torch_balance._rng import Stream, generator
from torch_balance._validation import Text, fail, internal
from torch_balance.labels import LabelIndex
from torch_balance.smote.neighbors import BIG, Scratch, class_neighbors
from torch_balance.smote.variants import draw_variant

__all__ = ["Draw", "SMOTEParams", "as_matrix", "neighbor_tables", "new_counts", "synthesize"]


@dataclass(frozen=True)
class SMOTEParams:
    """The constructor parameters of a :class:`SMOTE`, checked (see :meth:`SMOTE.check_params`).

    Example:
        >>> SMOTEParams("auto", 5, 0, None, None, None).k_neighbors
        5
    """

    sampling_strategy: Any
    k_neighbors: int
    seed: int
    device: torch.device | None
    chunk_size: int | None
    resampler: Any


def as_matrix(X: Any) -> torch.Tensor:
    """``X`` as a 2-D finite floating tensor, sharing memory with a numpy or tensor input.

    Example:
        >>> as_matrix(np.zeros((2, 3), dtype=np.float32)).shape
        torch.Size([2, 3])
    """
    if isinstance(X, np.ndarray):
        if X.dtype.kind != "f":
            fail(
                "X",
                "a floating-point array",
                Text(f"dtype {X.dtype}"),
                "Use X.astype(np.float32)",
                kind=TypeError,
            )
        tensor = torch.from_numpy(np.ascontiguousarray(X))
    elif isinstance(X, torch.Tensor):
        if not X.is_floating_point():
            fail(
                "X",
                "a floating-point tensor",
                Text(f"dtype {X.dtype}"),
                "Use X.float()",
                kind=TypeError,
            )
        tensor = X.detach() if X.requires_grad else X
    else:
        fail("X", "a torch.Tensor or numpy array", type(X).__name__, kind=TypeError)
    if tensor.ndim != 2:
        fail(
            "X",
            "a 2-D matrix (samples x features)",
            Text(f"shape {tuple(tensor.shape)}"),
            "Flatten each sample: X.reshape(len(X), -1)",
        )
    if tensor.shape[0] == 0 or tensor.shape[1] == 0:
        fail("X", "at least one sample and one feature", Text(f"shape {tuple(tensor.shape)}"))
    # NaN propagates through min/max and inf is an extreme: one pass without a boolean
    # temporary clears finite data; the row scan runs only to name the bad rows.
    low, high = torch.aminmax(tensor)
    if bool(torch.isfinite(low) & torch.isfinite(high)):
        return tensor
    bad = torch.nonzero(~torch.isfinite(tensor).all(dim=1)).flatten()
    if bad.numel():
        fail(
            "X",
            "finite values",
            Text(f"NaN or inf in rows {bad[:10].tolist()}"),
            "Drop or fix those rows",
        )
    return tensor


def new_counts(index: LabelIndex, sampling_strategy: Any, k: int) -> np.ndarray:
    """Number of new rows per class (class order), with imbalanced-learn's rules.

    Raises:
        ValueError: For a class that gets new rows but has ``k`` or fewer samples.

    Example:
        >>> new_counts(LabelIndex([0] * 5 + [1] * 3), "auto", 2).tolist()
        [0, 2]
    """
    targets = imblearn_targets(index, "over", sampling_strategy)
    new = targets - index.counts
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


def neighbor_tables(
    X: torch.Tensor, index: LabelIndex, new: np.ndarray, params: SMOTEParams
) -> dict[int, torch.Tensor]:
    """Full neighbour table (local indices) of every class that gets new rows.

    Example:
        >>> X = torch.tensor([[0.0], [1.0], [3.0], [9.0], [8.0]])
        >>> index = LabelIndex([0, 0, 0, 1, 1])
        >>> params = SMOTEParams("auto", 1, 0, None, None, None)
        >>> neighbor_tables(X, index, np.array([0, 1]), params)[1].tolist()
        [[1], [0]]
    """
    device = params.device if params.device is not None else X.device
    tables = {}
    scratch = Scratch()  # one score block for every class
    for code in np.flatnonzero(new > 0).tolist():
        data = X.index_select(0, index.members(code).to(X.device).long()).to(device)
        tables[code] = class_neighbors(data, None, params.k_neighbors, params.chunk_size, scratch)
    return tables


@dataclass
class Draw:
    """The synthetic rows of one draw: class codes, base/neighbour indices, steps, rows."""

    codes: torch.Tensor
    rows: torch.Tensor
    base: torch.Tensor | None = None
    neighbor: torch.Tensor | None = None
    steps: torch.Tensor | None = None
    planned: dict[Any, int] | None = None  # a resampler's sampling_strategy_


def synthesize(
    X: torch.Tensor,
    index: LabelIndex,
    new: np.ndarray,
    params: SMOTEParams,
    epoch: int,
    tables: dict[int, torch.Tensor] | None = None,
    out: torch.Tensor | None = None,
) -> Draw:
    """The synthetic rows of ``epoch`` (tables: precomputed neighbours, else searched;
    out: where to write the rows, for the native SMOTE)."""
    g = generator(params.seed, Stream.SMOTE, epoch)
    if params.resampler is not None:
        added, made, planned = draw_variant(params.resampler, X, index, g)
        return Draw(added, made, planned=planned)
    device = params.device if params.device is not None else X.device
    work = torch.float64 if X.dtype == torch.float64 else torch.float32
    k = params.k_neighbors
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
    scratch = Scratch()  # one score block for every class
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
            found = class_neighbors(data, unique, k, params.chunk_size, scratch)
            local = found[slot[base], pick]
        codes.append(torch.full((base.shape[0],), code, dtype=torch.long))
        bases.append(members[base])
        neighbors.append(members[local])
        all_steps.append(steps)
    del scratch  # its block is not needed while the rows are written
    if not plans:
        empty = torch.empty(0, dtype=torch.long)
        return Draw(
            empty, X.new_empty(0, X.shape[1]), empty, empty, torch.empty(0, dtype=torch.float32)
        )
    base_all, nn_all, steps_all = torch.cat(bases), torch.cat(neighbors), torch.cat(all_steps)
    total = base_all.shape[0]
    rows = X.new_empty(total, X.shape[1]) if out is None else out
    internal(tuple(rows.shape) == (total, X.shape[1]), "synthetic output of the wrong shape")
    step = max(1, BIG // X.shape[1])
    for lo in range(0, total, step):  # in pieces: no full-size temporaries
        x = X.index_select(0, base_all[lo : lo + step].to(X.device)).to(device, work)
        x_nn = X.index_select(0, nn_all[lo : lo + step].to(X.device)).to(device, work)
        u = steps_all[lo : lo + step].to(device, work).unsqueeze(1)
        target = rows[lo : lo + step]
        if target.dtype == work and target.device == x.device:
            torch.addcmul(x, u, x_nn.sub_(x), out=target)  # straight into the output
        else:
            target.copy_(torch.addcmul(x, u, x_nn.sub_(x)))
    return Draw(torch.cat(codes), rows, base_all, nn_all, steps_all)
