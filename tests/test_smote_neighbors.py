"""torch_balance.smote.neighbors: the exact chunked k nearest neighbours."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import torch_balance.smote.neighbors as neighbors_module
from torch_balance.smote.neighbors import class_neighbors


def brute_neighbors(X: np.ndarray, k: int) -> np.ndarray:
    """Reference: k nearest other rows by (float64 distance, index)."""
    X64 = X.astype(np.float64)
    D = ((X64[:, None, :] - X64[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(D, np.inf)
    index = np.broadcast_to(np.arange(len(X)), D.shape)
    return np.lexsort((index, D), axis=1)[:, :k]


@pytest.mark.parametrize("offset", [0.0, 1000.0])
def test_neighbors_exact_with_duplicates_and_any_chunk(offset: float) -> None:
    rng = np.random.default_rng(5)
    X = rng.normal(size=(300, 8)).astype(np.float32) + offset
    X[40:60] = X[3]  # 21 copies of one point: ties beyond every candidate list
    X[100] = X[101]
    expected = brute_neighbors(X, 6)
    data = torch.from_numpy(X)
    for chunk in (1, 7, 64, None):
        got = class_neighbors(data, None, 6, chunk)
        np.testing.assert_array_equal(got.numpy(), expected)
    rows = torch.tensor([3, 50, 100, 299, 0])
    np.testing.assert_array_equal(class_neighbors(data, rows, 6, 2).numpy(), expected[rows.numpy()])


def test_neighbors_exact_when_float32_stage_is_coarse(monkeypatch: pytest.MonkeyPatch) -> None:
    # As under TF32/bfloat16 matmul: the float32 stage proves nothing, float64 takes over.
    real = neighbors_module._unit_roundoff

    def coarse(dtype: torch.dtype, device: torch.device) -> float:
        return 2.0**-4 if dtype == torch.float32 else real(dtype, device)

    monkeypatch.setattr(neighbors_module, "_unit_roundoff", coarse)
    X = np.random.default_rng(1).normal(size=(200, 5)).astype(np.float32)
    np.testing.assert_array_equal(
        class_neighbors(torch.from_numpy(X), None, 3, 16), brute_neighbors(X, 3)
    )


def test_huge_and_tiny_values_give_the_same_neighbours() -> None:
    """Squared distances of values near 1e19 overflow float32 (and near 1e154 float64);
    the search rescales by a power of two, so the neighbours are those of the data itself."""
    X = torch.from_numpy(np.random.default_rng(3).normal(size=(120, 6)).astype(np.float32))
    expected = class_neighbors(X, None, 5, None)
    for factor in (2.0**64, 2.0**100, 2.0**-100):
        assert torch.equal(class_neighbors(X * factor, None, 5, None), expected), factor
    assert torch.equal(class_neighbors(X.double() * 2.0**600, None, 5, 7), expected)
