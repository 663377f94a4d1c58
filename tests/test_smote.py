"""SMOTE in embedding space: parity with imbalanced-learn, exact neighbours, determinism,
the encoder pass, the retraining dataset and its cache."""

from __future__ import annotations

import pickle
from collections import Counter
from typing import Any

import numpy as np
import pytest
import torch
from imblearn.over_sampling import ADASYN, SVMSMOTE, BorderlineSMOTE, KMeansSMOTE
from imblearn.over_sampling import SMOTE as ImbSMOTE
from imblearn.over_sampling import RandomOverSampler as ImbROS
from imblearn.under_sampling import RandomUnderSampler as ImbRUS
from sklearn.cluster import KMeans
from sklearn.neighbors import NearestNeighbors
from torch.utils.data import DataLoader, Dataset, TensorDataset

import torch_balance.smote as smote_module
from torch_balance.smote import SMOTE, SMOTEDataset, _class_neighbors, embed

COUNTS = (60, 25, 12)


def make_data(counts: tuple[int, ...] = COUNTS, d: int = 4, seed: int = 0) -> tuple[Any, Any]:
    rng = np.random.default_rng(seed)
    X = np.concatenate([rng.normal(size=(n, d)) + 1.5 * c for c, n in enumerate(counts)]).astype(
        np.float32
    )
    y = np.repeat(np.arange(len(counts)), counts)
    return X, y


def brute_neighbors(X: np.ndarray, k: int) -> np.ndarray:
    """Reference: k nearest other rows by (float64 distance, index)."""
    X64 = X.astype(np.float64)
    D = ((X64[:, None, :] - X64[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(D, np.inf)
    index = np.broadcast_to(np.arange(len(X)), D.shape)
    return np.lexsort((index, D), axis=1)[:, :k]


# ---------------------------------------------------------------- parity with imbalanced-learn


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
    X, y = make_data((60, 12) if binary else COUNTS)
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
    X, y = make_data((60, 12) if binary else COUNTS)
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


# ---------------------------------------------------------------- the synthetic rows


def test_rows_lie_between_base_and_one_of_its_k_nearest() -> None:
    X, y = make_data((80, 30, 15), d=6, seed=3)
    k = 4
    smote = SMOTE("all", k_neighbors=k, seed=11)
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


@pytest.mark.parametrize("offset", [0.0, 1000.0])
def test_neighbors_exact_with_duplicates_and_any_chunk(offset: float) -> None:
    rng = np.random.default_rng(5)
    X = rng.normal(size=(300, 8)).astype(np.float32) + offset
    X[40:60] = X[3]  # 21 copies of one point: ties beyond every candidate list
    X[100] = X[101]
    expected = brute_neighbors(X, 6)
    data = torch.from_numpy(X)
    for chunk in (1, 7, 64, None):
        got = _class_neighbors(data, None, 6, chunk)
        np.testing.assert_array_equal(got.numpy(), expected)
    rows = torch.tensor([3, 50, 100, 299, 0])
    np.testing.assert_array_equal(
        _class_neighbors(data, rows, 6, 2).numpy(), expected[rows.numpy()]
    )


def test_neighbors_exact_when_float32_stage_is_coarse(monkeypatch: pytest.MonkeyPatch) -> None:
    # As under TF32/bfloat16 matmul: the float32 stage proves nothing, float64 takes over.
    real = smote_module._unit_roundoff

    def coarse(dtype: torch.dtype, device: torch.device) -> float:
        return 2.0**-4 if dtype == torch.float32 else real(dtype, device)

    monkeypatch.setattr(smote_module, "_unit_roundoff", coarse)
    X = np.random.default_rng(1).normal(size=(200, 5)).astype(np.float32)
    np.testing.assert_array_equal(
        _class_neighbors(torch.from_numpy(X), None, 3, 16), brute_neighbors(X, 3)
    )


def test_same_seed_same_output_and_chunk_size_free() -> None:
    X, y = make_data((200, 60, 30), d=8)
    a_X, a_y = SMOTE(seed=4).fit_resample(X, y)
    b_X, b_y = SMOTE(seed=4, chunk_size=3).fit_resample(X, y)
    c_X, _ = SMOTE(seed=5).fit_resample(X, y)
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
        ({"seed": -1}, None, None, ValueError, "seed"),
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


# ---------------------------------------------------------------- variants


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
    first = SMOTE(resampler=resampler, seed=2).fit_resample(X_t, torch.from_numpy(y))
    again = SMOTE(resampler=resampler, seed=2).fit_resample(X_t, torch.from_numpy(y))
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


# ---------------------------------------------------------------- embed


class Unlabeled(Dataset):
    """Items (input, label) but no label attribute: labels come from the batches."""

    def __init__(self, images: torch.Tensor, labels: list[str]) -> None:
        self.images, self.names = images, labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, str]:
        return self.images[i], self.names[i]


class Bare(Dataset):
    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.zeros(2)


def image_data(n: int = 10) -> TensorDataset:
    images = torch.arange(n * 4, dtype=torch.float32).reshape(n, 1, 2, 2) / 10
    return TensorDataset(images, torch.tensor([0] * (n - 3) + [1] * 3))


@pytest.mark.parametrize("training", [True, False])
def test_embed_restores_mode(training: bool) -> None:
    encoder = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Dropout(0.5), torch.nn.Linear(4, 3))
    encoder.train(training)
    X, y = embed(image_data(), encoder, batch_size=3, progress=False)
    assert encoder.training is training
    assert all(m.training is training for m in encoder.modules())
    assert X.dtype == torch.float32 and X.shape == (10, 3) and X.device.type == "cpu"
    # eval mode: dropout off, so the pass is deterministic. Another batch size may block the
    # matmul differently on another CPU, so compare with a tolerance; the same one, exactly.
    X2, _ = embed(image_data(), encoder, batch_size=4, progress=False)
    torch.testing.assert_close(X, X2, rtol=1e-5, atol=1e-6)
    X3, _ = embed(image_data(), encoder, batch_size=3, progress=False)
    assert torch.equal(X, X3)
    assert y.tolist() == [0] * 7 + [1] * 3


def test_embed_labels_from_batches() -> None:
    images = torch.zeros(5, 3)
    _, y = embed(
        Unlabeled(images, list("aabba")), torch.nn.Identity(), batch_size=2, progress=False
    )
    assert y.tolist() == list("aabba")
    with pytest.raises(TypeError, match="no label"):
        embed(Bare(), torch.nn.Identity(), progress=False)


def test_embed_errors_and_mode_restored_on_error() -> None:
    data = image_data()
    conv = torch.nn.Conv2d(1, 2, 1)
    conv.train()
    with pytest.raises(ValueError, match="Flatten"):
        embed(data, conv, progress=False)
    assert conv.training

    class Drops(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.flatten(1)[:1]

    with pytest.raises(ValueError, match="one output row per input"):
        embed(data, Drops(), batch_size=4, progress=False)

    class Poison(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = x.flatten(1).clone()
            out[(x.flatten(1)[:, 0] * 10).round() == 24] = float("nan")  # sample 6
            return out

    with pytest.raises(ValueError, match=r"samples \[6\]"):
        embed(data, Poison(), batch_size=4, progress=False)
    with pytest.raises(TypeError, match="Module"):
        embed(data, lambda x: x, progress=False)  # type: ignore[arg-type]


# ---------------------------------------------------------------- SMOTEDataset


def clustered_images(counts: tuple[int, ...] = (40, 12, 8)) -> TensorDataset:
    X, y = make_data(counts, d=6, seed=9)
    return TensorDataset(torch.from_numpy(X).reshape(-1, 2, 3), torch.from_numpy(y))


def test_dataset_epoch_zero_is_fit_resample_and_epochs_redraw() -> None:
    data = clustered_images()
    ds = SMOTEDataset(data, torch.nn.Flatten(), k_neighbors=3, seed=7, progress=False)
    X, y = embed(data, torch.nn.Flatten(), progress=False)
    X_res, y_res = SMOTE(k_neighbors=3, seed=7).fit_resample(X, y)
    assert len(ds) == len(X_res) == 120
    items = [ds[i] for i in range(len(ds))]
    assert torch.equal(torch.stack([row for row, _ in items]), X_res)
    assert [label for _, label in items] == y_res.tolist()
    assert ds.is_synthetic.tolist() == [False] * 60 + [True] * 60
    assert ds.labels.tolist() == y_res.tolist()
    first = ds.synthetic.clone()
    ds.set_epoch(1)
    assert not torch.equal(first, ds.synthetic)
    assert ds.labels.tolist() == y_res.tolist()
    ds.set_epoch(0)
    assert torch.equal(first, ds.synthetic)
    assert ds[-1][1] == 2 and isinstance(ds[0][1], int)


def test_dataset_pickles_and_feeds_workers() -> None:
    ds = SMOTEDataset(clustered_images(), torch.nn.Flatten(), k_neighbors=3, progress=False)
    clone = pickle.loads(pickle.dumps(ds))
    assert torch.equal(clone.synthetic, ds.synthetic) and len(clone) == len(ds)
    loader = DataLoader(ds, batch_size=32, num_workers=2, persistent_workers=True)
    rows = torch.cat([batch[0] for batch in loader])
    assert torch.equal(rows[60:], ds.synthetic)
    ds.set_epoch(3)
    rows = torch.cat([batch[0] for batch in loader])  # the same persistent workers
    assert torch.equal(rows[60:], ds.synthetic)


def test_dataset_cache(tmp_path: Any) -> None:
    calls = []

    class Counting(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(6, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            calls.append(len(x))
            return self.linear(x.flatten(1))

    data = clustered_images()
    encoder = Counting()
    path = tmp_path / "emb.pt"
    first = SMOTEDataset(data, encoder, k_neighbors=3, cache=path, progress=False)
    seen = len(calls)
    second = SMOTEDataset(data, encoder, k_neighbors=3, cache=path, progress=False)
    assert len(calls) == seen  # read from the file
    assert torch.equal(first.embeddings, second.embeddings)
    assert torch.equal(first.synthetic, second.synthetic)
    with torch.no_grad():
        encoder.linear.weight.add_(1.0)
    with pytest.raises(ValueError, match=r"encoder state_dict.*Delete"):
        SMOTEDataset(data, encoder, cache=path, k_neighbors=3, progress=False)
    fewer = TensorDataset(*(t[:-1] for t in data.tensors))
    with pytest.raises(ValueError, match="dataset length"):
        SMOTEDataset(fewer, encoder, cache=path, k_neighbors=3, progress=False)
    relabeled = TensorDataset(data.tensors[0], data.tensors[1].flip(0))
    with pytest.raises(ValueError, match=r"labels.*another cache path"):
        SMOTEDataset(relabeled, encoder, cache=path, k_neighbors=3, progress=False)


def test_dataset_with_resampler_and_decoder() -> None:
    data = clustered_images()
    decoder = torch.nn.Unflatten(1, (2, 3))
    ds = SMOTEDataset(
        data,
        torch.nn.Flatten(),
        resampler=BorderlineSMOTE(k_neighbors=3),
        decoder=decoder,
        progress=False,
    )
    assert ds.synthetic_inputs is not None
    assert ds.synthetic_inputs.shape == (len(ds) - 60, 2, 3)
    assert torch.equal(ds.synthetic_inputs.flatten(1), ds.synthetic)
    assert ds.smote.base_indices_ is None
    with pytest.raises(ValueError, match=r"decoder.*Unflatten"):
        SMOTEDataset(
            data, torch.nn.Flatten(), k_neighbors=3, decoder=torch.nn.Identity(), progress=False
        )


# ---------------------------------------------------------------- CUDA


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu() -> None:
    X, y = make_data((300, 80, 40), d=16)
    cpu = SMOTE(seed=1)
    gpu = SMOTE(seed=1, device="cuda")
    X_cpu, _ = cpu.fit_resample(torch.from_numpy(X), y)
    X_gpu, _ = gpu.fit_resample(torch.from_numpy(X), y)
    assert X_gpu.device.type == "cpu"  # the kind (and device) of the input
    assert torch.equal(cpu.base_indices_, gpu.base_indices_)
    assert torch.equal(cpu.neighbor_indices_, gpu.neighbor_indices_)
    assert torch.equal(cpu.steps_, gpu.steps_)
    torch.testing.assert_close(X_cpu, X_gpu)
    on_gpu, _ = SMOTE(seed=1).fit_resample(torch.from_numpy(X).cuda(), y)
    assert on_gpu.device.type == "cuda"
    torch.testing.assert_close(on_gpu.cpu(), X_cpu)
