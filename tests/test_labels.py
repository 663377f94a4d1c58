"""get_labels: every reader, the wrappers, the scan fallback and the errors.

Every reader test first computes the expected labels through the dataset's real
``__getitem__`` where the sample can be loaded (tiny files written to ``tmp_path``), then
replaces ``__getitem__`` on the class with one that raises, and only then calls
``get_labels``: a reader that touched a sample would fail the test.
"""

from __future__ import annotations

import importlib
import pickle
import struct
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torchvision.datasets as tvd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from torch.utils.data import (
    ConcatDataset,
    Dataset,
    IterableDataset,
    Subset,
    TensorDataset,
    random_split,
)
from torchvision.datasets.folder import default_loader
from torchvision.datasets.vision import StandardTransform

from torch_balance.datasets import ResampledDataset
from torch_balance.labels import get_labels

# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _refuse(self: Any, index: Any) -> Any:
    raise AssertionError(f"{type(self).__name__}.__getitem__({index!r}) was called")


def forbid_getitem(monkeypatch: pytest.MonkeyPatch, *objects: Any) -> None:
    """Make ``__getitem__`` raise on the class of each object (and on Subset/ConcatDataset)."""
    for cls in {type(obj) for obj in objects} | {Subset, ConcatDataset}:
        monkeypatch.setattr(cls, "__getitem__", _refuse)


def read(dataset: Any, **kwargs: Any) -> list[Any]:
    """get_labels as a list, failing on any warning (a warning means a scan happened)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return get_labels(dataset, progress=False, **kwargs).tolist()


def truth(dataset: Any) -> list[Any]:
    """Labels by iterating the dataset: the last element of each item."""
    return [_plain(dataset[i][-1]) for i in range(len(dataset))]


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, torch.Tensor | np.generic) else value


class WithTargets(Dataset):
    """A dataset keeping its labels in ``.targets``; counts ``__getitem__`` calls."""

    def __init__(self, labels: Any) -> None:
        self.targets = labels
        self.calls = 0

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[int, Any]:
        self.calls += 1
        return i, self.targets[i]


class Plain(Dataset):
    """A dataset with no label attribute: only a scan can read it. Counts calls."""

    def __init__(self, items: list[Any]) -> None:
        self.items = items
        self.calls = 0

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Any:
        self.calls += 1
        return self.items[i]


def png(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 4), (10, 20, 30)).save(path)
    return path


def jpg(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 4), (10, 20, 30)).save(path, format="JPEG")
    return path


def idx_file(path: Path, array: np.ndarray) -> None:
    """Write an array in the IDX format torchvision's MNIST readers parse."""
    codes = {np.dtype(np.uint8): 8, np.dtype(">i4"): 12}
    path.parent.mkdir(parents=True, exist_ok=True)
    header = bytes([0, 0, codes[array.dtype], array.ndim])
    header += b"".join(struct.pack(">i", d) for d in array.shape)
    path.write_bytes(header + array.tobytes())


# --------------------------------------------------------------------------------------------
# torchvision datasets built from real files
# --------------------------------------------------------------------------------------------


def test_image_folder_with_target_transform(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    for name, n in (("cat", 3), ("dog", 1), ("eel", 2)):
        for k in range(n):
            png(tmp_path / name / f"{k}.png")
    plain = tvd.ImageFolder(str(tmp_path))
    named = tvd.ImageFolder(str(tmp_path), target_transform=lambda y: plain.classes[y])
    expected_plain, expected_named = truth(plain), truth(named)
    forbid_getitem(monkeypatch, plain)
    assert read(plain) == expected_plain == [0, 0, 0, 1, 2, 2]
    assert read(named) == expected_named == ["cat", "cat", "cat", "dog", "eel", "eel"]


def test_image_folder_subclass_and_samples_are_the_truth(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    for name, n in (("a", 2), ("b", 2)):
        for k in range(n):
            png(tmp_path / name / f"{k}.png")

    class Mine(tvd.ImageFolder):
        pass

    ds = Mine(str(tmp_path))
    ds.samples = ds.samples[1:]  # filtered after construction: .targets is now stale
    expected = truth(ds)
    forbid_getitem(monkeypatch, ds)
    assert read(ds) == expected == [0, 1, 1]


@pytest.mark.parametrize("cls", [tvd.MNIST, tvd.FashionMNIST, tvd.KMNIST])
def test_mnist_family_from_idx_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cls):
    labels = np.array([3, 1, 4, 1, 5], dtype=np.uint8)
    raw = tmp_path / cls.__name__ / "raw"
    for split in ("train", "t10k"):  # torchvision checks that both splits are present
        idx_file(raw / f"{split}-images-idx3-ubyte", np.zeros((5, 28, 28), dtype=np.uint8))
        idx_file(raw / f"{split}-labels-idx1-ubyte", labels)
    ds = cls(str(tmp_path), train=True, target_transform=lambda y: y * 10)
    expected = truth(ds)
    forbid_getitem(monkeypatch, ds)
    assert read(ds) == expected == [30, 10, 40, 10, 50]


def test_qmnist_reads_column_zero(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    rows = np.zeros((4, 8), dtype=">i4")
    rows[:, 0] = [7, 2, 7, 9]
    rows[:, 1] = 123  # the writer id: must not be taken for the class
    raw = tmp_path / "QMNIST" / "raw"
    idx_file(raw / "qmnist-train-images-idx3-ubyte", np.zeros((4, 28, 28), dtype=np.uint8))
    idx_file(raw / "qmnist-train-labels-idx2-int", rows)
    ds = tvd.QMNIST(str(tmp_path), what="train")
    assert ds.targets.ndim == 2
    expected = truth(ds)
    forbid_getitem(monkeypatch, ds)
    assert read(ds) == expected == [7, 2, 7, 9]


def test_cifar10_from_pickled_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    # The real files are checked against their md5; the check is switched off, the loading
    # code is torchvision's own.
    monkeypatch.setattr("torchvision.datasets.cifar.check_integrity", lambda *a, **k: True)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    labels = [[0, 9], [3], [3, 3], [1], [2]]
    for k, batch in enumerate(labels, start=1):
        entry = {"data": np.zeros((len(batch), 3072), np.uint8), "labels": batch}
        (folder / f"data_batch_{k}").write_bytes(pickle.dumps(entry))
    (folder / "batches.meta").write_bytes(
        pickle.dumps({"label_names": [str(c) for c in range(10)]})
    )
    ds = tvd.CIFAR10(str(tmp_path), train=True)
    expected = truth(ds)
    forbid_getitem(monkeypatch, ds)
    assert read(ds) == expected == [0, 9, 3, 3, 3, 1, 2]


def test_svhn_labels_after_the_ten_to_zero_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import scipy.io

    monkeypatch.setattr("torchvision.datasets.svhn.check_integrity", lambda *a, **k: True)
    y = np.array([[10], [1], [10], [5]], dtype=np.uint8)
    scipy.io.savemat(
        tmp_path / "train_32x32.mat", {"X": np.zeros((32, 32, 3, 4), np.uint8), "y": y}
    )
    ds = tvd.SVHN(str(tmp_path), split="train")
    expected = truth(ds)
    forbid_getitem(monkeypatch, ds)
    assert read(ds) == expected == [0, 1, 0, 5]


def _caltech_tree(root: Path, sizes: dict[str, int]) -> None:
    for name, n in sizes.items():
        for k in range(1, n + 1):
            jpg(root / name / f"image_{k:04d}.jpg")


def test_caltech101_and_target_types(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    categories = tmp_path / "caltech101" / "101_ObjectCategories"
    _caltech_tree(categories, {"BACKGROUND_Google": 1, "ant": 2, "bee": 1})
    ds = tvd.Caltech101(str(tmp_path), target_transform=lambda y: y + 5)
    both = tvd.Caltech101(str(tmp_path), target_type=["annotation", "category"])
    outline = tvd.Caltech101(str(tmp_path), target_type="annotation")
    both_tt = tvd.Caltech101(
        str(tmp_path), target_type=["category", "annotation"], target_transform=str
    )
    expected = truth(ds)
    forbid_getitem(monkeypatch, ds)
    assert read(ds) == expected == [5, 5, 6]
    assert read(both) == [0, 0, 1]  # the category of the (annotation, category) pair
    with pytest.raises(ValueError, match=r"dataset\.target_type: .*'category'"):
        get_labels(outline, progress=False)
    with pytest.raises(ValueError, match=r"target_transform: .*tuple.*label_fn"):
        get_labels(both_tt, progress=False)


def test_caltech256(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    categories = tmp_path / "caltech256" / "256_ObjectCategories"
    for c, (name, n) in enumerate((("001.ak47", 1), ("002.bat", 3))):
        for k in range(1, n + 1):
            jpg(categories / name / f"{c + 1:03d}_{k:04d}.jpg")
    ds = tvd.Caltech256(str(tmp_path))
    expected = truth(ds)
    forbid_getitem(monkeypatch, ds)
    assert read(ds) == expected == [0, 1, 1, 1]


def test_inaturalist_full_and_other_levels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    names = [
        "00000_Animalia_Chordata_Aves_Passeriformes_Corvidae_Corvus_corax",
        "00001_Plantae_Tracheophyta_Liliopsida_Poales_Poaceae_Zea_mays",
        "00002_Animalia_Arthropoda_Insecta_Hymenoptera_Apidae_Apis_mellifera",
    ]
    for name, n in zip(names, (2, 1, 3), strict=True):
        for k in range(n):
            jpg(tmp_path / "2021_train" / name / f"{k}.jpg")
    full = tvd.INaturalist(str(tmp_path), version="2021_train")
    kingdom = tvd.INaturalist(str(tmp_path), version="2021_train", target_type="kingdom")
    pair = tvd.INaturalist(str(tmp_path), version="2021_train", target_type=["phylum", "full"])
    expected = [truth(full), truth(kingdom), [t[0] for t in truth_pairs(pair)]]
    forbid_getitem(monkeypatch, full)
    got = [read(full), read(kingdom), read(pair)]
    assert got == expected
    assert sorted(got[0]) == [0, 0, 1, 2, 2, 2]
    assert sorted(got[1]) == [0, 0, 0, 0, 0, 1]


def truth_pairs(dataset: Any) -> list[Any]:
    return [dataset[i][1] for i in range(len(dataset))]


# --------------------------------------------------------------------------------------------
# torchvision datasets whose on-disk layout is heavy to fake: built with object.__new__ and
# the attributes the real __init__ sets (names checked against torchvision 0.29's source).
# Where their __getitem__ can run (a real tiny image file), the expected labels come from it.
# --------------------------------------------------------------------------------------------


def bare(cls: type, **attributes: Any) -> Any:
    dataset = object.__new__(cls)
    dataset.root = "unused"
    dataset.transform = dataset.target_transform = dataset.transforms = None
    dataset.loader = dataset._loader = default_loader
    for key, value in attributes.items():
        setattr(dataset, key, value)
    return dataset


LABELS = [2, 0, 2, 1, 2]


def _cases(image: str) -> list[tuple[type, dict[str, Any]]]:
    files = [image] * len(LABELS)
    pairs = [(image, y) for y in LABELS]
    return [
        (tvd.Flowers102, {"_image_files": files, "_labels": LABELS}),
        (tvd.Food101, {"_image_files": files, "_labels": LABELS}),
        (tvd.DTD, {"_image_files": files, "_labels": LABELS}),
        (tvd.FGVCAircraft, {"_image_files": files, "_labels": LABELS}),
        (tvd.SUN397, {"_image_files": files, "_labels": LABELS}),
        (tvd.CLEVRClassification, {"_image_files": files, "_labels": LABELS}),
        (tvd.StanfordCars, {"_samples": pairs}),
        (tvd.GTSRB, {"_samples": pairs}),
        (tvd.Imagenette, {"_samples": pairs}),
        (tvd.RenderedSST2, {"_samples": pairs}),
        (tvd.FER2013, {"_samples": [(torch.zeros(4, 4, dtype=torch.uint8), y) for y in LABELS]}),
        (tvd.Places365, {"imgs": pairs, "targets": LABELS}),
        (tvd.LFWPeople, {"data": files, "targets": LABELS}),
        (tvd.LFWPairs, {"data": [(image, image)] * 5, "targets": LABELS}),
        (
            tvd.OxfordIIITPet,
            {
                "_images": files,
                "_labels": LABELS,
                "_bin_labels": [0] * 5,
                "_target_types": ["category"],
            },
        ),
        (tvd.USPS, {"data": np.zeros((5, 16, 16), np.uint8), "targets": LABELS}),
        (tvd.SEMEION, {"data": np.zeros((5, 16, 16), np.uint8), "labels": np.array(LABELS)}),
        (
            tvd.EMNIST,
            {"data": torch.zeros(5, 28, 28, dtype=torch.uint8), "targets": torch.tensor(LABELS)},
        ),
        (tvd.CIFAR100, {"data": np.zeros((5, 32, 32, 3), np.uint8), "targets": LABELS}),
        (tvd.STL10, {"data": np.zeros((5, 3, 96, 96), np.uint8), "labels": np.array(LABELS)}),
        (tvd.SVHN, {"data": np.zeros((5, 3, 32, 32), np.uint8), "labels": np.array(LABELS)}),
    ]


@pytest.fixture(scope="module")
def image_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(png(tmp_path_factory.mktemp("img") / "x.png"))


CASE_NAMES = [cls.__name__ for cls, _ in _cases("x")]


@pytest.mark.parametrize("name", CASE_NAMES)
@pytest.mark.parametrize("with_transform", [False, True])
def test_torchvision_readers(name: str, with_transform: bool, image_file: str, monkeypatch):
    cls, attributes = next(case for case in _cases(image_file) if case[0].__name__ == name)
    ds = bare(cls, **attributes)
    if with_transform:
        ds.target_transform = lambda y: f"class-{y}"
        ds.transforms = StandardTransform(None, ds.target_transform)
    expected = truth(ds)  # the real __getitem__, on a real (tiny) image
    forbid_getitem(monkeypatch, ds)
    got = read(ds)
    assert got == expected
    assert got == ([f"class-{y}" for y in LABELS] if with_transform else LABELS)


def test_omniglot(monkeypatch: pytest.MonkeyPatch):
    ds = bare(tvd.Omniglot, _flat_character_images=[("a.png", 4), ("b.png", 0), ("c.png", 4)])
    forbid_getitem(monkeypatch, ds)
    assert read(ds) == [4, 0, 4]


def test_oxford_pet_target_types(image_file: str, monkeypatch: pytest.MonkeyPatch):
    base = {"_images": [image_file] * 3, "_labels": [5, 6, 5], "_bin_labels": [0, 1, 0]}
    binary = bare(tvd.OxfordIIITPet, _target_types=["binary-category"], **base)
    seg_first = bare(tvd.OxfordIIITPet, _target_types=["segmentation", "category"], **base)
    seg_only = bare(tvd.OxfordIIITPet, _target_types=["segmentation"], **base)
    forbid_getitem(monkeypatch, binary)
    assert read(binary) == [0, 1, 0]
    assert read(seg_first) == [5, 6, 5]
    with pytest.raises(ValueError, match=r"target_types: .*'category'.*Segmentation"):
        get_labels(seg_only, progress=False)


def test_stl10_unlabeled_split(monkeypatch: pytest.MonkeyPatch):
    ds = bare(tvd.STL10, data=np.zeros((4, 3, 96, 96), np.uint8), labels=np.array([1, -1, 3, -1]))
    forbid_getitem(monkeypatch, ds)
    with pytest.raises(ValueError, match=r"class label for every sample.*index 1.*Subset"):
        get_labels(ds, progress=False)
    labelled = Subset(ds, np.flatnonzero(ds.labels >= 0))
    assert read(labelled) == [1, 3]


def test_test_splits_without_labels_are_refused(image_file: str):
    places = bare(tvd.Places365, imgs=[(image_file, None)] * 2, targets=[None, None])
    with pytest.raises(ValueError, match=r"class label for every sample.*index 0"):
        get_labels(places, progress=False)


def test_qmnist_compat_false_with_transform_is_refused():
    ds = bare(tvd.QMNIST, data=torch.zeros(2, 28, 28), targets=torch.zeros(2, 8, dtype=torch.long))
    ds.compat, ds.target_transform = False, len
    with pytest.raises(ValueError, match="compat=False"):
        get_labels(ds, progress=False)


def test_other_torchvision_targets_are_not_taken_for_labels(tmp_path: Path):
    # VOC-style datasets keep file paths in .targets: they must not come back as classes.
    voc = bare(tvd.VOCSegmentation, images=[str(tmp_path / "x.jpg")], targets=["mask.png"])
    # The scan runs instead (and fails here on the missing image), never reading .targets.
    with (
        pytest.warns(UserWarning, match="no label attribute known for VOCSegmentation"),
        pytest.raises(FileNotFoundError),
    ):
        get_labels(voc, progress=False)


# --------------------------------------------------------------------------------------------
# wrappers and generic objects
# --------------------------------------------------------------------------------------------


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
    expected = base.targets[resampled.source_indices].tolist()
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


# --------------------------------------------------------------------------------------------
# label_fn
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# the scan fallback
# --------------------------------------------------------------------------------------------


SCAN_ITEMS: list[tuple[str, list[Any], list[Any]]] = [
    ("pairs", [(torch.zeros(2), 1), (torch.zeros(2), 0)] * 150, [1, 0] * 150),
    ("lists", [[0, "x", torch.tensor(4)], [0, "y", torch.tensor(2)]], [4, 2]),
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


def test_scan_progress_bar_runs(capsys: pytest.CaptureFixture[str]):
    with pytest.warns(UserWarning):
        get_labels(Plain([(0, 1), (0, 2)]), progress=True)
    assert "get_labels" in capsys.readouterr().err


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


# --------------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------------


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
        (Stream(), TypeError, r"IterableDataset.*pass its labels directly"),
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


# --------------------------------------------------------------------------------------------
# multilabel delegation
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# property: random trees of Subset / ConcatDataset over random label vectors
# --------------------------------------------------------------------------------------------


def _leaves(kind: str) -> st.SearchStrategy[Any]:
    values = st.integers(-3, 6) if kind == "int" else st.sampled_from(["a", "b", "cc", "d"])
    vectors = st.lists(values, min_size=0, max_size=12)
    makers: list[Callable[[list[Any]], Any]] = [
        WithTargets,
        lambda labels: Plain([(i, y) for i, y in enumerate(labels)]),
        lambda labels: [(i, y) for i, y in enumerate(labels)],
    ]
    if kind == "int":
        makers.append(
            lambda labels: TensorDataset(
                torch.zeros(len(labels)), torch.tensor(labels, dtype=torch.long)
            )
        )
    return st.tuples(vectors, st.sampled_from(makers)).map(lambda pair: pair[1](pair[0]))


def _subset_of(child: Any) -> st.SearchStrategy[Any]:
    size = len(child)
    if size == 0:
        return st.just(Subset(child, []))
    return st.lists(st.integers(-size, size - 1), max_size=15).map(lambda idx: Subset(child, idx))


def _trees(kind: str) -> st.SearchStrategy[Any]:
    return st.recursive(
        _leaves(kind),
        lambda children: st.one_of(
            children.flatmap(_subset_of),
            st.lists(children, min_size=1, max_size=3).map(ConcatDataset),
        ),
        max_leaves=6,
    )


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["int", "str"]).flatmap(_trees))
def test_property_trees_match_iteration(tree: Any):
    expected = truth(tree)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        if not expected:
            with pytest.raises(ValueError, match="at least one"):
                get_labels(tree, progress=False)
            return
        assert get_labels(tree, progress=False).tolist() == expected
