"""torch_balance.smote.smote: SMOTE's parity with imbalanced-learn, its synthetic rows,
determinism, argument checks, fit/draw, its life as an imbalanced-learn estimator (params,
clone, Pipeline, the estimator checks), and CUDA against the CPU."""

from __future__ import annotations

import functools
import pickle
import random
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import HANG_S, SMOTE_COUNTS, make_data
from imblearn.over_sampling import ADASYN, BorderlineSMOTE
from imblearn.over_sampling import SMOTE as ImbSMOTE
from imblearn.pipeline import Pipeline
from imblearn.under_sampling import RandomUnderSampler as ImbRUS
from imblearn.utils.estimator_checks import estimator_checks_generator as imblearn_checks
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import NearestNeighbors
from sklearn.utils.estimator_checks import estimator_checks_generator as sklearn_checks

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
    smote = SMOTE(**kwargs)  # scikit-learn's rule: the constructor only stores
    assert smote.get_params()[next(iter(kwargs))] is kwargs[next(iter(kwargs))] if kwargs else True
    with pytest.raises(error, match=match):
        smote.fit_resample(X, y)
    with pytest.raises(error, match=match):
        smote.fit(X, y)


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


def test_params_clone_and_pickle() -> None:
    smote = SMOTE("minority", 3, random_state=7, chunk_size=16, device="cpu")
    assert smote.get_params() == {
        "sampling_strategy": "minority",
        "k_neighbors": 3,
        "random_state": 7,
        "device": "cpu",
        "chunk_size": 16,
        "resampler": None,
    }
    X, y = make_data()
    copy = clone(smote)
    assert copy.get_params() == smote.get_params()
    np.testing.assert_array_equal(copy.fit_resample(X, y)[0], smote.fit_resample(X, y)[0])
    assert not np.array_equal(
        copy.set_params(random_state=8).fit_resample(X, y)[0], smote.fit_resample(X, y)[0]
    )
    again = pickle.loads(pickle.dumps(smote))
    np.testing.assert_array_equal(again.steps_, smote.steps_)
    nested = SMOTE(resampler=BorderlineSMOTE(k_neighbors=3))
    assert nested.get_params(deep=True)["resampler__k_neighbors"] == 3
    nested.set_params(resampler__k_neighbors=4)
    assert nested.resampler.k_neighbors == 4
    assert clone(nested).resampler is not nested.resampler


def test_random_state_none_is_seed_zero_and_no_global_rng() -> None:
    X, y = make_data()
    np_state = np.random.get_state()
    py_state = random.getstate()
    a, _ = SMOTE(random_state=None).fit_resample(X, y)
    b, _ = SMOTE(random_state=0).fit_resample(X, y)
    c, _ = SMOTE().fit_resample(X, y)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
    SMOTE(resampler=BorderlineSMOTE(k_neighbors=3)).fit_resample(X, y)
    assert np_state[1].tolist() == np.random.get_state()[1].tolist()
    assert py_state == random.getstate()
    with pytest.raises(TypeError, match=r"random_state: expected an integer or None"):
        SMOTE(random_state=np.random.RandomState(0)).fit_resample(X, y)


def test_importing_torch_balance_keeps_python_random() -> None:
    # In a fresh interpreter. imbalanced-learn (seconds to import) loads only with SMOTE, and
    # its import moves `random`, which is put back.
    code = (
        "import random, sys; random.seed(5); before = random.getstate(); import torch_balance; "
        "assert 'imblearn' not in sys.modules, 'import torch_balance imported imblearn'; "
        "torch_balance.SMOTE; assert 'imblearn' in sys.modules; "
        "assert random.getstate() == before, 'importing SMOTE moved random'"
    )
    root = Path(__file__).resolve().parents[1]  # this checkout's torch_balance, not another
    subprocess.run([sys.executable, "-c", code], check=True, timeout=HANG_S, cwd=root)


def test_fit_then_draw_per_epoch() -> None:
    X, y = make_data((80, 30, 15), d=5)
    X_res, y_res = SMOTE(k_neighbors=4, random_state=9).fit_resample(X, y)
    reference = SMOTE(k_neighbors=4, random_state=9)
    reference.fit_resample(X, y)
    smote = SMOTE(k_neighbors=4, random_state=9)
    with pytest.raises(NotFittedError, match=r"Call fit\(X, y\) first"):
        smote.draw(0)
    assert smote.fit(X, y) is smote
    assert smote.sampling_strategy_ == {0: 0, 1: 50, 2: 65}
    assert smote.n_features_in_ == 5 and smote.classes_.tolist() == [0, 1, 2]
    rows, codes = smote.draw(0)
    assert isinstance(rows, torch.Tensor) and rows.dtype == torch.float32
    np.testing.assert_array_equal(rows.numpy(), X_res[len(X) :])  # epoch 0 is fit_resample's
    np.testing.assert_array_equal(smote.classes_[codes.numpy()], y_res[len(y) :])
    for name in ("base_indices_", "neighbor_indices_", "steps_"):
        assert torch.equal(getattr(smote, name), getattr(reference, name)), name
    later, later_codes = smote.draw(3)
    assert torch.equal(later_codes, codes) and not torch.equal(later, rows)
    assert torch.equal(smote.draw(3)[0], later)  # a pure function of (random_state, epoch)
    expected = X[smote.base_indices_] + smote.steps_.numpy()[:, None] * (
        X[smote.neighbor_indices_] - X[smote.base_indices_]
    )
    np.testing.assert_allclose(later.numpy(), expected, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="epoch"):
        smote.draw(-1)
    smote.fit_resample(X, y)  # keeps no data
    with pytest.raises(NotFittedError):
        smote.draw(0)


def test_in_an_imblearn_pipeline() -> None:
    X, y = make_data(d=3)
    pipe = Pipeline([("smote", SMOTE(random_state=1)), ("clf", LogisticRegression())])
    pipe.fit(X, y)
    assert pipe.named_steps["smote"].sampling_strategy_ == {0: 0, 1: 35, 2: 48}
    X_res, y_res = SMOTE(random_state=1).fit_resample(X, y)
    alone = LogisticRegression().fit(X_res, y_res)
    np.testing.assert_allclose(pipe.named_steps["clf"].coef_, alone.coef_)
    np.testing.assert_array_equal(pipe.predict(X), alone.predict(X))


# Checks that do not apply to SMOTE, by name, with the reason. They run as strict xfails, so a
# check that starts to pass (or one renamed upstream) fails here and the list stays honest.
FLOAT_LABELS = (
    "float labels are a TypeError under torch_balance's rule (wrong type), not a ValueError"
)
DENSE_FLOAT_X = "X is a dense floating tensor or numpy array by design; others get a TypeError"
ONE_D_LABELS = "y is one label per sample (1-D); 2-D and one-hot targets get the fix in the message"
MESSAGES = "errors have torch_balance's message shape (argument, expected, got, fix)"
NOT_APPLICABLE = {
    "check_target_type": FLOAT_LABELS,
    "check_samplers_one_label": FLOAT_LABELS + " (int labels: test_single_class_raises...)",
    "check_estimators_nan_inf": FLOAT_LABELS + " (NaN/inf in X: test_bad_inputs)",
    "check_requires_y_none": "y=None is a TypeError (wrong type), not a ValueError",
    "check_samplers_list": DENSE_FLOAT_X + " (lists included)",
    "check_sampler_get_feature_names_out_pandas": DENSE_FLOAT_X + " (no DataFrames)",
    "check_estimators_dtypes": DENSE_FLOAT_X + " (integer X)",
    "check_complex_data": DENSE_FLOAT_X + " (complex X)",
    "check_dtype_object": DENSE_FLOAT_X + " (object X)",
    "check_estimator_sparse_tag": DENSE_FLOAT_X + " (sparse X; " + MESSAGES + ")",
    "check_estimator_sparse_array": DENSE_FLOAT_X + " (sparse X; " + MESSAGES + ")",
    "check_estimator_sparse_matrix": DENSE_FLOAT_X + " (sparse X; " + MESSAGES + ")",
    "check_samplers_multiclass_ova": ONE_D_LABELS,
    "check_samplers_2d_target": ONE_D_LABELS,
    "check_estimators_empty_data_messages": MESSAGES + ", not sklearn's wording",
    "check_fit2d_1feature": MESSAGES + "; 10 rows leave k_neighbors=5 too large first",
}


def _check_name(check: Callable[..., Any]) -> str:
    while isinstance(check, functools.partial):
        check = check.func
    return check.__name__


def _estimator_checks() -> Iterator[Any]:
    pairs = [*sklearn_checks(SMOTE(), mark=None), *imblearn_checks(SMOTE(), mark=None)]
    for estimator, check in pairs:
        name = _check_name(check)
        marks = []
        if name in NOT_APPLICABLE:
            marks.append(pytest.mark.xfail(strict=True, reason=NOT_APPLICABLE[name]))
        yield pytest.param(estimator, check, id=name, marks=marks)


@pytest.mark.filterwarnings("ignore")  # the checks' own warnings (SkipTestWarning, ...)
@pytest.mark.parametrize(("estimator", "check"), list(_estimator_checks()))
def test_estimator_checks(estimator: Any, check: Callable[..., Any]) -> None:
    """scikit-learn's API checks and imbalanced-learn's sampler checks, as they apply."""
    check(estimator)


def test_not_applicable_checks_exist() -> None:
    names = {_check_name(check) for _, check in sklearn_checks(SMOTE(), mark=None)}
    names |= {_check_name(check) for _, check in imblearn_checks(SMOTE(), mark=None)}
    assert set(NOT_APPLICABLE) <= names
