"""Balanced streams at scale: each reader's copies from its own shards (with the global
guarantees), every worker's pass the same length on every rank, no read amplification, and
the binary manifest."""

from __future__ import annotations

import json
import warnings
from collections import Counter
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import sharded_codes
from tests.test_streams import memory_shards, run_slots
from torch_balance import BalancedIterableDataset, Power, Progressive, make_plan
from torch_balance.labels.index import CountIndex
from torch_balance.streams import Manifest
from torch_balance.streams.copies import reader_copies
from torch_balance.streams.manifest_file import ManifestWriter, read_manifest_file
from torch_balance.streams.packing import Packed, bits_for
from torch_balance.streams.readers import shard_order
from torch_balance.streams.sources import Slot, reader_parts


def random_manifest(rng: np.random.Generator, samples: int, shards: int, classes: int) -> Any:
    weights = 0.5 ** np.arange(classes)
    labels = rng.choice(classes, size=samples, p=weights / weights.sum())
    cuts = np.sort(rng.choice(np.arange(1, samples), size=shards - 1, replace=False))
    parts = np.split(labels, cuts)
    return labels, Manifest({f"s{i}": part for i, part in enumerate(parts)})


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32),
    samples=st.integers(40, 400),
    shards=st.integers(2, 20),
    classes=st.integers(2, 6),
    world=st.integers(1, 4),
    workers=st.integers(1, 3),
    strategy=st.sampled_from(["over", "under", "sqrt", Power(0.3), Progressive(2)]),
    epoch=st.integers(0, 5),
)
def test_readers_copies_give_the_plan_exactly(
    seed: int,
    samples: int,
    shards: int,
    classes: int,
    world: int,
    workers: int,
    strategy: Any,
    epoch: int,
) -> None:
    """Each reader computes its own samples' copies; together: every sample read once, each
    class's copies its target exactly, each sample floor or ceil of its class's share."""
    rng = np.random.default_rng(seed)
    labels, manifest = random_manifest(rng, samples, shards, classes)
    plan = make_plan(CountIndex(manifest.counts()), strategy)
    targets = plan.targets(epoch)
    order = shard_order(manifest.num_shards, seed, epoch)
    copies = np.full(samples, -1)
    for rank in range(world):
        for worker in range(workers):
            parts = reader_parts(order, Slot(rank, world, worker, workers))
            found = reader_copies(manifest, parts, targets, seed, epoch)
            for (shard, start, step), (codes, mine) in zip(parts, found, strict=True):
                at = np.arange(manifest.offsets[shard] + start, manifest.offsets[shard + 1], step)
                assert (copies[at] == -1).all()  # read by one reader only
                assert (manifest.classes[codes] == labels[at]).all()
                copies[at] = mine
    assert (copies >= 0).all()
    for c, (n, t) in enumerate(zip(manifest.class_counts(), targets, strict=True)):
        mine = copies[labels == manifest.classes[c]]
        assert int(mine.sum()) == int(t) and set(mine.tolist()) <= {t // n, -(-t // n)}


def test_reader_copies_are_a_function_of_seed_and_epoch() -> None:
    rng = np.random.default_rng(0)
    _, manifest = random_manifest(rng, 500, 7, 4)
    targets = make_plan(CountIndex(manifest.counts()), "over").targets(0)
    parts = [(s, 0, 1) for s in range(7)]

    def copies(seed: int, epoch: int) -> np.ndarray:
        return np.concatenate([c for _, c in reader_copies(manifest, parts, targets, seed, epoch)])

    assert np.array_equal(copies(1, 2), copies(1, 2))
    assert not np.array_equal(copies(1, 2), copies(1, 3))
    assert not np.array_equal(copies(1, 2), copies(2, 2))


def test_every_worker_emits_the_same_count_on_every_rank() -> None:
    """Per-rank totals equal, and worker w's pass has the same length on every rank, however
    unequal the shards' planned copies (a reader state means the same on every rank)."""
    labels = np.repeat([0, 1, 2, 3], [300, 90, 30, 7])
    np.random.default_rng(3).shuffle(labels)
    source, manifest = memory_shards(labels, 9)
    for epoch in range(3):

        def make(epoch: int = epoch, **kw: Any) -> BalancedIterableDataset:
            stream = BalancedIterableDataset(source, "sqrt", manifest=manifest, **kw)
            stream.set_epoch(epoch)
            return stream

        parts = run_slots(make, 3, 2)
        length = len(make(num_replicas=3, rank=0))
        for worker in range(2):
            assert len({len(parts[r, worker]) for r in range(3)}) == 1
        assert [len(parts[r, 0]) + len(parts[r, 1]) for r in range(3)] == [length] * 3
        plan = make().target_counts()
        counts = Counter(y for part in parts.values() for _, y in part)
        scale = 3 * length / sum(plan.values())
        # the cut and the pad in proportion to the plan, within one copy per reader
        assert all(abs(counts[c] - scale * n) <= 6 for c, n in plan.items()), counts


def test_fewer_shards_than_readers_warns_with_the_shard_count() -> None:
    labels = np.repeat([0, 1], [60, 20])
    source, manifest = memory_shards(labels, 3)
    stream = BalancedIterableDataset(source, "over", manifest=manifest, num_replicas=4, rank=1)
    with pytest.warns(UserWarning, match="3 shards for 4 readers.*at least 4 shards"):
        list(stream)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        source, manifest = memory_shards(labels, 4)
        list(BalancedIterableDataset(source, "over", manifest=manifest, num_replicas=4, rank=1))


def two_rank_stream(rank: int, **kw: Any) -> BalancedIterableDataset:
    labels = np.repeat([0, 1, 2], [70, 20, 7])
    np.random.default_rng(5).shuffle(labels)
    source, manifest = memory_shards(labels, 8)
    return BalancedIterableDataset(
        source, "over", manifest=manifest, num_replicas=2, rank=rank, buffer_size=9, seed=2, **kw
    )


def test_a_state_from_another_rank_continues_this_ranks_pass() -> None:
    """2 -> 2 ranks, one reader each: rank 0's state at any point of an epoch, and at its
    end, loads on rank 1 and gives what rank 1's own run gives next."""
    full = {rank: [i for i, _ in two_rank_stream(rank)] for rank in range(2)}
    assert len(full[0]) == len(full[1])
    for stop in (0, 1, 17, len(full[0]) - 1, len(full[0])):
        saved = two_rank_stream(0)
        it = iter(saved)
        for _ in range(stop):
            next(it)
        state = saved.state_dict()
        resumed = two_rank_stream(1)
        resumed.set_epoch(0)
        resumed.load_state_dict(state)
        assert [i for i, _ in resumed] == full[1][stop:], stop
    # at the end without set_epoch: the next epoch, as a sampler's state does
    resumed = two_rank_stream(1)
    resumed.load_state_dict({**state})
    assert resumed.epoch == 1
    with pytest.raises(ValueError, match=r"state_dict\['num_replicas'\]: expected 2"):
        resumed.load_state_dict({**state, "num_replicas": 3})
    with pytest.raises(ValueError, match=r"state_dict\['worker'\]: expected 0"):
        resumed.load_state_dict({**state, "worker": 1})


def test_stateful_dataloader_state_of_rank_0_resumes_rank_1() -> None:
    """2 workers per rank: rank 0's StatefulDataLoader state (what Lightning saves) resumes
    rank 1's loader exactly, mid-epoch and at the epoch's end."""
    sdl = pytest.importorskip("torchdata.stateful_dataloader")

    def loader(rank: int, epoch: int | None = None) -> Any:
        stream = two_rank_stream(rank)
        if epoch is not None:
            stream.set_epoch(epoch)
        return sdl.StatefulDataLoader(stream, batch_size=4, num_workers=2, collate_fn=lambda b: b)

    def keys(batches: Any) -> list[list[int]]:
        return [[i for i, _ in batch] for batch in batches]

    whole = keys(loader(1))
    assert len(whole) == len(list(loader(0)))
    for stop in (3, 11, len(whole)):
        first = loader(0)
        it = iter(first)
        for _ in range(stop):
            next(it)
        state = first.state_dict()
        second = loader(1)
        second.load_state_dict(state)
        if stop < len(whole):
            assert keys(second) == whole[stop:], stop
        else:  # the epoch's end: the next epoch, or after set_epoch(0) the rest of 0
            # (torchdata resumes its round-robin after the worker that yielded last, so the
            # next epoch's batches come in another order of workers: the same batches)
            assert sorted(keys(second)) == sorted(keys(loader(1, epoch=1)))
            second = loader(1, epoch=0)
            second.load_state_dict(state)
            assert keys(second) == []


def tar_shards(folder: Any, labels: np.ndarray, num_shards: int) -> str:
    from tests.test_streams import write_shards

    return write_shards(folder, labels, num_shards)


@pytest.mark.parametrize(("num_shards", "world", "workers"), [(2, 2, 2), (3, 4, 1), (8, 2, 2)])
def test_no_read_amplification_counting_decodes(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, num_shards: int, world: int, workers: int
) -> None:
    """Every sample is read (its members' data read from the tar file) by one reader only,
    however few shards: readers that share a shard seek past the samples they do not keep.
    A source that cannot skip reads at most ceil(readers / shards) times the data."""
    from torch_balance.streams import tar

    labels = np.repeat([0, 1, 2], [50, 14, 6])
    np.random.default_rng(2).shuffle(labels)
    pattern = tar_shards(tmp_path, labels, num_shards)
    manifest = Manifest.scan_tar(pattern)
    decoded: Counter[str] = Counter()
    members = tar.tar_members

    def counting(*args: Any, **kw: Any) -> Any:
        for name, data in members(*args, **kw):
            if data is not None and name.endswith(".npy"):
                decoded[name] += 1
            yield name, data

    monkeypatch.setattr(tar, "tar_members", counting)

    def make(**kw: Any) -> BalancedIterableDataset:
        return BalancedIterableDataset(pattern, "over", manifest=manifest, **kw)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parts = run_slots(make, world, workers)
    assert sum(decoded.values()) == len(labels) and set(decoded.values()) == {1}
    kept = [s["__key__"] for part in parts.values() for s in part]
    assert len(kept) == world * len(make(num_replicas=world, rank=0))

    # a source that cannot skip: every sample of a shared shard read by each of its readers
    reads: Counter[int] = Counter()
    source, manifest = memory_shards(labels, num_shards)
    opened = source.open

    def open_counting(shard: int) -> Any:
        for sample in opened(shard):
            reads[sample[0]] += 1
            yield sample

    source.open = open_counting  # type: ignore[method-assign]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_slots(
            lambda **kw: BalancedIterableDataset(source, "over", manifest=manifest, **kw),
            world,
            workers,
        )
    readers = world * workers
    assert max(reads.values()) <= -(-readers // num_shards)
    assert sum(reads.values()) <= -(-readers // num_shards) * len(labels)
    if num_shards >= readers:
        assert set(reads.values()) == {1}


def test_tar_reader_skips_samples_unread(tmp_path: Any) -> None:
    from torch_balance.streams.tar import tar_samples

    labels = np.arange(10) % 3
    tar_shards(tmp_path, labels, 1)
    pattern = str(tmp_path / "train-000.tar")
    every = [s["__key__"] for s in tar_samples(pattern)]
    for start, step in [(0, 1), (1, 3), (2, 4), (9, 5), (12, 2)]:
        part = list(tar_samples(pattern, every=(start, step)))
        assert [s["__key__"] for s in part] == every[start::step]
        assert all("npy" in s and "cls" in s for s in part)
    with pytest.raises(ValueError, match=r"every\[1\]: expected an integer >= 1"):
        list(tar_samples(pattern, every=(0, 0)))


def test_webdataset_readers_that_share_a_shard_decode_their_own_samples(tmp_path: Any) -> None:
    wds = pytest.importorskip("webdataset")
    labels = np.repeat([0, 1], [30, 10])
    pattern = tar_shards(tmp_path, labels, 2)
    manifest = Manifest.scan_tar(pattern)
    decoded: list[str] = []

    def decode(sample: dict[str, Any]) -> dict[str, Any]:
        decoded.append(sample["__key__"])
        return sample

    def make(**kw: Any) -> BalancedIterableDataset:
        source = wds.WebDataset(pattern, shardshuffle=False).map(decode)
        return BalancedIterableDataset(source, "over", manifest=manifest, **kw)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parts = run_slots(make, 2, 2)
    assert sorted(decoded) == sorted(f"k{i:05d}" for i in range(len(labels)))
    assert sum(len(p) for p in parts.values()) == 2 * len(make(num_replicas=2, rank=0))


# ---- the binary manifest and the scan -------------------------------------------------------


@pytest.mark.parametrize(("classes", "bits"), [(3, 2), (256, 8), (300, 9), (70_000, 17)])
def test_binary_manifest_round_trip(tmp_path: Any, classes: int, bits: int) -> None:
    rng = np.random.default_rng(classes)
    labels = np.concatenate([np.arange(classes), rng.integers(0, classes, size=2000)]) * 3 - 5
    rng.shuffle(labels)
    parts = np.array_split(labels, 9)
    manifest = Manifest({f"s-{i}.tar": p for i, p in enumerate(parts)})
    manifest.save(tmp_path / "m.tbm")
    manifest.save(tmp_path / "m.json")
    manifest.save(tmp_path / "m.bin", format="binary")
    loaded = Manifest.from_file(tmp_path / "m.tbm")
    assert isinstance(loaded.packed.data, np.memmap) and loaded.code_bits == bits
    size = (tmp_path / "m.tbm").stat().st_size
    assert size < len(labels) * bits / 8 + 9 + 12 * classes + 4096  # codes, rows, header
    for other in (loaded, Manifest.from_file(tmp_path / "m.json")):
        assert other.names == manifest.names and other.counts() == manifest.counts()
        assert other.fingerprint() == manifest.fingerprint()
        assert np.array_equal(other.labels, manifest.labels)
        for shard in range(manifest.num_shards + 1):
            assert np.array_equal(other.class_prefix(shard), manifest.class_prefix(shard))
    assert Manifest.from_file(tmp_path / "m.bin").fingerprint() == manifest.fingerprint()


def test_streams_over_a_binary_manifest_are_the_same(tmp_path: Any) -> None:
    labels = np.repeat(["cat", "dog", "eel"], [60, 25, 8])
    np.random.default_rng(4).shuffle(labels)
    source, manifest = memory_shards(labels, 5)
    manifest.save(tmp_path / "m.tbm")
    binary = Manifest.from_file(tmp_path / "m.tbm")

    def run(m: Manifest) -> list[Any]:
        return list(BalancedIterableDataset(source, "sqrt", manifest=m, seed=9))

    assert run(binary) == run(manifest)
    stream = BalancedIterableDataset(source, "sqrt", manifest=manifest, seed=9)
    it = iter(stream)
    next(it)
    again = BalancedIterableDataset(source, "sqrt", manifest=str(tmp_path / "m.tbm"), seed=9)
    again.load_state_dict(stream.state_dict())  # the same data: the same fingerprint


def test_scan_tar_in_threads_and_resumed_from_its_journal(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from torch_balance.streams import scan

    labels = np.arange(120) % 4
    pattern = tar_shards(tmp_path, labels, 6)
    whole = Manifest.scan_tar(pattern, workers=1)
    assert Manifest.scan_tar(pattern, workers=4).to_dict() == whole.to_dict()
    # interrupted: shard 3 fails; the journal keeps the shards finished before it
    journal = tmp_path / "scan.journal"
    original = scan._scan_one
    calls: list[str] = []

    def failing(path: str, *args: Any) -> Any:
        calls.append(path)
        if path.endswith("003.tar"):
            raise ValueError("paths: expected a readable shard, got a broken one")
        return original(path, *args)

    monkeypatch.setattr(scan, "_scan_one", failing)
    with pytest.raises(ValueError, match="broken one"):
        Manifest.scan_tar(pattern, workers=1, journal=journal)
    finished = [json.loads(line)["url"] for line in journal.read_text().splitlines()]
    assert {whole.names[0], whole.names[1], whole.names[2]} <= set(finished)
    assert whole.names[3] not in finished
    with journal.open("a") as stream:
        stream.write('{"url": "cut off')  # a line the interruption cut
    calls.clear()
    monkeypatch.setattr(
        scan, "_scan_one", lambda path, *a: calls.append(path) or original(path, *a)
    )
    out = tmp_path / "labels.tbm"
    resumed = Manifest.scan_tar(pattern, workers=2, journal=journal, save=out)
    assert sorted(calls) == sorted(set(whole.names) - set(finished))  # only those it lacked
    assert resumed.to_dict() == whole.to_dict() and not journal.exists()
    assert Manifest.from_file(out).fingerprint() == whole.fingerprint()
    journal.write_text('{"url": "other.tar", "labels": [1]}\n')
    with pytest.raises(ValueError, match="journal: expected a journal of a scan of these shards"):
        Manifest.scan_tar(pattern, journal=journal)


def test_a_memory_mapped_manifest_pickles_as_its_path(tmp_path: Any) -> None:
    import pickle

    manifest = Manifest({f"s{i}": [i % 3] * 50 for i in range(8)})
    manifest.save(tmp_path / "m.tbm")
    mapped = Manifest.from_file(tmp_path / "m.tbm")
    data = pickle.dumps(mapped)
    assert len(data) < 2000  # not the codes
    again = pickle.loads(data)
    assert (
        isinstance(again.packed.data, np.memmap) and again.fingerprint() == manifest.fingerprint()
    )
    assert np.array_equal(again.class_prefix(5), manifest.class_prefix(5))
    assert pickle.loads(pickle.dumps(manifest)).counts() == manifest.counts()  # in memory


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(found=sharded_codes(), data=st.data())
def test_packed_codes_round_trip(found: Any, data: st.DataObject) -> None:
    """Packed at max(1, ceil(log2(classes))) bits, each shard on a byte: every range read
    back, in memory and from a written file, equals the plain codes."""
    import tempfile

    classes, codes, offsets = found
    bits = bits_for(classes)
    packed = Packed.pack(codes, offsets, bits)
    assert packed.nbytes == sum(-(-int(n) * bits // 8) for n in np.diff(offsets))
    first = data.draw(st.integers(0, codes.shape[0]))
    stop = data.draw(st.integers(first, codes.shape[0]))
    assert packed.read(first, stop).tolist() == codes[first:stop].tolist()
    with tempfile.TemporaryDirectory() as folder:
        path = f"{folder}/m.tbm"
        with ManifestWriter(path, list(range(classes))) as writer:
            for shard in range(offsets.shape[0] - 1):
                writer.add(f"s{shard}", codes[offsets[shard] : offsets[shard + 1]])
        if codes.shape[0] == 0:
            return  # a manifest of no samples is refused; the writer's file is still read
        loaded = Manifest.from_file(path)
        assert loaded.code_bits == bits and loaded.codes.tolist() == codes.tolist()
        for shard in range(offsets.shape[0] - 1):
            part = codes[offsets[shard] : offsets[shard + 1]]
            assert loaded.shard_codes(shard).tolist() == part.tolist()
            prefix = np.bincount(codes[: offsets[shard]], minlength=classes)
            assert loaded.class_prefix(shard).tolist() == prefix.tolist()
        assert loaded.class_counts().tolist() == np.bincount(codes, minlength=classes).tolist()
        assert loaded.fingerprint() == Manifest.from_file(path).fingerprint()


def version_1_file(path: Any, shards: dict[str, list[int]], classes: list[Any], stride: int) -> str:
    """A binary manifest in the version 1 layout (typed codes, int64 rows from row 0), as the
    first writer wrote it; returns its fingerprint."""
    import hashlib
    import struct

    dtype = np.dtype("<u1") if len(classes) <= 256 else np.dtype("<u2")
    codes = np.concatenate([np.array(v, dtype=dtype) for v in shards.values()])
    sizes = [len(v) for v in shards.values()]
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype("<i8")
    bounds = [min(k * stride, len(sizes)) for k in range(-(-len(sizes) // stride) + 1)]
    rows = np.array(
        [np.bincount(codes[: offsets[b]], minlength=len(classes)) for b in bounds], dtype="<i8"
    )
    out = bytearray(b"TBMANIF1" + bytes(56) + codes.tobytes())
    out += bytes(-len(out) % 8)
    offsets_at = len(out)
    out += offsets.tobytes()
    out += bytes(-len(out) % 8)
    rows_at = len(out)
    out += rows.tobytes()
    digest = hashlib.blake2b(digest_size=16)
    digest.update(codes.tobytes())
    digest.update(json.dumps([list(shards), classes]).encode())
    digest.update(offsets.tobytes())
    header = {
        "version": 1,
        "dtype": dtype.name,
        "num_shards": len(sizes),
        "num_samples": int(offsets[-1]),
        "num_classes": len(classes),
        "stride": stride,
        "rows": len(bounds),
        "codes_at": 64,
        "offsets_at": offsets_at,
        "checkpoints_at": rows_at,
        "fingerprint": digest.hexdigest(),
        "classes": classes,
        "names": list(shards),
    }
    text = json.dumps(header).encode()
    out += text + struct.pack("<Q", len(text)) + b"TBMANIF1"
    with open(path, "wb") as stream:
        stream.write(bytes(out))
    return digest.hexdigest()


@pytest.mark.parametrize("stride", [1, 2, 5])
def test_version_1_files_still_load(tmp_path: Any, stride: int) -> None:
    shards = {"a.tar": [0, 2, 2, 1], "b.tar": [], "c.tar": [1, 1, 0], "d.tar": [2]}
    classes = ["cat", "dog", "eel"]
    digest = version_1_file(tmp_path / "old.tbm", shards, classes, stride)
    old = Manifest.from_file(tmp_path / "old.tbm")
    same = Manifest({n: [classes[c] for c in v] for n, v in shards.items()})
    assert old.code_bits == 8 and old.stride == stride
    assert old.fingerprint() == digest == same.fingerprint()
    assert old.to_dict() == same.to_dict() and old.counts() == same.counts()
    for shard in range(len(shards) + 1):
        assert old.class_prefix(shard).tolist() == same.class_prefix(shard).tolist()
    old.save(tmp_path / "new.tbm")  # written again: version 2, the same manifest
    new = Manifest.from_file(tmp_path / "new.tbm")
    assert read_manifest_file(tmp_path / "new.tbm")["version"] == 2
    assert read_manifest_file(tmp_path / "old.tbm")["version"] == 1
    assert new.fingerprint() == digest and new.to_dict() == same.to_dict()
