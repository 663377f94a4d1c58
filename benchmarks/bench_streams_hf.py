"""Hugging Face streaming sources read by more readers than shards: decodes and time.

Data (written under ``--cache`` or a temporary folder): N random RGB PNG images of
``--size`` x ``--size`` pixels with a long-tailed label, in S parquet files, read back with
``datasets.load_dataset("parquet", ..., streaming=True)`` (S shards). A mode 1 stream
(``"over"``, the manifest from ``Manifest.from_source``) is read by R ranks x W workers, every
reader simulated in this one process (``get_worker_info`` patched), so each shard is shared by
``ceil(R * W / S)`` readers. Two rows, alternated ``--repeat`` times (best time kept):

- ``read and drop``: every reader reads and decodes its whole shard and drops the samples it
  does not keep (what a source that cannot skip does);
- ``decode kept``: readers read the shard with decoding off and decode the samples they keep.

Columns: images decoded over N, and the epoch's wall time relative to ``read and drop``.
Run: ``python benchmarks/bench_streams_hf.py`` (N = 2,000, S = 2, 2 ranks x 4 workers).
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import describe

from torch_balance import BalancedIterableDataset, Manifest
from torch_balance.streams import sources


def write_parquet(folder: Path, samples: int, shards: int, size: int) -> list[str]:
    import datasets
    from PIL import Image

    rng = np.random.default_rng(0)
    images = []
    for _ in range(samples):
        out = io.BytesIO()
        pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(out, format="PNG")
        images.append({"bytes": out.getvalue(), "path": None})
    labels = np.minimum(rng.geometric(0.5, samples) - 1, 4)  # 5 classes, long-tailed
    features = datasets.Features({"image": datasets.Image(), "label": datasets.Value("int64")})
    table = datasets.Dataset.from_dict(
        {"image": images, "label": labels.tolist()}, features=features
    )
    files = [str(folder / f"part-{i:03d}.parquet") for i in range(shards)]
    for i, name in enumerate(files):
        table.shard(shards, i, contiguous=True).to_parquet(name)
    return files


def one_epoch(data: Any, manifest: Manifest, world: int, workers: int) -> int:
    """Every reader's pass of epoch 0; the samples emitted."""
    emitted = 0
    original = sources.get_worker_info
    for rank in range(world):
        stream = BalancedIterableDataset(
            data, "over", manifest=manifest, num_replicas=world, rank=rank
        )
        for worker in range(workers):
            info = SimpleNamespace(id=worker, num_workers=workers)
            sources.get_worker_info = lambda info=info: info  # type: ignore[assignment]
            try:
                emitted += sum(1 for _ in stream)
            finally:
                sources.get_worker_info = original
    return emitted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--world", type=int, default=2)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cache", type=Path, default=None)
    args = parser.parse_args()

    import datasets

    print(describe(("torch", "numpy", "datasets", "Pillow")))
    folder = args.cache or Path(tempfile.mkdtemp())
    folder.mkdir(parents=True, exist_ok=True)
    files = write_parquet(folder, args.samples, args.shards, args.size)
    data = datasets.load_dataset("parquet", data_files=files, split="train", streaming=True)
    manifest = Manifest.from_source(data)
    readers = args.world * args.workers
    print(
        f"N = {args.samples} PNG images of {args.size}x{args.size}, {args.shards} shards, "
        f"{args.world} ranks x {args.workers} workers ({readers} readers, up to "
        f"{-(-readers // args.shards)} per shard)"
    )

    decodes = [0]
    decode = datasets.Image.decode_example

    def counting(self: Any, value: Any, **kw: Any) -> Any:
        decodes[0] += 1
        return decode(self, value, **kw)

    datasets.Image.decode_example = counting  # type: ignore[method-assign]
    undecoded = sources.undecoded
    rows = {
        "read and drop": lambda dataset: (None, 0),
        "decode kept": undecoded,
    }
    best: dict[str, float] = {}
    counts: dict[str, int] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fewer shards than readers, on purpose
        for _ in range(args.repeat):
            for name, how in rows.items():
                sources.undecoded = how  # type: ignore[assignment]
                decodes[0] = 0
                start = time.perf_counter()
                one_epoch(data, manifest, args.world, args.workers)
                elapsed = time.perf_counter() - start
                best[name] = min(best.get(name, elapsed), elapsed)
                counts[name] = decodes[0]
    sources.undecoded = undecoded  # type: ignore[assignment]
    print(f"{'':<14} {'decoded / N':>11} {'time vs read and drop':>22}")
    for name in rows:
        ratio = best[name] / best["read and drop"]
        print(f"{name:<14} {counts[name] / args.samples:>11.2f} {ratio:>22.2f}")


if __name__ == "__main__":
    main()
