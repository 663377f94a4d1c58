"""The epochs every public sampler draws, pinned: a refactor must not change them.

Each case draws three epochs (whole, and one rank's share of two) and compares a digest of
them with ``tests/data/epoch_digests.json``, written from the code of 2026-12-07. Only
integer paths are pinned (permutations, walks, integer plans): draws that compare floats
(per-sample weights, power strategies) could round differently on another CPU make.

A change that means to change epochs regenerates the file with
``TORCH_BALANCE_WRITE_DIGESTS=1 python -m pytest tests/test_epoch_digests.py`` and says why.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from torch_balance import (
    BalancedSampler,
    ClassAwareSampler,
    ClassBalancedBatchSampler,
    MixtureSampler,
    RandomOverSampler,
    RandomUnderSampler,
    RepeatFactorSampler,
    ResampledDataset,
    StratifiedBatchSampler,
)

DIGESTS = Path(__file__).parent / "data" / "epoch_digests.json"
WRITE = os.environ.get("TORCH_BALANCE_WRITE_DIGESTS") == "1"

_rng = np.random.default_rng(7)
SMALL = np.repeat(np.arange(6), [300, 120, 40, 15, 6, 2])
# past the sizes where the helper thread, the next-order prefetch and the walk cache start
LARGE = _rng.integers(0, 40, size=300_000) ** 2 % 37
SETS = [
    sorted({int(v) for v in _rng.integers(0, 12, size=1 + i % 3) ** 2 % 11}) for i in range(400)
]

CASES: dict[str, Callable[..., Any]] = {
    "over": lambda **kw: RandomOverSampler(SMALL, seed=1, **kw),
    "under": lambda **kw: RandomUnderSampler(SMALL, seed=2, **kw),
    "not-minority": lambda **kw: RandomUnderSampler(SMALL, "not minority", seed=3, **kw),
    "class": lambda **kw: BalancedSampler(SMALL, "class", num_samples=500, seed=4, **kw),
    "instance": lambda **kw: BalancedSampler(SMALL, "instance", seed=5, **kw),
    "replacement": lambda **kw: BalancedSampler(SMALL, "over", replacement=True, seed=6, **kw),
    "large-over": lambda **kw: RandomOverSampler(LARGE, seed=7, **kw),
    "large-under": lambda **kw: RandomUnderSampler(LARGE, seed=8, **kw),
    "stratified": lambda **kw: StratifiedBatchSampler(SMALL, 16, seed=9, **kw),
    "pk": lambda **kw: ClassBalancedBatchSampler(SMALL, 3, 2, seed=10, **kw),
    "repeat-factor": lambda **kw: RepeatFactorSampler(SETS, 0.3, rounding="ceil", seed=11, **kw),
    "class-aware": lambda **kw: ClassAwareSampler(SETS, num_sample_class=2, seed=13, **kw),
    # shares 3/4 and 1/4 and "class" over integer counts: exact, no float rounding
    "mixture": lambda **kw: MixtureSampler(
        [SMALL, SMALL[:100]],
        proportions=[3, 1],
        strategy=["class", None],
        num_samples=400,
        seed=13,
        **kw,
    ),
}


def _epochs(make: Callable[..., Any], **kwargs: Any) -> list[Any]:
    sampler = make(**kwargs)
    epochs = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        epochs.append([list(map(int, b)) if isinstance(b, list) else int(b) for b in sampler])
    return epochs


def _digest(value: Any) -> str:
    return hashlib.blake2b(json.dumps(value).encode(), digest_size=12).hexdigest()


def _current() -> dict[str, str]:
    found = {}
    for name, make in CASES.items():
        found[name] = _digest(_epochs(make))
        found[f"{name}@rank1of2"] = _digest(_epochs(make, num_replicas=2, rank=1))
    for name, strategy in (("dataset-over", "over"), ("dataset-under", "under")):
        data = ResampledDataset(list(range(len(SMALL))), strategy, labels=SMALL, seed=12)
        draws = []
        for epoch in range(3):
            data.set_epoch(epoch)
            draws.append(data.epoch_indices().tolist())
        found[name] = _digest(draws)
    return found


def test_every_public_sampler_draws_the_pinned_epochs() -> None:
    current = _current()
    if WRITE:
        DIGESTS.parent.mkdir(exist_ok=True)
        DIGESTS.write_text(json.dumps(current, indent=1, sort_keys=True) + "\n")
    pinned = json.loads(DIGESTS.read_text())
    changed = sorted(name for name in pinned if current.get(name) != pinned[name])
    assert set(current) == set(pinned), sorted(set(current) ^ set(pinned))
    assert not changed, f"these epochs changed: {changed}"


def test_the_digest_notices_a_changed_epoch() -> None:
    """The check can fail: another seed gives another digest."""
    other = _epochs(lambda **kw: RandomOverSampler(SMALL, seed=99, **kw))
    assert _digest(_epochs(CASES["over"])) != _digest(other)
