"""Multi-label readers: per-image category sets without decoding an image."""

from __future__ import annotations

import json
import sys
import types
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torchvision.datasets as tvd
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import ConcatDataset, Dataset, Subset
from torch_balance.labels import (
    MultiLabelIndex,
    as_labelsets,
    get_labelsets,
    resolve_labelsets,
)

# -- fixtures written by the tests themselves -------------------------------------------------

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


# -- torchvision readers ----------------------------------------------------------------------


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


# -- generic readers ---------------------------------------------------------------------------


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


# -- validation and the CSR index --------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad", "error", "match"),
    [
        ([[1.5], [2]], TypeError, "category ids"),
        ([[1], None], TypeError, "at index 1"),
        ([[1], ["a"]], TypeError, "sortable"),
        ([], ValueError, "at least one"),
        (np.array([0.0, 1.0]), TypeError, "integer or string"),
        (torch.tensor([[0, 2], [1, 0]]), ValueError, "multi-hot"),
        ("abc", TypeError, "sequence"),
    ],
)
def test_bad_label_sets(bad: Any, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        as_labelsets(bad)


def test_empty_dataset_is_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        get_labelsets(_Tagged([]))


def test_single_labels_are_one_element_sets() -> None:
    assert as_labelsets(np.array([2, 0, 2])).tolist() == [(2,), (0,), (2,)]
    assert as_labelsets(["b", "a"]).tolist() == [("b",), ("a",)]


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
    assert resolve_labelsets(a) is a


label_sets = st.lists(
    st.lists(st.integers(-3, 40), max_size=6),
    min_size=1,
    max_size=40,
)


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
