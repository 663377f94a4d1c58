"""Every public sampler runs the shared conformance suite (torch_balance.testing)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from torch.utils.data import Sampler

import torch_balance
from torch_balance import (
    BalancedSampler,
    ClassAwareSampler,
    ClassBalancedBatchSampler,
    Deferred,
    MixtureSampler,
    Power,
    Progressive,
    RandomOverSampler,
    RandomUnderSampler,
    RareClassSampler,
    RepeatFactorSampler,
    StratifiedBatchSampler,
    WeightedSampler,
)
from torch_balance.testing import (
    CHECKS,
    check_sampler,
    check_sampler_basics,
    check_sampler_checkpoints,
    check_sampler_dataloader,
    check_sampler_distributed_attributes,
    conformance_labels,
)


def inverse_frequency(labels: Any) -> Any:
    """Per-sample weights 1 / (size of the sample's class), from int or str labels."""
    _, codes, counts = np.unique(np.asarray(labels), return_inverse=True, return_counts=True)
    weights = 1.0 / counts[codes]
    weights[::9] = 0.0  # some samples never drawn
    return weights


def alternating_plan(counts: dict, epoch: int) -> dict:
    """A user plan: 6 of each class, one moved from the first class to the last on odd epochs."""
    keys = list(counts)
    plan = dict.fromkeys(keys, 6)
    if epoch % 2:
        plan[keys[0]] -= 1
        plan[keys[-1]] += 1
    return plan


def pixel_counts_of(labels: Any) -> Any:
    """Per-image pixel counts from a label vector: a background class 0 in every image, and
    the image's label as class 1 + its code, with 30 to 90 pixels."""
    _, codes = np.unique(np.asarray(labels), return_inverse=True)
    n = codes.shape[0]
    counts = np.zeros((n, int(codes.max()) + 2), dtype=np.int64)
    counts[:, 0] = 500
    counts[np.arange(n), codes + 1] = 30 + (np.arange(n) * 7) % 61
    return counts


def labelsets_of(labels: Any) -> list[tuple[Any, ...]]:
    """Category sets from a label vector: each image's label, and every third image also the
    label of the next image (co-occurrence)."""
    values = np.asarray(labels).tolist()
    n = len(values)
    return [
        tuple({values[i], values[(i + 1) % n]}) if i % 3 == 0 else (values[i],) for i in range(n)
    ]


# Each public sampler class maps to the configurations it is checked in.
CASES: dict[type, list[tuple[str, Any]]] = {
    BalancedSampler: [
        ("over", lambda y, **kw: BalancedSampler(y, "over", **kw)),
        ("under", lambda y, **kw: BalancedSampler(y, "under", **kw)),
        ("sqrt", lambda y, **kw: BalancedSampler(y, "sqrt", **kw)),
        ("class-n50", lambda y, **kw: BalancedSampler(y, "class", num_samples=50, **kw)),
        ("power-neg", lambda y, **kw: BalancedSampler(y, Power(-0.5), **kw)),
        ("progressive", lambda y, **kw: BalancedSampler(y, Progressive(4), **kw)),
        ("deferred", lambda y, **kw: BalancedSampler(y, Deferred(2, "instance", "over"), **kw)),
        ("replacement", lambda y, **kw: BalancedSampler(y, "class", replacement=True, **kw)),
        ("callable", lambda y, **kw: BalancedSampler(y, alternating_plan, **kw)),
        (
            "sample-weights",
            lambda y, **kw: BalancedSampler(y, "sqrt", sample_weights=inverse_frequency(y), **kw),
        ),
    ],
    RandomOverSampler: [
        ("auto", lambda y, **kw: RandomOverSampler(y, **kw)),
        ("minority", lambda y, **kw: RandomOverSampler(y, sampling_strategy="minority", **kw)),
    ],
    RandomUnderSampler: [
        ("auto", lambda y, **kw: RandomUnderSampler(y, **kw)),
        ("not-minority", lambda y, **kw: RandomUnderSampler(y, "not minority", **kw)),
    ],
    ClassBalancedBatchSampler: [
        ("2x4", lambda y, **kw: ClassBalancedBatchSampler(y, 2, 4, **kw)),
        ("3x2-n7", lambda y, **kw: ClassBalancedBatchSampler(y, 3, 2, num_batches=7, **kw)),
    ],
    StratifiedBatchSampler: [
        ("over", lambda y, **kw: StratifiedBatchSampler(y, 8, **kw)),
        ("under", lambda y, **kw: StratifiedBatchSampler(y, 4, "under", **kw)),
    ],
    WeightedSampler: [
        ("iid", lambda y, **kw: WeightedSampler(inverse_frequency(y), **kw)),
        (
            "without-replacement-n40",
            lambda y, **kw: WeightedSampler(inverse_frequency(y), 40, replacement=False, **kw),
        ),
        ("exact", lambda y, **kw: WeightedSampler(inverse_frequency(y), 50, exact=True, **kw)),
        (
            "exact-at-most-once",
            lambda y, **kw: WeightedSampler(
                inverse_frequency(y) ** 0.25, 30, exact=True, replacement=False, **kw
            ),
        ),
    ],
    RareClassSampler: [
        ("min40", lambda y, **kw: RareClassSampler(pixel_counts_of(y), min_pixels=40, **kw)),
        (
            "T1-n50",
            lambda y, **kw: RareClassSampler(
                pixel_counts_of(y), temperature=1.0, min_pixels=1, num_samples=50, **kw
            ),
        ),
    ],
    ClassAwareSampler: [
        ("uniform", lambda y, **kw: ClassAwareSampler(labelsets_of(y), **kw)),
        (
            "power-runs3-n50",
            lambda y, **kw: ClassAwareSampler(
                labelsets_of(y), Power(-0.5), num_sample_class=3, num_samples=50, **kw
            ),
        ),
    ],
    MixtureSampler: [
        (
            "proportions-class-and-as-is",
            lambda y, **kw: MixtureSampler(
                [y[:50], y[50:]], proportions=[1, 2], strategy=["class", None], **kw
            ),
        ),
        (
            "temperature-over-n90",
            lambda y, **kw: MixtureSampler(
                [y[:30], y[30:60], y[60:]], temperature=2.0, strategy="over", num_samples=90, **kw
            ),
        ),
    ],
    RepeatFactorSampler: [
        ("stochastic", lambda y, **kw: RepeatFactorSampler(y, 0.3, **kw)),
        (
            "ceil-linear",
            lambda y, **kw: RepeatFactorSampler(y, 0.3, sqrt=False, rounding="ceil", **kw),
        ),
    ],
}


def public_samplers() -> list[type]:
    found = []
    for name in torch_balance.__all__:
        obj = getattr(torch_balance, name)
        if isinstance(obj, type) and issubclass(obj, Sampler):
            found.append(obj)
    return found


def test_every_public_sampler_has_cases() -> None:
    missing = [cls.__name__ for cls in public_samplers() if cls not in CASES]
    assert not missing, f"public samplers without conformance cases: {missing}"


PARAMS = [
    pytest.param(make, kind, id=f"{cls.__name__}-{name}-{kind}")
    for cls, cases in CASES.items()
    for name, make in cases
    for kind in ("int", "str")
]


@pytest.mark.filterwarnings("ignore:ClassBalancedBatchSampler")
@pytest.mark.parametrize("check", list(CHECKS))
@pytest.mark.parametrize(("make", "kind"), PARAMS)
def test_conformance(make: Any, kind: str, check: str) -> None:
    CHECKS[check](make, conformance_labels(kind))


@pytest.mark.filterwarnings("ignore:ClassBalancedBatchSampler")
@pytest.mark.parametrize("cls", list(CASES))
def test_conformance_with_workers(cls: type) -> None:
    _, make = CASES[cls][0]
    check_sampler_dataloader(make, conformance_labels(), workers=2)


class MisreportingSampler(BalancedSampler):
    """Draws "over" but reports the plan of "under": only the composition check can tell."""

    def target_counts(self, epoch: int | None = None) -> dict:
        return BalancedSampler(self.index, "under").target_counts(epoch)


def test_check_counts_catches_a_wrong_plan_and_can_be_skipped() -> None:
    def make(y: Any, **kw: Any) -> BalancedSampler:
        return MisreportingSampler(y, "over", **kw)

    with pytest.raises(AssertionError, match="plan says"):
        check_sampler_basics(make, conformance_labels())
    check_sampler_basics(make, conformance_labels(), check_counts=False)


class Shuffler:
    """A user's sampler: seeded shuffles, no set_epoch and no state."""

    def __init__(self, labels: Any, seed: int = 0, **options: Any) -> None:
        self.n, self.seed = len(labels), seed

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Any:
        return iter(np.random.default_rng(self.seed).permutation(self.n).tolist())


class EpochShuffler(Shuffler):
    """set_epoch, but no state_dict: the basic checks run, the checkpoint ones cannot."""

    epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Any:
        rng = np.random.default_rng([self.seed, self.epoch])
        self.epoch += 1
        return iter(rng.permutation(self.n).tolist())


def test_a_sampler_without_a_needed_method_fails_naming_the_property() -> None:
    with pytest.raises(AssertionError) as raised:
        check_sampler(Shuffler, dataloader_workers=0)
    message = str(raised.value)
    assert message.startswith("conformance: check_sampler_basics (Length, index bounds, determ")
    assert "Shuffler has no set_epoch()" in message
    check_sampler_basics(EpochShuffler, conformance_labels(), check_counts=False)
    with pytest.raises(AssertionError, match=r"check_sampler_complete_pass \(A pass that handed "):
        check_sampler(EpochShuffler, check_counts=False, dataloader_workers=0)
    with pytest.raises(AssertionError, match=r"has no state_dict\(\), load_state_dict\(\)"):
        check_sampler_checkpoints(EpochShuffler, conformance_labels())


def test_a_factory_without_the_options_is_told_how_to_pass_them() -> None:
    with pytest.raises(AssertionError, match=r"make\(labels, seed=.*\*\*options"):
        check_sampler(lambda labels: BalancedSampler(labels), dataloader_workers=0)


class GlobalCountSampler(BalancedSampler):
    """Reports the global epoch's length as ``num_samples``, against DistributedSampler's
    meaning (this rank's count): only the attribute check can tell."""

    @property
    def num_samples(self) -> int:
        return self.global_length


def test_distributed_attributes_catch_a_global_num_samples() -> None:
    def make(y: Any, **kw: Any) -> BalancedSampler:
        return GlobalCountSampler(y, "over", **kw)

    with pytest.raises(AssertionError, match="num_samples is 200 with num_replicas=3"):
        check_sampler_distributed_attributes(make, conformance_labels())
    check_sampler_distributed_attributes(
        lambda y, **kw: BalancedSampler(y, "over", **kw), conformance_labels()
    )
