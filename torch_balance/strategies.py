"""The plan: how many samples of each class one epoch holds.

A *strategy* names a rule; :func:`make_plan` turns it and the class counts into a
:class:`Plan`, a pure function from the epoch number to one target count per class. Samplers
and dataset wrappers draw from the same plan, so they always agree.

==================  ===========================================================================
strategy            one epoch holds, per class c with n_c samples
==================  ===========================================================================
``"over"``          imbalanced-learn's ``RandomOverSampler(sampling_strategy=...)`` counts
``"under"``         imbalanced-learn's ``RandomUnderSampler(sampling_strategy=...)`` counts
``"instance"``      ``Power(1)``: n_c (scaled to ``num_samples``)
``"sqrt"``          ``Power(0.5)``: proportional to sqrt(n_c)
``"class"``         ``Power(0)``: the same number for every class
``Power(q)``        ``num_samples * n_c**q / sum_i n_i**q`` (Kang et al., ICLR 2020)
``Progressive(T)``  instance-balanced at epoch 0, class-balanced from epoch T-1 on, linear between
``Deferred(E)``     one strategy before epoch E, another from E on (DRS, Cao et al., NeurIPS 2019)
``Feedback(base)``  ``base``, blended with per-class difficulty fed each epoch (Sinha et al.)
callable            ``fn(counts: dict, epoch: int) -> dict``: any plan you like
==================  ===========================================================================
"""

from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Union

import numpy as np

from torch_balance._apportion import apportion, describe
from torch_balance._imblearn import imblearn_targets
from torch_balance._validation import Text, check_epoch_size, check_int, fail
from torch_balance.labels import LabelIndex, resolve_labels

if TYPE_CHECKING:
    from torch_balance.feedback import Feedback

__all__ = [
    "EPOCH_BYTES",
    "Deferred",
    "Plan",
    "Power",
    "Progressive",
    "Strategy",
    "make_plan",
    "plan_for",
    "target_counts",
]

STRATEGY_NAMES = ("over", "under", "instance", "sqrt", "class")


@dataclass(frozen=True)
class Power:
    """Sample class c in proportion to ``n_c ** q`` (Kang et al., ICLR 2020).

    ``q=1`` is the natural (instance-balanced) mix, ``q=0.5`` square-root sampling, ``q=0``
    class-balanced sampling; ``q<0`` favours rare classes beyond balance.

    Example:
        >>> make_plan(LabelIndex([0] * 9 + [1]), Power(0)).targets(0).tolist()
        [5, 5]
    """

    q: float

    def __post_init__(self) -> None:
        if isinstance(self.q, bool) or not isinstance(self.q, numbers.Real):
            fail("Power.q", "a real number", self.q, kind=TypeError)
        if not math.isfinite(float(self.q)):
            fail("Power.q", "a finite number", self.q)


@dataclass(frozen=True)
class Progressive:
    """Move from instance- to class-balanced sampling over ``num_epochs`` epochs.

    ``p_c(t) = (1 - t/(T-1)) * n_c/N + t/(T-1) * 1/C`` for epoch ``t < T``; class-balanced from
    epoch ``T-1`` on (Kang et al., ICLR 2020).

    Example:
        >>> plan = make_plan(LabelIndex([0] * 8 + [1] * 2), Progressive(3))
        >>> [plan.targets(e).tolist() for e in range(4)]
        [[8, 2], [7, 3], [5, 5], [5, 5]]
    """

    num_epochs: int

    def __post_init__(self) -> None:
        check_int("Progressive.num_epochs", self.num_epochs, minimum=1)


@dataclass(frozen=True)
class Deferred:
    """Deferred re-sampling: ``before`` until epoch ``start_epoch``, ``after`` from then on.

    Both stages are scaled to the same epoch length (``num_samples``, default the dataset
    size), so a DataLoader's length never changes; with ``"over"`` or ``"under"`` as a stage,
    its class proportions are kept and scaled. (DRS: Cao et al., NeurIPS 2019.)

    Example:
        >>> plan = make_plan(LabelIndex([0] * 8 + [1] * 2), Deferred(2))
        >>> [plan.targets(e).tolist() for e in range(3)]
        [[8, 2], [8, 2], [5, 5]]
    """

    start_epoch: int
    before: Any = "instance"
    after: Any = "class"

    def __post_init__(self) -> None:
        check_int("Deferred.start_epoch", self.start_epoch, minimum=0)
        for name in ("before", "after"):
            stage = getattr(self, name)
            if isinstance(stage, Progressive | Deferred):
                fail(
                    f"Deferred.{name}",
                    "a single-stage strategy (a name, Power(q) or a callable)",
                    stage,
                    kind=TypeError,
                )


Strategy = Union[str, Power, Progressive, Deferred, "Feedback", Callable[[dict, int], Mapping]]


class Plan:
    """Per-class target counts for any epoch, in the class order of a :class:`LabelIndex`.

    Attributes:
        length: The number of samples in every epoch (constant across epochs).
        constant: Whether every epoch has the same targets.
        description: The strategy, ``sampling_strategy`` and ``num_samples`` it was made
            from, as stable text (a saved sampler state is checked against it).
    """

    def __init__(
        self,
        index: LabelIndex,
        rule: Callable[[int], np.ndarray],
        *,
        constant: bool,
    ) -> None:
        self.index = index
        self._rule = rule
        self.constant = constant
        self.description = "custom rule"
        self._cache: dict[int, np.ndarray] = {}
        # A rule whose targets can change (Feedback) has a stamp; a new stamp empties the cache.
        self._stamp = getattr(rule, "stamp", None)
        first = self._checked(0)
        self._first = first
        self.length = int(first.sum())
        if self.length <= 0:
            fail("strategy", "a plan with at least one sample per epoch", first.tolist())

    def _checked(self, epoch: int) -> np.ndarray:
        targets = np.asarray(self._rule(epoch), dtype=np.int64)
        if targets.shape != (self.index.num_classes,) or (targets < 0).any():
            fail("strategy", "non-negative counts, one per class", targets.tolist())
        return targets

    def targets(self, epoch: int) -> np.ndarray:
        """Target count per class (in ``index.classes`` order) for ``epoch``."""
        epoch = check_int("epoch", epoch, minimum=0)
        if self._stamp is not None and self._stamp != self._rule.stamp:  # type: ignore[attr-defined]
            self._stamp = self._rule.stamp  # type: ignore[attr-defined]
            self._cache.clear()
            self._first = self._checked(0)
        if self.constant or epoch == 0:
            return self._first.copy()
        cached = self._cache.get(epoch)
        if cached is not None:
            return cached.copy()
        targets = self._checked(epoch)
        if int(targets.sum()) != self.length:
            fail(
                "strategy",
                f"the same epoch length every epoch ({self.length} at epoch 0)",
                Text(f"{int(targets.sum())} at epoch {epoch}"),
                "Return counts with a constant total, or rescale them to it",
            )
        if len(self._cache) < 4096:
            self._cache[epoch] = targets
        return targets.copy()

    def as_dict(self, epoch: int) -> dict[Any, int]:
        """``{class: target count}`` for ``epoch``."""
        return dict(zip(self.index.keys(), self.targets(epoch).tolist(), strict=True))


def _power_weights(counts: np.ndarray, q: float) -> np.ndarray:
    with np.errstate(over="ignore", under="ignore"):
        weights = np.power(counts.astype(np.float64), float(q))
    if np.isfinite(weights).all() and weights.sum() > 0 and np.isfinite(weights.sum()):
        return weights
    # n**q overflows (or vanishes) for large |q|: the same proportions, scaled by the largest
    logs = float(q) * np.log(counts.astype(np.float64))
    return np.exp(logs - logs.max())


class _Fixed:
    """The same targets every epoch."""

    def __init__(self, targets: np.ndarray) -> None:
        self.targets = targets

    def __call__(self, epoch: int) -> np.ndarray:
        return self.targets


def _check_signature(name: str, fn: Callable[..., Any]) -> None:
    """A user's rule must accept ``(counts, epoch)``; say so before it is first called."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # some builtins have none to show; let the call decide
        return
    try:
        signature.bind({}, 0)
    except TypeError:
        fail(
            name,
            "a callable fn(counts: dict, epoch: int) -> dict",
            Text(f"{describe(fn)}{signature}"),
            "Accept the class counts and the epoch number",
            kind=TypeError,
        )


class _UserRule:
    """A user's ``fn(counts, epoch) -> {class: count}``, checked and put in class order."""

    def __init__(
        self, fn: Callable[[dict, int], Any], index: LabelIndex, name: str, length: int | None
    ) -> None:
        self.fn, self.name, self.length = fn, name, length
        self.counts = index.count_dict()
        self.keys = index.keys()

    def __call__(self, epoch: int) -> np.ndarray:
        result = self.fn(dict(self.counts), epoch)
        if not isinstance(result, Mapping):
            fail(
                self.name,
                "a callable returning a dict {class: count}",
                type(result).__name__,
                kind=TypeError,
            )
        unknown = [k for k in result if k not in self.counts]
        shown = self.keys if len(self.keys) <= 10 else [*self.keys[:10], "..."]
        if unknown:
            fail(self.name, f"counts only for the classes present ({shown})", unknown[:5])
        missing = [k for k in self.keys if k not in result]
        if missing:
            fail(
                self.name,
                f"a count for every class ({shown}) at epoch {epoch}",
                Text(f"a dict without {missing[:5]}" + (" ..." if len(missing) > 5 else "")),
                "Give 0 to leave a class out of the epoch",
            )
        values = []
        for key in self.keys:
            value = result.get(key, 0)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
                fail(self.name, f"a non-negative integer count for class {key!r}", value)
            values.append(int(value))
        raw = np.array(values, dtype=np.int64)
        if self.length is not None and raw.sum() > 0:
            return apportion(raw.astype(np.float64), self.length)
        return raw


class _ProgressiveRule:
    def __init__(self, index: LabelIndex, num_epochs: int, length: int) -> None:
        self.instance = index.counts.astype(np.float64) / len(index)
        self.balanced = np.full(index.num_classes, 1.0 / index.num_classes)
        self.last = num_epochs - 1
        self.length = length

    def __call__(self, epoch: int) -> np.ndarray:
        t = 1.0 if self.last == 0 else min(epoch, self.last) / self.last
        return apportion((1.0 - t) * self.instance + t * self.balanced, self.length)


class _DeferredRule:
    def __init__(
        self, before: Callable[[int], np.ndarray], after: Callable[[int], np.ndarray], start: int
    ) -> None:
        self.before, self.after, self.start = before, after, start

    def __call__(self, epoch: int) -> np.ndarray:
        return self.before(epoch) if epoch < self.start else self.after(epoch)


def _single_stage(
    index: LabelIndex,
    strategy: Any,
    *,
    sampling_strategy: Any,
    num_samples: int | None,
    name: str,
    scale: bool,
) -> tuple[Callable[[int], np.ndarray], bool]:
    """Rule for one non-scheduled strategy; ``scale`` forces the total to ``num_samples``."""
    length = num_samples if num_samples is not None else len(index)
    if isinstance(strategy, str):
        if strategy in ("over", "under"):
            fixed = imblearn_targets(index, strategy, sampling_strategy)  # type: ignore[arg-type]
            if scale:
                fixed = apportion(fixed.astype(np.float64), length)
            return _Fixed(fixed), True
        powers = {"instance": 1.0, "sqrt": 0.5, "class": 0.0}
        if strategy not in powers:
            fail(
                name,
                "one of "
                + ", ".join(repr(s) for s in STRATEGY_NAMES)
                + ", Power(q), Progressive(T), Deferred(E) or a callable",
                strategy,
            )
        strategy = Power(powers[strategy])
    if isinstance(strategy, Power):
        return _Fixed(apportion(_power_weights(index.counts, strategy.q), length)), True
    if isinstance(strategy, type):
        fail(
            name,
            "a strategy, not a class",
            Text(strategy.__name__),
            f"Call it with its argument, e.g. {strategy.__name__}(...)",
            kind=TypeError,
        )
    if callable(strategy):
        _check_signature(name, strategy)
        return _UserRule(strategy, index, name, length if scale else None), False
    fail(
        name,
        "a strategy name, Power(q), Progressive(T), Deferred(E) or a callable",
        strategy,
        kind=TypeError,
    )


def make_plan(
    index: LabelIndex | Any,
    strategy: Strategy = "over",
    *,
    sampling_strategy: Any = "auto",
    num_samples: int | None = None,
) -> Plan:
    """Turn a strategy into a :class:`Plan` for the labels in ``index``.

    Args:
        index: The labels, indexed by class; or a label vector or a dataset, indexed here
            (a dataset's labels are read with :func:`~torch_balance.labels.get_labels`, as
            the samplers read them).
        strategy: See the module table.
        sampling_strategy: imbalanced-learn's ``sampling_strategy``, for ``"over"`` and
            ``"under"`` only (and for those used as a ``Deferred`` stage).
        num_samples: Epoch length for power strategies, schedules and callables' rescaled
            stages; default the number of labels. ``"over"`` and ``"under"`` define their own.

    Returns:
        The plan.

    Raises:
        ValueError: For an unknown strategy name, a ``sampling_strategy`` imbalanced-learn
            rejects, or ``num_samples`` given with ``"over"``/``"under"``.

    Example:
        >>> index = LabelIndex([0, 0, 0, 0, 1])
        >>> make_plan(index, "over").as_dict(0)
        {0: 4, 1: 4}
        >>> make_plan(index, "under").as_dict(0)
        {0: 1, 1: 1}
    """
    index = resolve_labels(index)  # a label vector or a dataset, as the samplers take them
    plan = _make_plan(index, strategy, sampling_strategy=sampling_strategy, num_samples=num_samples)
    plan.description = (
        f"strategy={describe(strategy)}, sampling_strategy={describe(sampling_strategy)}, "
        f"num_samples={num_samples}"
    )
    return plan


def _make_plan(
    index: LabelIndex,
    strategy: Any,
    *,
    sampling_strategy: Any,
    num_samples: int | None,
) -> Plan:
    num_samples = check_int(
        "num_samples",
        num_samples,
        minimum=1,
        maximum=2**53,
        allow_none=True,
        fix="Leave it as None to use the dataset's length (counts are apportioned exactly "
        "only up to 2**53)",
    )
    build = getattr(strategy, "_build_plan", None)
    if callable(build):  # a strategy that builds its own rule from a base plan (Feedback)
        return build(
            index,
            lambda base: _make_plan(
                index, base, sampling_strategy=sampling_strategy, num_samples=num_samples
            ),
        )
    if isinstance(strategy, str) and strategy in ("over", "under") and num_samples is not None:
        fail(
            "num_samples",
            f"None with strategy={strategy!r} (imbalanced-learn's rules fix the epoch length)",
            num_samples,
            "Use strategy='class' or Power(q) for a chosen epoch length",
        )
    imblearn_stages = [strategy]
    if isinstance(strategy, Deferred):
        imblearn_stages = [strategy.before, strategy.after]
    if not any(isinstance(s, str) and s in ("over", "under") for s in imblearn_stages) and not (
        isinstance(sampling_strategy, str) and sampling_strategy == "auto"
    ):
        fail(
            "sampling_strategy",
            "'auto' unless strategy is 'over' or 'under'",
            sampling_strategy,
            "imbalanced-learn's sampling_strategy only applies to strategy='over'/'under'",
        )
    length = num_samples if num_samples is not None else len(index)
    if isinstance(strategy, Progressive):
        progressive = _ProgressiveRule(index, strategy.num_epochs, length)
        return Plan(index, progressive, constant=strategy.num_epochs == 1)
    if isinstance(strategy, Deferred):
        before, _ = _single_stage(
            index,
            strategy.before,
            sampling_strategy=sampling_strategy,
            num_samples=length,
            name="Deferred.before",
            scale=True,
        )
        after, after_constant = _single_stage(
            index,
            strategy.after,
            sampling_strategy=sampling_strategy,
            num_samples=length,
            name="Deferred.after",
            scale=True,
        )
        if strategy.start_epoch == 0:
            return Plan(index, after, constant=after_constant)
        return Plan(index, _DeferredRule(before, after, strategy.start_epoch), constant=False)
    rule, constant = _single_stage(
        index,
        strategy,
        sampling_strategy=sampling_strategy,
        num_samples=num_samples,
        name="strategy",
        scale=False,
    )
    return Plan(index, rule, constant=constant)


def target_counts(
    labels: Any,
    strategy: Strategy = "over",
    *,
    sampling_strategy: Any = "auto",
    num_samples: int | None = None,
    epoch: int = 0,
) -> dict[Any, int]:
    """The per-class composition of one epoch, without building a sampler.

    Args:
        labels: A label vector, a :class:`~torch_balance.labels.LabelIndex`, or a dataset
            (its labels read with :func:`~torch_balance.labels.get_labels`, as the samplers
            read them).
        strategy: See the module table.
        sampling_strategy: imbalanced-learn's ``sampling_strategy`` (``"over"``/``"under"``).
        num_samples: Epoch length for power strategies, schedules and callables.
        epoch: The epoch whose composition to return (schedules change with it).

    Returns:
        Samples per class in that epoch, keyed by class.

    Example:
        >>> target_counts(["a", "a", "a", "b"], "sqrt", num_samples=100)
        {'a': 63, 'b': 37}
        >>> from torch.utils.data import TensorDataset
        >>> import torch
        >>> target_counts(TensorDataset(torch.zeros(3, 2), torch.tensor([0, 0, 1])), "over")
        {0: 2, 1: 2}
    """
    index = resolve_labels(labels)
    plan = make_plan(index, strategy, sampling_strategy=sampling_strategy, num_samples=num_samples)
    return plan.as_dict(epoch)


# Peak bytes per index while an epoch is drawn: the draws (int64), the shuffled order (int32)
# and the gather into this rank's chunk.
EPOCH_BYTES = 20


def plan_for(
    dataset_or_labels: Any,
    strategy: Strategy,
    *,
    sampling_strategy: Any,
    num_samples: int | None,
    label_fn: Callable[[Any, int], Any] | None,
) -> tuple[LabelIndex, Plan]:
    """Labels -> :class:`LabelIndex` -> :class:`Plan`: the opening of every class-level sampler."""
    index = resolve_labels(dataset_or_labels, label_fn)
    plan = make_plan(index, strategy, sampling_strategy=sampling_strategy, num_samples=num_samples)
    check_epoch_size(
        "num_samples" if num_samples is not None else "strategy",
        plan.length,
        EPOCH_BYTES,
        "Ask for a shorter epoch (num_samples), or a strategy that draws fewer samples",
    )
    return index, plan
