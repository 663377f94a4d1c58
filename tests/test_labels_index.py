"""LabelIndex and MultiLabelIndex: the one encoder, the one fingerprint, the CSR rows."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import label_sets, label_vectors
from hypothesis import given, settings
from hypothesis import strategies as st

import torch_balance.labels.encode as encode_module
from torch_balance.labels import LabelIndex, MultiLabelIndex


def test_from_csr_sorts_and_merges_rows() -> None:
    index = MultiLabelIndex.from_csr(np.array([9, 4, 9, 4, 1]), np.array([0, 3, 3, 5]))
    assert index.labelsets().tolist() == [(4, 9), (), (1, 4)]
    assert index.counts.tolist() == [1, 2, 1]
    with pytest.raises(ValueError, match="offsets"):
        MultiLabelIndex.from_csr([1, 2], [0, 3])


def test_fingerprint_tells_label_sets_apart() -> None:
    a = MultiLabelIndex([(1, 2), (2,)])
    assert a.fingerprint() == MultiLabelIndex([[2, 1], [2, 2]]).fingerprint()
    assert a.fingerprint() != MultiLabelIndex([(1,), (1, 2)]).fingerprint()


@settings(max_examples=60, deadline=None)
@given(label_sets)
def test_index_round_trips_random_sets(sets: list[list[int]]) -> None:
    index = MultiLabelIndex(sets)
    expected = [tuple(sorted(set(s))) for s in sets]
    assert index.labelsets().tolist() == expected
    present = sorted({c for s in sets for c in s})
    assert index.categories.tolist() == present
    assert index.counts.tolist() == [sum(c in set(s) for s in sets) for c in present]
    flat = [c for s in expected for c in s]
    offsets = np.cumsum([0] + [len(s) for s in expected])
    assert MultiLabelIndex.from_csr(
        np.array(flat, dtype=np.int64), offsets
    ).labelsets().tolist() == (expected)


@settings(max_examples=60, deadline=None)
@given(label_vectors())
def test_one_encoder_for_both_indexes(labels: np.ndarray) -> None:
    single, multi = LabelIndex(labels), MultiLabelIndex(labels)
    assert single.classes.tolist() == multi.categories.tolist() == sorted(set(labels.tolist()))
    assert single.counts.tolist() == multi.counts.tolist()
    strings = labels.astype(str)
    assert LabelIndex(strings).counts.tolist() == MultiLabelIndex(strings).counts.tolist()


@pytest.mark.parametrize("chunk", [5, 1 << 18])
@settings(max_examples=40, deadline=None)
@given(
    labels=label_vectors(max_classes=8, max_count=30),
    shift=st.sampled_from([0, 3, 200, 250, -2, 1000]),
    dtype=st.sampled_from([np.int64, np.int16, np.uint16]),
)
def test_counts_from_one_chunked_scan(
    labels: np.ndarray, shift: int, dtype: type, chunk: int
) -> None:
    # The construct counts labels in 0..255 during its min/max scan, and falls back to a
    # count over the known range once a chunk leaves it (here from the second chunk on).
    values = labels.astype(np.int64) + shift
    if np.dtype(dtype).kind == "u":
        values -= min(0, int(values.min()))
    values = values.astype(dtype)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(encode_module, "GROUP_CHUNK", chunk)
        index = LabelIndex(values)
    classes, counts = np.unique(values, return_counts=True)
    assert index.classes.tolist() == classes.tolist()
    assert index.counts.tolist() == counts.tolist()
    grouped = [index.members(c).tolist() for c in range(len(classes))]
    assert grouped == [np.flatnonzero(values == k).tolist() for k in classes]


def test_label_index_groups_and_fingerprints() -> None:
    index = LabelIndex([5, 3, 5, 9])
    assert index.classes.tolist() == [3, 5, 9]
    assert [index.members(c).tolist() for c in range(3)] == [[1], [0, 2], [3]]
    assert index.count_dict() == {3: 1, 5: 2, 9: 1}
    assert index.fingerprint() == LabelIndex(np.array([5, 3, 5, 9])).fingerprint()
    assert index.fingerprint() != LabelIndex([5, 5, 3, 9]).fingerprint()
    with pytest.raises(
        TypeError, match="labels: expected labels of one kind: all integers or all strings"
    ):
        LabelIndex(np.array([1, "a"], dtype=object))


@pytest.mark.parametrize("chunk", [3, 7, 1 << 18])
@settings(max_examples=40, deadline=None)
@given(labels=label_vectors(max_classes=8, max_count=30))
def test_chunked_grouping_is_a_stable_argsort(labels: np.ndarray, chunk: int) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(encode_module, "GROUP_CHUNK", chunk)
        for values in (labels, labels.astype(str), labels + 2**40):
            index = LabelIndex(values)
            _, codes = np.unique(values, return_inverse=True)
            assert index.order.tolist() == np.argsort(codes, kind="stable").tolist()


@pytest.mark.parametrize("num_classes", [256, 257, 1500])
def test_grouping_with_many_classes(num_classes: int, monkeypatch: pytest.MonkeyPatch) -> None:
    # 256 is the last count with 8-bit codes; past 1024 classes each chunk is scattered at once
    monkeypatch.setattr(encode_module, "GROUP_CHUNK", 1000)
    labels = np.random.default_rng(num_classes).integers(-7, num_classes - 7, 5000)
    index = LabelIndex(labels)
    assert index.order.tolist() == np.argsort(labels, kind="stable").tolist()
    assert index.order.dtype == torch.int32
