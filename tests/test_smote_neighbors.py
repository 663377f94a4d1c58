"""torch_balance.smote.neighbors: the exact chunked k nearest neighbours."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import torch_balance.smote.neighbors as neighbors_module
from torch_balance.smote.neighbors import Scratch, class_neighbors


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


def test_grouped_selection_exact_with_ties_any_chunk_and_shared_scratch() -> None:
    """Classes large enough for the grouped candidate selection (more than kc groups of
    columns), on a small integer grid so that distances tie often: exact for every chunk
    size, and one Scratch shared by calls of different sizes and dtypes changes nothing."""
    rng = np.random.default_rng(11)
    big = rng.integers(0, 6, size=(1500, 4)).astype(np.float32)
    small = rng.normal(size=(900, 3)).astype(np.float32)
    assert min(len(big), len(small)) > 13 * neighbors_module._GROUP
    scratch = Scratch()
    for X in (big, small, big):
        expected = brute_neighbors(X, 5)
        for chunk in (1, 97, 1024, None):
            for shared in (scratch, None):
                got = class_neighbors(torch.from_numpy(X), None, 5, chunk, shared)
                np.testing.assert_array_equal(got.numpy(), expected)
    X64 = torch.from_numpy(big).double()
    np.testing.assert_array_equal(
        class_neighbors(X64, None, 5, 333, scratch).numpy(), brute_neighbors(big, 5)
    )


@pytest.mark.parametrize("columns", [64 * 14, 64 * 40])
def test_candidates_are_the_smallest_scores(columns: int) -> None:
    """The grouped selection returns each row's kc smallest scores, ascending, and columns
    holding exactly those scores, even when many scores tie."""
    gen = torch.Generator().manual_seed(2)
    scores = torch.randint(0, 50, (37, columns), generator=gen).float()
    scores[:, -5:] = float("inf")  # padding columns, as in the search
    kc = 13
    values, cols = neighbors_module._candidates(scores, columns - 5, kc)
    expected = scores.topk(kc, dim=1, largest=False, sorted=True).values
    assert torch.equal(values, expected)
    assert torch.equal(scores.gather(1, cols), values)
    assert all(len(set(row)) == kc for row in cols.tolist())  # distinct columns


def test_scratch_reuses_memory_and_follows_dtype() -> None:
    scratch = Scratch()
    cpu = torch.device("cpu")
    first = scratch.take((8, 16), torch.float32, cpu)
    smaller = scratch.take((4, 16), torch.float32, cpu)
    assert smaller.data_ptr() == first.data_ptr() and smaller.is_contiguous()
    wider = scratch.take((8, 32), torch.float32, cpu)
    assert wider.shape == (8, 32) and wider.dtype == torch.float32
    assert scratch.take((2, 2), torch.float64, cpu).dtype == torch.float64
