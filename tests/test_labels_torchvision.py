"""The torchvision reader tables: every torchvision dataset read without a sample loaded.

Every single-label reader test first computes the expected labels through the dataset's real
``__getitem__`` where the sample can be loaded (tiny files written to ``tmp_path``), then
replaces ``__getitem__`` on the class with one that raises, and only then calls
``get_labels``: a reader that touched a sample would fail the test. The multi-label readers
(COCO, VOC, CelebA) are checked against files in which no image exists.
"""

from __future__ import annotations

import json
import pickle
import struct
import sys
import types
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torchvision.datasets as tvd
from conftest import forbid_getitem, read, truth
from PIL import Image
from torch.utils.data import ConcatDataset, Subset
from torchvision.datasets.folder import default_loader
from torchvision.datasets.vision import StandardTransform

from torch_balance.labels import get_labels, get_labelsets


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


# torchvision datasets whose on-disk layout is heavy to fake: built with object.__new__ and
# the attributes the real __init__ sets (names checked against torchvision 0.29's source).
# Where their __getitem__ can run (a real tiny image file), the expected labels come from it.


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


COCO_IMAGES = [7, 3, 11, 5]  # image ids, deliberately not sorted
COCO_ANNOTATIONS = [  # (annotation id, image id, category id)
    (1, 3, 18),
    (2, 3, 1),
    (3, 3, 18),
    (4, 7, 44),
    (5, 11, 1),
    (6, 11, 90),
    (7, 11, 18),
]  # image 5 has no annotation


class _StandInCOCO:
    """The part of pycocotools' ``COCO`` index that CocoDetection builds and we read.

    Used only when pycocotools is not installed (it is not a dependency of torch_balance):
    it loads the same JSON and fills ``imgs``, ``anns`` and ``imgToAnns`` the way
    ``COCO.createIndex`` does.
    """

    def __init__(self, path: str) -> None:
        with open(path) as handle:
            data = json.load(handle)
        self.imgs = {image["id"]: image for image in data["images"]}
        self.anns = {ann["id"]: ann for ann in data["annotations"]}
        self.imgToAnns: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for ann in data["annotations"]:
            self.imgToAnns[ann["image_id"]].append(ann)

    def getAnnIds(self, imgIds: Any = ()) -> list[int]:
        ids = imgIds if isinstance(imgIds, list) else [imgIds]
        return [a["id"] for i in ids for a in self.imgToAnns.get(i, [])]

    def loadAnns(self, ids: list[int]) -> list[dict[str, Any]]:
        return [self.anns[i] for i in ids]

    def loadImgs(self, ids: Any) -> list[dict[str, Any]]:
        raise AssertionError("get_labelsets must not load an image")


@pytest.fixture
def coco(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tvd.CocoDetection:
    data = {
        "images": [
            {"id": i, "file_name": f"{i}.jpg", "width": 4, "height": 4} for i in COCO_IMAGES
        ],
        "annotations": [
            {"id": a, "image_id": i, "category_id": c, "bbox": [0, 0, 1, 1], "area": 1.0}
            for a, i, c in COCO_ANNOTATIONS
        ],
        "categories": [{"id": c, "name": f"c{c}"} for c in (1, 18, 44, 90)],
    }
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(data))
    try:
        import pycocotools.coco  # noqa: F401
    except ImportError:
        module = types.ModuleType("pycocotools.coco")
        module.COCO = _StandInCOCO  # type: ignore[attr-defined]
        package = types.ModuleType("pycocotools")
        package.coco = module  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "pycocotools", package)
        monkeypatch.setitem(sys.modules, "pycocotools.coco", module)
    # no image files exist: any attempt to decode one fails
    return tvd.CocoDetection(str(tmp_path / "images"), str(path))


VOC_FILES = {
    "a": ["dog", "person", "dog"],
    "b": [],
    "c": ["car"],
    "d": ["person", "bicycle"],
}


def _voc_xml(names: list[str]) -> str:
    objects = "".join(
        f"<object><name> {n} </name><difficult>0</difficult>"
        "<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>2</xmax><ymax>2</ymax></bndbox></object>"
        for n in names
    )
    return f"<annotation><filename>x.jpg</filename>{objects}</annotation>"


@pytest.fixture
def voc(tmp_path: Path) -> tvd.VOCDetection:
    root = tmp_path / "VOCdevkit" / "VOC2012"
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "Annotations").mkdir()
    (root / "ImageSets" / "Main" / "train.txt").write_text("\n".join(VOC_FILES) + "\n")
    for stem, names in VOC_FILES.items():
        (root / "Annotations" / f"{stem}.xml").write_text(_voc_xml(names))
    return tvd.VOCDetection(str(tmp_path), year="2012", image_set="train")


def test_coco_reads_the_index_in_ids_order(coco: tvd.CocoDetection) -> None:
    sets = get_labelsets(coco, progress=False)
    assert coco.ids == [3, 5, 7, 11]
    assert sets.dtype == object and sets.shape == (4,)
    assert sets.tolist() == [(1, 18), (), (44,), (1, 18, 90)]


class _QueryOnly:
    """A COCO-like index that only answers getAnnIds / loadAnns."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def getAnnIds(self, imgIds: Any = ()) -> list[int]:
        return self.inner.getAnnIds(imgIds=imgIds)

    def loadAnns(self, ids: list[int]) -> list[dict[str, Any]]:
        return self.inner.loadAnns(ids)


def test_coco_without_img_to_anns_uses_get_ann_ids(coco: tvd.CocoDetection) -> None:
    coco.coco = _QueryOnly(coco.coco)
    assert get_labelsets(coco, progress=False).tolist() == [(1, 18), (), (44,), (1, 18, 90)]


def test_coco_subset_and_concat(coco: tvd.CocoDetection) -> None:
    sub = Subset(coco, [3, 1, 3])
    assert get_labelsets(sub, progress=False).tolist() == [(1, 18, 90), (), (1, 18, 90)]
    both = ConcatDataset([Subset(coco, [2]), coco])
    assert get_labelsets(both, progress=False).tolist()[:2] == [(44,), (1, 18)]


def test_voc_parses_only_the_xml(voc: tvd.VOCDetection) -> None:
    assert not Path(voc.images[0]).exists()  # images are never touched
    sets = get_labelsets(voc, progress=False)
    assert sets.tolist() == [("dog", "person"), (), ("car",), ("bicycle", "person")]


def test_voc_broken_xml_names_the_index(voc: tvd.VOCDetection) -> None:
    Path(voc.annotations[2]).write_text("<annotation><object>")
    with pytest.raises(ValueError, match="at index 2"):
        get_labelsets(voc, progress=False)


def test_celeba_attributes_are_categories() -> None:
    # Building CelebA's files is heavy (five text files checked by MD5), so the dataset is
    # made with object.__new__ and given the attribute table torchvision would load.
    celeba = object.__new__(tvd.CelebA)
    celeba.attr = torch.tensor([[0, 1, 1, 0], [0, 0, 0, 0], [1, 0, 0, 1]])
    celeba.attr_names = ["a", "b", "c", "d"]
    celeba.filename = ["1.jpg", "2.jpg", "3.jpg"]
    assert get_labelsets(celeba, progress=False).tolist() == [(1, 2), (), (0, 3)]
