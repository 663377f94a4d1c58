"""Rare-class sampling on a synthetic long-tailed segmentation set that this script writes.

The set: ``--images`` label masks of ``--height`` x ``--width`` PNG (palette and greyscale
alternating), with four large "stuff" classes as horizontal bands (0 sky, 1 building,
2 vegetation, 3 road) and six rare classes 4-9 as small discs (radius 6 to 20 pixels) that
appear in 40%, 20%, 10%, 5%, 2.5% and 1.25% of the images.

Two measurements, in the same run:

1. **Crops that hold each rare class**: ``--picks`` training crops of ``--crop`` pixels,
   drawn three ways: uniform images with uniform crops (a plain ``RandomSampler`` and random
   crop, the baseline), ``RareClassSampler`` with uniform crops, and ``RareClassSampler`` with
   ``RareClassCrop`` (the class reaches the crop). For each rare class: the share of crops
   that hold at least one of its pixels, and the ratio to the baseline.
2. **The mask scan** (``class_pixel_counts``, every mask decoded once and histogrammed)
   against the floor: decoding every mask once with PIL (``Image.open(p).load()``), serially
   and on the same threads as the scan; on the set above and on ``--scan-images`` masks of
   ``--scan-height`` x ``--scan-width`` (default 150 of 1024x2048, Cityscapes' size). Best
   of ``--repeats``, the rows timed in turn so that a change in load on a shared machine
   hits them alike; speed ratio = floor time / scan time (1.0: as fast as decoding alone),
   also in the thread's CPU time for the 1-thread rows (what other jobs on a shared machine
   disturb least).
   One more row decodes as the scan does, into one reused buffer (no image memory allocated
   per mask), to show what the counting itself costs beside the same decode.

Run: ``python benchmarks/bench_rare_class.py`` (about a minute on 2 cores).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from _common import best_time, describe

from torch_balance import RareClassCrop, RareClassSampler, class_pixel_counts
from torch_balance._rng import Stream, generator
from torch_balance.labels.masks import _decode, _Scan

NUM_CLASSES = 10
RARE = {4: 0.4, 5: 0.2, 6: 0.1, 7: 0.05, 8: 0.025, 9: 0.0125}
PALETTE = [v for i in range(256) for v in (i * 37 % 256, i * 91 % 256, i * 53 % 256)]


def write_set(root: Path, n: int, height: int, width: int, seed: int = 0) -> list[Path]:
    rng = np.random.default_rng(seed)
    rows = np.arange(height)[:, None]
    cols = np.arange(width)[None, :]
    paths = []
    for i in range(n):
        cuts = np.sort(rng.integers(height // 8, height - height // 8, size=3))
        mask = np.searchsorted(cuts, np.arange(height), side="right").astype(np.uint8)
        mask = np.repeat(mask[:, None], width, axis=1)
        for c, share in RARE.items():
            if rng.random() < share:
                r = int(rng.integers(6, 21))
                y, x = int(rng.integers(r, height - r)), int(rng.integers(r, width - r))
                mask[(rows - y) ** 2 + (cols - x) ** 2 <= r * r] = c
        image = Image.fromarray(mask, mode="L")
        if i % 2:
            image = image.convert("P")
            image.putpalette(PALETTE)
        path = root / f"{i:05d}.png"
        image.save(path)
        paths.append(path)
    return paths


def crop_shares(masks: list[np.ndarray], counts: np.ndarray, args: argparse.Namespace) -> None:
    crop = RareClassCrop(args.crop, max_tries=10, min_pixels=1, seed=1)
    sampler = RareClassSampler(counts, min_pixels=args.min_pixels, num_samples=args.picks, seed=0)
    g = generator(0, Stream.BENCH_SHUFFLE, 0)
    uniform_images = torch.randint(len(masks), (args.picks,), generator=g).tolist()
    picks = list(sampler)
    methods = {
        "uniform image, uniform crop": [
            (*crop.window(masks[i], None, g), masks[i]) for i in uniform_images
        ],
        "RareClassSampler, uniform crop": [
            (*crop.window(masks[p], None, g), masks[p]) for p in picks
        ],
        "RareClassSampler + RareClassCrop": [
            (*crop.window(masks[p], p.class_id, crop.generator_for(p)), masks[p]) for p in picks
        ],
    }
    held: dict[str, np.ndarray] = {}
    for name, windows in methods.items():
        hits = np.zeros(NUM_CLASSES, dtype=np.int64)
        for top, left, h, w, mask in windows:
            present = np.bincount(mask[top : top + h, left : left + w].ravel(), minlength=256)
            hits += present[:NUM_CLASSES] > 0
        held[name] = hits / len(windows)
    images_with = (counts > 0).sum(axis=0)
    pixel_share = counts.sum(axis=0) / counts.sum()
    print(
        f"\n## Crops holding each rare class ({args.picks} crops of {args.crop}x{args.crop} "
        f"from {len(masks)} masks of {args.height}x{args.width}; RareClassSampler T=0.01, "
        f"min_pixels={args.min_pixels}; RareClassCrop max_tries=10)\n"
    )
    names = list(methods)
    header = "| class | images | pixel share | P(c) | " + " | ".join(names) + " |"
    print(header)
    print("|---:|---:|---:|---:|" + "---:|" * len(names))
    base = held[names[0]]
    for c in RARE:
        cells = [
            f"{held[n][c]:.3f}" + (f" ({held[n][c] / base[c]:.1f}x)" if base[c] else "")
            for n in names
        ]
        print(
            f"| {c} | {images_with[c]} | {pixel_share[c]:.2e} | "
            f"{sampler.class_probabilities[c]:.3f} | " + " | ".join(cells) + " |"
        )
    print(f"\nimages drawn per class by RareClassSampler: {sampler.class_counts(0)}")


def decode(path: Path) -> None:
    with Image.open(path) as image:
        image.load()


def scan_speed(paths: list[Path], size: tuple[int, int], args: argparse.Namespace) -> None:
    threads = min(8, os.cpu_count() or 1)

    def floor_serial() -> int:
        for path in paths:
            decode(path)
        return len(paths)

    def floor_threads() -> int:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(decode, paths))
        return len(paths)

    buffers = _Scan(NUM_CLASSES, np.arange(256))

    def decode_reused() -> int:
        for path in paths:
            with Image.open(path) as image:
                _decode(image, buffers)
        return len(paths)

    def scan(n: int) -> int:
        return class_pixel_counts(paths, NUM_CLASSES, num_threads=n, progress=False).shape[0]

    reused = "PIL decode into one reused buffer (the scan's decode), 1 thread"
    runs = {
        "floor: PIL decode, 1 thread": floor_serial,
        f"floor: PIL decode, {threads} threads": floor_threads,
        reused: decode_reused,
        "class_pixel_counts, num_threads=1": lambda: scan(1),
        f"class_pixel_counts, default ({threads} threads)": lambda: scan(threads),
    }
    times = dict.fromkeys(runs, float("inf"))
    cpu = dict.fromkeys(runs, float("inf"))  # this thread's CPU time, read on 1-thread rows
    for _ in range(args.repeats):  # round robin: a change in the machine's load hits every row
        for name, fn in runs.items():
            gc.collect()
            start, start_cpu = time.perf_counter(), time.thread_time()
            fn()
            times[name] = min(times[name], time.perf_counter() - start)
            cpu[name] = min(cpu[name], time.thread_time() - start_cpu)
    cache = Path(tempfile.mkdtemp()) / "counts.npz"
    class_pixel_counts(paths, NUM_CLASSES, cache=cache, progress=False)
    times["class_pixel_counts, from its cache"] = best_time(
        lambda: class_pixel_counts(paths, NUM_CLASSES, cache=cache).shape[0], args.repeats
    )[0]
    floor = "floor: PIL decode, 1 thread"
    floors = {1: times[floor], threads: times[f"floor: PIL decode, {threads} threads"]}
    print(
        f"\n## Mask scan: {len(paths)} masks of {size[0]}x{size[1]}, best of {args.repeats} "
        "(the rows timed in turn)\n"
    )
    print(
        "| run | seconds | masks/s | speed vs the floor on as many threads "
        "| CPU seconds (1 thread) | speed vs the floor in CPU time |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for name, seconds in times.items():
        ratio = cpu_seconds = cpu_ratio = ""
        if name.startswith("class_pixel_counts, num_threads=1"):
            ratio = f"{floors[1] / seconds:.2f}x"
            cpu_ratio = f"{cpu[floor] / cpu[name]:.2f}x"
        elif name.startswith("class_pixel_counts, default"):
            ratio = f"{floors[threads] / seconds:.2f}x"
        if "1 thread" in name or "num_threads=1" in name:
            cpu_seconds = f"{cpu[name]:.3f}"
        print(
            f"| {name} | {seconds:.3f} | {len(paths) / seconds:,.0f} | {ratio} "
            f"| {cpu_seconds} | {cpu_ratio} |"
        )
    scan1 = "class_pixel_counts, num_threads=1"
    print(
        f"\nthe 1-thread scan at {times[reused] / times[scan1]:.2f}x the speed of its own decode "
        f"alone ({reused}); {cpu[reused] / cpu[scan1]:.2f}x in CPU time"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--picks", type=int, default=4000)
    parser.add_argument("--min-pixels", type=int, default=150)
    parser.add_argument("--scan-images", type=int, default=150)
    parser.add_argument("--scan-height", type=int, default=1024)
    parser.add_argument("--scan-width", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(describe(("torch", "numpy", "pillow")))
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        paths = write_set(Path(folder), args.images, args.height, args.width)
        print(f"wrote {len(paths)} masks in {time.perf_counter() - start:.1f} s")
        counts = class_pixel_counts(paths, NUM_CLASSES, progress=False)
        masks = [np.asarray(Image.open(p)) for p in paths]
        crop_shares(masks, counts, args)
        del masks
        scan_speed(paths, (args.height, args.width), args)
    if args.scan_images:  # the size of Cityscapes' masks
        with tempfile.TemporaryDirectory() as folder:
            big = write_set(Path(folder), args.scan_images, args.scan_height, args.scan_width)
            scan_speed(big, (args.scan_height, args.scan_width), args)


if __name__ == "__main__":
    main()
