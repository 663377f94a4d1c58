"""The imbalanced-learn bridge: its ``sampling_strategy`` rules, applied to a :class:`LabelIndex`.

imbalanced-learn owns the meaning of ``sampling_strategy`` (``"auto"``, ``"minority"``, a
float, a dict, a callable, ...). :func:`imblearn_targets` asks it for the per-class targets;
both the plan (:mod:`torch_balance.strategies`) and :class:`~torch_balance.SMOTE` use it, so
they always agree with imbalanced-learn and with each other.

Importing imbalanced-learn imports scikit-learn's estimator checks, which advance Python's
global ``random`` state. Every import of it here goes through :func:`kept_random_state`, which
puts the state back: using torch_balance never moves a global RNG, not even the first time.
"""

from __future__ import annotations

import numbers
import random
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Literal

import numpy as np

from torch_balance._validation import Text, fail
from torch_balance.labels import LabelIndex

__all__ = [
    "IMBLEARN_RULES",
    "CountProxy",
    "check_sampling_strategy_type",
    "checked_strategy",
    "class_proxy",
    "get_check_sampling_strategy",
    "imblearn_targets",
    "kept_random_state",
]

IMBLEARN_RULES = ("auto", "minority", "majority", "not minority", "not majority", "all")


@contextmanager
def kept_random_state() -> Iterator[None]:
    """Put Python's global ``random`` state back after the block (for imports that move it).

    Example:
        >>> import random
        >>> before = random.getstate()
        >>> with kept_random_state():
        ...     _ = random.random()
        >>> random.getstate() == before
        True
    """
    state = random.getstate()
    try:
        yield
    finally:
        random.setstate(state)


def checked_strategy(check: Callable[..., Any], strategy: Any, y: np.ndarray, kind: str) -> Any:
    """imbalanced-learn's own validation, its errors prefixed with the argument's name.

    Example:
        >>> check = get_check_sampling_strategy()
        >>> result = checked_strategy(check, "auto", np.array([0, 0, 0, 1]), "over-sampling")
        >>> {int(c): int(n) for c, n in result.items()}
        {1: 2}
        >>> checked_strategy(check, "minority", np.array([0, 0]), "over-sampling")
        Traceback (most recent call last):
        ...
        ValueError: sampling_strategy: ...
    """
    try:
        result = check(strategy, y, kind)
    except ValueError as error:
        raise ValueError(f"sampling_strategy: {error}") from error
    except (TypeError, AttributeError, KeyError) as error:  # e.g. a callable returning None
        raise TypeError(
            "sampling_strategy: expected what imbalanced-learn accepts (a rule name, a float, "
            "a dict {class: count} or a callable returning one), got "
            f"{_shown(strategy)}; imbalanced-learn said: {type(error).__name__}: {error}"
        ) from error
    for key, value in result.items():
        _check_count(f"sampling_strategy[{key!r}]", value)
    return result


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _check_count(name: str, value: Any) -> None:
    """A sample count: a non-negative integer (``8.5`` is refused, never truncated)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        fail(name, "a non-negative integer count", value, kind=TypeError)
    if not isinstance(value, numbers.Integral):
        fail(
            name,
            "a whole number of samples",
            value,
            "Counts are not rounded: give an integer (int(round(value)) if you mean that)",
            kind=TypeError,
        )


def check_sampling_strategy_type(sampling_strategy: Any) -> None:
    """Refuse, by name, what imbalanced-learn has no rule for, before asking it.

    Example:
        >>> check_sampling_strategy_type({1: 8.5})
        Traceback (most recent call last):
        ...
        TypeError: sampling_strategy[1]: expected a whole number of samples, got 8.5. ...
    """
    value = sampling_strategy
    if isinstance(value, str) or callable(value):
        return
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        if not (np.isfinite(float(value)) and 0 < float(value) <= 1):
            fail(
                "sampling_strategy",
                "a finite float in (0, 1] (minority / majority size after resampling)",
                value,
            )
        return
    if isinstance(value, Mapping):
        for key, count in value.items():
            _check_count(f"sampling_strategy[{key!r}]", count)
        return
    if isinstance(value, list | tuple):  # a ValueError there too
        fail(
            "sampling_strategy",
            "a rule name, a float, a dict or a callable",
            value,
            "A list of classes is imbalanced-learn's form for cleaning under-samplers only; "
            "give {class: count} instead",
        )
    fail(
        "sampling_strategy",
        "a rule name such as 'auto', a float (two classes), a dict {class: count} or a "
        "callable y -> dict",
        value,
        kind=TypeError,
    )


class CountProxy(np.ndarray):
    """A label vector of one entry per class that reports the real class counts.

    imbalanced-learn reads ``y`` only through ``np.unique`` (classes, their number, their
    counts) and, for a float ``sampling_strategy``, scikit-learn's ``type_of_target``, which
    depends on the distinct values alone. This array holds the class positions ``0..C-1``
    once each and answers ``np.unique(..., return_counts=True)`` with ``counts``, so the
    string and float rules see ``N`` samples at the cost of ``C``. :func:`class_proxy` checks
    once per process that it gives imbalanced-learn's answers for a full vector.

    Example:
        >>> proxy = CountProxy.of(np.array([4, 1]))
        >>> [a.tolist() for a in np.unique(proxy, return_counts=True)]
        [[0, 1], [4, 1]]
        >>> np.unique(proxy).tolist()
        [0, 1]
    """

    counts: np.ndarray

    @classmethod
    def of(cls, counts: np.ndarray) -> CountProxy:
        proxy = np.arange(len(counts), dtype=np.int64).view(cls)
        proxy.counts = np.asarray(counts, dtype=np.int64)
        return proxy

    def __array_finalize__(self, obj: Any) -> None:
        self.counts = getattr(obj, "counts", None)  # type: ignore[assignment]

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        plain = [a.view(np.ndarray) if isinstance(a, CountProxy) else a for a in args]
        if func is np.unique and kwargs.get("return_counts") and isinstance(args[0], CountProxy):
            others = {k: v for k, v in kwargs.items() if k != "return_counts"}
            values = np.unique(*plain, **others)
            values = values if isinstance(values, tuple) else (values,)
            # The classes are 0..C-1 in order, so every index and inverse is the identity.
            return (*values, args[0].counts.copy())
        return func(*plain, **kwargs)


_PROXY_WORKS: dict[str, bool] = {}


def _proxy_works(sampling_type: str) -> bool:
    """Whether :class:`CountProxy` gives imbalanced-learn's answers for this sampling type.

    Compared once per process against full label vectors over every string rule and a
    float, on counts chosen so that each rule picks different classes.
    """
    if sampling_type not in _PROXY_WORKS:
        check = get_check_sampling_strategy()
        works = True
        for counts in (np.array([7, 3, 5, 1]), np.array([6, 2]), np.array([2, 6])):
            full = np.repeat(np.arange(len(counts)), counts)
            rules: list[Any] = [*IMBLEARN_RULES, 0.5] if len(counts) == 2 else [*IMBLEARN_RULES]
            for rule in rules:
                try:
                    expected = {int(k): int(v) for k, v in check(rule, full, sampling_type).items()}
                except ValueError:
                    expected = None
                try:
                    got = {
                        int(k): int(v)
                        for k, v in check(rule, CountProxy.of(counts), sampling_type).items()
                    }
                except Exception:
                    got = None
                works = works and got == expected
        _PROXY_WORKS[sampling_type] = works
    return _PROXY_WORKS[sampling_type]


def class_proxy(counts: np.ndarray, sampling_type: str) -> np.ndarray:
    """Labels that give imbalanced-learn's count-only rules the class counts ``counts``.

    A :class:`CountProxy` (one entry per class) where it has been checked to work, else a
    full vector of class positions in class order (one small integer per sample).

    Example:
        >>> class_proxy(np.array([3, 1]), "over-sampling").shape
        (2,)
    """
    if _proxy_works(sampling_type):
        return CountProxy.of(counts)
    dtype = np.int16 if len(counts) < 2**15 else np.int32
    return np.repeat(np.arange(len(counts), dtype=dtype), counts)


def get_check_sampling_strategy() -> Callable[..., Any]:
    """imbalanced-learn's ``check_sampling_strategy``, imported on first use.

    The import happens under :func:`kept_random_state`, so it moves no global RNG.

    Example:
        >>> get_check_sampling_strategy().__name__
        'check_sampling_strategy'
    """
    with kept_random_state():
        from imblearn.utils import check_sampling_strategy
    return check_sampling_strategy


def imblearn_targets(
    index: LabelIndex, kind: Literal["over", "under"], sampling_strategy: Any
) -> np.ndarray:
    """Target count per class (class order of ``index``) under imbalanced-learn's rules.

    ``kind="over"`` gives ``RandomOverSampler``'s counts (and SMOTE's), ``kind="under"``
    ``RandomUnderSampler``'s.

    Args:
        index: The labels, indexed by class.
        kind: ``"over"`` or ``"under"``.
        sampling_strategy: imbalanced-learn's ``sampling_strategy``.

    Returns:
        An int64 array with one target count per class.

    Raises:
        ValueError: For a ``sampling_strategy`` imbalanced-learn rejects (same cases, its
            message prefixed with ``sampling_strategy:``).

    Example:
        >>> imblearn_targets(LabelIndex([0, 0, 0, 1]), "over", "auto").tolist()
        [3, 3]
        >>> imblearn_targets(LabelIndex([0, 0, 0, 1]), "under", "auto").tolist()
        [1, 1]
    """
    check_sampling_strategy = get_check_sampling_strategy()

    sampling_type = "over-sampling" if kind == "over" else "under-sampling"
    check_sampling_strategy_type(sampling_strategy)
    if isinstance(sampling_strategy, str) and sampling_strategy not in IMBLEARN_RULES:
        fail(
            "sampling_strategy",
            "one of " + ", ".join(repr(r) for r in IMBLEARN_RULES) + ", a float, a dict or a "
            "callable (imbalanced-learn's rules)",
            sampling_strategy,
        )
    classes = index.keys()
    if len(classes) < 2:
        fail(
            "labels",
            f"more than 1 class for imbalanced-learn's {kind!r} rules",
            Text(f"1 class ({classes[0]!r})"),
            "Nothing to balance: take the data as it is ('instance')",
        )
    position = {c: i for i, c in enumerate(classes)}
    if isinstance(sampling_strategy, Mapping):
        unknown = [k for k in sampling_strategy if k not in position]
        if unknown:
            shown = ", ".join(repr(c) for c in classes[:8]) + (", ..." if len(classes) > 8 else "")
            fail(
                "sampling_strategy",
                f"a dict over the classes the labels hold ({shown})",
                Text(f"class {unknown[0]!r}, which no sample has"),
                "Name only classes of the data",
            )
    strategy = sampling_strategy
    if isinstance(sampling_strategy, Mapping) and all(k in position for k in sampling_strategy):
        strategy = {position[k]: v for k, v in sampling_strategy.items()}
    if callable(sampling_strategy) or (
        strategy is sampling_strategy and isinstance(sampling_strategy, Mapping)
    ):
        # A callable sees the real labels; a dict naming an unknown class gets
        # imbalanced-learn's own error.
        y: np.ndarray = index.labels
        result = checked_strategy(check_sampling_strategy, sampling_strategy, y, sampling_type)
        by_position = {position[k]: v for k, v in result.items()}
    else:
        # Every other rule depends only on the class counts: imbalanced-learn gets them from a
        # proxy with one entry per class (see CountProxy), or, should its use of ``y`` ever
        # change, from one small integer per sample in class order.
        by_position = dict(
            checked_strategy(
                check_sampling_strategy,
                strategy,
                class_proxy(index.counts, sampling_type),
                sampling_type,
            )
        )
    targets = index.counts.copy()
    for pos, value in by_position.items():
        pos = int(pos)
        targets[pos] = targets[pos] + int(value) if kind == "over" else int(value)
    return targets
