"""``run_bench``: every seed, every method, then the table, the JSON and the plot.

The loop reads top-down: :func:`run_bench` resolves the settings (:func:`resolve_device`,
:func:`resolve_budget`, :func:`resolve_threads`, :func:`resolve_jobs`), cuts every seed's work
into runs (``_runs``: one per method and seed, with the methods built on ``erm`` in ``erm``'s
run, after it, as :func:`run_order` puts them), trains the runs ``--jobs`` at a time
(``bench.workers``; ``_train``, one ``_score`` per method), gathers each seed's scores in the
order of :func:`run_order` (``_seed_record``) and writes the results (``_write_results``).

Every run trains on ``--threads`` threads (default 1) whatever ``--jobs`` is, and a run is a
pure function of its seed, so ``--jobs`` changes the wall time and nothing else.
"""

from __future__ import annotations

import os
import platform
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from torch_balance._progress import progress_bar as bar
from torch_balance._validation import check_int, fail
from torch_balance.bench.methods import METHODS, Job, check_methods, run_method
from torch_balance.bench.metrics import scores, thirds
from torch_balance.bench.report import RESULTS_KEY, write_results
from torch_balance.bench.sources import Source, load_source
from torch_balance.bench.split import Split, Tensors, make_split, materialize
from torch_balance.bench.train import Budget, Trained
from torch_balance.bench.workers import run_tasks, usable_cores

__all__ = [
    "DEFAULTS",
    "BenchConfig",
    "check_output_dir",
    "defaults_for",
    "machine",
    "progress_bar",
    "resolve_budget",
    "resolve_device",
    "resolve_jobs",
    "resolve_threads",
    "run_bench",
    "run_order",
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
    return int(check_int("--threads", threads, minimum=1))


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


def run_order(methods: list[str]) -> list[str]:
    """The order to run ``methods`` in: ``erm`` first when asked for or needed, then the other
    backbone methods, then those built on ``erm`` (which is run even if not asked for).

    Example:
        >>> run_order(["crt", "over"])
        ['erm', 'over', 'crt']
    """
    needs_erm = "erm" in methods or any(METHODS[m].uses_erm for m in methods)
    backbone = [m for m in methods if m != "erm" and not METHODS[m].uses_erm]
    on_erm = [m for m in methods if METHODS[m].uses_erm]
    return (["erm"] if needs_erm else []) + backbone + on_erm


def progress_bar(total: int, *, enabled: bool = True, file: IO[str] | None = None) -> Any:
    """A tqdm bar of ``total`` steps, shown only when ``enabled`` and ``file`` is a terminal.

    ``disable=None`` makes tqdm quiet when its output (``sys.stderr`` by default) is not a
    terminal, so a log or a pipe gets no carriage-return updates.

    Example:
        >>> import io
        >>> progress_bar(10, file=io.StringIO()).disable
        True
    """
    return bar(total=total, unit="step", enabled=enabled, file=file, dynamic_ncols=True)


@dataclass(frozen=True)
class _Run:
    """One training run: one seed's data and the methods to train on it, in this order.

    The data travel to a worker as NumPy arrays, pickled through its pipe, rather than as
    tensors in shared memory, which a container's small ``/dev/shm`` can refuse.
    """

    split: Split
    names: tuple[str, ...]
    scored: tuple[str, ...]
    arrays: dict[str, np.ndarray]
    num_classes: int
    budget: Budget
    device: torch.device

    @property
    def steps(self) -> int:
        """Optimizer steps of the run (progress units, and the order to start runs in)."""
        return sum(METHODS[name].steps(self.budget) for name in self.names)


@dataclass
class _Trained:
    """What a run sends back: each scored method's entry of ``results.json``, and notes."""

    scores: dict[str, dict[str, Any]]
    notes: list[str]


def _runs(
    data: Tensors,
    split: Split,
    methods: list[str],
    num_classes: int,
    budget: Budget,
    device: torch.device,
) -> list[_Run]:
    """One seed's runs: one per backbone method, ``erm``'s with the methods built on it."""
    arrays = {f.name: getattr(data, f.name).numpy() for f in fields(data)}
    order = run_order(methods)
    on_erm = tuple(m for m in order if METHODS[m].uses_erm)
    groups = [(m, *on_erm) if m == "erm" else (m,) for m in order if not METHODS[m].uses_erm]
    return [
        _Run(
            split,
            names,
            tuple(m for m in names if m in methods),
            arrays,
            num_classes,
            budget,
            device,
        )
        for names in groups
    ]


def _train(run: _Run) -> _Trained:
    """Train ``run``'s methods in order and score them (in this process or a worker)."""
    data = Tensors(**{name: torch.from_numpy(array) for name, array in run.arrays.items()})
    notes: list[str] = []
    job = Job(data, run.num_classes, run.split.seed, run.budget, run.device, say=notes.append)
    scored: dict[str, dict[str, Any]] = {}
    for name in run.names:
        result = run_method(name, job)
        if name == "erm":
            job = replace(job, erm=result)  # the head and post-hoc methods start from it
        if name in run.scored:
            scored[name] = _score(data, run.split, result)
    return _Trained(scored, notes)


def _score(data: Tensors, split: Split, result: Trained) -> dict[str, Any]:
    """One method's entry in ``results.json``: test metrics, validation balanced accuracy,
    epochs, seconds and the method's notes."""
    counts = split.train_counts
    test = scores(
        data.y_test.numpy(), result.test_logits.argmax(1).numpy(), counts, minority=split.minority
    )
    val = scores(
        data.y_val.numpy(), result.val_logits.argmax(1).numpy(), counts, minority=split.minority
    )
    test.pop("groups")
    return {
        **test,
        "val_balanced_accuracy": val["balanced_accuracy"],
        "epochs": result.epochs,
        "seconds": round(result.seconds, 2),
        **result.extra,
    }


def _seed_record(
    split: Split, methods: list[str], scored: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """One seed's entry in ``results.json``: its class counts, groups and scores, in the
    order of :func:`run_order`, whichever run finished first."""
    return {
        "seed": split.seed,
        "train_counts": split.train_counts.tolist(),
        "val_counts": split.val_counts.tolist(),
        "test_counts": split.test_counts.tolist(),
        "groups": dict(
            zip(("head", "middle", "tail"), thirds(split.train_counts), strict=True),
            minority=split.minority,
        ),
        RESULTS_KEY: {name: scored[name] for name in run_order(methods) if name in methods},
    }


def run_bench(config: BenchConfig, *, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the benchmark of ``config``; write ``results.md``, ``results.json`` and ``recall.png``.

    Args:
        config: The settings.
        say: Where lines of output go.

    Returns:
        The JSON document (also written to ``results.json``), with ``"paths"`` added.

    Raises:
        ValueError: For bad settings, missing data or an unwritable output directory.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     config = BenchConfig(methods=["erm"], seeds=1, steps=2, out=tmp)
        ...     document = run_bench(config, say=lambda line: None)
        >>> sorted(document["runs"][0]["strategies"]), document["config"]["steps"]
        (['erm'], 2)
    """
    methods = check_methods(config.methods)
    seeds = check_int("--seeds", config.seeds, minimum=1)
    device = resolve_device(config.device)
    threads = resolve_threads(config.threads)
    jobs = resolve_jobs(config.jobs, device)
    out = check_output_dir(config.out or os.path.join("bench-out", _slug(config.data)))
    source = load_source(config.data, image_size=config.image_size, progress=config.progress)
    ratio, budget = resolve_budget(config, source)

    ratio_text = "natural counts" if ratio is None else f"{config.profile} ratio {ratio:g}"
    say(
        f"torch-balance bench: {source.description}; {ratio_text}; {len(methods)} methods"
        f" x {seeds} seeds; {budget.steps} steps of {budget.batch_size} per method;"
        f" device {device}; {jobs} job(s) of {threads} thread(s)"
    )
    started = time.perf_counter()
    splits = [
        make_split(source, profile=config.profile, ratio=ratio, seed=seed) for seed in range(seeds)
    ]
    work = [
        run
        for split in splits
        for run in _runs(
            materialize(source, split), split, methods, source.num_classes, budget, device
        )
    ]
    # Longest first, so that no long run starts last while the other workers sit idle.
    work.sort(key=lambda run: -run.steps)
    bar = progress_bar(sum(run.steps for run in work), enabled=config.progress)
    note = say if bar.disable else bar.write
    scored: dict[int, dict[str, dict[str, Any]]] = {split.seed: {} for split in splits}

    def finished(index: int, trained: _Trained) -> None:
        run = work[index]
        scored[run.split.seed].update(trained.scores)
        for line in trained.notes:
            note(f"seed {run.split.seed}: {line}")
        bar.update(run.steps)
        bar.set_description(f"seed {run.split.seed} {'+'.join(run.names)} done")

    try:
        run_tasks(_train, work, jobs=jobs, threads=threads, on_result=finished)
    finally:
        bar.close()
    runs = [_seed_record(split, methods, scored[split.seed]) for split in splits]
    elapsed = time.perf_counter() - started
    return _write_results(
        out,
        config,
        source,
        methods,
        runs,
        ratio=ratio,
        budget=budget,
        device=device,
        elapsed=elapsed,
        threads=threads,
        jobs=jobs,
        say=say,
    )


def _command(
    config: BenchConfig, methods: list[str], ratio: float | None, budget: Budget, threads: int
) -> str:
    """The command that reproduces a run, as written into the results (``--jobs`` changes
    only the wall time, so it is left out)."""
    command = f"torch-balance bench {config.data} --profile {config.profile}" + (
        f" --ratio {ratio:g}" if ratio is not None else ""
    )
    command += f" --seeds {config.seeds} --steps {budget.steps} --batch-size {budget.batch_size}"
    if threads != 1:
        command += f" --threads {threads}"
    if config.methods != list(METHODS):
        command += " --methods " + ",".join(methods)
    return command


def _write_results(
    out: Path,
    config: BenchConfig,
    source: Source,
    methods: list[str],
    runs: list[dict[str, Any]],
    *,
    ratio: float | None,
    budget: Budget,
    device: torch.device,
    elapsed: float,
    threads: int,
    jobs: int,
    say: Callable[[str], None],
) -> dict[str, Any]:
    """Describe the run (the command, the machine, the settings) and hand it to
    :func:`~torch_balance.bench.report.write_results`, which summarises and writes it."""
    seeds = len(runs)
    command = _command(config, methods, ratio, budget, threads)
    info = {**machine(device), "torch_threads": threads, "jobs": jobs}
    ratio_text = "natural counts" if ratio is None else f"{config.profile} ratio {ratio:g}"
    header = (
        f"{source.description}; {ratio_text}; test balanced; {seeds} seed(s); {budget.steps} SGD"
        f" steps of {budget.batch_size} images per strategy (crt and smote-embedding: erm's"
        f" backbone plus {budget.head_steps} head steps); metrics in % as mean ± std over seeds;"
        " minority = "
        + ("the step's minority classes" if config.profile == "step" else "the tail third")
    )
    machine_line = (
        f"Machine: {info['cpu']}, {info['cores']} cores, device {info['device']}; torch"
        f" {info['torch']}; {jobs} run(s) at a time on {threads} thread(s) each;"
        f" {elapsed:.0f} s in all."
    )
    # results.json keeps its keys ("strategies"); see report.RESULTS_KEY.
    settings = {RESULTS_KEY if k == "methods" else k: v for k, v in asdict(config).items()}
    head: dict[str, Any] = {
        "command": command,
        "config": {
            **settings,
            "ratio": ratio,
            "steps": budget.steps,
            "batch_size": budget.batch_size,
            "head_steps": budget.head_steps,
            "threads": threads,
            "jobs": jobs,
            RESULTS_KEY: methods,
        },
        "data": source.description,
        "classes": source.classes,
        "machine": info,
        "seconds": round(elapsed, 1),
    }
    return write_results(
        out,
        runs,
        methods,
        head,
        header=header,
        machine_line=machine_line,
        plot_title=f"{source.name}, {ratio_text}: per-class test recall (mean of {seeds} seeds)",
        say=say,
    )


def _slug(text: str) -> str:
    """A directory name from ``DATA``'s source name (the part before any ``:``)."""
    keep = [ch if ch.isalnum() or ch in "-." else "-" for ch in text.split(":", 1)[0]]
    return "".join(keep).strip("-") or "data"
