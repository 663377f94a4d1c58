"""Hostile input at the newest entry points, one pinned case per fault found: class-aware and
mixture sampling, mixing streams by share, rare-class sampling and its crop, mask folders and
pixel counts, the conformance suite, the trainer callbacks, ``embed`` and the command line.

Every case here once crashed (an error from inside numpy or torch, an ``IndexError``, a hang),
was accepted silently, or was refused without naming its argument. Each now raises
``TypeError``/``ValueError`` whose message begins with the argument's name, or works.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, TensorDataset

from torch_balance import (
    BalancedMix,
    BalancedSampler,
    ClassAwareSampler,
    MaskFolder,
    MixtureSampler,
    RareClassCrop,
    RareClassDataset,
    RareClassSampler,
    class_pixel_counts,
    embed,
    get_labelsets,
    make_plan,
    mixture_shares,
    target_counts,
)
from torch_balance import testing as conformance
from torch_balance.cli import main
from torch_balance.rare_class import ClassIndex

LABELS = np.array([0] * 12 + [1] * 5 + [2] * 2)
SETS = [(0,), (0, 1), (1,), (), (2,), (0, 2)] * 3
COUNTS = [[900, 100, 0], [1000, 0, 0], [950, 0, 50], [1000, 0, 0]]
META = torch.empty(4, device="meta")
SPARSE = torch.eye(3).to_sparse()
MASK = np.zeros((8, 8), dtype=np.uint8)
PAIRS = [(np.ones((8, 8, 3)), MASK)] * 4
DATA = TensorDataset(torch.randn(19, 3), torch.from_numpy(LABELS))


def _under(labels: Any, **options: Any) -> BalancedSampler:
    return BalancedSampler(labels, "under", **options)


def _callback(module: str, **options: Any) -> Any:
    return pytest.importorskip(f"torch_balance.integrations.{module}").SetEpochCallback(**options)


def _lightning_load(state: Any) -> None:
    _callback("lightning").load_state_dict(state)


class _Returns(torch.nn.Module):
    def __init__(self, fn: Callable[[torch.Tensor], Any]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> Any:
        return self.fn(x)


# (argument the message starts with, exception, call)
REFUSED: list[tuple[str, type[Exception], Callable[[], Any]]] = [
    # tensors without readable values reach the label layer and every array argument
    ("dataset_or_labelsets", ValueError, lambda: ClassAwareSampler(META.reshape(2, 2))),
    ("dataset", TypeError, lambda: get_labelsets(SPARSE)),
    ("proportions", ValueError, lambda: MixtureSampler([LABELS, LABELS], proportions=META[:2])),
    ("proportions", ValueError, lambda: BalancedMix([["a"], ["b"]], proportions=META[:2])),
    ("pixel_counts", ValueError, lambda: RareClassSampler(META.reshape(2, 2))),
    ("pixel_counts", TypeError, lambda: RareClassSampler(SPARSE)),
    ("mask", ValueError, lambda: RareClassCrop(3)(np.ones((2, 2)), META.reshape(2, 2), 0)),
    ("id_map", ValueError, lambda: class_pixel_counts(["a.png"], 3, id_map=META)),
    ("sizes", ValueError, lambda: mixture_shares(META[:2])),
    # pixel counts past int64 wrapped to negative numbers
    ("pixel_counts", ValueError, lambda: RareClassSampler(np.array([[2**63, 0]], np.uint64))),
    # ClassExposure.table indexed numpy with whatever it was given
    ("rows", ValueError, lambda: ClassAwareSampler(SETS).class_exposure().table([99])),
    ("rows", ValueError, lambda: ClassAwareSampler(SETS).class_exposure().table([-1])),
    ("rows", TypeError, lambda: ClassAwareSampler(SETS).class_exposure().table([1.5])),
    ("rows", TypeError, lambda: ClassAwareSampler(SETS).class_exposure().table("a")),
    ("rows", TypeError, lambda: ClassAwareSampler(SETS).class_exposure().table(5)),  # type: ignore[arg-type]
    # mixture_shares took any sizes: [-1, 5] gave a share of -0.25, 2**63 an OverflowError
    ("sizes", ValueError, lambda: mixture_shares([])),
    ("sizes[0]", ValueError, lambda: mixture_shares([-1, 5])),
    ("sizes[0]", TypeError, lambda: mixture_shares([1.5, 2])),
    ("sizes[0]", TypeError, lambda: mixture_shares([True, 2])),
    ("sizes[0]", ValueError, lambda: mixture_shares([2**63, 1])),
    ("sizes[0]", TypeError, lambda: mixture_shares([float("nan"), 1])),
    ("sizes", TypeError, lambda: mixture_shares(5)),  # type: ignore[arg-type]
    ("sizes", ValueError, lambda: mixture_shares(np.array([[3, 1]]))),
    ("sizes", ValueError, lambda: mixture_shares([0, 0])),
    # a string read as a label vector of characters; 2-D and sparse "label vectors"
    ("sources[1]", TypeError, lambda: MixtureSampler([LABELS, "abc"])),
    ("sources[0]", ValueError, lambda: MixtureSampler([np.zeros((3, 2))])),
    ("sources[1]", ValueError, lambda: MixtureSampler([LABELS, META])),
    ("sources[1]", TypeError, lambda: MixtureSampler([LABELS, SPARSE])),
    # a dict mixed as a stream yielded its keys as the samples
    ("sources_by_class[1]", TypeError, lambda: BalancedMix([["a"], {"k": 1}], proportions=[1, 1])),
    # imbalanced-learn's wording, now in the house shape
    ("sampling_strategy", ValueError, lambda: make_plan(LABELS, "over", sampling_strategy={9: 5})),
    ("sampling_strategy", ValueError, lambda: make_plan(LABELS, "over", sampling_strategy=1.5)),
    ("labels", ValueError, lambda: target_counts([3, 3, 3], "over")),
    # RareClassCrop took masks through ToTensor (values k/255) and found no class, silently
    ("mask", TypeError, lambda: RareClassCrop(3)(np.ones((8, 8)), MASK + 0.5, 0)),
    ("mask", TypeError, lambda: RareClassCrop(3)(np.ones((8, 8)), MASK * np.nan, 0)),
    ("mask", ValueError, lambda: RareClassCrop(3)(np.ones((0, 0)), np.zeros((0, 0), np.uint8), 0)),
    # transforms were called only at the first item, with Python's own error
    ("transforms", TypeError, lambda: RareClassDataset(PAIRS, RareClassCrop(3), 5)),
    ("transforms", TypeError, lambda: RareClassDataset(PAIRS, RareClassCrop(3), lambda a: a)),
    # the conformance suite: IndexError, AttributeError, OverflowError, Python's own messages
    ("make", TypeError, lambda: conformance.check_sampler(5, dataloader_workers=0)),  # type: ignore[arg-type]
    ("make", TypeError, lambda: conformance.check_sampler_basics(5, LABELS)),  # type: ignore[arg-type]
    ("labels", TypeError, lambda: conformance.check_sampler(_under, "abc", dataloader_workers=0)),
    ("labels", TypeError, lambda: conformance.check_sampler(_under, 5, dataloader_workers=0)),
    (
        "dataloader_workers",
        TypeError,
        lambda: conformance.check_sampler(_under, dataloader_workers=True),
    ),  # type: ignore[arg-type]
    (
        "dataloader_workers",
        ValueError,
        lambda: conformance.check_dataset(_under, dataloader_workers=-1),
    ),
    ("check_counts", TypeError, lambda: conformance.check_sampler(_under, check_counts="yes")),  # type: ignore[arg-type]
    ("kind", ValueError, lambda: conformance.conformance_labels("bogus")),
    ("n", TypeError, lambda: conformance.IndexDataset(True)),  # type: ignore[arg-type]
    ("n", ValueError, lambda: conformance.IndexDataset(2**63)),
    ("index", ValueError, lambda: conformance.IndexDataset(3)[5]),
    ("index", ValueError, lambda: conformance.IndexDataset(3)[-1]),
    ("index", TypeError, lambda: conformance.IndexDataset(3)[1.5]),  # type: ignore[index]
    # the trainer callbacks kept any warn_if_unused, and any state until the fit started
    ("warn_if_unused", TypeError, lambda: _callback("lightning", warn_if_unused="yes")),
    ("warn_if_unused", TypeError, lambda: _callback("huggingface", warn_if_unused=None)),
    ("state_dict", TypeError, lambda: _lightning_load(5)),
    ("state_dict['samplers']", TypeError, lambda: _lightning_load({"samplers": "abc"})),
    ("state_dict['samplers'][0]", TypeError, lambda: _lightning_load({"samplers": [5]})),
    (
        "state_dict['samplers'][0]['epoch']",
        TypeError,
        lambda: _lightning_load({"samplers": [{"epoch": "x"}]}),
    ),
    # embed: a string is no dataset, meta and absent devices, outputs that are no embedding
    ("dataset", TypeError, lambda: embed("abc", torch.nn.Flatten(), progress=False)),
    ("device", ValueError, lambda: embed(DATA, torch.nn.Flatten(), device="meta", progress=False)),
    ("encoder", ValueError, lambda: embed(DATA, _Returns(lambda x: x.to("meta")), progress=False)),
    ("encoder", TypeError, lambda: embed(DATA, _Returns(lambda x: x.to_sparse()), progress=False)),
    (
        "encoder",
        TypeError,
        lambda: embed(DATA, _Returns(lambda x: x.to(torch.complex64)), progress=False),
    ),
    (
        "dataset",
        TypeError,
        lambda: embed(
            [(torch.zeros(2), 0), (torch.zeros(3), 1)], torch.nn.Flatten(), progress=False
        ),
    ),
]


@pytest.mark.parametrize(
    ("name", "kind", "call"), REFUSED, ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(REFUSED)]
)
def test_refused_naming_the_argument(
    name: str, kind: type[Exception], call: Callable[[], Any]
) -> None:
    with pytest.raises(kind) as caught:
        call()
    message = str(caught.value)
    assert message.startswith(f"{name}: expected "), message


def test_an_absent_cuda_device_is_refused_before_the_pass() -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    with pytest.raises(ValueError, match=r"device: expected a CUDA device this machine has \(0"):
        embed(DATA, torch.nn.Flatten(), device="cuda:3", progress=False)


def _masks(root: Path) -> list[Path]:
    for sub in ("images", "masks"):
        (root / sub).mkdir()
    for stem in ("a", "b"):
        Image.new("RGB", (4, 4)).save(root / "images" / f"{stem}.jpg")
        Image.fromarray(np.array([[0, 1, 2, 255]] * 4, np.uint8)).save(
            root / "masks" / f"{stem}.png"
        )
    return [root / "masks" / "a.png", root / "masks" / "b.png"]


def test_mask_folder_and_pixel_counts_refuse_by_name(tmp_path: Path) -> None:
    _masks(tmp_path)
    folder = MaskFolder(tmp_path)
    for index, kind in ((1.5, TypeError), ("a", TypeError), (2, ValueError), (-3, ValueError)):
        with pytest.raises(kind, match=r"^index: expected"):
            folder[index]  # the old int(index) took 1.5 as 1 and "a" with Python's message
    assert isinstance(folder[-1], tuple)  # negative indices count from the end
    with pytest.raises(ValueError, match=r"^masks: expected a subfolder of root other than"):
        MaskFolder(tmp_path, images="masks")  # every mask was paired with itself
    with pytest.raises(ValueError, match=r"^masks: expected"):
        MaskFolder(tmp_path, masks="")
    with pytest.raises(TypeError, match=r"^transforms: expected a callable"):
        MaskFolder(tmp_path, transforms=5)
    with pytest.raises(ValueError, match=r"^source: expected at least one mask"):
        class_pixel_counts([], 3, progress=False)
    with pytest.raises(TypeError, match=r"^source: expected"):
        class_pixel_counts(None, 3, progress=False)


@pytest.mark.parametrize(
    "proportions", [[1e308, 1e308], [5e-324, 5e-324], [1e-320, 3e-320], [1.7e308, 1e308 / 3]]
)
def test_proportions_at_any_finite_scale(proportions: list[float]) -> None:
    # the sum of [1e308, 1e308] overflowed (shares 0, then a multinomial error); subnormal ones
    shares = mixture_shares([5, 5], proportions=proportions)
    assert np.isfinite(shares).all() and shares.sum() == pytest.approx(1.0)
    assert shares[0] / shares[1] == pytest.approx(proportions[0] / proportions[1])
    sampler = MixtureSampler([LABELS, LABELS], proportions=proportions)
    assert sum(sampler.source_counts) == 2 * len(LABELS)
    mixed = BalancedMix([["a"] * 4, ["b"] * 4], proportions=proportions, stop="all")
    assert sorted(mixed) == ["a"] * 4 + ["b"] * 4


@pytest.mark.parametrize("temperature", [5e-324, 1e-310, 1e-300])
def test_a_tiny_temperature_puts_every_share_on_the_largest_source(temperature: float) -> None:
    assert mixture_shares([3, 1, 3], temperature=temperature).tolist() == [0.5, 0.0, 0.5]
    sampler = MixtureSampler([LABELS, LABELS[:4]], temperature=temperature)
    assert sampler.source_counts == [len(LABELS) + 4, 0]


def test_the_crop_stops_trying_once_no_window_can_do_better() -> None:
    pick = ClassIndex(0, class_id=4, epoch=0, position=0)
    image = np.ones((8, 8, 3))
    many, one = RareClassCrop(3, max_tries=10_000, min_pixels=5), RareClassCrop(3, max_tries=1)
    for mask in (MASK, np.pad(np.full((1, 1), 4, np.uint8), ((0, 7), (0, 7)))):
        # an absent class (or one pixel, held whole): the first window is as good as any,
        # so 10,000 tries take the first one's window, as one try does
        g_many, g_one = many.generator_for(pick), one.generator_for(pick)
        assert many.window(mask, 4, g_many) == one.window(mask, 4, g_one)
        cut_image, cut_mask = many(image, mask, pick)
        assert cut_image.shape == (3, 3, 3) and cut_mask.shape == (3, 3)
    with pytest.raises(ValueError, match=r"^max_tries: expected an integer in \[1, 10000\]"):
        RareClassCrop(3, max_tries=10**12)  # a window per try, in Python: it spun for hours


def test_a_float_mask_of_whole_numbers_is_cropped() -> None:
    mask = torch.zeros(8, 8)
    mask[6:, 6:] = 4.0
    _, cut = RareClassCrop(3, seed=0)(torch.ones(3, 8, 8), mask, ClassIndex(0, class_id=4))
    assert bool((cut == 4).any())


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (
            ["inspect", "x-{0..999999999999}.tar"],
            "DATA 'x-{0..999999999999}.tar': pattern: expected",
        ),
        (["inspect", "/nonexistent/x-{0..3}.tar"], "DATA '/nonexistent/x-{0..3}.tar': "),
        (["inspect", "--label-key", "", "/nonexistent/x.tar"], "--label-key: expected"),
        (["bench", "--threads", "1000000"], "--threads: expected an integer in [1, 1024]"),
        (["bench", "--methods", "erm,erm"], "--methods: expected each method once, got erm"),
    ],
)
def test_cli_refuses_with_the_flag_named(
    tmp_path: Path, argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [*argv, "--out", str(tmp_path / "o")] if argv[0] == "bench" else argv
    assert main(args) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err


def test_image_size_is_bounded_before_images_are_held(tmp_path: Path) -> None:
    from torch_balance.bench.sources import load_source

    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        for i in range(4):
            Image.new("RGB", (8, 8)).save(tmp_path / name / f"{i}.png")
    with pytest.raises(ValueError, match=r"--image-size: expected an integer in \[4, 2048\]"):
        load_source(f"imagefolder:{tmp_path}", image_size=10**6, progress=False)


def test_set_epoch_still_walks_a_loader() -> None:
    from torch_balance.integrations import set_epoch

    loader = DataLoader(DATA, sampler=BalancedSampler(LABELS))
    assert len(set_epoch([loader, {"k": loader}], 2)) == 1
