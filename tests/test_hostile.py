"""Hostile input at every public entry point: a right result or a clear error, nothing else.

Each case replaces one argument of a public call with a value hypothesis draws from a pool of
hostile values (huge and negative integers, NaN and infinite floats, bools, strings, None,
containers, numpy and torch scalars, arbitrary objects). The contract: the call either
succeeds and the object it built works, or it raises ``TypeError``/``ValueError`` whose
message names the argument. An ``OverflowError``, ``IndexError``, ``AttributeError`` or an
error from deep inside numpy or torch fails the test.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from torch_balance import (
    BalancedSampler,
    ClassBalancedBatchSampler,
    Deferred,
    Power,
    Progressive,
    RandomOverSampler,
    RandomUnderSampler,
    RepeatFactorSampler,
    ResampledDataset,
    StratifiedBatchSampler,
    class_weights,
    target_counts,
)
from torch_balance.integrations import set_epoch

LABELS = np.array([0] * 12 + [1] * 5 + [2] * 2)
SETS = [(0,), (0, 1), (1,), (), (2,), (0, 2)] * 3


class Opaque:
    """An object of no useful kind."""


HOSTILE = st.one_of(
    st.integers(-(2**70), 2**70),
    st.sampled_from([0, -1, 1, 2, 3, 2**31, 2**63 - 1, 2**63, 2**64, -(2**63) - 1, 10**40]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([float("nan"), float("inf"), -float("inf"), 0.5, 1e300, -0.0]),
    st.booleans(),
    st.none(),
    st.text(max_size=6),
    st.sampled_from(["", "over", "auto", "nonsense", "0"]),
    st.sampled_from([[], {}, (), [1, 2], {0: 1}, {"a": None}, {1: float("nan")}, {1: 8.5}]),
    st.sampled_from([np.int64(3), np.int8(-1), np.uint64(2**64 - 1), np.float32(2.5)]),
    st.sampled_from([np.nan, np.array(3), np.array([1, 2]), np.bool_(True)]),
    st.builds(lambda v: torch.tensor(v), st.integers(-5, 5)),
    st.sampled_from([torch.tensor([1, 2]), torch.tensor(2.5), torch.tensor(True)]),
    st.builds(Opaque),
    st.just(Power),
    st.just(len),
)


def _use(built: Any) -> None:
    """Prove an accepted object works: it has a length and hands out valid items."""
    if isinstance(built, ResampledDataset):
        assert len(built) > 0
        built[0]
        return
    if hasattr(built, "__iter__") and hasattr(built, "__len__"):
        assert len(built) >= 0
        for item in built:
            flat = item if isinstance(item, list) else [item]
            assert all(0 <= int(i) < 100 for i in flat)
            break


# (argument name, how to call with the value); the name must appear in any error message
CASES: list[tuple[str, Callable[[Any], Any]]] = [
    ("num_samples", lambda v: BalancedSampler(LABELS, "class", num_samples=v)),
    ("seed", lambda v: BalancedSampler(LABELS, seed=v)),
    ("num_replicas", lambda v: BalancedSampler(LABELS, num_replicas=v)),
    ("rank", lambda v: BalancedSampler(LABELS, num_replicas=4, rank=v)),
    ("drop_last", lambda v: BalancedSampler(LABELS, drop_last=v)),
    ("replacement", lambda v: BalancedSampler(LABELS, replacement=v)),
    ("strategy", lambda v: BalancedSampler(LABELS, v)),
    ("sampling_strategy", lambda v: RandomOverSampler(LABELS, sampling_strategy=v)),
    ("sampling_strategy", lambda v: RandomUnderSampler(LABELS, sampling_strategy=v)),
    ("batch_size", lambda v: StratifiedBatchSampler(LABELS, v)),
    ("classes_per_batch", lambda v: ClassBalancedBatchSampler(LABELS, v, 2)),
    ("samples_per_class", lambda v: ClassBalancedBatchSampler(LABELS, 2, v)),
    ("num_batches", lambda v: ClassBalancedBatchSampler(LABELS, 2, 2, num_batches=v)),
    ("threshold", lambda v: RepeatFactorSampler(SETS, v)),
    ("rounding", lambda v: RepeatFactorSampler(SETS, 0.3, rounding=v)),
    ("sqrt", lambda v: RepeatFactorSampler(SETS, 0.3, sqrt=v)),
    ("seed", lambda v: ResampledDataset(list(range(19)), labels=LABELS, seed=v)),
    ("shuffle", lambda v: ResampledDataset(list(range(19)), labels=LABELS, shuffle=v)),
    ("epoch", lambda v: BalancedSampler(LABELS).set_epoch(v)),
    ("epoch", lambda v: StratifiedBatchSampler(LABELS, 4).set_epoch(v)),
    ("epoch", lambda v: ResampledDataset(list(range(19)), labels=LABELS).set_epoch(v)),
    ("epoch", lambda v: BalancedSampler(LABELS).epoch_indices(v)),
    ("epoch", lambda v: set_epoch([], v)),
    ("index", lambda v: ResampledDataset(list(range(19)), labels=LABELS)[v]),
    ("state_dict", lambda v: BalancedSampler(LABELS).load_state_dict(v)),
    ("Power.q", lambda v: Power(v)),
    ("num_epochs", lambda v: Progressive(v)),
    ("start_epoch", lambda v: Deferred(v)),
    ("strategy", lambda v: target_counts(LABELS, v)),
    ("num_samples", lambda v: target_counts(LABELS, "sqrt", num_samples=v)),
    ("kind", lambda v: class_weights(LABELS, v)),
    ("beta", lambda v: class_weights(LABELS, "effective", beta=v)),
]

ALLOWED = (TypeError, ValueError)


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize(
    ("name", "call"), CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)]
)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=HOSTILE)
def test_hostile_argument(name: str, call: Callable[[Any], Any], value: Any) -> None:
    try:
        built = call(value)
    except ALLOWED as error:
        message = str(error)
        assert name in message.split(":")[0] or name in message, (
            f"{type(error).__name__} for {value!r} does not name {name!r}: {message}"
        )
        return
    _use(built)
