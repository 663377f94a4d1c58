"""Hugging Face streaming sources: readers that share a shard decode only the samples they
keep, and forked DataLoader workers never wait on a thread pool of ``datasets``'s."""

from __future__ import annotations

import io
import itertools
import multiprocessing
import warnings
from collections import Counter
from typing import Any

import numpy as np
import pytest
from conftest import HANG_S
from torch.utils.data import DataLoader

from tests.conftest import run_slots
from torch_balance import BalancedIterableDataset
from torch_balance.streams import Manifest
from torch_balance.streams import sources as sources_module
from torch_balance.streams.sources import as_source

datasets = pytest.importorskip("datasets")
Image = pytest.importorskip("PIL.Image")

NUM_SAMPLES = 48


def png(value: int) -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.full((4, 4, 3), value, dtype=np.uint8)).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def parquet_files(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Real PNG images with a long-tailed label, in 2 parquet files (2 shards)."""
    folder = tmp_path_factory.mktemp("hf")
    labels = [int(i % 6 == 0) for i in range(NUM_SAMPLES)]
    features = datasets.Features(
        {"image": datasets.Image(), "label": datasets.Value("int64"), "x": datasets.Value("int64")}
    )
    images = [{"bytes": png(i), "path": None} for i in range(NUM_SAMPLES)]
    table = datasets.Dataset.from_dict(
        {"image": images, "label": labels, "x": list(range(NUM_SAMPLES))}, features=features
    )
    files = [str(folder / f"part-{i}.parquet") for i in range(2)]
    for i, name in enumerate(files):
        table.shard(2, i, contiguous=True).to_parquet(name)
    return files


def streaming(files: list[str], threads: int = 0) -> Any:
    data = datasets.load_dataset("parquet", data_files=files, split="train", streaming=True)
    return data.decode(num_threads=threads) if threads else data


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> Counter[int]:
    """How many times each image is decoded (keyed by its pixel value)."""
    counts: Counter[int] = Counter()
    original = datasets.Image.decode_example

    def counting(self: Any, value: Any, **kw: Any) -> Any:
        image = original(self, value, **kw)
        counts[int(np.asarray(image)[0, 0, 0])] += 1
        return image

    monkeypatch.setattr(datasets.Image, "decode_example", counting)
    return counts


def decoded_today(data: Any, shard: int, num_shards: int) -> list[dict[str, Any]]:
    """The shard as datasets reads and decodes it."""
    part = data.shard(num_shards=num_shards, index=shard, contiguous=True)
    return [{k: v[0] for k, v in batch.items()} for batch in part.iter(batch_size=1)]


def same(got: list[Any], expected: list[Any]) -> bool:
    """Equal samples, images by pixels (PIL compares mode, size and bytes)."""
    return len(got) == len(expected) and all(a == b for a, b in zip(got, expected, strict=True))


@pytest.mark.parametrize("threads", [0, 3])
@pytest.mark.parametrize(("start", "step"), [(0, 1), (1, 3), (0, 4), (5, 2)])
def test_shared_shard_decodes_only_the_samples_kept(
    parquet_files: list[str], decodes: Counter[int], threads: int, start: int, step: int
) -> None:
    data = streaming(parquet_files, threads)
    source = as_source(data)
    for shard in range(2):
        expected = list(
            itertools.islice(enumerate(decoded_today(data, shard, 2)), start, None, step)
        )
        decodes.clear()
        got = list(source.open_part(shard, start, step))
        assert [p for p, _ in got] == [p for p, _ in expected]
        assert same([s for _, s in got], [s for _, s in expected])
        assert isinstance(got[0][1]["image"], Image.Image)
        # a reader with step k decodes 1/k of the shard, each kept image once
        assert sum(decodes.values()) == len(got) == len(range(start, NUM_SAMPLES // 2, step))
        assert set(decodes) == {int(s["x"]) for _, s in got}


def test_stream_over_shared_shards_decodes_each_sample_once(
    parquet_files: list[str], decodes: Counter[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """2 shards, 2 ranks x 2 workers: each shard shared by 2 readers. The samples emitted are
    today's (read and decode everything, drop the others); the decodes drop from 2x to 1x."""
    data = streaming(parquet_files)
    manifest = Manifest.from_source(data)
    assert sum(decodes.values()) == 0  # the labels are read without decoding an image

    def make(**kw: Any) -> BalancedIterableDataset:
        return BalancedIterableDataset(data, "over", manifest=manifest, seed=1, **kw)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 2 shards for 4 readers
        got = run_slots(make, 2, 2)
        assert sum(decodes.values()) == NUM_SAMPLES and set(decodes.values()) == {1}
        decodes.clear()
        monkeypatch.setattr(sources_module, "undecoded", lambda dataset: (None, 0))  # today's
        expected = run_slots(make, 2, 2)
        assert sum(decodes.values()) == 2 * NUM_SAMPLES  # every reader decodes its whole shard
    assert got.keys() == expected.keys()
    assert all(same(got[key], expected[key]) for key in got)


def test_dataset_with_a_map_is_read_as_before(
    parquet_files: list[str], decodes: Counter[int]
) -> None:
    """A map may see decoded images: such a dataset is read and decoded whole, as before."""
    data = streaming(parquet_files).map(lambda s: {"width": s["image"].size[0]})
    source = as_source(data)
    got = [s for _, s in source.open_part(0, 1, 2)]
    assert [s["width"] for s in got] == [4] * (NUM_SAMPLES // 4)
    assert sum(decodes.values()) == NUM_SAMPLES // 2


def width(sample: dict[str, Any]) -> dict[str, Any]:
    return {"width": sample["image"].size[0]}


@pytest.mark.skipif(
    "fork" not in multiprocessing.get_all_start_methods(), reason="needs the fork start method"
)
@pytest.mark.parametrize("persistent", [False, True])
@pytest.mark.parametrize("then_map", [False, True])
def test_forked_workers_do_not_hang_on_threaded_decoding(
    parquet_files: list[str], persistent: bool, then_map: bool
) -> None:
    """``decode(num_threads=...)`` (the default of remote streaming) starts a thread pool in
    the main process when the manifest reads the labels; forked workers inherited it without
    its threads and waited forever on their first image (with or without a ``map`` after the
    decoding). The DataLoader's timeout turns a hang into a failure."""
    data = streaming(parquet_files, threads=2)
    data = data.map(width) if then_map else data
    next(iter(data))  # a peek in the main process also starts datasets' pool
    for kw in ({"manifest": Manifest.from_source(data)}, {"epoch_length": 40}):
        stream = BalancedIterableDataset(data, "over", **kw)
        loader = DataLoader(
            stream,
            batch_size=None,
            num_workers=2,
            multiprocessing_context="fork",
            persistent_workers=persistent,
            timeout=HANG_S,
        )
        for epoch in range(2):
            stream.set_epoch(epoch)
            got = list(loader)
            assert len(got) == len(stream)
            assert all(isinstance(s["image"], Image.Image) for s in got)
            assert all(s["width"] == 4 for s in got) if then_map else True
