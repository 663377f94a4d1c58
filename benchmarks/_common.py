"""Shared by the benchmarks: where they ran, peak memory, the long-tailed labels, draining."""

from __future__ import annotations

import gc
import os
import platform
import threading
import time
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version

import numpy as np
import torch


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def describe(packages: tuple[str, ...] = ("torch", "numpy", "imbalanced-learn")) -> str:
    """One line: cores, CPU model, GPU (if any), torch threads and package versions."""
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    versions = []
    for name in packages:
        try:
            versions.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            versions.append(f"{name} (not installed)")
    return (
        f"{os.cpu_count()} cores, {cpu_model()}, {gpu}, torch threads {torch.get_num_threads()}, "
        f"Python {platform.python_version()}; " + ", ".join(versions)
    )


class PeakRSS:
    """Peak resident memory growth while the ``with`` block runs, sampled every 2 ms (psutil).

    ``growth`` is the highest RSS seen minus the RSS at entry, in bytes.
    """

    def __init__(self) -> None:
        import psutil

        self._process = psutil.Process()
        self._done = threading.Event()
        self.baseline = 0
        self.peak = 0
        self._watcher = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._done.is_set():
            self.peak = max(self.peak, self._process.memory_info().rss)
            time.sleep(0.002)

    def __enter__(self) -> PeakRSS:
        gc.collect()
        self.baseline = self.peak = self._process.memory_info().rss
        self._watcher.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._watcher.join()
        self.peak = max(self.peak, self._process.memory_info().rss)

    @property
    def growth(self) -> int:
        return self.peak - self.baseline


def long_tailed_labels(
    n: int, num_classes: int = 100, ratio: float = 100.0, seed: int = 0
) -> np.ndarray:
    """About ``n`` labels, class i with a share proportional to ratio**(-i/(C-1)), shuffled."""
    share = ratio ** (-np.arange(num_classes) / (num_classes - 1))
    counts = np.floor(n * share / share.sum()).astype(np.int64)
    counts[0] += n - counts.sum()
    labels = np.repeat(np.arange(num_classes, dtype=np.int64), counts)
    np.random.default_rng(seed).shuffle(labels)
    return labels


def drain(iterable: object) -> int:
    """Iterate to the end (as a training loop would), returning the number of items."""
    count = 0
    for _ in iterable:  # type: ignore[attr-defined]
        count += 1
    return count


def best_time(fn: Callable[[], int], repeats: int) -> tuple[float, int]:
    """The shortest of ``repeats`` timed calls of ``fn`` (garbage collected before each), and
    what the last call returned (an epoch's length)."""
    best, length = float("inf"), 0
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter()
        length = fn()
        best = min(best, time.perf_counter() - start)
    return best, length
