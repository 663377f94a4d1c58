"""The settings of ``torch-balance bench``: :class:`BenchConfig`, each source's defaults, and
how every option is resolved (``resolve_*``), checked before any work starts; and the command
line that reproduces a run (:func:`command_line`).
"""

from __future__ import annotations

import os
import platform
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from torch_balance._validation import check_int, fail
from torch_balance.bench.methods import METHODS
from torch_balance.bench.sources import Source
from torch_balance.bench.train import Budget
from torch_balance.bench.workers import usable_cores

__all__ = [
    "DEFAULTS",
    "BenchConfig",
    "check_output_dir",
    "command_line",
    "defaults_for",
    "machine",
    "resolve_budget",
    "resolve_device",
    "resolve_jobs",
    "resolve_threads",
]

# Per source: default imbalance ratio, step budget and batch size.
DEFAULTS: dict[str, dict[str, Any]] = {
    "digits": {"ratio": 10.0, "steps": 400, "batch_size": 64},
    "fashion-mnist": {"ratio": 100.0, "steps": 1000, "batch_size": 128},
    "cifar10": {"ratio": 100.0, "steps": 3000, "batch_size": 128},
    "imagefolder": {"ratio": None, "steps": 1500, "batch_size": 64},
}


@dataclass
class BenchConfig:
    """Everything ``torch-balance bench`` takes (``None`` means the source's default).

    ``progress`` allows progress bars; they show only when the output is a terminal.
    ``threads`` is the torch threads of each training run (default 1) and ``jobs`` how many
    runs train at once, each in its own process (default the usable cores, 1 on CUDA).
    """

    data: str = "digits"
    profile: str = "longtail"
    ratio: float | None = None
    methods: list[str] = field(default_factory=lambda: list(METHODS))
    seeds: int = 3
    steps: int | None = None
    batch_size: int | None = None
    head_steps: int | None = None
    device: str | None = None
    out: str | None = None
    image_size: int = 32
    threads: int | None = None
    progress: bool = True
    jobs: int | None = None


def defaults_for(source: Source) -> dict[str, Any]:
    """The default ratio, steps and batch size for ``source``.

    Example:
        >>> from torch_balance.bench.sources import load_source
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
    """Where a result was measured: CPU, cores, device and library versions.

    Example:
        >>> machine(torch.device("cpu"))["device"]
        'cpu'
    """
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


def resolve_device(name: str | None) -> torch.device:
    """``--device``: CUDA when available by default, else the named one if this machine has it.

    Example:
        >>> resolve_device("cpu")
        device(type='cpu')
    """
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        fail("--device", "cpu or cuda", name)
    if name.startswith("cuda") and not torch.cuda.is_available():
        fail("--device", "a device this machine has", name, "Use --device cpu")
    return torch.device(name)


MAX_THREADS = 1024


def resolve_threads(threads: int | None) -> int:
    """``--threads``: torch threads of each training run, 1 unless asked otherwise.

    One thread per run keeps the numbers the same whatever ``--jobs`` is (a thread count
    changes how sums are split, hence their rounding); on a busy machine it is also the
    fastest way to use several cores: one run per core.

    Example:
        >>> resolve_threads(None), resolve_threads(2)
        (1, 2)
    """
    if threads is None:
        return 1
    count = int(check_int("--threads", threads, minimum=1))
    if count > MAX_THREADS:  # torch allocates per thread: a million ends in MemoryError
        cores = os.cpu_count() or 1
        fix = f"More threads than cores slow a run down ({cores} cores here)"
        fail("--threads", f"an integer in [1, {MAX_THREADS}]", count, fix)
    return count


def resolve_jobs(jobs: int | None, device: torch.device) -> int:
    """``--jobs``: how many runs train at once, each in its own process.

    Default: the cores this process may use on the CPU; 1 on a CUDA device, which the runs
    would share (and each worker would hold a CUDA context of its own).

    Example:
        >>> resolve_jobs(3, torch.device("cpu"))
        3
        >>> resolve_jobs(0, torch.device("cpu"))
        Traceback (most recent call last):
        ...
        ValueError: --jobs: expected an integer >= 1, got 0. Use --jobs 1 to train one run at a time
    """
    if jobs is None:
        return 1 if device.type == "cuda" else usable_cores()
    fix = "Use --jobs 1 to train one run at a time"
    return int(check_int("--jobs", jobs, minimum=1, fix=fix))


def resolve_budget(config: BenchConfig, source: Source) -> tuple[float | None, Budget]:
    """The imbalance ratio and the step budget: ``config``'s, else the source's defaults.

    Example:
        >>> from torch_balance.bench.sources import load_source
        >>> ratio, budget = resolve_budget(BenchConfig(steps=40), load_source("digits"))
        >>> ratio, budget.steps, budget.batch_size, budget.head_steps
        (10.0, 40, 64, 50)
    """
    defaults = defaults_for(source)
    ratio = config.ratio if config.ratio is not None else defaults["ratio"]
    steps = check_int("--steps", config.steps or defaults["steps"], minimum=1)
    batch_size = check_int("--batch-size", config.batch_size or defaults["batch_size"], minimum=1)
    head_steps = check_int("--head-steps", config.head_steps or max(50, steps // 4), minimum=1)
    return ratio, Budget(steps=steps, batch_size=batch_size, head_steps=head_steps)


def command_line(
    config: BenchConfig,
    source: Source,
    methods: list[str],
    ratio: float | None,
    budget: Budget,
    threads: int,
) -> str:
    """The command that reproduces a run, as written into the results: every setting that
    shapes the numbers, as it was resolved (``--jobs`` changes only the wall time, so it is
    left out; ``--profile`` only where a ratio applies it).

    Example:
        >>> from torch_balance.bench.sources import load_source
        >>> config = BenchConfig(steps=40, seeds=1, methods=["erm"])
        >>> source = load_source("digits")
        >>> ratio, budget = resolve_budget(config, source)
        >>> command_line(config, source, ["erm"], ratio, budget, 1).split(" --")[1:]
        ['profile longtail', 'ratio 10', 'seeds 1', 'steps 40', 'batch-size 64', 'methods erm']
    """
    command = f"torch-balance bench {config.data}"
    if ratio is not None:  # natural counts: the profile plays no part
        command += f" --profile {config.profile} --ratio {ratio:g}"
    command += f" --seeds {config.seeds} --steps {budget.steps} --batch-size {budget.batch_size}"
    if config.head_steps is not None and any(METHODS[m].stage == "head" for m in methods):
        command += f" --head-steps {budget.head_steps}"
    if source.name == "imagefolder" and config.image_size != 32:
        command += f" --image-size {config.image_size}"
    if threads != 1:
        command += f" --threads {threads}"
    if list(methods) != list(METHODS):
        command += " --methods " + ",".join(methods)
    return command
