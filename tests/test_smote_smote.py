"""torch_balance.smote.smote: SMOTE's parity with imbalanced-learn, its synthetic rows,
determinism, argument checks, and CUDA against the CPU."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pytest
import torch
from conftest import SMOTE_COUNTS, make_data
from imblearn.over_sampling import ADASYN
from imblearn.over_sampling import SMOTE as ImbSMOTE
from imblearn.under_sampling import RandomUnderSampler as ImbRUS
from sklearn.neighbors import NearestNeighbors

from torch_balance.smote import SMOTE


@pytest.mark.parametrize(
    ("strategy", "binary"),
    [
        ("auto", False),
        ("minority", False),
        ("not minority", False),
        ("not majority", False),
        ("all", False),
        (0.5, True),
        (1.0, True),
        (0.25, True),
        ({1: 40, 2: 30}, False),
        ({0: 60, 1: 25, 2: 13}, False),
        ({2: 100}, False),
        (lambda y: {1: 50, 2: int((y == 2).sum()) + 7}, False),
    ],
)
def test_counts_and_layout_match_imblearn(strategy: Any, binary: bool) -> None:
    X, y = make_data((60, 12) if binary else SMOTE_COUNTS)
    ours_X, ours_y = SMOTE(strategy, k_neighbors=5).fit_resample(X, y)
    ref_X, ref_y = ImbSMOTE(sampling_strategy=strategy, k_neighbors=5, random_state=0).fit_resample(
        X, y
    )
    assert ours_X.shape == ref_X.shape
    np.testing.assert_array_equal(ours_y, ref_y)  # same layout, not just the same counts
    np.testing.assert_array_equal(ours_X[: len(X)], X)


@pytest.mark.parametrize(
    ("strategy", "binary"),
    [
        ("foo", False),
        ("majority", False),
        (0.0, True),
        (1.5, True),
        (-0.2, True),
        (0.1, True),  # below the current minority ratio
        (0.5, False),  # float with more than two classes
        ({7: 100}, False),
        ({1: 10}, False),  # fewer than it has
        ({1: -5}, False),
        ([1, 2], False),
    ],
)
def test_invalid_strategies_raise_like_imblearn(strategy: Any, binary: bool) -> None:
    X, y = make_data((60, 12) if binary else SMOTE_COUNTS)
    with pytest.raises(ValueError):
        ImbSMOTE(sampling_strategy=strategy).fit_resample(X, y)
    with pytest.raises(ValueError):
        SMOTE(strategy).fit_resample(X, y)


def test_single_class_raises_like_imblearn() -> None:
    X = np.zeros((10, 2), dtype=np.float32) + np.arange(10, dtype=np.float32)[:, None]
    y = np.zeros(10, dtype=int)
    with pytest.raises(ValueError):
        ImbSMOTE().fit_resample(X, y)
    with pytest.raises(ValueError, match="more than 1 class"):
        SMOTE().fit_resample(X, y)


def test_small_class_error_names_class_count_and_k() -> None:
    X, y = make_data((30, 4))
    with pytest.raises(ValueError, match=r"class 1 has 4.*got 5.*k_neighbors=3"):
        SMOTE(k_neighbors=5).fit_resample(X, y)
    X, y = make_data((30, 1))
    with pytest.raises(ValueError, match=r"class 1 has 1.*two samples"):
        SMOTE(k_neighbors=1).fit_resample(X, y)
    # A class that gets no new rows may be small.
    X, y = make_data((30, 20, 2))
    _, y_res = SMOTE({1: 30}, k_neighbors=5).fit_resample(X, y)
    assert Counter(y_res.tolist()) == {0: 30, 1: 30, 2: 2}


def test_rows_lie_between_base_and_one_of_its_k_nearest() -> None:
    X, y = make_data((80, 30, 15), d=6, seed=3)
    k = 4
    smote = SMOTE("all", k_neighbors=k, random_state=11)
    X_res, y_res = smote.fit_resample(X, y)
    base, nn, u = smote.base_indices_, smote.neighbor_indices_, smote.steps_
    assert base is not None and nn is not None and u is not None
    new = X_res[len(X) :]
    assert len(base) == len(nn) == len(u) == len(new) == len(y_res) - len(y)
    assert bool(((u >= 0) & (u < 1)).all())
    expected = X[base] + u.numpy()[:, None] * (X[nn] - X[base])
    np.testing.assert_allclose(new, expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(y[base.numpy()], y_res[len(y) :])
    np.testing.assert_array_equal(y[nn.numpy()], y_res[len(y) :])
    assert not bool((base == nn).any())
    for c in range(3):
        members = np.flatnonzero(y == c)
        finder = NearestNeighbors(n_neighbors=k + 1).fit(X[members])
        local = finder.kneighbors(X[members], return_distance=False)
        allowed = {int(members[i]): set(members[row[1:]].tolist()) for i, row in enumerate(local)}
        for b, n in zip(base.tolist(), nn.tolist(), strict=True):
            if y[b] == c:
                assert n in allowed[b]


def test_same_seed_same_output_and_chunk_size_free() -> None:
    X, y = make_data((200, 60, 30), d=8)
    a_X, a_y = SMOTE(random_state=4).fit_resample(X, y)
    b_X, b_y = SMOTE(random_state=4, chunk_size=3).fit_resample(X, y)
    c_X, _ = SMOTE(random_state=5).fit_resample(X, y)
    np.testing.assert_array_equal(a_X, b_X)
    np.testing.assert_array_equal(a_y, b_y)
    assert not np.array_equal(a_X, c_X)


def test_global_rngs_untouched() -> None:
    X, y = make_data()
    torch_state, np_state = torch.get_rng_state(), np.random.get_state()
    SMOTE().fit_resample(X, y)
    assert torch.equal(torch_state, torch.get_rng_state())
    assert np_state[1].tolist() == np.random.get_state()[1].tolist()


def test_kinds_and_dtypes_preserved() -> None:
    X, y = make_data()
    X_t, y_t = SMOTE().fit_resample(torch.from_numpy(X).double(), torch.from_numpy(y))
    assert isinstance(X_t, torch.Tensor) and X_t.dtype == torch.float64
    assert isinstance(y_t, torch.Tensor) and y_t.dtype == torch.int64
    X_n, y_n = SMOTE().fit_resample(X, y.tolist())
    assert isinstance(X_n, np.ndarray) and X_n.dtype == np.float32
    assert isinstance(y_n, np.ndarray)
    np.testing.assert_allclose(X_n, X_t.numpy(), rtol=1e-5, atol=1e-5)
    _, y_s = SMOTE().fit_resample(X, np.array(["a", "b", "c"])[y])
    assert Counter(y_s.tolist()) == {"a": 60, "b": 60, "c": 60}


def test_nothing_to_add() -> None:
    X, y = make_data((20, 20))
    smote = SMOTE()
    X_res, _ = smote.fit_resample(X, y)
    assert X_res.shape == X.shape and smote.sampling_strategy_ == {0: 0, 1: 0}


@pytest.mark.parametrize(
    ("kwargs", "X", "y", "error", "match"),
    [
        ({}, np.zeros((4, 2), dtype=np.int64), [0, 0, 1, 1], TypeError, "floating"),
        ({}, np.zeros(4, dtype=np.float32), [0, 0, 1, 1], ValueError, "2-D"),
        ({}, [[0.0, 1.0]], [0], TypeError, "numpy"),
        ({}, np.array([[0.0], [np.nan], [1.0]]), [0, 1, 1], ValueError, r"rows \[1\]"),
        ({}, np.zeros((3, 2)), [0, 1], ValueError, "one label per row"),
        ({"sampling_strategy": None}, None, None, TypeError, "sampling_strategy"),
        ({"k_neighbors": 0}, None, None, ValueError, "k_neighbors"),
        ({"random_state": -1}, None, None, ValueError, "random_state"),
        ({"chunk_size": 0}, None, None, ValueError, "chunk_size"),
        ({"device": 3}, None, None, TypeError, "device"),
        ({"device": "nonsense"}, None, None, ValueError, "device"),
        ({"resampler": "BorderlineSMOTE"}, None, None, TypeError, "resampler"),
        ({"resampler": ImbRUS()}, None, None, ValueError, "over-sampler"),
        ({"resampler": ADASYN(), "k_neighbors": 3}, None, None, ValueError, "ADASYN"),
    ],
)
def test_bad_inputs(kwargs: dict, X: Any, y: Any, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        SMOTE(**kwargs).fit_resample(X, y)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu() -> None:
    X, y = make_data((300, 80, 40), d=16)
    cpu = SMOTE(random_state=1)
    gpu = SMOTE(random_state=1, device="cuda")
    X_cpu, _ = cpu.fit_resample(torch.from_numpy(X), y)
    X_gpu, _ = gpu.fit_resample(torch.from_numpy(X), y)
    assert X_gpu.device.type == "cpu"  # the kind (and device) of the input
    assert torch.equal(cpu.base_indices_, gpu.base_indices_)
    assert torch.equal(cpu.neighbor_indices_, gpu.neighbor_indices_)
    assert torch.equal(cpu.steps_, gpu.steps_)
    torch.testing.assert_close(X_cpu, X_gpu)
    on_gpu, _ = SMOTE(random_state=1).fit_resample(torch.from_numpy(X).cuda(), y)
    assert on_gpu.device.type == "cuda"
    torch.testing.assert_close(on_gpu.cpu(), X_cpu)
