"""Any imbalanced-learn over-sampler through :class:`~torch_balance.SMOTE`'s interface.

``SMOTE(resampler=BorderlineSMOTE())`` (or ``SVMSMOTE``, ``ADASYN``, ``KMeansSMOTE``,
``RandomOverSampler(shrinkage=...)``) runs that sampler on numpy copies instead of the native
SMOTE; every ``random_state`` in it, nested ones too, is drawn from SMOTE's generator.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch

from torch_balance._imblearn import kept_random_state
from torch_balance._validation import fail
from torch_balance.labels import LabelIndex

with kept_random_state():
    from sklearn.base import clone

__all__ = ["check_resampler", "draw_variant"]


def check_resampler(resampler: Any, sampling_strategy: Any, k_neighbors: Any) -> Any:
    """``resampler`` if it is an imbalanced-learn over-sampler usable by SMOTE (None passes).

    Example:
        >>> from imblearn.over_sampling import ADASYN
        >>> check_resampler(ADASYN(), "auto", 3)
        Traceback (most recent call last):
        ...
        ValueError: k_neighbors: expected its default when a resampler is given, got 3. ...
    """
    if resampler is None:
        return None
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
    return resampler


def draw_variant(
    resampler: Any, X: torch.Tensor, index: LabelIndex, g: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, dict[Any, int]]:
    """Run a clone of ``resampler`` with random states drawn from ``g``.

    Returns:
        ``(codes, rows, planned)``: the class positions and rows it added, and its
        ``sampling_strategy_``.

    Example:
        >>> from imblearn.over_sampling import RandomOverSampler
        >>> X = torch.tensor([[0.0], [1.0], [2.0], [5.0]])
        >>> codes, rows, planned = draw_variant(
        ...     RandomOverSampler(), X, LabelIndex([0, 0, 0, 1]), torch.Generator()
        ... )
        >>> codes.tolist(), rows.tolist(), {int(c): n for c, n in planned.items()}
        ([1, 1], [[5.0], [5.0]], {1: 2})
    """
    estimator = clone(resampler)
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
    name = type(resampler).__name__
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
    rows = torch.from_numpy(np.ascontiguousarray(X_res[n:])).to(X.device, X.dtype)
    return torch.from_numpy(codes), rows, {c: int(m) for c, m in planned.items()}
