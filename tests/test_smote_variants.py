"""torch_balance.smote.variants: imbalanced-learn over-samplers through SMOTE(resampler=...)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from conftest import make_data
from imblearn.over_sampling import ADASYN, SVMSMOTE, BorderlineSMOTE, KMeansSMOTE
from imblearn.over_sampling import RandomOverSampler as ImbROS
from sklearn.cluster import KMeans

from torch_balance.smote import SMOTE


@pytest.mark.parametrize(
    "resampler",
    [
        BorderlineSMOTE(k_neighbors=3),
        SVMSMOTE(k_neighbors=3),
        ADASYN(n_neighbors=3),
        KMeansSMOTE(kmeans_estimator=KMeans(n_clusters=2, n_init=1), cluster_balance_threshold=0.0),
        ImbROS(shrinkage=0.5),
    ],
    ids=lambda r: type(r).__name__,
)
def test_variants_through_the_same_interface(resampler: Any) -> None:
    X, y = make_data()
    X_t = torch.from_numpy(X)
    first = SMOTE(resampler=resampler, random_state=2).fit_resample(X_t, torch.from_numpy(y))
    again = SMOTE(resampler=resampler, random_state=2).fit_resample(X_t, torch.from_numpy(y))
    assert isinstance(first[0], torch.Tensor) and first[0].dtype == torch.float32
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert torch.equal(first[0][: len(X)], X_t)
    assert len(first[0]) > len(X)
    assert resampler.get_params()["random_state"] is None  # the caller's object is not fitted


def test_borderline_without_danger_warns() -> None:
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(size=(60, 3)), rng.normal(size=(20, 3)) + 50])
    y = np.repeat([0, 1], [60, 20])
    with pytest.warns(UserWarning, match=r"BorderlineSMOTE made no new samples for class"):
        X_res, _ = SMOTE(resampler=BorderlineSMOTE()).fit_resample(X, y)
    assert X_res.shape == X.shape
