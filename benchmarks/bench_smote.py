"""Benchmark: torch_balance.SMOTE against imbalanced-learn's SMOTE on the same embeddings.

Long-tailed Gaussian-cluster embeddings: 10 classes, imbalance ratio 100 (n_c proportional to
100**(-c/9)), d=128, at N=20k and 100k. Both over-sample with ``sampling_strategy="auto"``
and ``k_neighbors=5``; per-class counts are asserted identical. Time is the best of a few
repeats in this process; peak memory is the peak RSS of a fresh child process during the call
(its peak is reset just before, through /proc/self/clear_refs), and the growth over the RSS
just before it.

The GEMM row is the floor of an exact search by matrix products: for every class that gets
new rows, its distinct base rows (taken from torch_balance's ``base_indices_``) times all of
its rows, ``[q, d] @ [d, n]`` in float32 with ``torch.mm`` (n padded to a multiple of 16 so
rows stay 64-byte aligned), in blocks of 1024 query rows into one reused, already-touched
output block. No selection, no page faults: the column "SMOTE / GEMM" is how much the whole
``fit_resample`` costs over that product alone.

    python benchmarks/bench_smote.py                 # CPU, N = 20000 and 100000
    python benchmarks/bench_smote.py --device cuda   # also time the CUDA path
    python benchmarks/bench_smote.py --sizes 20000 --repeats 2   # quicker
    python benchmarks/bench_smote.py --sizes 300000 --dim 64     # another shape

torch keeps its default thread count; scikit-learn's neighbour search (used by
imbalanced-learn) uses its own OpenMP/BLAS threads. Both are printed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections import Counter
from typing import Any

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from _common import describe  # noqa: E402

from torch_balance.smote import SMOTE  # noqa: E402

CLASSES, RATIO = 10, 100.0


def make_embeddings(n: int, d: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Long-tailed Gaussian clusters: class c has about n * w_c / sum(w) rows, w_c = 100**(-c/9)."""
    rng = np.random.default_rng(seed)
    weights = RATIO ** (-np.arange(CLASSES) / (CLASSES - 1))
    counts = np.floor(n * weights / weights.sum()).astype(int)
    means = rng.normal(size=(CLASSES, d)) * 2.0
    X = np.empty((int(counts.sum()), d), dtype=np.float32)  # filled class by class: the
    start = 0  # generation peak stays near the data's own size
    for c, m in enumerate(counts):
        X[start : start + m] = rng.normal(size=(m, d)) + means[c]
        start += m
    y = np.repeat(np.arange(CLASSES), counts)
    return X, y


def run_ours(X: np.ndarray, y: np.ndarray, device: str = "cpu") -> tuple[Any, Any]:
    out = SMOTE(k_neighbors=5, random_state=0, device=device).fit_resample(X, y)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return out


def run_imblearn(X: np.ndarray, y: np.ndarray) -> tuple[Any, Any]:
    from imblearn.over_sampling import SMOTE as ImbSMOTE

    return ImbSMOTE(k_neighbors=5, random_state=0).fit_resample(X, y)


GEMM_BLOCK = 1024  # query rows per product of the GEMM floor


def gemm_work(
    X: np.ndarray, y: np.ndarray, base: torch.Tensor
) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], torch.Tensor]:
    """Per class with new rows: (its distinct base rows ``[q, d]``, its rows ``[d, n]``), and
    one output block for the largest product, written once so its pages are mapped."""
    X_t, y_t = torch.from_numpy(X), torch.from_numpy(y)
    labels = y_t[base]
    work = []
    for cls in torch.unique(labels).tolist():
        queries = torch.unique(base[labels == cls])
        members = X_t[y_t == cls]
        # Rows padded to a multiple of 16 floats (64 bytes): with an odd row length the same
        # product runs at about half the speed (84 against 154 GFLOPS on a 2-core EPYC).
        reference = torch.zeros(members.shape[1], -(-members.shape[0] // 16) * 16)
        reference[:, : members.shape[0]] = members.T
        work.append((X_t[queries].contiguous(), reference))
    rows = max(min(GEMM_BLOCK, q.shape[0]) for q, _ in work)
    out = torch.zeros(rows * max(r.shape[1] for _, r in work))
    return work, out


def run_gemm(work: list[tuple[torch.Tensor, torch.Tensor]], out: torch.Tensor) -> None:
    for queries, reference in work:
        for lo in range(0, queries.shape[0], GEMM_BLOCK):
            block = queries[lo : lo + GEMM_BLOCK]
            size = block.shape[0] * reference.shape[1]
            torch.mm(block, reference, out=out[:size].view(block.shape[0], -1))


def best_time(fn: Any, repeats: int) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def child(method: str, n: int, d: int) -> None:
    """Build the data and run one method, in a fresh process (its peak RSS is measured)."""
    import imblearn.over_sampling  # noqa: F401  (same imports in every child)

    X, y = make_embeddings(n, d)
    before = _status_kib("VmRSS")
    try:  # reset the peak (VmHWM) to the current RSS, so the peak is the call's own
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        reset = True
    except OSError:
        reset = False
    if method == "ours":
        run_ours(X, y)
    elif method == "imblearn":
        run_imblearn(X, y)
    peak = _status_kib("VmHWM")
    print(f"RESULT {before} {peak} {int(reset)}")


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


def peak_rss_mib(method: str, n: int, d: int) -> tuple[float, float]:
    """(RSS before the call, peak RSS during it) in MiB, measured in a fresh child process.

    Where /proc/self/clear_refs cannot reset the peak, the child's lifetime peak
    (``os.wait4`` rusage) is used instead.
    """
    proc = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "--child", method, str(n), str(d)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"child {method} failed: {output}")
    _, before, peak, reset = output.split()[-4:]
    peak_kib = int(peak) if reset == "1" else usage.ru_maxrss
    return int(before) / 1024.0, peak_kib / 1024.0


def sklearn_threads() -> str:
    try:
        from threadpoolctl import threadpool_info

        return ", ".join(f"{i['internal_api']}={i['num_threads']}" for i in threadpool_info())
    except Exception:  # pragma: no cover - informational only
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20_000, 100_000])
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs")
    parser.add_argument("--device", default="cpu", help="'cuda' adds the CUDA path")
    parser.add_argument("--no-memory", action="store_true", help="skip the child processes")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), int(args.child[2]))
        return

    cuda = args.device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        print("CUDA requested but not available; CPU only.")
        cuda = False
    print("## torch_balance.SMOTE vs imbalanced-learn SMOTE (k_neighbors=5, 'auto')\n")
    print(f"- machine: {describe(('torch', 'numpy', 'imbalanced-learn', 'scikit-learn'))}")
    print(f"- torch default threads; scikit-learn thread pools: {sklearn_threads()}")
    print(f"- data: 10 Gaussian classes, imbalance ratio {RATIO:g}, d={args.dim}, float32")
    print(
        f"- time: best of {args.repeats} interleaved runs; memory: peak RSS during the call in a "
        "fresh child process (imports and data loaded), and that peak minus the RSS just before "
        "the call"
    )
    print(
        f"- GEMM: float32 torch.mm of each oversampled class's distinct base rows by all its "
        f"rows (padded to 16 columns), blocks of {GEMM_BLOCK} rows, output block reused (the "
        "product alone)\n"
    )
    print(
        "| N | d | method | time (s) | imblearn / this | SMOTE / GEMM | peak RSS (MiB) "
        "| peak over start |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for n in args.sizes:
        X, y = make_embeddings(n, args.dim)
        smote = SMOTE(k_neighbors=5, random_state=0)
        smote.fit_resample(X, y)  # its base rows size the GEMM floor
        work, block = gemm_work(X, y, smote.base_indices_)
        del smote
        # Interleaved repeats, best of each: a busy machine slows all alike.
        t_ours = t_imb = t_gemm = float("inf")
        for _ in range(args.repeats):
            t, (_, y_ours) = best_time(lambda X=X, y=y: run_ours(X, y), 1)
            t_ours = min(t_ours, t)
            t, (_, y_imb) = best_time(lambda X=X, y=y: run_imblearn(X, y), 1)
            t_imb = min(t_imb, t)
            t, _ = best_time(lambda work=work, block=block: run_gemm(work, block), 1)
            t_gemm = min(t_gemm, t)
        del work, block
        if Counter(y_ours.tolist()) != Counter(y_imb.tolist()):
            raise AssertionError(f"per-class counts differ at N={n}")
        mem: dict[str, float] = {}
        befores: dict[str, float] = {}
        if not args.no_memory:
            for key in ("imblearn", "ours"):
                befores[key], mem[key] = peak_rss_mib(key, n, args.dim)
        rows = [
            ("imbalanced-learn (CPU)", t_imb, "imblearn", "-"),
            ("torch_balance (CPU)", t_ours, "ours", f"{t_ours / t_gemm:.2f}x"),
            ("GEMM floor (CPU)", t_gemm, "gemm", "1.00x"),
        ]
        for name, seconds, key, over_gemm in rows:
            ratio = f"{t_imb / seconds:.2f}x"
            peak = mem.get(key)
            mem_text = "-" if peak is None else f"{peak:.0f}"
            extra = "-" if peak is None else f"{peak - befores[key]:+.0f}"
            print(
                f"| {n} | {args.dim} | {name} | {seconds:.2f} | {ratio} | {over_gemm} "
                f"| {mem_text} | {extra} |"
            )
        if cuda:
            run_ours(X, y, args.device)  # warm-up (CUDA context, kernels)
            torch.cuda.reset_peak_memory_stats()
            t_gpu, (_, y_gpu) = best_time(
                lambda X=X, y=y: run_ours(X, y, args.device), args.repeats
            )
            if Counter(y_gpu.tolist()) != Counter(y_imb.tolist()):
                raise AssertionError(f"per-class counts differ on CUDA at N={n}")
            gpu_peak = torch.cuda.max_memory_allocated() / 2**20
            print(
                f"| {n} | {args.dim} | torch_balance ({args.device}) | {t_gpu:.3f} | "
                f"{t_imb / t_gpu:.1f}x | - | GPU {gpu_peak:.0f} | - |"
            )
        sys.stdout.flush()


if __name__ == "__main__":
    main()
