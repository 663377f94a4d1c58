"""What the plan and its feedback both use: the exact split of a total, and stable text for a
strategy. A module of its own so that :mod:`torch_balance.strategies` and
:mod:`torch_balance.feedback` each import it, and not each other.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["apportion", "describe"]


def apportion(weights: np.ndarray, total: int) -> np.ndarray:
    """Split ``total`` in proportion to ``weights``, rounding so the parts sum to ``total``.

    Largest-remainder rounding; ties go to the earlier class.

    Example:
        >>> apportion(np.array([1.0, 1.0, 1.0]), 10).tolist()
        [4, 3, 3]
    """
    weights = np.asarray(weights, dtype=np.float64)
    share = weights / weights.sum() * total
    parts = np.floor(share).astype(np.int64)
    missing = int(total - parts.sum())
    if missing > 0:
        remainder = share - parts
        winners = np.argsort(-remainder, kind="stable")[:missing]
        parts[winners] += 1
    return parts


def describe(value: Any) -> str:
    """Stable text for a strategy or ``sampling_strategy`` (no memory addresses).

    Dataclasses (``Power``, ``Deferred``, ...) by their fields, mappings sorted, callables by
    their qualified name.

    Example:
        >>> from torch_balance.strategies import Deferred, Power
        >>> describe(Deferred(2, "instance", Power(0.5)))
        "Deferred(start_epoch=2, before='instance', after=Power(q=0.5))"
        >>> describe({1: 8, 0: 3})
        '{0: 3, 1: 8}'
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = ", ".join(
            f"{f.name}={describe(getattr(value, f.name))}" for f in dataclasses.fields(value)
        )
        return f"{type(value).__name__}({fields})"
    if isinstance(value, Mapping):
        items = sorted((describe(k), describe(v)) for k, v in value.items())
        return "{" + ", ".join(f"{k}: {v}" for k, v in items) + "}"
    if isinstance(value, np.generic):
        return repr(value.item())
    if callable(value):
        module = getattr(value, "__module__", None) or type(value).__module__
        name = getattr(value, "__qualname__", None) or type(value).__qualname__
        return f"{module}.{name}"
    return repr(value)
