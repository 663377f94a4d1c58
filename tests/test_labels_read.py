"""get_labels and get_labelsets: the wrappers, the generic readers, label_fn, the scan
fallback and the errors, for single- and multi-label data alike."""

from __future__ import annotations

import importlib
import io
import sys
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch
from conftest import Plain, WithTargets, dataset_trees, forbid_getitem, read, truth
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.utils.data import (
    ConcatDataset,
    Dataset,
    IterableDataset,
    Subset,
    TensorDataset,
    random_split,
)

from torch_balance.datasets import ResampledDataset
from torch_balance.labels import (
    LabelIndex,
    MultiLabelIndex,
    get_labels,
    get_labelsets,
    is_label_data,
    resolve_labels,
    resolve_labelsets,
)
from torch_balance.samplers import RandomOverSampler


def test_subset_random_split_and_nesting(monkeypatch: pytest.MonkeyPatch):
    base = WithTargets(torch.arange(20) % 4)
    first, second = random_split(base, [12, 8], generator=torch.Generator().manual_seed(3))
    nested = Subset(Subset(first, [11, 0, -1, 5]), torch.tensor([3, 1]))
    expected = [truth(x) for x in (first, second, nested)]
    base.calls = 0
    forbid_getitem(monkeypatch, base)
    assert [read(x) for x in (first, second, nested)] == expected
    assert read(Subset(base, range(2, 20, 6))) == [2, 0, 2]
    assert read(Subset(base, np.array([-1, -20]))) == [3, 0]


def test_subset_index_out_of_range():
    with pytest.raises(ValueError, match=r"dataset\.indices: .*\[-3, 3\).*index 3 at position 1"):
        get_labels(Subset(WithTargets([0, 1, 0]), [0, 3]), progress=False)


def test_concat_of_mixed_parts(monkeypatch: pytest.MonkeyPatch):
    tensors = TensorDataset(torch.zeros(3, 2), torch.tensor([5, 6, 5]))
    targets = WithTargets([1, 2])
    ds = ConcatDataset([tensors, Subset(targets, [1]), ConcatDataset([targets, tensors])])
    expected = truth(ds)
    forbid_getitem(monkeypatch, tensors, targets)
    assert read(ds) == expected == [5, 6, 5, 2, 1, 2, 5, 6, 5]


def test_tensor_dataset_last_tensor(monkeypatch: pytest.MonkeyPatch):
    ds = TensorDataset(torch.zeros(3, 1), torch.ones(3), torch.tensor([2, 2, 0]))
    forbid_getitem(monkeypatch, ds)
    assert read(ds) == [2, 2, 0]


def test_string_labels_kept_as_given(monkeypatch: pytest.MonkeyPatch):
    ds = WithTargets(["cat", "dog", "cat"])
    forbid_getitem(monkeypatch, ds)
    labels = get_labels(ds, progress=False)
    assert labels.dtype == object and labels.tolist() == ["cat", "dog", "cat"]
    assert read(np.array(["b", "a"])) == ["b", "a"]


def test_generic_labels_attribute_and_target_transform(monkeypatch: pytest.MonkeyPatch):
    class WithLabels(Dataset):
        labels = np.array([1, 0, 1])
        target_transform = staticmethod(lambda y: y + 1)

        def __len__(self) -> int:
            return 3

    forbid_getitem(monkeypatch, WithLabels())
    assert read(WithLabels()) == [2, 1, 2]


def test_resampled_dataset_gives_the_epochs_view(monkeypatch: pytest.MonkeyPatch):
    base = WithTargets(torch.tensor([0, 0, 0, 0, 1, 2]))
    resampled = ResampledDataset(base, "over", seed=4, shuffle=True)
    expected = base.targets[resampled.epoch_indices()].tolist()
    forbid_getitem(monkeypatch, base, resampled)
    assert read(resampled) == expected
    assert sorted(read(resampled)) == [0] * 4 + [1] * 4 + [2] * 4
    assert base.calls == 0


def test_list_inputs():
    assert read([3, 1, 3]) == [3, 1, 3]
    assert read([("img", "a"), ("img", "b")]) == ["a", "b"]
    assert read([{"x": 0, "label": 4}]) == [4]
    assert read(torch.tensor([1, 0])) == [1, 0]


class HubLike:
    """A Hugging Face datasets.Dataset stand-in: dataset["column"] returns the column."""

    def __init__(self, columns: dict[str, list[Any]], *, via_features: bool = False) -> None:
        self.columns = columns
        if via_features:
            self.features = dict.fromkeys(columns, "feature")
        else:
            self.column_names = list(columns)

    def __len__(self) -> int:
        return len(next(iter(self.columns.values())))

    def __getitem__(self, key: Any) -> Any:
        if not isinstance(key, str):
            raise AssertionError("a row was read")
        return self.columns[key]


def test_hugging_face_style_label_columns():
    image = ["img"] * 3
    assert read(HubLike({"image": image, "label": [0, 1, 1]})) == [0, 1, 1]
    assert read(HubLike({"image": image, "labels": ["x", "y", "x"]}, via_features=True)) == [
        "x",
        "y",
        "x",
    ]
    cifar100 = HubLike({"img": image, "coarse_label": [7, 7, 7], "fine_label": [1, 2, 3]})
    assert read(cifar100) == [1, 2, 3]  # fine_label, never coarse_label on its own
    with pytest.raises(ValueError, match=r"label column named one of.*rename_column"):
        get_labels(HubLike({"img": image, "coarse_label": [1, 2, 3]}), progress=False)
    with pytest.raises(ValueError, match=r"one label per sample \(3"):
        get_labels(HubLike({"img": image, "label": [0, 1]}), progress=False)


def test_label_fn_replaces_every_reader():
    ds = WithTargets([0, 1, 2, 3])
    assert read(ds, label_fn=lambda d, i: "even" if i % 2 == 0 else "odd") == [
        "even",
        "odd",
        "even",
        "odd",
    ]
    assert ds.calls == 0


def test_label_fn_errors_name_the_index():
    def broken(dataset: Any, i: int) -> int:
        if i == 2:
            raise KeyError("no row")
        return 0

    with pytest.raises(ValueError, match=r"label_fn: .*KeyError: 'no row' at index 2") as caught:
        get_labels(WithTargets([0, 0, 0]), label_fn=broken, progress=False)
    assert isinstance(caught.value.__context__, KeyError)
    with pytest.raises(TypeError, match=r"label_fn: .*float 0.5 returned at index 0"):
        get_labels(WithTargets([0]), label_fn=lambda d, i: 0.5, progress=False)
    with pytest.raises(ValueError, match=r"shape \(2,\) returned at index 0"):
        get_labels(WithTargets([0]), label_fn=lambda d, i: torch.tensor([1, 0]), progress=False)
    with pytest.raises(TypeError, match="label_fn: expected a callable"):
        get_labels(WithTargets([0]), label_fn=3, progress=False)  # type: ignore[arg-type]


SCAN_ITEMS: list[tuple[str, list[Any], list[Any]]] = [
    ("pairs", [(torch.zeros(2), 1), (torch.zeros(2), 0)] * 150, [1, 0] * 150),
    ("lists", [[0, torch.tensor(4), "a.png"], [0, torch.tensor(2), "b.png"]], [4, 2]),
    (
        "with index",
        [(torch.zeros(1), 1, 0), (torch.zeros(1), 0, 1), (torch.zeros(1), 1, 2)],
        [1, 0, 1],
    ),
    ("dict label", [{"image": 0, "label": "cat"}, {"image": 1, "label": "dog"}], ["cat", "dog"]),
    ("dict target", [{"x": 0, "target": np.int64(3)}], [3]),
    ("scalar tensors", [torch.tensor(1), torch.tensor(5), torch.tensor(1)], [1, 5, 1]),
]


@pytest.mark.parametrize("num_workers", [0, 2])
@pytest.mark.parametrize(("kind", "items", "expected"), SCAN_ITEMS, ids=[c[0] for c in SCAN_ITEMS])
def test_scan_fallback(kind: str, items: list[Any], expected: list[Any], num_workers: int):
    ds = Plain(items)
    with pytest.warns(UserWarning, match=r"Plain.*DataLoader.*label_fn=.*\.targets"):
        labels = get_labels(ds, num_workers=num_workers, progress=False)
    assert labels.tolist() == expected


def test_scan_reads_only_the_subset_of_a_slow_dataset():
    ds = Plain([(0, y) for y in range(10)])
    with pytest.warns(UserWarning, match="DataLoader"):
        assert get_labels(Subset(ds, [9, 2, 2]), progress=False).tolist() == [9, 2, 2]
    assert ds.calls == 3


def test_scan_progress_bar_only_on_a_terminal(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
):
    with pytest.warns(UserWarning):
        get_labels(Plain([(0, 1), (0, 2)]), progress=True)
    assert "get_labels" not in capsys.readouterr().err  # a log, not a terminal: quiet

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    with pytest.warns(UserWarning):
        get_labels(Plain([(0, 1), (0, 2)]), progress=True)
    assert "get_labels" in terminal.getvalue()


@pytest.mark.parametrize(
    ("items", "error", "pattern"),
    [
        ([(0, 1), (0, None)], ValueError, r"class label for every sample.*None at index 1"),
        ([(0, 1), (0, float("nan"))], TypeError, r"integer or string.*NaN at index 1"),
        ([(0, 1), (0, 2.0)], TypeError, r"float 2.0 at index 1"),
        ([(0, 1), (0, torch.tensor([1, 0]))], ValueError, r"shape \(2,\) at index 1.*argmax"),
        ([(0, 1), (0, [1, 2])], ValueError, r"list of 2 values at index 1.*multilabel=True"),
        ([{"x": 1}], ValueError, r"'label'.*keys \['x'\] at index 0"),
        ([(0,)], ValueError, r"\(input, label\) item.*length 1 at index 0"),
        ([(0, object())], TypeError, r"a object at index 0"),
    ],
)
def test_scan_errors_name_the_index(items: list[Any], error: type, pattern: str):
    with pytest.warns(UserWarning), pytest.raises(error, match=pattern):
        get_labels(Plain(items), progress=False)


class Stream(IterableDataset):
    def __iter__(self) -> Iterator[int]:
        return iter([0, 1])


@pytest.mark.parametrize(
    ("dataset", "error", "pattern"),
    [
        (TensorDataset(torch.zeros(0, 2), torch.zeros(0)), ValueError, "at least one sample"),
        (WithTargets([]), ValueError, "at least one sample"),
        ([], ValueError, "at least one"),
        (ConcatDataset([WithTargets([]), WithTargets([])]), ValueError, "at least one sample"),
        (torch.tensor([0.0, 1.0]), TypeError, "integer or string class labels"),
        (
            WithTargets(torch.tensor([0.0, float("nan")])),
            TypeError,
            r"targets: .*NaN or inf at index 1",
        ),
        (WithTargets(torch.tensor([0.5, 1.0])), TypeError, r"dataset\.targets: .*float"),
        (WithTargets(torch.zeros(3, 2, dtype=torch.long)), ValueError, r"shape \(3, 2\)"),
        (WithTargets(np.array([1, None, 2], dtype=object)), ValueError, "index 1"),
        (object(), TypeError, r"dataset: expected a dataset.*got a object"),
        (42, TypeError, "got a int"),
        ("abc", TypeError, "got a str"),
        ({"train": [0, 1]}, TypeError, r"got a dict.*DatasetDict pick one split"),
        (iter([0, 1]), TypeError, "got a list_iterator"),
        (Stream(), TypeError, r"a stream.*IterableDataset.*pass the labels directly"),
    ],
    ids=lambda v: type(v).__name__ if not isinstance(v, str) else v[:20],
)
def test_bad_input(dataset: Any, error: type, pattern: str):
    with pytest.raises(error, match=pattern):
        get_labels(dataset, progress=False)


def test_targets_length_must_match_the_dataset():
    class Stale(WithTargets):
        def __len__(self) -> int:
            return 4

    with pytest.raises(ValueError, match=r"dataset\.targets: .*one label per sample \(4.*3 labels"):
        get_labels(Stale([0, 1, 0]), progress=False)
    nested = ConcatDataset([WithTargets([1]), Stale([0, 1, 0])])
    with pytest.raises(ValueError, match=r"dataset\.datasets\[1\]\.targets"):
        get_labels(nested, progress=False)


def test_bad_arguments():
    ds = WithTargets([0, 1])
    with pytest.raises(ValueError, match="num_workers: expected an integer >= 0"):
        get_labels(ds, num_workers=-1)
    with pytest.raises(TypeError, match="progress: expected True or False"):
        get_labels(ds, progress="yes")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="multilabel: expected True or False"):
        get_labels(ds, multilabel=1)  # type: ignore[arg-type]


def test_target_transform_errors_name_the_label():
    ds = WithTargets([0, 1])
    ds.target_transform = lambda y: {0: 5}[y]  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match=r"target_transform: .*KeyError: 1 for label 1"):
        get_labels(ds, progress=False)
    ds.target_transform = lambda y: torch.ones(3)  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match=r"shape \(3,\) returned for label 0"):
        get_labels(ds, progress=False)


def test_multilabel_delegates_to_get_labelsets(monkeypatch: pytest.MonkeyPatch):
    module = importlib.import_module("torch_balance.labels.read")
    calls: list[tuple[Any, dict[str, Any]]] = []

    def fake(dataset: Any, **kwargs: Any) -> str:
        calls.append((dataset, kwargs))
        return "labelsets"

    monkeypatch.setattr(module, "get_labelsets", fake)
    ds, fn = WithTargets([0]), lambda d, i: [0]
    assert get_labels(ds, multilabel=True, label_fn=fn, num_workers=1, progress=False) == (
        "labelsets"
    )
    assert calls == [(ds, {"label_fn": fn, "num_workers": 1, "progress": False})]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["int", "str"]).flatmap(dataset_trees))
def test_property_trees_match_iteration(tree: Any):
    expected = truth(tree)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        if not expected:
            with pytest.raises(ValueError, match="at least one"):
                get_labels(tree, progress=False)
            return
        assert get_labels(tree, progress=False).tolist() == expected


class _Tagged(Dataset):
    def __init__(self, sets: Any, attribute: str = "labelsets") -> None:
        setattr(self, attribute, sets)
        self.n = len(sets)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> Any:
        raise AssertionError("must not load a sample")


def test_labelsets_and_targets_attributes() -> None:
    assert get_labelsets(_Tagged([[2, 1], [], [1]])).tolist() == [(1, 2), (), (1,)]
    targets = _Tagged([["b", "a", "b"], ["c"]], "targets")
    assert get_labelsets(targets).tolist() == [("a", "b"), ("c",)]
    hot = _Tagged(torch.tensor([[True, False, True], [False, False, False]]), "targets")
    assert get_labelsets(hot).tolist() == [(0, 2), ()]


def _pair_fn(dataset: Any, i: int) -> list[int]:
    return [i % 3, 7]


def test_label_fn_with_and_without_workers() -> None:
    ds = _Tagged([()] * 10)
    expected = [tuple(sorted({i % 3, 7})) for i in range(10)]
    assert get_labelsets(ds, label_fn=_pair_fn, progress=False).tolist() == expected
    assert get_labelsets(ds, label_fn=_pair_fn, num_workers=2, progress=False).tolist() == expected


def test_label_fn_error_names_the_index() -> None:
    def broken(dataset: Any, i: int) -> list[int]:
        if i == 4:
            raise KeyError("missing")
        return [1]

    with pytest.raises(ValueError, match=r"label_fn.*at index 4"):
        get_labelsets(_Tagged([()] * 6), label_fn=broken, progress=False)


class _Detections(Dataset):
    """A dataset with no label attribute: targets in torchvision's v2 detection format."""

    def __len__(self) -> int:
        return 3

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        labels = [torch.tensor([3, 1, 3]), torch.tensor([], dtype=torch.int64), torch.tensor([2])]
        return torch.zeros(1), {"labels": labels[i], "boxes": torch.zeros(len(labels[i]), 4)}


def test_fallback_scan_warns_and_reads_targets() -> None:
    with pytest.warns(UserWarning, match="label_fn"):
        sets = get_labelsets(_Detections(), progress=False)
    assert sets.tolist() == [(1, 3), (), (2,)]


def test_empty_dataset_is_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        get_labelsets(_Tagged([]))


def test_resolve_labelsets_keeps_an_index() -> None:
    a = MultiLabelIndex([(1, 2), (2,)])
    assert resolve_labelsets(a) is a


def test_multilabel_subset_index_out_of_range() -> None:
    # The multi-label Subset walker is the single-label one, bounds check included.
    tagged = _Tagged([[1], [2, 3], []])
    with pytest.raises(ValueError, match=r"dataset\.indices: .*\[-3, 3\).*index 3 at position 1"):
        get_labelsets(Subset(tagged, [0, 3]), progress=False)
    with pytest.raises(ValueError, match=r"dataset\.dataset\.indices: .*index -4 at position 0"):
        get_labelsets(Subset(Subset(tagged, [-4]), [0]), progress=False)
    assert get_labelsets(Subset(tagged, [-1, 1]), progress=False).tolist() == [(), (2, 3)]


def test_multilabel_wrappers_nest_like_single_label(monkeypatch: pytest.MonkeyPatch) -> None:
    sets = [[i % 3, 7] if i % 2 else [] for i in range(10)]
    tagged = _Tagged(sets)
    first, _ = random_split(tagged, [6, 4], generator=torch.Generator().manual_seed(1))
    nested = ConcatDataset([Subset(first, torch.tensor([5, 0])), Subset(sets, [1])])
    expected = [tuple(sorted(set(sets[i]))) for i in (first.indices[5], first.indices[0], 1)]
    forbid_getitem(monkeypatch, tagged)
    assert get_labelsets(nested, progress=False).tolist() == expected


def test_one_rule_tells_labels_from_datasets() -> None:
    assert is_label_data(np.array([1, 0])) and is_label_data(torch.tensor([[1, 0]]))
    assert is_label_data([3, 1]) and is_label_data(["a"]) and is_label_data([])
    assert is_label_data([[1, 2], [3]]) and is_label_data([("cat", "dog")])
    assert not is_label_data([[1, 2], [3]], label_sets=False)
    assert not is_label_data([(torch.zeros(2), 1)])
    assert not is_label_data([{"image": 0, "label": 1}])
    assert not is_label_data(WithTargets([0, 1]))
    # get_labels reads a list of plain pairs as samples ...
    assert read([("img", "a"), ("img", "b")]) == ["a", "b"]
    # ... the samplers take a list of id collections as label sets, and point to the sampler
    # that balances those
    with pytest.raises(ValueError, match="RepeatFactorSampler"):
        resolve_labels([[1, 2], [2, 3]])
    assert resolve_labels([(torch.zeros(1), 4), (torch.zeros(1), 5)]).keys() == [4, 5]
    assert resolve_labels([{"x": 0, "label": 4}]).keys() == [4]
    assert resolve_labelsets([[2, 1], [1]]).labelsets().tolist() == [(1, 2), (1,)]
    assert resolve_labelsets([(torch.zeros(1), [3, 1])]).labelsets().tolist() == [(1, 3)]


def test_resolve_labels_keeps_an_index_and_uses_label_fn() -> None:
    index = LabelIndex([0, 1, 1])
    assert resolve_labels(index) is index
    assert resolve_labels(WithTargets([5, 6]), lambda d, i: i).keys() == [0, 1]


def test_label_fn_that_raises_in_a_worker_names_the_index() -> None:
    def broken(dataset: Any, i: int) -> list[int]:
        if i == 5:
            raise KeyError("missing")
        return [1]

    with pytest.raises(ValueError, match=r"label_fn: .*KeyError: 'missing' at index 5"):
        get_labelsets(np.zeros(8), label_fn=broken, num_workers=2, progress=False)


def test_a_stream_is_refused_before_it_is_read() -> None:
    """A Hugging Face streaming dataset is told by its type; nothing of it is read."""

    class IterableDataset:  # the shape of datasets.IterableDataset
        column_names = ("image", "label")

        def __iter__(self) -> Any:
            raise AssertionError("the stream was read")

        def __getitem__(self, key: Any) -> Any:
            raise AssertionError("the stream was read")

    IterableDataset.__module__ = "datasets.iterable_dataset"
    for read_labels in (get_labels, get_labelsets):
        with pytest.raises(TypeError, match=r"dataset: .*a stream.*streaming=False"):
            read_labels(IterableDataset())
    with pytest.raises(TypeError, match="a stream"):
        RandomOverSampler(IterableDataset())
