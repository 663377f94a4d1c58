"""The plan: parity with imbalanced-learn, the power rules, schedules and class weights."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pytest
from conftest import binary_vectors, label_vectors, multiclass_vectors
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from imblearn.over_sampling import RandomOverSampler as ImbOver
from imblearn.under_sampling import RandomUnderSampler as ImbUnder

from torch_balance import (
    BalancedSampler,
    Deferred,
    LabelIndex,
    Power,
    Progressive,
    _imblearn,
    make_plan,
    target_counts,
)

_SAMPLING_TYPES = ("over-sampling", "under-sampling")
STRING_RULES = ["minority", "majority", "not minority", "not majority", "all", "auto"]
FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def imblearn_counts(kind: str, labels: np.ndarray, sampling_strategy: Any) -> dict[Any, int]:
    cls = ImbOver if kind == "over" else ImbUnder
    x = np.zeros((labels.shape[0], 1))
    _, y = cls(sampling_strategy=sampling_strategy, random_state=0).fit_resample(x, labels)
    return {k: int(v) for k, v in sorted(Counter(y.tolist()).items())}


def ours(kind: str, labels: np.ndarray, sampling_strategy: Any) -> dict[Any, int]:
    """Our composition, without the classes an epoch leaves out (imbalanced-learn omits them)."""
    counts = target_counts(labels, kind, sampling_strategy=sampling_strategy)
    return {k: v for k, v in counts.items() if v}


def assert_same_outcome(kind: str, labels: np.ndarray, rule: Any) -> None:
    """Equal counts, or a ValueError from both.

    One deliberate difference: where imbalanced-learn returns an empty dataset (every class
    undersampled to 0), a sampler has no epoch to draw and says so.
    """
    try:
        expected = imblearn_counts(kind, labels, rule)
    except ValueError:
        with pytest.raises(ValueError):
            ours(kind, labels, rule)
        return
    if sum(expected.values()) == 0:
        with pytest.raises(ValueError, match="at least one sample per epoch"):
            ours(kind, labels, rule)
        return
    assert ours(kind, labels, rule) == expected


@pytest.mark.parametrize("kind", ["over", "under"])
@pytest.mark.parametrize("rule", STRING_RULES)
@FAST
@given(labels=multiclass_vectors())
def test_string_rules_match_imblearn(kind: str, rule: str, labels: np.ndarray) -> None:
    assert_same_outcome(kind, labels, rule)


@pytest.mark.parametrize("kind", ["over", "under"])
@FAST
@given(labels=binary_vectors(), ratio=st.floats(0.01, 1.0))
def test_float_rule_matches_imblearn(kind: str, labels: np.ndarray, ratio: float) -> None:
    assert_same_outcome(kind, labels, ratio)


@pytest.mark.parametrize("kind", ["over", "under"])
@FAST
@given(labels=multiclass_vectors(), data=st.data())
def test_dict_rule_matches_imblearn(kind: str, labels: np.ndarray, data: st.DataObject) -> None:
    counts = Counter(labels.tolist())
    chosen = data.draw(st.lists(st.sampled_from(sorted(counts)), unique=True, min_size=1))
    rule = {c: data.draw(st.integers(0, 60)) for c in chosen}
    assert_same_outcome(kind, labels, rule)


def double_minority(y: np.ndarray) -> dict[Any, int]:
    counts = Counter(y.tolist())
    smallest = min(counts, key=lambda c: (counts[c], c))
    return {smallest: 2 * counts[smallest]}


def halve_majority(y: np.ndarray) -> dict[Any, int]:
    counts = Counter(y.tolist())
    largest = max(counts, key=lambda c: (counts[c], c))
    return {largest: counts[largest] // 2}


@FAST
@given(labels=multiclass_vectors())
def test_callable_rules_match_imblearn(labels: np.ndarray) -> None:
    assert_same_outcome("over", labels, double_minority)
    assert_same_outcome("under", labels, halve_majority)


@pytest.mark.parametrize("kind", ["over", "under"])
@pytest.mark.parametrize("rule", [*STRING_RULES, 0.3, 0.8])
@pytest.mark.parametrize("proxy_works", [True, False])
def test_count_rules_agree_with_either_proxy(
    kind: str, rule: Any, proxy_works: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # proxy_works=False: as if the one-entry-per-class proxy had failed its self-test.
    monkeypatch.setattr(
        _imblearn, "_PROXY_WORKS", {} if proxy_works else dict.fromkeys(_SAMPLING_TYPES, False)
    )
    counts = [9, 2, 5] if isinstance(rule, str) else [9, 4]
    assert_same_outcome(kind, np.repeat(np.arange(len(counts)), counts), rule)


def test_count_rules_see_one_entry_per_class(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []
    check = _imblearn.get_check_sampling_strategy()

    def spy(strategy: Any, y: np.ndarray, kind: str) -> Any:
        seen.append(len(y))
        return check(strategy, y, kind)

    monkeypatch.setattr(_imblearn, "get_check_sampling_strategy", lambda: spy)
    labels = np.repeat(np.arange(3), [500, 40, 7])
    assert _imblearn.imblearn_targets(LabelIndex(labels), "under", "auto").tolist() == [7, 7, 7]
    assert seen == [3]


def test_count_proxy_self_test_catches_a_broken_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    def plain(self: Any, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        return func(*[np.asarray(a).view(np.ndarray) for a in args], **kwargs)

    monkeypatch.setattr(_imblearn, "_PROXY_WORKS", {})
    monkeypatch.setattr(_imblearn.CountProxy, "__array_function__", plain)
    # Without its np.unique answer the proxy counts one sample per class: the self-test
    # notices, and the rules fall back to a full vector with the right answer.
    assert not _imblearn._proxy_works("under-sampling")
    assert _imblearn.class_proxy(np.array([4, 1]), "under-sampling").shape == (5,)
    labels = np.repeat(np.arange(3), [50, 4, 7])
    assert ours("under", labels, "auto") == {0: 4, 1: 4, 2: 4}


BAD_RULES: list[Any] = [
    "most",  # unknown string
    1.5,  # float out of (0, 1]
    0.0,
    {99: 5},  # unknown class
    {0: -1},  # negative
    [0, 1],  # a list is for cleaning samplers
]


@pytest.mark.parametrize("kind", ["over", "under"])
@pytest.mark.parametrize("rule", BAD_RULES, ids=repr)
def test_invalid_rules_raise_value_error_like_imblearn(kind: str, rule: Any) -> None:
    labels = np.array([0] * 10 + [1] * 4 + [2] * 2)
    with pytest.raises(ValueError):
        imblearn_counts(kind, labels, rule)
    with pytest.raises(ValueError, match="sampling_strategy"):
        ours(kind, labels, rule)


def test_float_on_multiclass_raises_like_imblearn() -> None:
    labels = np.array([0] * 10 + [1] * 4 + [2] * 2)
    for kind in ("over", "under"):
        with pytest.raises(ValueError, match="binary"):
            imblearn_counts(kind, labels, 0.5)
        with pytest.raises(ValueError, match="binary"):
            ours(kind, labels, 0.5)


def test_single_class_raises_like_imblearn() -> None:
    with pytest.raises(ValueError, match="more than 1 class"):
        target_counts([3, 3, 3], "over")


def test_string_labels_keep_their_values() -> None:
    labels = np.array(["cat"] * 5 + ["dog"] * 2 + ["eel"], dtype=object)
    assert target_counts(labels, "over") == {"cat": 5, "dog": 5, "eel": 5}
    assert target_counts(labels, "under", sampling_strategy={"cat": 3}) == {
        "cat": 3,
        "dog": 2,
        "eel": 1,
    }


@FAST
@given(labels=label_vectors(), q=st.floats(-2, 2), n=st.integers(1, 500))
def test_power_rule_is_proportional_and_exact(labels: np.ndarray, q: float, n: int) -> None:
    index = LabelIndex(labels)
    targets = make_plan(index, Power(q), num_samples=n).targets(0)
    assert int(targets.sum()) == n
    ideal = n * index.counts.astype(float) ** q / (index.counts.astype(float) ** q).sum()
    assert np.all(np.abs(targets - ideal) < 1.0)


def test_named_powers() -> None:
    labels = [0] * 64 + [1] * 16 + [2] * 4
    assert target_counts(labels, "instance") == {0: 64, 1: 16, 2: 4}
    assert target_counts(labels, "class") == {0: 28, 1: 28, 2: 28}
    # sqrt: 8 : 4 : 2 of 84
    assert target_counts(labels, "sqrt") == {0: 48, 1: 24, 2: 12}


def test_progressive_follows_kang_et_al() -> None:
    labels = [0] * 90 + [1] * 10
    plan = make_plan(LabelIndex(labels), Progressive(5))
    p_instance, p_class = np.array([0.9, 0.1]), np.array([0.5, 0.5])
    for epoch in range(8):
        t = min(epoch, 4) / 4
        expected = 100 * ((1 - t) * p_instance + t * p_class)
        assert np.allclose(plan.targets(epoch), expected, atol=1.0)
        assert plan.targets(epoch).sum() == 100


def test_deferred_switches_at_start_epoch_and_keeps_length() -> None:
    labels = [0] * 90 + [1] * 10
    plan = make_plan(LabelIndex(labels), Deferred(3, "instance", "over"))
    assert [plan.targets(e).tolist() for e in (0, 2, 3, 9)] == [
        [90, 10],
        [90, 10],
        [50, 50],
        [50, 50],
    ]


def test_callable_strategy_sees_counts_and_epoch() -> None:
    seen: list[tuple[dict, int]] = []

    def rule(counts: dict, epoch: int) -> dict:
        seen.append((counts, epoch))
        return {"a": 3, "b": 3}

    sampler = BalancedSampler(["a", "a", "b"], rule)
    assert sampler.target_counts(4) == {"a": 3, "b": 3}
    assert ({"a": 2, "b": 1}, 4) in seen


def test_callable_strategy_errors() -> None:
    with pytest.raises(ValueError, match="classes present"):
        target_counts([0, 1], lambda c, e: {7: 1})
    with pytest.raises(ValueError, match="non-negative integer"):
        target_counts([0, 1], lambda c, e: {0: -1, 1: 1})
    with pytest.raises(TypeError, match="returning a dict"):
        target_counts([0, 1], lambda c, e: [1, 1])
    changing = BalancedSampler([0, 1], lambda c, e: {0: 1 + e, 1: 1})
    with pytest.raises(ValueError, match="same epoch length"):
        changing.target_counts(1)


def test_bad_strategy_arguments() -> None:
    with pytest.raises(ValueError, match="strategy: expected one of"):
        target_counts([0, 1], "balanced")
    with pytest.raises(TypeError, match="strategy"):
        target_counts([0, 1], 3)
    with pytest.raises(ValueError, match="num_samples"):
        target_counts([0, 1], "over", num_samples=10)
    with pytest.raises(ValueError, match="sampling_strategy"):
        target_counts([0, 1], "sqrt", sampling_strategy="minority")
    with pytest.raises(ValueError, match="num_samples"):
        target_counts([0, 1], "sqrt", num_samples=0)
    with pytest.raises(ValueError, match=r"Power\.q"):
        Power(float("nan"))
    with pytest.raises(ValueError, match="num_epochs"):
        Progressive(0)
    with pytest.raises(TypeError, match="single-stage"):
        Deferred(2, Progressive(3))
