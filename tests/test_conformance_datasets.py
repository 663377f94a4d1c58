"""The dataset wrappers run the shared conformance checks for datasets (torch_balance.testing)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from torch_balance import ResampledDataset, SMOTEDataset
from torch_balance.testing import (
    DATASET_CHECKS,
    IndexDataset,
    check_dataset_basics,
    check_dataset_dataloader,
    conformance_labels,
)


def resampled(strategy: str, **options: Any) -> Any:
    def make(labels: Any, seed: int) -> ResampledDataset:
        base = IndexDataset(len(labels))
        return ResampledDataset(base, strategy, labels=labels, seed=seed, **options)

    return make


def weights_of(labels: Any) -> np.ndarray:
    weights = np.linspace(0.5, 2.0, len(labels))
    weights[::7] = 0.0
    return weights


def smote(labels: Any, seed: int) -> SMOTEDataset:
    """SMOTE on fixed random 3-d points, one per label (the encoder is the identity)."""
    points = torch.randn(len(labels), 3, generator=torch.Generator().manual_seed(5))
    base = list(zip(points, np.asarray(labels).tolist(), strict=True))
    return SMOTEDataset(base, torch.nn.Identity(), k_neighbors=2, seed=seed, progress=False)


CASES: dict[str, Any] = {
    "resampled-over": resampled("over"),
    "resampled-under": resampled("under"),
    "resampled-sqrt-replacement": resampled("sqrt", replacement=True),
    "resampled-grouped": resampled("sqrt", shuffle=False),
    "resampled-sample-weights": lambda y, seed: resampled("sqrt", sample_weights=weights_of(y))(
        y, seed
    ),
    "smote": smote,
}


@pytest.mark.parametrize("check", list(DATASET_CHECKS))
@pytest.mark.parametrize("kind", ["int", "str"])
@pytest.mark.parametrize("name", list(CASES))
def test_dataset_conformance(name: str, kind: str, check: str) -> None:
    DATASET_CHECKS[check](CASES[name], conformance_labels(kind))


@pytest.mark.parametrize("name", ["resampled-under", "smote"])
def test_dataset_conformance_with_workers(name: str) -> None:
    check_dataset_dataloader(CASES[name], conformance_labels(), workers=2)


def test_dataset_checks_catch_a_dataset_that_ignores_the_epoch() -> None:
    class Frozen(ResampledDataset):
        def set_epoch(self, epoch: int) -> None:
            super().set_epoch(0)

    def make(labels: Any, seed: int) -> Frozen:
        return Frozen(IndexDataset(len(labels)), "under", labels=labels, seed=seed)

    with pytest.raises(AssertionError, match="epoch 1 repeats epoch 0"):
        check_dataset_basics(make, conformance_labels())
