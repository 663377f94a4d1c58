"""Hostile input at every public entry point: a right result or a clear error, nothing else.

Each case replaces one argument of a public call with a value hypothesis draws from a pool of
hostile values (huge and negative integers, NaN and infinite floats, bools, strings, None,
containers, numpy and torch scalars, arbitrary objects). The contract: the call either
succeeds and the object it built works, or it raises ``TypeError``/``ValueError`` whose
message names the argument. An ``OverflowError``, ``IndexError``, ``AttributeError`` or an
error from deep inside numpy or torch fails the test.

The draws are derandomized so that CI runs the same inputs every time; explore further with
``pytest tests/test_hostile.py --hypothesis-seed=N`` and without ``derandomize``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.utils.data import IterableDataset, Sampler, TensorDataset

from torch_balance import (
    SMOTE,
    BalancedIterableDataset,
    BalancedMix,
    BalancedSampler,
    ClassAwareSampler,
    ClassBalancedBatchSampler,
    Deferred,
    Manifest,
    MixtureSampler,
    Power,
    Progressive,
    RandomOverSampler,
    RandomUnderSampler,
    RareClassDataset,
    RepeatFactorSampler,
    ResampledDataset,
    SMOTEDataset,
    StratifiedBatchSampler,
    WeightedSampler,
    class_pixel_counts,
    class_weights,
    embed,
    get_labels,
    get_labelsets,
    make_plan,
    mixture_shares,
    repeat_factors,
    target_counts,
)
from torch_balance.integrations import set_epoch
from torch_balance.testing import IndexDataset, conformance_labels

LABELS = np.array([0] * 12 + [1] * 5 + [2] * 2)
SETS = [(0,), (0, 1), (1,), (), (2,), (0, 2)] * 3
X = np.random.default_rng(0).normal(size=(19, 3)).astype(np.float32)
DATA = TensorDataset(torch.from_numpy(X), torch.from_numpy(LABELS))
IDENTITY = torch.nn.Identity()


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
    if isinstance(built, IterableDataset):
        next(iter(built))
        return
    if isinstance(built, ResampledDataset):
        assert len(built) > 0
        built[0]
        return
    if isinstance(built, Sampler):
        assert len(built) >= 0
        for item in built:
            flat = item if isinstance(item, list) else [item]
            assert all(0 <= int(i) < 100 for i in flat)
            break


WEIGHTS = [1.0, 0.5, 0.0, 2.0, 1.0, 3.0]
STREAM = [(f"x{i}", int(y)) for i, y in enumerate(LABELS)]
SHARDS = {"only": LABELS.tolist()}


def _weighted_update(**kwargs: Any) -> WeightedSampler:
    sampler = WeightedSampler(WEIGHTS, seed=0)
    args = {"indices": [0, 3], "values": [1.0, 2.0], **kwargs}
    sampler.update_weights(args.pop("indices"), args.pop("values"), **args)
    return sampler


# (argument name, how to call with the value); the name must appear in any error message
CASES: list[tuple[str, Callable[[Any], Any]]] = [
    ("weights", lambda v: WeightedSampler(v)),
    ("num_samples", lambda v: WeightedSampler(WEIGHTS, v)),
    ("num_samples", lambda v: WeightedSampler(WEIGHTS, v, replacement=False)),
    ("replacement", lambda v: WeightedSampler(WEIGHTS, replacement=v)),
    ("exact", lambda v: WeightedSampler(WEIGHTS, exact=v)),
    ("seed", lambda v: WeightedSampler(WEIGHTS, seed=v)),
    ("num_replicas", lambda v: WeightedSampler(WEIGHTS, num_replicas=v)),
    ("rank", lambda v: WeightedSampler(WEIGHTS, num_replicas=2, rank=v)),
    ("drop_last", lambda v: WeightedSampler(WEIGHTS, drop_last=v)),
    ("weights", lambda v: WeightedSampler(WEIGHTS).set_weights(v)),
    ("indices", lambda v: _weighted_update(indices=v, values=1.0)),
    ("values", lambda v: _weighted_update(values=v)),
    ("reduce", lambda v: _weighted_update(reduce=v)),
    ("momentum", lambda v: _weighted_update(momentum=v)),
    ("strategy", lambda v: BalancedIterableDataset(STREAM, v, manifest=SHARDS)),
    ("manifest", lambda v: BalancedIterableDataset(STREAM, manifest=v)),
    ("buffer_size", lambda v: BalancedIterableDataset(STREAM, manifest=SHARDS, buffer_size=v)),
    ("seed", lambda v: BalancedIterableDataset(STREAM, manifest=SHARDS, seed=v)),
    ("drop_last", lambda v: BalancedIterableDataset(STREAM, manifest=SHARDS, drop_last=v)),
    ("num_replicas", lambda v: BalancedIterableDataset(STREAM, manifest=SHARDS, num_replicas=v)),
    ("priors", lambda v: BalancedIterableDataset(STREAM, priors=v)),
    ("epoch_length", lambda v: BalancedIterableDataset(STREAM, epoch_length=v)),
    ("shuffle_shards", lambda v: BalancedIterableDataset(STREAM, shuffle_shards=v)),
    ("sources_by_class", lambda v: BalancedMix(v)),
    ("exhausted", lambda v: BalancedMix({0: ["a", "b"], 1: ["c"]}, exhausted=v)),
    ("counts", lambda v: BalancedMix({0: ["a", "b"], 1: ["c"]}, counts=v)),
    ("proportions", lambda v: BalancedMix([["a"], ["b"]], proportions=v)),
    ("temperature", lambda v: BalancedMix([["a"], ["b"]], temperature=v)),
    ("stop", lambda v: BalancedMix([["a"], ["b"]], proportions=[1, 1], stop=v)),
    ("epoch_length", lambda v: BalancedMix([["a"], ["b"]], proportions=[1, 1], epoch_length=v)),
    ("sources", lambda v: MixtureSampler(v)),
    ("proportions", lambda v: MixtureSampler([LABELS, LABELS[:5]], proportions=v)),
    ("temperature", lambda v: MixtureSampler([LABELS, LABELS[:5]], temperature=v)),
    ("strategy", lambda v: MixtureSampler([LABELS, LABELS[:5]], strategy=v)),
    ("num_samples", lambda v: MixtureSampler([LABELS, LABELS[:5]], num_samples=v)),
    ("shards", lambda v: Manifest(v)),
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
    ("strategy", lambda v: ClassAwareSampler(SETS, v)),
    ("num_sample_class", lambda v: ClassAwareSampler(SETS, num_sample_class=v)),
    ("num_samples", lambda v: ClassAwareSampler(SETS, num_samples=v)),
    ("seed", lambda v: ClassAwareSampler(SETS, seed=v)),
    ("epoch", lambda v: ClassAwareSampler(SETS).class_exposure(v)),
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
    ("num_classes", lambda v: class_weights(LABELS, num_classes=v)),
    ("threshold", lambda v: repeat_factors(SETS, v)),
    ("num_workers", lambda v: get_labels(LABELS.tolist(), num_workers=v)),
    ("progress", lambda v: get_labels(LABELS.tolist(), progress=v)),
    ("label_fn", lambda v: get_labels(list(range(19)), label_fn=v)),
    ("k_neighbors", lambda v: SMOTE(k_neighbors=v).fit_resample(X, LABELS)),
    ("random_state", lambda v: SMOTE(k_neighbors=1, random_state=v).fit_resample(X, LABELS)),
    ("chunk_size", lambda v: SMOTE(k_neighbors=1, chunk_size=v).fit_resample(X, LABELS)),
    ("sampling_strategy", lambda v: SMOTE(v, k_neighbors=1).fit_resample(X, LABELS)),
    ("batch_size", lambda v: embed(DATA, IDENTITY, batch_size=v, progress=False)),
    ("seed", lambda v: SMOTEDataset(DATA, IDENTITY, k_neighbors=1, seed=v, progress=False)),
    # the entry points added since (rare-class sampling has its own in test_rare_class.py)
    ("sizes", lambda v: mixture_shares(v)),
    ("proportions", lambda v: mixture_shares([3, 1], proportions=v)),
    ("temperature", lambda v: mixture_shares([3, 1], temperature=v)),
    ("rows", lambda v: ClassAwareSampler(SETS).class_exposure().table(v)),
    ("transforms", lambda v: RareClassDataset([(X, X)], lambda i, m, p: (i, m), v)),
    ("source", lambda v: class_pixel_counts(v, 3, progress=False)),
    ("kind", lambda v: conformance_labels(v)),
    ("n", lambda v: IndexDataset(v)),
    ("warn_if_unused", lambda v: _setter(warn_if_unused=v)),
    ("device", lambda v: embed(DATA, IDENTITY, device=v, progress=False)),
]


def _setter(**options: Any) -> Any:
    from torch_balance.integrations import EpochSetter

    return EpochSetter(**options)


def _count(value: Any) -> int:
    """How many rows of X to pair with hostile labels (1 when they have no length)."""
    try:
        return len(value)
    except TypeError:
        return 1


# Hostile label vectors and datasets: the error may name the labels or the dataset.
LABEL_NAMES = (
    "labels",
    "weights",
    "dataset",
    "dataset_or_labels",
    "y",
    "X",
    "k_neighbors",
    "source",
    "shards",
)
LABEL_POOL = st.one_of(
    HOSTILE,
    st.sampled_from(
        [
            [1, "a", 2],
            ["a", 1],
            [1.5, 2.5],
            [None, 1],
            [[0, 1], 2],
            np.array([[0, 1], [1, 0]]),
            np.array([1.0, np.nan]),
            np.array([2**62, -(2**62)]),
            [2**70, 1],
            torch.tensor([[1], [2]]),
            torch.empty(0),
            "abc",
            b"abc",
            {"a": 1},
            [{"x": 0}],
            [(0, 1, 2)],
            np.array(["a", "b"], dtype=object),
        ]
    ),
    st.lists(st.one_of(st.integers(-3, 3), st.text(max_size=2), st.none()), max_size=8),
)


def _stream_labels(v: Any) -> Any:
    """A mode 2 stream whose samples carry the hostile labels (each one a label), drained."""
    labels = list(v) if isinstance(v, list | tuple) else [v, 0]
    return list(BalancedIterableDataset([(f"x{i}", y) for i, y in enumerate(labels)], "over"))


LABEL_CASES: list[Callable[[Any], Any]] = [
    _stream_labels,
    lambda v: Manifest({"shard": v}),
    lambda v: BalancedSampler(v, "over"),
    lambda v: StratifiedBatchSampler(v, 2),
    lambda v: RepeatFactorSampler(v, 0.3),
    lambda v: ClassAwareSampler(v, num_sample_class=2),
    lambda v: get_labels(v),
    lambda v: get_labelsets(v),
    lambda v: class_weights(v),
    lambda v: SMOTE(k_neighbors=1).fit_resample(np.zeros((_count(v), 2)), v),
    lambda v: target_counts(v, "sqrt"),
    lambda v: make_plan(v, "over").as_dict(0),
    lambda v: WeightedSampler(v),
]

ALLOWED = (TypeError, ValueError)


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize(
    ("name", "call"), CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)]
)
@settings(
    max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
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


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("call", LABEL_CASES, ids=[str(i) for i in range(len(LABEL_CASES))])
@settings(
    max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
@given(value=LABEL_POOL)
def test_hostile_labels(call: Callable[[Any], Any], value: Any) -> None:
    try:
        built = call(value)
    except ALLOWED as error:
        head = str(error).split(":")[0]
        assert any(name in head for name in LABEL_NAMES) or "sampling_strategy" in head, (
            f"{type(error).__name__} for {value!r} names none of {LABEL_NAMES}: {error}"
        )
        return
    _use(built)


# ---- weights at the edges of float64 (issue 24) -----------------------------------------------

_BASE = np.array([1.0, 2.0, 3.0, 0.0, 4.0])
_P = _BASE / _BASE.sum()
# 4e307 * 10 overflows the sum; 1e-300 is tiny but normal; 5e-324 is the smallest subnormal
_SCALES = [1.0, 1e300, 4e307, 1e-300, 5e-324]


def _scaled(scale: float) -> list[float]:
    return [float(v) * scale for v in _BASE]


def _fits(counts: np.ndarray, p: np.ndarray) -> bool:
    from scipy.stats import chisquare

    keep = p > 0
    assert counts[~keep].sum() == 0, "a zero weight was drawn"
    return bool(chisquare(counts[keep], p[keep] * counts.sum()).pvalue > 1e-4)


@pytest.mark.parametrize("scale", _SCALES)
def test_iid_draws_follow_the_weights_at_any_finite_scale(scale: float) -> None:
    sampler = WeightedSampler(_scaled(scale), num_samples=5000, seed=3)
    assert _fits(np.bincount(list(sampler), minlength=5), _P)


@pytest.mark.parametrize("scale", _SCALES)
def test_draws_without_replacement_follow_the_weights_at_any_finite_scale(scale: float) -> None:
    sampler = WeightedSampler(_scaled(scale), num_samples=1, replacement=False, seed=3)
    firsts = []
    for epoch in range(400):
        sampler.set_epoch(epoch)
        firsts.extend(sampler)
    assert _fits(np.bincount(firsts, minlength=5), _P)


@pytest.mark.parametrize("scale", _SCALES)
@pytest.mark.parametrize("replacement", [True, False])
def test_exact_counts_are_floor_or_ceil_at_any_finite_scale(
    scale: float, replacement: bool
) -> None:
    k = 2 if not replacement else 1001
    sampler = WeightedSampler(_scaled(scale), num_samples=k, exact=True, replacement=replacement)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        counts = np.bincount(list(sampler), minlength=5)
        shares = _P * k
        assert counts.sum() == k
        assert np.all((counts >= np.floor(shares - 1e-9)) & (counts <= np.ceil(shares + 1e-9)))


@pytest.mark.parametrize("scale", _SCALES)
def test_update_weights_draws_right_at_any_finite_scale(scale: float) -> None:
    sampler = WeightedSampler([1.0] * 5, num_samples=5000, seed=5)
    sampler.update_weights(torch.arange(5), torch.tensor(_scaled(scale), dtype=torch.float64))
    sampler.set_epoch(1)
    assert _fits(np.bincount(list(sampler), minlength=5), _P)
    exact = WeightedSampler([1.0] * 5, num_samples=1001, exact=True)
    exact.update_weights(torch.arange(5), torch.tensor(_scaled(scale), dtype=torch.float64))
    exact.set_epoch(1)
    counts = np.bincount(list(exact), minlength=5)
    assert np.all(np.abs(counts - _P * 1001) < 1 + 1e-9)


def test_exact_mode_survives_shares_that_round_just_below_integers() -> None:
    # 3000 * w / sum(w) rounds to 999.99999999999989 and 1999.9999999999998: the old layout
    # raised an internal AssertionError
    w = [0.37330544740128757, 0.7466108948025751, 0.0]
    counts = np.bincount(list(WeightedSampler(w, num_samples=3000, exact=True)), minlength=3)
    assert counts.tolist() == [1000, 2000, 0]


@pytest.mark.parametrize("scale", _SCALES)
@pytest.mark.parametrize("replacement", [True, False])
def test_sample_weights_draw_right_at_any_finite_scale(scale: float, replacement: bool) -> None:
    labels = np.repeat([0, 1], [5, 5])
    weights = _scaled(scale) * 2  # class 0 and class 1 hold the same five weights
    sampler = BalancedSampler(
        labels, "class", num_samples=4000, sample_weights=weights, replacement=replacement
    )
    counts = np.bincount(list(sampler), minlength=10)
    within = counts[:5] + counts[5:]
    if replacement:
        assert _fits(within, _P)
    else:  # systematic sampling: floor or ceil of each member's share of its class
        shares = _P * 2000
        assert np.all((counts[:5] >= np.floor(shares)) & (counts[:5] <= np.ceil(shares)))


# ---- the SMOTE cache (issue 24) -----------------------------------------------------------------

_IMAGES = TensorDataset(
    torch.from_numpy(np.random.default_rng(1).normal(size=(19, 1, 2, 3)).astype(np.float32)),
    torch.from_numpy(LABELS),
)


@pytest.mark.parametrize(
    "field,value,match",
    [
        ("input_shape", "abc", "input_shape of integers"),
        ("input_shape", [1, -2, 3], "input_shape of integers"),
        ("embeddings", torch.zeros(19, dtype=torch.int64), "2-D float tensor"),
        ("labels", torch.zeros(5, dtype=torch.int64), "one label per embedding"),
        ("labels", {"a": 1}, "labels as a 1-D tensor or a list"),
        ("labels", [0.5] * 19, "cache: expected integer or string"),
    ],
)
def test_a_tampered_smote_cache_is_refused_naming_cache(
    tmp_path: Any, field: str, value: Any, match: str
) -> None:
    path = tmp_path / "emb.pt"
    encoder = torch.nn.Flatten()
    SMOTEDataset(_IMAGES, encoder, k_neighbors=1, cache=path, progress=False)
    stored = torch.load(path, weights_only=True)
    stored[field] = value
    torch.save(stored, path)
    with pytest.raises((TypeError, ValueError), match=match) as caught:
        SMOTEDataset(_IMAGES, encoder, k_neighbors=1, cache=path, progress=False)
    assert str(caught.value).startswith("cache: ")


def test_a_cache_in_a_missing_directory_is_refused_before_the_encoder_pass(tmp_path: Any) -> None:
    calls = []

    class Counting(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            calls.append(len(x))
            return x.flatten(1)

    path = tmp_path / "no" / "such" / "emb.pt"
    with pytest.raises(ValueError, match="cache: expected a file path in an existing directory"):
        SMOTEDataset(_IMAGES, Counting(), k_neighbors=1, cache=path, progress=False)
    assert not calls, "the encoder ran before the cache path was checked"


# ---- a gzip bomb in place of Fashion-MNIST (issue 24) -------------------------------------------


def _idx_gz(path: Any, header: bytes, body: bytes) -> None:
    import gzip

    with gzip.open(path, "wb") as handle:
        handle.write(header + body)


def test_gunzip_idx_stops_at_the_size_the_header_promises(tmp_path: Any) -> None:
    import struct

    from torch_balance.bench.sources import gunzip_idx

    header = struct.pack(">HBB", 0, 0x08, 1) + struct.pack(">I", 10)
    good, out = tmp_path / "good.gz", tmp_path / "out"
    _idx_gz(good, header, bytes(range(10)))
    assert gunzip_idx(good, out) == 18 and out.read_bytes() == header + bytes(range(10))
    bomb = tmp_path / "bomb.gz"
    _idx_gz(bomb, header, bytes(50_000_000))  # 50 MB of zeros, 50 KB compressed
    with pytest.raises(ValueError, match=r"bomb.gz.*more than the 18 bytes its header promises"):
        gunzip_idx(bomb, out)
    assert out.stat().st_size <= 18 + (1 << 20)
    huge = tmp_path / "huge.gz"
    _idx_gz(huge, struct.pack(">HBB", 0, 0x08, 3) + struct.pack(">III", 60000, 9999, 9999), b"")
    with pytest.raises(ValueError, match="promises 5,998,800,060,016 bytes"):
        gunzip_idx(huge, out)
    short = tmp_path / "short.gz"
    _idx_gz(short, header, bytes(4))
    with pytest.raises(ValueError, match="4 of the 10 data bytes"):
        gunzip_idx(short, out)
    text = tmp_path / "text.gz"
    text.write_bytes(b"not gzip at all")
    with pytest.raises(ValueError, match=r"DATA: expected gzipped idx files.*text.gz"):
        gunzip_idx(text, out)


def test_load_source_refuses_a_fashion_mnist_bomb(tmp_path: Any, monkeypatch: Any) -> None:
    import struct

    from torch_balance.bench.sources import load_source

    monkeypatch.setenv("TORCH_BALANCE_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "fm"
    folder.mkdir()
    for prefix, n in (("train", 20), ("t10k", 10)):
        labels = struct.pack(">HBB", 0, 0x08, 1) + struct.pack(">I", n)
        _idx_gz(folder / f"{prefix}-labels-idx1-ubyte.gz", labels, bytes(n))
        images = struct.pack(">HBB", 0, 0x08, 3) + struct.pack(">III", n, 28, 28)
        extra = 10_000_000 if prefix == "train" else 0  # the bomb
        _idx_gz(folder / f"{prefix}-images-idx3-ubyte.gz", images, bytes(n * 784 + extra))
    with pytest.raises(ValueError, match="more than the 15,696 bytes its header promises"):
        load_source(f"fashion-mnist:{folder}")
    assert not list((tmp_path / "cache").rglob("*.partial"))


# ---- the silent cases and the walks (issue 24) --------------------------------------------------


def test_get_labels_refuses_targets_that_are_a_dict() -> None:
    class Keyed:
        def __init__(self) -> None:
            self.targets = {0: 1, 1: 0, 2: 1}  # list() of it would be the keys [0, 1, 2]

        def __len__(self) -> int:
            return 3

        def __getitem__(self, i: int) -> int:
            return i

    with pytest.raises(TypeError, match=r"dataset.targets: expected a list, .* got a dict"):
        get_labels(Keyed(), progress=False)


@pytest.mark.parametrize("value", [np.float32(2.5), np.float16(1.0), 1.5 + 0j])
def test_label_index_refuses_floats_inside_an_object_array(value: Any) -> None:
    from torch_balance import LabelIndex

    with pytest.raises(TypeError, match="integer or string class labels"):
        LabelIndex(np.array([1, value], dtype=object))


def test_per_class_recall_refuses_float_class_ids() -> None:
    from torch_balance.feedback import per_class_recall

    with pytest.raises(TypeError, match="predictions: expected integer class ids"):
        per_class_recall(torch.tensor([0.0, 1.7]), torch.tensor([0, 1]), 2)
    with pytest.raises(TypeError, match="targets: expected integer class ids"):
        per_class_recall(torch.tensor([0, 1]), torch.tensor([0.0, 1.9]), 2)
    scores = torch.tensor([[0.9, 0.1], [0.2, 0.8]])  # [N, C] scores stay accepted
    assert per_class_recall(scores, torch.tensor([0, 1]), 2).tolist() == [1.0, 1.0]


def test_set_epoch_reaches_a_sampler_under_many_subsets() -> None:
    from torch.utils.data import DataLoader, Subset

    data: Any = ResampledDataset(list(range(6)), labels=[0, 0, 0, 0, 1, 1])
    for _ in range(20):  # the old walk stopped at depth 8 without a word
        data = Subset(data, list(range(len(data))))
    loader = DataLoader(data)
    loader.cycle = [loader]  # type: ignore[attr-defined]  (a cycle ends the walk, too)
    assert len(set_epoch(loader, 4)) == 1


def test_hf_callback_refuses_a_nan_epoch() -> None:
    hf = pytest.importorskip("torch_balance.integrations.huggingface")

    class State:
        epoch = float("nan")

    with pytest.raises(ValueError, match=r"state\.epoch: expected a finite number >= 0"):
        hf.SetEpochCallback().on_epoch_begin(None, State(), None, train_dataloader=None)
