"""Balanced streams on WebDataset tar shards: how exact, how wasteful, how fast.

Data (written once, cached under ``--cache``): N samples over 10 long-tailed classes (ratio
100, ``_common.long_tailed_labels``), each a tiny ``.bin`` payload and a ``.cls`` label, in
shards of ``--shard-size`` samples, shuffled across shards; and the same samples again split by
class (the layout mode 3 mixes). Every row reads the shards with the same reader,
``torch_balance.streams.tar.tar_samples`` (dicts of bytes, as webdataset's samples before
``.decode()``; webdataset's own reader, timed on the first 10 shards for comparison, is several
times slower and would hide the streams' overhead), and drains one epoch in this process,
decoding each label as a training loop would, all in one run:

- ``unbalanced``: the shards read once, nothing balanced (the reference for throughput);
- ``mode 1``: ``BalancedIterableDataset(shards, "over", manifest=...)``, the manifest from
  ``Manifest.scan_tar`` (timed apart);
- ``mode 2``: ``BalancedIterableDataset(shards, "over")``, labels seen as they flow;
- ``mode 3``: ``BalancedMix`` over the per-class shards, ``"over"``;
- ``rejection``: tf.data's ``rejection_resample`` rule, written here: running class
  frequencies ``p`` (counts so far), target ``t`` (uniform, what ``"over"`` asks), and each
  sample of class c kept with probability ``(t_c / p_c) / max_j (t_j / p_j)``.

Columns: the total-variation distance between the epoch's class mix and the target mix
(uniform), the same for the epoch's first N/10 samples emitted (how balanced a prefix is),
samples read per sample emitted, samples emitted per second, that rate relative to the
unbalanced stream, and the epoch's wall time relative to one unbalanced pass. With
``--repeat k`` every row runs in k rounds (each round runs every row once, so that a change of
load on a shared machine reaches every row) and the best time of each row is kept.

Then issue 23's set, where a pass is cut: 8 shards of 2,000 samples in all (5 classes, ratio
50), 2 ranks x 2 DataLoader workers (each rank's stream built with its ``rank=``, read by a
``DataLoader`` with 2 real workers): mode 2 cut at ``epoch_length=2000`` per rank, each rank's
distance to the target mix, for buffers of 1000, 100 and 10; and mode 1's cut and pad to equal
per-rank lengths, each class's count against the plan scaled to the padded length.

Run: ``python benchmarks/bench_streams.py`` (N = 1e6: about 3 minutes on 2 cores the first
time, most of it writing the shards).
"""

from __future__ import annotations

import argparse
import io
import sys
import tarfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import describe, long_tailed_labels

from torch_balance import BalancedIterableDataset, BalancedMix, Manifest
from torch_balance._rng import Stream, generator
from torch_balance.streams import Shards
from torch_balance.streams.sources import label_value
from torch_balance.streams.tar import tar_samples

NUM_CLASSES = 10
RATIO = 100.0
PAYLOAD = bytes(range(32))  # a tiny "image": the cost measured is the stream's, not decoding


def _member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def write_shards(folder: Path, keys: np.ndarray, labels: np.ndarray, shard_size: int) -> list[str]:
    """Tar shards of ``(key.bin, key.cls)`` samples, ``shard_size`` a shard; returns the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for number, begin in enumerate(range(0, keys.shape[0], shard_size)):
        path = folder / f"shard-{number:05d}.tar"
        paths.append(str(path))
        if path.exists():
            continue
        part = folder / f".{path.name}.part"
        with tarfile.open(part, "w", format=tarfile.USTAR_FORMAT) as tar:
            for key, label in zip(
                keys[begin : begin + shard_size].tolist(),
                labels[begin : begin + shard_size].tolist(),
                strict=True,
            ):
                _member(tar, f"{key:08d}.bin", PAYLOAD)
                _member(tar, f"{key:08d}.cls", str(label).encode())
        part.rename(path)
    return paths


def pipeline(urls: list[str]) -> Shards:
    return Shards(urls, tar_samples)


def drain_labels(stream: Iterable[Any], head: int = 0) -> tuple[Counter[int], float, Counter[int]]:
    """Drain one epoch as a training loop would; per-class counts, seconds, and the counts of
    the first ``head`` samples."""
    counts: Counter[int] = Counter()
    first: Counter[int] = Counter()
    start = time.perf_counter()
    for emitted, sample in enumerate(stream, 1):
        counts[label_value(sample["cls"])] += 1
        if emitted == head:
            first = Counter(counts)
    return counts, time.perf_counter() - start, first


def total_variation(counts: Counter[int], target: dict[int, float]) -> float:
    total = sum(counts.values())
    return 0.5 * sum(abs(counts.get(c, 0) / total - p) for c, p in target.items())


class RejectionResample:
    """tf.data's ``rejection_resample`` rule over a stream of ``(x, label)``: the class mix is
    estimated from the counts so far, and a sample of class c is kept with probability
    ``(t_c / p_c) / max_j (t_j / p_j)`` (classes not seen yet do not enter the max)."""

    def __init__(self, source: Iterable[Any], target: dict[int, float], seed: int = 0) -> None:
        self.source, self.target, self.seed = source, target, seed
        self.read = 0

    def __iter__(self) -> Any:
        seen: dict[int, int] = {}
        g = generator(self.seed, Stream.BENCH_SHUFFLE, 7)
        uniform: list[float] = []
        for sample in self.source:
            label = label_value(sample["cls"])
            self.read += 1
            seen[label] = seen.get(label, 0) + 1
            ratios = {c: self.target[c] * self.read / n for c, n in seen.items()}
            if not uniform:
                uniform = torch.rand(4096, generator=g, dtype=torch.float64).tolist()
            if uniform.pop() < ratios[label] / max(ratios.values()):
                yield sample


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=float, default=1e6, help="samples (default 1e6)")
    parser.add_argument("--shard-size", type=int, default=10_000)
    parser.add_argument("--buffer-size", type=int, default=1000)
    parser.add_argument("--cache", default="/tmp/torch_balance_bench_streams")
    parser.add_argument("--write-only", action="store_true", help="write the shards and stop")
    parser.add_argument(
        "--repeat", type=int, default=1, help="rounds of every row; the best time is kept"
    )
    args = parser.parse_args()
    n = int(args.n)

    labels = long_tailed_labels(n, num_classes=NUM_CLASSES, ratio=RATIO)
    keys = np.arange(n, dtype=np.int64)
    cache = Path(args.cache) / f"n{n}-s{args.shard_size}"
    start = time.perf_counter()
    mixed = write_shards(cache / "mixed", keys, labels, args.shard_size)
    by_class = {}
    for c in range(NUM_CLASSES):
        mine = np.flatnonzero(labels == c)
        by_class[c] = write_shards(cache / f"class-{c}", keys[mine], labels[mine], args.shard_size)
    written = time.perf_counter() - start
    if args.write_only:
        print(f"shards written in {written:.1f} s to {cache}")
        return

    counts = Counter(labels.tolist())
    target = {c: 1.0 / NUM_CLASSES for c in range(NUM_CLASSES)}  # what "over" asks
    print(
        f"N = {n:,} samples, {NUM_CLASSES} long-tailed classes (ratio {RATIO:g}), "
        f"{len(mixed)} mixed shards of {args.shard_size:,}, buffer {args.buffer_size}, "
        f"best of {args.repeat} round(s)"
    )
    print(describe(("torch", "numpy", "webdataset")))
    print(
        f"classes: {max(counts.values()):,} to {min(counts.values()):,} samples; "
        f"shards ready in {written:.1f} s (cached in {cache})"
    )
    print("command: python benchmarks/bench_streams.py " + " ".join(sys.argv[1:]))

    start = time.perf_counter()
    manifest = Manifest.scan_tar(mixed)
    scanned = time.perf_counter() - start
    print(
        f"Manifest.scan_tar of the {len(mixed)} shards: {scanned:.1f} s "
        f"({len(manifest) / scanned:,.0f} samples/s, label members only)"
    )

    reference_shards = mixed[:10]
    ours = _rate(pipeline(reference_shards))
    try:
        import webdataset as wds

        theirs = _rate(
            wds.WebDataset(reference_shards, shardshuffle=False).decode().to_tuple("bin", "cls")
        )
        print(
            f"webdataset's reader, WebDataset(urls).decode().to_tuple('bin', 'cls'), on the "
            f"first 10 shards: {theirs:,.0f} samples/s; tar_samples: {ours:,.0f} "
            f"({ours / theirs:.1f}x)"
        )
    except ImportError:
        print("webdataset not installed: its reader is not compared")

    head = n // 10
    Row = tuple[Counter[int], float, int, Counter[int]]

    def plain() -> Row:
        got, seconds, first = drain_labels(pipeline(mixed), head)
        return got, seconds, n, first

    def mode1() -> Row:
        stream = BalancedIterableDataset(
            pipeline(mixed), "over", manifest=manifest, buffer_size=args.buffer_size
        )
        got, seconds, first = drain_labels(stream, head)
        return got, seconds, stream.stats()["read"], first

    def mode2() -> Row:
        stream = BalancedIterableDataset(pipeline(mixed), "over", buffer_size=args.buffer_size)
        got, seconds, first = drain_labels(stream, head)
        return got, seconds, stream.stats()["read"], first

    def mode3() -> Row:
        sources = {c: _Counted(pipeline(urls)) for c, urls in by_class.items()}
        mix = BalancedMix(sources, "over", counts=dict(counts))
        got, seconds, first = drain_labels(mix, head)
        return got, seconds, sum(s.read for s in sources.values()), first

    def rejection() -> Row:
        stream = RejectionResample(pipeline(mixed), target)
        got, seconds, first = drain_labels(stream, head)
        return got, seconds, stream.read, first

    rows: list[tuple[str, Callable[[], Row]]] = [
        ("unbalanced stream (the shards read once)", plain),
        ('mode 1: BalancedIterableDataset(manifest=...), "over"', mode1),
        ('mode 2: BalancedIterableDataset, "over", online', mode2),
        ('mode 3: BalancedMix, per-class shards, "over"', mode3),
        ("rejection resampling (tf.data's rule)", rejection),
    ]
    print()
    print(
        f"| one epoch | emitted | TV to target | TV, first {head:,} | read / emitted | "
        "emitted/s | rate / unbalanced | epoch time / unbalanced pass |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    results: dict[str, list[Row]] = {name: [] for name, _ in rows}
    for _ in range(args.repeat):  # rounds of every row, so a change of load hits them all
        for name, run in rows:
            results[name].append(run())
    base_time = min(result[1] for result in results[rows[0][0]])
    base_rate = sum(results[rows[0][0]][0][0].values()) / base_time
    for name, _ in rows:
        got, _, read, first = results[name][0]  # the same in every round (deterministic)
        seconds = min(result[1] for result in results[name])  # the best round
        emitted = sum(got.values())
        rate = emitted / seconds
        tv = total_variation(got, target)
        tv_head = f"{total_variation(first, target):.4f}" if first else "-"
        print(
            f"| {name} | {emitted:,} | {tv:.4f} | {tv_head} | {read / emitted:.2f} | "
            f"{rate:,.0f} | {rate / base_rate:.2f}x | {seconds / base_time:.2f}x |",
            flush=True,
        )
    cut_streams(Path(args.cache))


def cut_streams(cache: Path) -> None:
    """Issue 23's set: a pass cut at epoch_length (mode 2) or to equal per-rank lengths
    (mode 1), 2 ranks x 2 DataLoader workers."""
    from torch.utils.data import DataLoader

    labels = long_tailed_labels(2000, num_classes=5, ratio=50.0)
    urls = write_shards(cache / "cut-2000", np.arange(2000, dtype=np.int64), labels, 250)
    plan = Counter(labels.tolist())
    target = {c: 1.0 / 5 for c in range(5)}  # what "over" asks
    print()
    print(
        f"Cut passes: {len(urls)} shards, 2,000 samples, 5 classes (ratio 50: "
        f"{max(plan.values())} to {min(plan.values())} samples), 2 ranks x 2 DataLoader workers"
    )
    print()
    print("| mode 2, epoch_length=2000 per rank | rank 0: TV to target | rank 1: TV to target |")
    print("|---|---:|---:|")
    for buffer_size in (1000, 100, 10):
        tvs = []
        for rank in range(2):
            stream = BalancedIterableDataset(
                pipeline(urls),
                "over",
                epoch_length=2000,
                buffer_size=buffer_size,
                num_replicas=2,
                rank=rank,
            )
            got, _, _ = drain_labels(DataLoader(stream, batch_size=None, num_workers=2))
            tvs.append(total_variation(got, target))
        print(f"| buffer_size={buffer_size} | {tvs[0]:.4f} | {tvs[1]:.4f} |", flush=True)
    manifest = Manifest.scan_tar(urls)
    print()
    print("| mode 1, cut and pad to equal lengths | per class: emitted - plan x padded / planned |")
    print("|---|---|")
    for epoch in range(4):
        got = Counter()
        planned = {}
        for rank in range(2):
            stream = BalancedIterableDataset(
                pipeline(urls), "over", manifest=manifest, num_replicas=2, rank=rank
            )
            stream.set_epoch(epoch)
            planned = stream.target_counts()
            part, _, _ = drain_labels(DataLoader(stream, batch_size=None, num_workers=2))
            got += part
        scale = sum(got.values()) / sum(planned.values())
        off = ", ".join(f"{c}: {got[c] - scale * k:+.1f}" for c, k in sorted(planned.items()))
        print(f"| epoch {epoch} | {off} |", flush=True)


def _rate(stream: Iterable[Any]) -> float:
    start = time.perf_counter()
    count = sum(1 for _ in stream)
    return count / (time.perf_counter() - start)


class _Counted(Shards):
    """Shards that count the samples read through them (mode 3's reads)."""

    def __init__(self, source: Shards) -> None:
        super().__init__(source.names, tar_samples)
        self.read = 0

    def open(self, shard: int) -> Iterator[Any]:
        for sample in super().open(shard):
            self.read += 1
            yield sample


if __name__ == "__main__":
    main()
