"""The balanced streams run the shared conformance checks for streams (torch_balance.testing):
a manifest's BalancedIterableDataset (mode 1), one that reads labels as they flow with
``epoch_length`` (mode 2), BalancedMix per class (mode 3) and BalancedMix over sources; the
open-ended ones (no ``len()``: the data ends the pass) on one rank."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from torch_balance import BalancedIterableDataset, BalancedMix, Manifest
from torch_balance.streams import Shards
from torch_balance.testing import (
    STREAM_CHECKS,
    check_stream,
    check_stream_counts,
    check_stream_determinism,
    check_stream_resume,
    check_stream_shards,
)

COUNTS = [24, 8, 4]


def long_tail() -> np.ndarray:
    labels = np.repeat(np.arange(len(COUNTS)), COUNTS)
    np.random.default_rng(0).shuffle(labels)
    return labels


def memory_shards(num_shards: int) -> tuple[Shards, Manifest]:
    """Six in-memory shards of ``(id, label)`` samples (two per rank of three) and their
    manifest: a reader of shard ``name`` gets ``data[name]``."""
    labels = long_tail()
    parts = np.array_split(np.arange(labels.shape[0]), num_shards)
    data = {f"s{k}": [(int(i), int(labels[i])) for i in part] for k, part in enumerate(parts)}
    manifest = Manifest({name: [y for _, y in rows] for name, rows in data.items()})
    return Shards(list(data), data.__getitem__), manifest


SOURCE, MANIFEST = memory_shards(6)
FLAT = [(i, int(y)) for i, y in enumerate(long_tail())]
BY_CLASS = {c: [(f"{c}-{i}", c) for i in range(n)] for c, n in enumerate(COUNTS)}
WEB, BOOKS = [f"w{i}" for i in range(30)], [f"b{i}" for i in range(10)]


def manifest_stream(**kw: Any) -> BalancedIterableDataset:
    return BalancedIterableDataset(SOURCE, "over", manifest=MANIFEST, buffer_size=8, **kw)


def online_stream(**kw: Any) -> BalancedIterableDataset:
    return BalancedIterableDataset(FLAT, "sqrt", epoch_length=40, buffer_size=8, **kw)


def mix_classes(**kw: Any) -> BalancedMix:
    return BalancedMix(BY_CLASS, "over", **kw)


def mix_sources(**kw: Any) -> BalancedMix:
    return BalancedMix([WEB, BOOKS], proportions=[3, 1], epoch_length=25, **kw)


def online_open_ended(**kw: Any) -> BalancedIterableDataset:
    return BalancedIterableDataset(FLAT, "sqrt", buffer_size=8, **kw)


def mix_sources_open_ended(**kw: Any) -> BalancedMix:
    return BalancedMix([WEB, BOOKS], proportions=[3, 1], stop="all", **kw)


def mix_classes_stop(**kw: Any) -> BalancedMix:
    return BalancedMix(BY_CLASS, "over", exhausted="stop", **kw)


CASES: dict[str, Any] = {
    "manifest": manifest_stream,
    "online-epoch-length": online_stream,
    "mix-classes": mix_classes,
    "mix-sources": mix_sources,
    # one rank only: the data ends the pass (no len())
    "online-open-ended": online_open_ended,
    "mix-sources-open-ended": mix_sources_open_ended,
    "mix-classes-stop": mix_classes_stop,
}


@pytest.mark.parametrize("check", list(STREAM_CHECKS))
@pytest.mark.parametrize("name", list(CASES))
def test_stream_conformance(name: str, check: str) -> None:
    STREAM_CHECKS[check](CASES[name])


def write_tar_shards(folder: Path, num_shards: int) -> str:
    """Tar shards of samples ``k{i:05d}`` with a ``.bin`` and a ``.cls`` member each."""
    labels = long_tail()
    for s, part in enumerate(np.array_split(np.arange(labels.shape[0]), num_shards)):
        with tarfile.open(folder / f"train-{s}.tar", "w") as tar:
            for i in part.tolist():
                for ext, data in (("bin", bytes([i])), ("cls", str(labels[i]).encode())):
                    info = tarfile.TarInfo(f"k{i:05d}.{ext}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    return str(folder / f"train-{{0..{num_shards - 1}}}.tar")


@pytest.fixture(scope="module")
def tar_stream(tmp_path_factory: pytest.TempPathFactory) -> Any:
    pattern = write_tar_shards(tmp_path_factory.mktemp("shards"), 6)
    manifest = Manifest.scan_tar(pattern)

    def make(**kw: Any) -> BalancedIterableDataset:
        return BalancedIterableDataset(pattern, "under", manifest=manifest, buffer_size=4, **kw)

    return make


@pytest.mark.parametrize("check", list(STREAM_CHECKS))
def test_stream_conformance_over_tar_shards(tar_stream: Any, check: str) -> None:
    """Samples read from tar shards are dicts (unhashable): compared by their key."""
    STREAM_CHECKS[check](tar_stream, key=lambda sample: sample["__key__"])


def test_check_stream_runs_every_check(monkeypatch: pytest.MonkeyPatch) -> None:
    ran = []
    for name, check in STREAM_CHECKS.items():

        def spy(*args: Any, check: Any = check, name: str = name, **kw: Any) -> None:
            ran.append(name)
            check(*args, **kw)

        monkeypatch.setitem(STREAM_CHECKS, name, spy)
    check_stream(mix_sources, dataloader_workers=2)
    assert ran == list(STREAM_CHECKS)
    ran.clear()
    check_stream(mix_sources, dataloader_workers=0)
    assert ran == [name for name in STREAM_CHECKS if name != "dataloader"]


def test_the_checks_catch_a_stream_that_ignores_set_epoch() -> None:
    class Frozen(BalancedMix):
        def set_epoch(self, epoch: int) -> None:
            super().set_epoch(0)

    with pytest.raises(AssertionError, match="conformance: epoch 1 repeats epoch 0"):
        check_stream_determinism(lambda **kw: Frozen([WEB, BOOKS], proportions=[1, 1], **kw))


def test_the_checks_catch_a_stream_that_ignores_its_state() -> None:
    class Forgetful(BalancedMix):
        def load_state_dict(self, state_dict: dict[str, Any]) -> None:
            pass

    def make(**kw: Any) -> BalancedMix:
        return Forgetful([WEB, BOOKS], proportions=[1, 1], epoch_length=20, **kw)

    with pytest.raises(AssertionError, match="conformance: resume after 1 samples"):
        check_stream_resume(make)


def test_the_checks_catch_ranks_that_read_the_same_samples() -> None:
    def make(**kw: Any) -> BalancedMix:
        kw.update(num_replicas=1, rank=0)  # every rank reads everything
        return mix_classes(**kw)

    with pytest.raises(AssertionError, match="conformance: ranks 0 and 1 of 2 both emitted"):
        check_stream_shards(make)


def test_the_checks_catch_counts_that_are_not_the_plan() -> None:
    class Boasting(BalancedMix):
        def target_counts(self, epoch: int | None = None) -> dict[Any, int]:
            return dict.fromkeys(BY_CLASS, 20)

    with pytest.raises(AssertionError, match="conformance: epoch 0 holds"):
        check_stream_counts(lambda **kw: Boasting(BY_CLASS, "over", **kw))


def test_a_factory_without_the_options_is_named() -> None:
    with pytest.raises(AssertionError, match=r"make\(seed=\.\.\., num_replicas=\.\.\."):
        check_stream(lambda seed: mix_sources(seed=seed), dataloader_workers=0)
