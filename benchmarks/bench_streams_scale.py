"""Balanced streams at scale, simulated: every reader's plan computed in this one process.

A manifest of N samples in S shards over C long-tailed classes (class c's share proportional
to ``RATIO ** (-c / (C - 1))``, ratio 1,000) is written as a binary manifest (``.tbm``), shard
by shard, then read back with ``Manifest.from_file`` (memory-mapped). Over it, a mode 1 stream
(``"sqrt"``) for R ranks x W workers:

- one reader's set-up (``BalancedIterableDataset.reader_plan``: its shards' copies, the cut or
  pad to its length): time, and memory as tracemalloc's peak (numpy's buffers included) and
  the growth of resident memory; the same reader at N / 10 and the ratio (its cost follows
  its own shards, not N);
- exactness over every reader (``--check``; at N = 1e8 that is S shards' worth of copies,
  minutes on 2 cores): the sum of every reader's planned copies per class against the plan,
  and every rank's total after the cut and pad;
- data read per epoch: samples each reader reads (and decodes) over N, and the most readers
  that open one shard, for S >= readers and S < readers;
- ``Manifest.from_file`` of the N labels: time, memory, and file bytes per sample, for the
  file as it is written now (version 2: codes of ``ceil(log2(C))`` bits, narrow prefix rows)
  and, in the same run, the same manifest in the version 1 layout (``uint16`` codes,
  ``int64`` rows every 64th of the codes), with one reader's set-up over each;
- the same reader's set-up with ``replacement=True`` (its shards' part of the epoch's
  multinomial: the binomials of the tree's nodes above its shards, then within them), at N / 10
  and N, beside the reader without replacement;
- for scale, what one reader cost before this layout: the global epoch drawn as
  ``BalancedSampler`` draws it (``--compare``, at N / 10), the copies of every sample, without
  and with replacement (with replacement the reader also built the label index of the whole
  collection for its plan);
- ``BalancedMix`` per class, one reader's class sequence for a global epoch of N / 10 and N
  (C classes, ``"sqrt"`` with ``num_samples``): its set-up (time to its first chunk of
  classes), its whole pass's classes, tracemalloc's peak and the growth of peak resident
  memory, against the construction it replaced (the whole epoch's sequence, one
  ``randperm`` of it, then the reader's part), both in this run.

Run: ``python benchmarks/bench_streams_scale.py`` (N = 1e8, S = 10,000, C = 1,000,
R = 1,024, W = 8); ``--samples 1e7`` on a small machine; ``--classes 65536`` for the widest
codes that fit 2 bytes; ``--mix-only`` for the ``BalancedMix`` section alone. The manifests
are written under ``--cache`` (about 3.3 bytes per sample of N, the version 1 copy included).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import struct
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import describe

from torch_balance import BalancedIterableDataset, BalancedMix, make_plan
from torch_balance._rng import Stream, generator
from torch_balance.labels.index import CountIndex, LabelIndex
from torch_balance.sharding import iter_shard
from torch_balance.streams import Manifest, Shards
from torch_balance.streams.copies import epoch_copies, reader_copies
from torch_balance.streams.manifest_file import ManifestWriter, class_checkpoints, code_dtype
from torch_balance.streams.mix import class_codes
from torch_balance.streams.readers import shard_order
from torch_balance.streams.sources import Slot, reader_parts

RATIO = 1000.0
MIB = 1 << 20


def rss() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measured(run: Callable[[], Any], again: Callable[[], Any] | None = None) -> tuple[Any, ...]:
    """``run()``'s result and seconds (untraced), then the tracemalloc peak and RSS growth
    (MiB) of ``again()`` (default ``run`` again): tracemalloc slows every allocation down."""
    gc.collect()
    start = time.perf_counter()
    out = run()
    seconds = time.perf_counter() - start
    gc.collect()
    before = rss()
    tracemalloc.start()
    (again or run)()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return out, seconds, peak / MIB, (rss() - before) / MIB


def write_manifest(path: Path, samples: int, shards: int, classes: int, seed: int) -> None:
    """A long-tailed binary manifest, written one shard at a time. Where the rarest class
    expects fewer than 20 samples (it could be missing), each shard's first ``ceil(C / S)``
    samples take the classes in turn, so every class is there."""
    if path.exists():
        return
    rng = np.random.default_rng(seed)
    weights = RATIO ** (-np.arange(max(classes, 2)) / (max(classes, 2) - 1))[:classes]
    cdf = np.cumsum(weights / weights.sum())
    bounds = np.linspace(0, samples, shards + 1).astype(np.int64)
    turn = -(-classes // shards) if samples * weights[-1] / weights.sum() < 20 else 0
    with ManifestWriter(path, list(range(classes))) as writer:
        for s in range(shards):
            size = int(bounds[s + 1] - bounds[s])
            codes = np.searchsorted(cdf, rng.random(size)).clip(0, classes - 1)
            first = min(turn, size)
            codes[:first] = (s * turn + np.arange(first)) % classes
            writer.add(f"shard-{s:06d}.tar", codes)


def write_version_1(path: Path, manifest: Manifest) -> None:
    """The same manifest in the version 1 layout (the one before: codes as ``uint8``/``uint16``,
    ``int64`` prefix rows every 64th of the codes' bytes), for the A/B in one run."""
    if path.exists():
        return
    classes, shards, total = len(manifest.classes), manifest.num_shards, len(manifest)
    dtype = code_dtype(classes).newbyteorder("<")
    stride = max(1, -(-512 * shards * classes // max(total * dtype.itemsize, 1)))
    rows = class_checkpoints(manifest.packed.read, manifest.offsets, classes, stride)
    partial = path.with_suffix(".partial")
    with open(partial, "wb") as out:
        out.write(b"TBMANIF1" + bytes(56))
        for a in range(0, total, 1 << 22):
            out.write(manifest.packed.read(a, min(a + (1 << 22), total)).astype(dtype).tobytes())
        where = {}
        for key, array in (("offsets", manifest.offsets), ("checkpoints", rows)):
            out.write(bytes(-out.tell() % 8))
            where[key] = out.tell()
            out.write(array.astype("<i8").tobytes())
        header = {
            "version": 1,
            "dtype": dtype.name,
            "num_shards": shards,
            "num_samples": total,
            "num_classes": classes,
            "stride": stride,
            "rows": len(rows),
            "codes_at": 64,
            "offsets_at": where["offsets"],
            "checkpoints_at": where["checkpoints"],
            "fingerprint": manifest.fingerprint(),
            "classes": manifest.classes.tolist(),
            "names": manifest.names,
        }
        text = json.dumps(header).encode()
        out.write(text + struct.pack("<Q", len(text)) + b"TBMANIF1")
    partial.replace(path)


def stream_over(
    manifest: Manifest, world: int, replacement: bool = False
) -> BalancedIterableDataset:
    source = Shards(manifest.names, lambda name: [])  # names only: nothing is read here
    return BalancedIterableDataset(
        source,
        "sqrt",
        manifest=manifest,
        num_replicas=world,
        rank=0,
        seed=0,
        replacement=replacement,
    )


def one_reader(path: Path, world: int, workers: int, replacement: bool = False) -> dict[str, float]:
    """The median over three readers (rank R/2, R/4 and R-1, the last worker) of one epoch's
    set-up, after one warm-up reader (imports and first calls)."""
    manifest = Manifest.from_file(path)
    stream = stream_over(manifest, world, replacement)
    stream.reader_plan(1, Slot(0, world, 0, workers))
    runs = []
    for rank in (world // 2, world // 4, world - 1):
        slot = Slot(rank, world, workers - 1, workers)
        plan, seconds, peak, grown = measured(
            lambda slot=slot: stream.reader_plan(0, slot),
            lambda slot=slot: stream.reader_plan(2, slot),  # another epoch: not the cached one
        )
        runs.append((seconds, peak, grown, plan.codes.shape[0], plan.quota))
    seconds, peak, grown, samples, quota = sorted(runs)[1]
    return {"seconds": seconds, "peak": peak, "rss": grown, "samples": samples, "quota": quota}


def layouts_a_b(new: Path, old: Path, world: int, workers: int) -> tuple[float, float]:
    """Seconds a reader's set-up takes over each file, on average over 16 readers (ranks
    spread over the world), each timed over both files in turn, twice (untraced)."""
    streams = [stream_over(Manifest.from_file(path), world) for path in (new, old)]
    for stream in streams:
        stream.reader_plan(1, Slot(0, world, 0, workers))  # warm up
    spent = [0.0, 0.0]
    for round_ in range(2):
        for rank in range(0, world, max(1, world // 16)):
            slot = Slot(rank, world, rank % workers, workers)
            for i in (0, 1) if (rank + round_) % 2 else (1, 0):
                start = time.perf_counter()
                streams[i].reader_plan(3 + round_, slot)
                spent[i] += time.perf_counter() - start
    runs = 2 * len(range(0, world, max(1, world // 16)))
    return spent[0] / runs, spent[1] / runs


def check_all(
    path: Path, world: int, workers: int, replacement: bool = False
) -> tuple[bool, bool, int]:
    """Exact per-class totals over every reader (before the cut and pad), equal rank totals
    after it, and the copies planned over all readers."""
    manifest = Manifest.from_file(path)
    targets = make_plan(CountIndex(manifest.counts()), "sqrt").targets(0)
    order = shard_order(manifest.num_shards, 0, 0)
    per_class = np.zeros(len(manifest.classes), dtype=np.int64)
    for worker in range(workers):
        for rank in range(world):
            parts = reader_parts(order, Slot(rank, world, worker, workers))
            found = reader_copies(manifest, parts, targets, 0, 0, replacement=replacement)
            for codes, copies in found:
                per_class += np.bincount(
                    codes, weights=copies, minlength=per_class.shape[0]
                ).astype(np.int64)
    stream = stream_over(manifest, world, replacement)
    ranks = {
        sum(stream.reader_plan(0, Slot(r, world, w, workers)).quota for w in range(workers))
        for r in (0, world // 2, world - 1)
    }
    return bool((per_class == targets).all()), len(ranks) == 1, int(per_class.sum())


def data_read(sizes: np.ndarray, world: int, workers: int) -> tuple[float, int]:
    """Samples read over N in one epoch, and the most readers opening one shard."""
    order = list(range(sizes.shape[0]))
    read = 0
    opened = np.zeros(sizes.shape[0], dtype=np.int64)
    for rank in range(world):
        for worker in range(workers):
            for shard, start, step in reader_parts(order, Slot(rank, world, worker, workers)):
                read += len(range(start, int(sizes[shard]), step))
                opened[shard] += 1
    return read / int(sizes.sum()), int(opened.max())


def old_class_sequence(
    targets: np.ndarray, seed: int, epoch: int, slot: Slot, drop_last: bool
) -> list[int]:
    """``BalancedMix``'s class sequence as every reader built it before: the whole epoch's
    classes (``np.repeat``), one ``randperm`` of the epoch, then the reader's part."""
    codes = torch.from_numpy(np.repeat(np.arange(targets.shape[0]), targets))
    order = torch.randperm(codes.shape[0], generator=generator(seed, Stream.STREAM_MIX, epoch))
    chunks = iter_shard(codes, order, slot.num_replicas, slot.rank, drop_last, helper=False)
    out: list[int] = []
    for chunk in chunks:
        out.extend(chunk)
    return out[slot.worker :: slot.num_workers]


def peak_rss() -> int:
    """This process's peak resident memory (VmHWM), bytes."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def reset_peak_rss() -> bool:
    """Start the peak-RSS count again from now (Linux's ``clear_refs``); False where refused."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def mix_reader(run: Callable[[], Any], repeat: int = 1) -> dict[str, float]:
    """Seconds of ``run()`` (untraced, the best of ``repeat``), then tracemalloc's peak and
    the growth of peak RSS of ``run()`` again (MiB; RSS catches torch's buffers, which
    tracemalloc does not)."""
    seconds = float("inf")
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        run()
        seconds = min(seconds, time.perf_counter() - start)
    gc.collect()
    resettable = reset_peak_rss()
    before = rss()
    tracemalloc.start()
    run()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    grown = (peak_rss() - before) / MIB if resettable else float("nan")
    return {"seconds": seconds, "peak": peak / MIB, "rss": grown}


def mix_section(sizes: list[int], classes: int, world: int, workers: int) -> None:
    """One ``BalancedMix`` per-class reader (rank R/2, the last worker) before and after, at
    each global epoch of ``sizes`` over ``world`` ranks, and at the first with a tenth of
    the ranks (the reader's own samples as at the last)."""
    print(
        f"\n## BalancedMix per class: one reader's class sequence ({classes:,} classes, "
        f"'sqrt', {workers} workers per rank, rank R/2, worker {workers - 1}; after: best of 20)"
    )
    weights = RATIO ** (-np.arange(classes) / (classes - 1))
    print(
        "| global epoch | ranks | reader's samples | after: first chunk | after: whole pass | "
        "after: peak (tracemalloc) | after: peak RSS + | before: whole pass | "
        "before: peak (tracemalloc) | before: peak RSS + | time before / after |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    found = {}
    runs = [(size, world) for size in sizes]
    if len(sizes) == 2 and world >= 10:
        runs.insert(1, (sizes[0], world // 10))
    for size, ranks in runs:
        slot = Slot(ranks // 2, ranks, workers - 1, workers)
        counts = {c: max(1, int(size * w / weights.sum())) for c, w in enumerate(weights)}
        sources: dict[int, list[Any]] = {c: [] for c in range(classes)}
        mix = BalancedMix(sources, "sqrt", counts=counts, num_samples=size, seed=0)
        targets = mix.plan.targets(0)
        assert int(targets.sum()) == size

        def first(targets: np.ndarray = targets, slot: Slot = slot) -> Any:
            return next(class_codes(targets, 0, 0, slot, False))

        def after(targets: np.ndarray = targets, slot: Slot = slot) -> int:
            return sum(int(c.shape[0]) for c in class_codes(targets, 0, 0, slot, False))

        def before(targets: np.ndarray = targets, slot: Slot = slot) -> int:
            return len(old_class_sequence(targets, 0, 0, slot, False))

        first()  # warm-up: imports and first calls
        setup = mix_reader(first, repeat=20)
        new, old = mix_reader(after, repeat=20), mix_reader(before)
        samples = after()
        assert samples == before()
        found[size, ranks] = new
        print(
            f"| {size:,} | {ranks:,} | {samples:,} | {setup['seconds'] * 1000:.1f} ms | "
            f"{new['seconds'] * 1000:.1f} ms | {new['peak']:.2f} MiB | {new['rss']:.1f} MiB | "
            f"{old['seconds'] * 1000:.0f} ms | {old['peak']:.0f} MiB | {old['rss']:.0f} MiB | "
            f"x{old['seconds'] / new['seconds']:.0f} |",
            flush=True,
        )
    if len(sizes) == 2:
        big = found[sizes[1], world]
        for ranks in sorted({r for size, r in runs if size == sizes[0]}, reverse=True):
            small = found[sizes[0], ranks]
            print(
                f"after, N={sizes[1]:,} on {world:,} ranks over N={sizes[0]:,} on {ranks:,}: "
                f"time x{big['seconds'] / small['seconds']:.2f}, "
                f"peak memory x{big['peak'] / small['peak']:.2f}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=float, default=1e8)
    parser.add_argument("--shards", type=int, default=10_000)
    parser.add_argument("--classes", type=int, default=1_000)
    parser.add_argument("--ranks", type=int, default=1_024)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--check", action="store_true", help="exactness over every reader")
    parser.add_argument("--compare", action="store_true", help="the global draw, at N / 10")
    parser.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "tb-scale"))
    parser.add_argument("--mix-only", action="store_true", help="the BalancedMix section alone")
    args = parser.parse_args()
    n, shards, classes = int(args.samples), args.shards, args.classes
    world, workers = args.ranks, args.workers
    if args.mix_only:
        print(describe(("torch", "numpy")))
        print("command: python benchmarks/bench_streams_scale.py " + " ".join(sys.argv[1:]))
        print(f"load average: {os.getloadavg()[0]:.2f} (1 min)")
        mix_section([n // 10, n], classes, world, workers)
        return
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    print(describe(("torch", "numpy")))
    print(
        f"N={n:,} in {shards:,} shards, {classes:,} classes (ratio {RATIO:.0f}), "
        f"{world:,} ranks x {workers} workers = {world * workers:,} readers, 'sqrt'\n"
    )
    paths = {}
    for size in (n // 10, n):
        paths[size] = cache / f"m-{size}-{shards}-{classes}.tbm"
        start = time.perf_counter()
        write_manifest(paths[size], size, shards, classes, seed=1)
        print(f"manifest of {size:,}: written in {time.perf_counter() - start:.1f} s (cached)")
    # N / 10 in shards of the same size, for a tenth of the ranks: the reader's own data the same
    same_size = cache / f"m-{n // 10}-{shards // 10}-{classes}.tbm"
    write_manifest(same_size, n // 10, shards // 10, classes, seed=1)

    old = cache / f"m-{n}-{shards}-{classes}-v1.tbm"
    start = time.perf_counter()
    write_version_1(old, Manifest.from_file(paths[n]))
    print(
        f"the same manifest of {n:,} in the version 1 layout: {time.perf_counter() - start:.1f} s"
    )

    print("\n## Manifest.from_file")
    opened = {}
    for name, size, path in [(f"N={s:,}", s, p) for s, p in paths.items()] + [
        (f"N={n:,}, version 1", n, old)
    ]:
        manifest, seconds, peak, grown = measured(lambda path=path: Manifest.from_file(path))
        manifest.class_prefix(manifest.num_shards // 2)  # reads some shards' codes
        bytes_per = path.stat().st_size / size
        opened[name] = seconds
        print(
            f"{name}: {seconds * 1000:.1f} ms, tracemalloc peak {peak:.2f} MiB, "
            f"RSS +{grown:.1f} MiB, file {bytes_per:.4f} bytes per sample "
            f"({manifest.code_bits}-bit codes, rows every {manifest.stride} shards)"
        )
        del manifest
    print(
        f"N={n:,}: file x{paths[n].stat().st_size / old.stat().st_size:.3f} the version 1 "
        f"file's bytes, from_file x{opened[f'N={n:,}'] / opened[f'N={n:,}, version 1']:.2f} "
        "its time"
    )

    print("\n## one reader's set-up (median of 3 readers)")
    results = {size: one_reader(path, world, workers) for size, path in paths.items()}
    for size, r in results.items():
        print(
            f"N={size:,}: {r['seconds'] * 1000:.1f} ms, tracemalloc peak {r['peak']:.2f} MiB, "
            f"RSS +{r['rss']:.1f} MiB; reads {r['samples']:,.0f} samples, emits {r['quota']:,.0f}"
        )
    small, big = results[n // 10], results[n]
    before = one_reader(old, world, workers)
    print(
        f"N={n:,}, version 1 layout: {before['seconds'] * 1000:.1f} ms, tracemalloc peak "
        f"{before['peak']:.2f} MiB, RSS +{before['rss']:.1f} MiB; this layout's reader: "
        f"time x{big['seconds'] / before['seconds']:.2f}, peak memory "
        f"x{big['peak'] / before['peak']:.2f}"
    )
    new_s, old_s = layouts_a_b(paths[n], old, world, workers)
    print(
        f"N={n:,}, 16 readers' set-ups alternating between the layouts, twice: version 2 "
        f"{new_s * 1000:.1f} ms, version 1 {old_s * 1000:.1f} ms a reader (x{new_s / old_s:.2f})"
    )
    print(
        f"N={n:,} over N={n // 10:,}, both in {shards:,} shards: "
        f"time x{big['seconds'] / small['seconds']:.2f}, "
        f"peak memory x{big['peak'] / small['peak']:.2f} (the reader's own samples x10)"
    )
    weak = one_reader(same_size, max(1, world // 10), workers)
    print(
        f"N={n // 10:,} in {shards // 10:,} shards, {max(1, world // 10):,} ranks: "
        f"{weak['seconds'] * 1000:.1f} ms, peak {weak['peak']:.2f} MiB, reads "
        f"{weak['samples']:,.0f}; N={n:,} over it (shards of the same size, the reader's own "
        f"samples about the same): time x{big['seconds'] / weak['seconds']:.2f}, "
        f"peak memory x{big['peak'] / weak['peak']:.2f}"
    )

    print("\n## one reader's set-up with replacement=True (median of 3 readers)")
    drawn = {size: one_reader(path, world, workers, True) for size, path in paths.items()}
    for size, r in drawn.items():
        plain = results[size]
        print(
            f"N={size:,}: {r['seconds'] * 1000:.1f} ms, tracemalloc peak {r['peak']:.2f} MiB, "
            f"RSS +{r['rss']:.1f} MiB; reads {r['samples']:,.0f}, emits {r['quota']:,.0f}; "
            f"over the reader without replacement: time x{r['seconds'] / plain['seconds']:.2f}, "
            f"peak memory x{r['peak'] / plain['peak']:.2f}"
        )
    small_drawn, big_drawn = drawn[n // 10], drawn[n]
    print(
        f"N={n:,} over N={n // 10:,}, both in {shards:,} shards: "
        f"time x{big_drawn['seconds'] / small_drawn['seconds']:.2f}, "
        f"peak memory x{big_drawn['peak'] / small_drawn['peak']:.2f}"
    )
    weak_drawn = one_reader(same_size, max(1, world // 10), workers, True)
    print(
        f"N={n // 10:,} in {shards // 10:,} shards, {max(1, world // 10):,} ranks: "
        f"{weak_drawn['seconds'] * 1000:.1f} ms, peak {weak_drawn['peak']:.2f} MiB; "
        f"N={n:,} over it (shards of the same size): "
        f"time x{big_drawn['seconds'] / weak_drawn['seconds']:.2f}, "
        f"peak memory x{big_drawn['peak'] / weak_drawn['peak']:.2f}"
    )

    print("\n## data read per epoch (samples read over N; most readers opening a shard)")
    for count in (shards, world * workers, max(1, (world * workers) // 7)):
        sizes = np.full(count, n // count, dtype=np.int64)
        ratio, most = data_read(sizes, world, workers)
        bound = -(-(world * workers) // count)
        print(
            f"{count:,} shards for {world * workers:,} readers: {ratio:.2f}x read, "
            f"at most {most} readers per shard (bound ceil(readers/shards) = {bound})"
        )

    if args.check:
        print("\n## exactness over every reader (N's manifest)")
        for replacement in (False, True):
            start = time.perf_counter()
            exact, equal, total = check_all(paths[n], world, workers, replacement)
            seconds = time.perf_counter() - start
            print(
                f"replacement={replacement}: per-class copies over all readers equal the plan: "
                f"{exact} ({total:,} copies); rank totals equal: {equal}; {seconds:.1f} s"
            )

    if args.compare:
        from torch_balance import BalancedSampler

        print("\n## before: the global epoch each reader drew (N / 10), without, with replacement")
        manifest = Manifest.from_file(paths[n // 10])
        labels = np.asarray(manifest.codes)

        def global_epoch() -> Any:
            sampler = BalancedSampler(labels, "sqrt", seed=0)
            return np.bincount(sampler.epoch_indices(0).numpy(), minlength=labels.shape[0])

        _, seconds, peak, grown = measured(global_epoch)
        print(
            f"N={n // 10:,}: {seconds * 1000:.0f} ms, tracemalloc peak {peak:.1f} MiB, "
            f"RSS +{grown:.1f} MiB; this layout's reader: "
            f"x{seconds / small['seconds']:.0f} faster, x{peak / small['peak']:.0f} less memory"
        )

        # what a replacement=True reader ran before: once per stream, its plan over the label
        # index of the whole collection; then every epoch, the whole epoch's draw
        fresh = Manifest.from_file(paths[n // 10])
        plan, built, held, _ = measured(lambda: make_plan(LabelIndex(fresh.labels), "sqrt"))
        _, seconds, peak, grown = measured(
            lambda: epoch_copies(plan, 0, 0, replacement=True),
            lambda: epoch_copies(plan, 0, 1, replacement=True),
        )
        print(
            f"N={n // 10:,}, replacement=True: {seconds * 1000:.0f} ms, tracemalloc peak "
            f"{peak:.1f} MiB, RSS +{grown:.1f} MiB per epoch (and once per stream, the plan "
            f"over the label index: {built * 1000:.0f} ms, peak {held:.1f} MiB); this layout's "
            f"reader: x{seconds / small_drawn['seconds']:.0f} faster, "
            f"x{peak / small_drawn['peak']:.0f} less memory"
        )
    mix_section([n // 10, n], classes, world, workers)
    top = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\nmax RSS of this process: {top:.0f} MiB")


if __name__ == "__main__":
    main()
