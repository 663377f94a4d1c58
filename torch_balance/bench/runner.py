"""``run_bench``: every seed, every strategy, then the table, the JSON and the plot."""

from __future__ import annotations

import json
import math
import os
import platform
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from torch_balance._validation import check_int, fail
from torch_balance.bench.data import Source, load_source, make_split, materialize
from torch_balance.bench.metrics import METRIC_NAMES, scores, thirds
from torch_balance.bench.protocol import (
    HEAD_STRATEGIES,
    STRATEGIES,
    Budget,
    Trained,
    check_strategies,
    run_strategy,
)
from torch_balance.bench.report import format_table, summarize, write_plot

__all__ = ["DEFAULTS", "BenchConfig", "check_output_dir", "defaults_for", "machine", "run_bench"]

# Per source: default imbalance ratio, step budget and batch size.
DEFAULTS: dict[str, dict[str, Any]] = {
    "digits": {"ratio": 10.0, "steps": 400, "batch_size": 64},
    "fashion-mnist": {"ratio": 100.0, "steps": 1000, "batch_size": 128},
    "cifar10": {"ratio": 100.0, "steps": 3000, "batch_size": 128},
    "imagefolder": {"ratio": None, "steps": 1500, "batch_size": 64},
}


@dataclass
class BenchConfig:
    """Everything ``torch-balance bench`` takes (``None`` means the source's default)."""

    data: str = "digits"
    profile: str = "longtail"
    ratio: float | None = None
    strategies: list[str] = field(default_factory=lambda: list(STRATEGIES))
    seeds: int = 3
    steps: int | None = None
    batch_size: int | None = None
    head_steps: int | None = None
    device: str | None = None
    out: str | None = None
    image_size: int = 32
    threads: int | None = None
    progress: bool = True


def defaults_for(source: Source) -> dict[str, Any]:
    """The default ratio, steps and batch size for ``source``.

    Example:
        >>> defaults_for(load_source("digits"))["ratio"]
        10.0
    """
    return dict(DEFAULTS.get(source.name, DEFAULTS["imagefolder"]))


def check_output_dir(out: str | os.PathLike[str]) -> Path:
    """Create ``out`` if needed and prove it writable, before any work starts.

    Raises:
        ValueError: If the directory cannot be created or written.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     check_output_dir(os.path.join(tmp, "new")).is_dir()
        True
    """
    path = Path(out).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as error:
        fail(
            "--out",
            "a directory that can be created and written",
            str(path),
            f"{error.strerror or error}; choose another --out",
        )
    return path


def machine(device: torch.device) -> dict[str, Any]:
    """Where a result was measured: CPU, cores, device and library versions."""
    import imblearn
    import sklearn
    import torchvision

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info: dict[str, Any] = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": np.__version__,
        "scikit-learn": sklearn.__version__,
        "imbalanced-learn": imblearn.__version__,
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _slug(text: str) -> str:
    keep = [ch if ch.isalnum() or ch in "-." else "-" for ch in text]
    return "".join(keep).strip("-") or "data"


def run_bench(config: BenchConfig, *, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the benchmark of ``config``; write ``results.md``, ``results.json`` and ``recall.png``.

    Args:
        config: The settings.
        say: Where lines of output go.

    Returns:
        The JSON document (also written to ``results.json``), with ``"paths"`` added.

    Raises:
        ValueError: For bad settings, missing data or an unwritable output directory.
    """
    from tqdm.auto import tqdm

    strategies = check_strategies(config.strategies)
    seeds = check_int("--seeds", config.seeds, minimum=1)
    if config.device is None:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        if config.device not in ("cpu", "cuda") and not config.device.startswith("cuda:"):
            fail("--device", "cpu or cuda", config.device)
        if config.device.startswith("cuda") and not torch.cuda.is_available():
            fail("--device", "a device this machine has", config.device, "Use --device cpu")
        device = torch.device(config.device)
    if config.threads is not None:
        torch.set_num_threads(check_int("--threads", config.threads, minimum=1))
    elif device.type == "cpu":
        # This CNN gains little from a second thread, and a busy machine punishes threads
        # that wait on each other; use half the cores (one on a 2-core machine).
        torch.set_num_threads(max(1, min(4, (os.cpu_count() or 1) // 2)))

    name_guess = _slug(config.data.split(":", 1)[0])
    out = check_output_dir(config.out or os.path.join("bench-out", name_guess))
    source = load_source(config.data, image_size=config.image_size, progress=config.progress)
    defaults = defaults_for(source)
    ratio = config.ratio if config.ratio is not None else defaults["ratio"]
    steps = check_int("--steps", config.steps or defaults["steps"], minimum=1)
    batch_size = check_int("--batch-size", config.batch_size or defaults["batch_size"], minimum=1)
    head_steps = check_int("--head-steps", config.head_steps or max(50, steps // 4), minimum=1)
    budget = Budget(steps=steps, batch_size=batch_size, head_steps=head_steps)

    needs_erm = any(s in HEAD_STRATEGIES for s in strategies)
    order = (["erm"] if needs_erm or "erm" in strategies else []) + [
        s for s in strategies if s != "erm" and s not in HEAD_STRATEGIES
    ]
    order += [s for s in strategies if s in HEAD_STRATEGIES]
    trained = [s for s in order if s not in HEAD_STRATEGIES]
    heads = [s for s in order if s in ("crt", "smote-embedding")]
    total = seeds * (len(trained) * steps + len(heads) * head_steps)

    ratio_text = "natural counts" if ratio is None else f"{config.profile} ratio {ratio:g}"
    say(
        f"torch-balance bench: {source.description}; {ratio_text}; {len(strategies)} strategies"
        f" x {seeds} seeds; {steps} steps of {batch_size} per strategy; device {device}"
    )
    runs: list[dict[str, Any]] = []
    started = time.perf_counter()
    bar = tqdm(total=total, unit="step", disable=not config.progress, dynamic_ncols=True)
    try:
        for seed in range(seeds):
            split = make_split(source, profile=config.profile, ratio=ratio, seed=seed)
            data = materialize(source, split)
            run: dict[str, Any] = {
                "seed": seed,
                "train_counts": split.train_counts.tolist(),
                "val_counts": split.val_counts.tolist(),
                "test_counts": split.test_counts.tolist(),
                "groups": dict(
                    zip(("head", "middle", "tail"), thirds(split.train_counts), strict=True),
                    minority=split.minority,
                ),
                "strategies": {},
            }
            erm: Trained | None = None
            for name in order:
                bar.set_description(f"seed {seed} {name}")
                result = run_strategy(
                    name,
                    data,
                    source.num_classes,
                    seed=seed,
                    budget=budget,
                    device=device,
                    erm=erm,
                    tick=bar.update,
                    say=bar.write if config.progress else say,
                )
                if name == "erm":
                    erm = result
                if name not in strategies:
                    continue
                counts = split.train_counts
                test = scores(
                    data.y_test.numpy(),
                    result.test_logits.argmax(1).numpy(),
                    counts,
                    minority=split.minority,
                )
                val = scores(
                    data.y_val.numpy(),
                    result.val_logits.argmax(1).numpy(),
                    counts,
                    minority=split.minority,
                )
                test.pop("groups")
                run["strategies"][name] = {
                    **test,
                    "val_balanced_accuracy": val["balanced_accuracy"],
                    "epochs": result.epochs,
                    "seconds": round(result.seconds, 2),
                    **result.extra,
                }
            runs.append(run)
    finally:
        bar.close()
    elapsed = time.perf_counter() - started

    summary = {s: summarize([run["strategies"][s] for run in runs]) for s in strategies}
    table = format_table(summary, strategies)
    command = f"torch-balance bench {config.data} --profile {config.profile}" + (
        f" --ratio {ratio:g}" if ratio is not None else ""
    )
    command += f" --seeds {seeds} --steps {steps} --batch-size {batch_size}"
    if config.strategies != list(STRATEGIES):
        command += " --strategies " + ",".join(strategies)
    info = machine(device)
    header = (
        f"{source.description}; {ratio_text}; test balanced; {seeds} seed(s); {steps} SGD steps"
        f" of {batch_size} images per strategy (crt and smote-embedding: erm's backbone plus"
        f" {head_steps} head steps); metrics in % as mean ± std over seeds; minority = "
        + ("the step's minority classes" if config.profile == "step" else "the tail third")
    )
    machine_line = (
        f"Machine: {info['cpu']}, {info['cores']} cores, device {info['device']}; torch"
        f" {info['torch']}; {elapsed:.0f} s in all."
    )
    markdown = f"{header}\n\n{table}\n\n`{command}`\n\n{machine_line}\n"

    # Per-class recall by size rank, averaged over seeds (ranks share a size across seeds).
    ranked = [np.argsort(-np.asarray(run["train_counts"]), kind="stable") for run in runs]
    sizes = np.mean(
        [np.asarray(run["train_counts"])[r] for run, r in zip(runs, ranked, strict=True)], axis=0
    )
    by_rank = {
        s: np.nanmean(
            [
                np.asarray(run["strategies"][s]["per_class_recall"], dtype=np.float64)[r]
                for run, r in zip(runs, ranked, strict=True)
            ],
            axis=0,
        )
        for s in strategies
    }
    document: dict[str, Any] = {
        "command": command,
        "config": {
            **asdict(config),
            "ratio": ratio,
            "steps": steps,
            "batch_size": batch_size,
            "head_steps": head_steps,
            "strategies": strategies,
        },
        "data": source.description,
        "classes": source.classes,
        "machine": info,
        "seconds": round(elapsed, 1),
        "metrics": list(METRIC_NAMES),
        "summary": summary,
        "recall_by_size_rank": {
            "train_size": [round(float(v), 2) for v in sizes],
            **{s: [round(float(v), 6) for v in by_rank[s]] for s in strategies},
        },
        "runs": runs,
    }
    paths = {"table": out / "results.md", "json": out / "results.json", "plot": out / "recall.png"}
    paths["table"].write_text(markdown)
    paths["json"].write_text(json.dumps(_finite(document), indent=1) + "\n")
    write_plot(
        paths["plot"],
        sizes,
        by_rank,
        title=f"{source.name}, {ratio_text}: per-class test recall (mean of {seeds} seeds)",
    )
    say("")
    say(markdown)
    for key, path in paths.items():
        say(f"{key:>5}: {path}")
    document["paths"] = {k: str(v) for k, v in paths.items()}
    return document


def _finite(value: Any) -> Any:
    """JSON has no NaN: write ``null`` instead."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
