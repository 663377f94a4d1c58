"""``run_bench``: every seed, every method, then the table, the JSON and the plot.

The loop reads top-down: :func:`run_bench` resolves the settings (``bench.settings``:
:func:`resolve_device`, :func:`resolve_budget`, :func:`resolve_threads`, :func:`resolve_jobs`;
re-exported here), says what each seed's split holds (its warnings), cuts every seed's work
into runs (``_runs``: one per method and seed, with the methods built on ``erm`` in ``erm``'s
run, after it, as :func:`run_order` puts them), trains the runs ``--jobs`` at a time
(``bench.workers``; ``_train``, one ``_score`` per method), gathers each seed's scores in the
order of :func:`run_order` (``_seed_record``) and writes the results (``_write_results``).

A method that cannot run on the data (SMOTE with a one-image class) is skipped with a line
that names the class and why; the results keep every method that ran. If the run stops early
(an error, Ctrl-C), the runs that finished are written before the error is raised.

Every run trains on ``--threads`` threads (default 1) whatever ``--jobs`` is, and a run is a
pure function of its seed, so ``--jobs`` changes the wall time and nothing else.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from torch_balance._progress import progress_bar as bar
from torch_balance._validation import Text, check_int, fail
from torch_balance.bench.methods import METHODS, CannotRun, Job, check_methods, run_method
from torch_balance.bench.metrics import scores, thirds
from torch_balance.bench.report import RESULTS_KEY, write_results
from torch_balance.bench.settings import (
    DEFAULTS,
    BenchConfig,
    check_output_dir,
    command_line,
    defaults_for,
    machine,
    resolve_budget,
    resolve_device,
    resolve_jobs,
    resolve_threads,
)
from torch_balance.bench.sources import Source, load_source
from torch_balance.bench.split import Split, Tensors, make_split, materialize
from torch_balance.bench.train import Budget, Trained
from torch_balance.bench.workers import run_tasks

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
    classes: tuple[str, ...]
    budget: Budget
    device: torch.device

    @property
    def num_classes(self) -> int:
        """C."""
        return len(self.classes)

    @property
    def steps(self) -> int:
        """Optimizer steps of the run (progress units, and the order to start runs in)."""
        return sum(METHODS[name].steps(self.budget) for name in self.names)


@dataclass
class _Trained:
    """What a run sends back: each scored method's entry of ``results.json``, notes, and the
    methods that could not run on the data, with the reason."""

    scores: dict[str, dict[str, Any]]
    notes: list[str]
    skipped: dict[str, str] = field(default_factory=dict)


def _runs(
    data: Tensors,
    split: Split,
    methods: list[str],
    classes: list[str],
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
            tuple(classes),
            budget,
            device,
        )
        for names in groups
    ]


def _train(run: _Run) -> _Trained:
    """Train ``run``'s methods in order and score them (in this process or a worker).

    A method that cannot run on the data (:class:`CannotRun`) is skipped with its reason, and
    so are the methods built on ``erm`` when ``erm`` is; the others still run."""
    data = Tensors(**{name: torch.from_numpy(array) for name, array in run.arrays.items()})
    notes: list[str] = []
    job = Job(
        data,
        run.num_classes,
        run.split.seed,
        run.budget,
        run.device,
        say=notes.append,
        classes=run.classes,
    )
    scored: dict[str, dict[str, Any]] = {}
    skipped: dict[str, str] = {}
    for name in run.names:
        if METHODS[name].uses_erm and "erm" in skipped:
            skipped[name] = f"it starts from erm, which could not run ({skipped['erm']})"
            continue
        try:
            result = run_method(name, job)
        except CannotRun as cannot:
            skipped[name] = cannot.reason
            continue
        if name == "erm":
            job = replace(job, erm=result)  # the head and post-hoc methods start from it
        if name in run.scored:
            scored[name] = _score(data, run.split, result)
    return _Trained(scored, notes, {m: why for m, why in skipped.items() if m in run.scored})


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
    split: Split,
    methods: list[str],
    scored: dict[str, dict[str, Any]],
    skipped: dict[str, str],
) -> dict[str, Any]:
    """One seed's entry in ``results.json``: its class counts, groups and scores, in the
    order of :func:`run_order`, whichever run finished first (and the methods skipped)."""
    record = {
        "seed": split.seed,
        "train_counts": split.train_counts.tolist(),
        "val_counts": split.val_counts.tolist(),
        "test_counts": split.test_counts.tolist(),
        "groups": dict(
            zip(("head", "middle", "tail"), thirds(split.train_counts), strict=True),
            minority=split.minority,
        ),
        RESULTS_KEY: {m: scored[m] for m in run_order(methods) if m in methods and m in scored},
    }
    if skipped:
        record["skipped"] = dict(skipped)
    return record


def _split_warnings(splits: list[Split]) -> list[str]:
    """The splits' notes (test sets too small to trust, a given val/ folder), each once."""
    return list(dict.fromkeys(note for split in splits for note in split.notes))


def run_bench(config: BenchConfig, *, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the benchmark of ``config``; write ``results.md``, ``results.json`` and ``recall.png``.

    A method that cannot run on the data is skipped (one line says which class and why) and
    the results hold the others. If a run fails or is interrupted, the runs that finished are
    written first, then the error is raised.

    Args:
        config: The settings.
        say: Where lines of output go.

    Returns:
        The JSON document (also written to ``results.json``), with ``"paths"`` added.

    Raises:
        ValueError: For bad settings, missing data, an unwritable output directory, or data
            on which no asked-for method can run.

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
    warnings = _split_warnings(splits)
    for line in warnings:
        say(line)
    work = [
        run
        for split in splits
        for run in _runs(materialize(source, split), split, methods, source.classes, budget, device)
    ]
    # Longest first, so that no long run starts last while the other workers sit idle.
    work.sort(key=lambda run: -run.steps)
    shown = progress_bar(sum(run.steps for run in work), enabled=config.progress)
    note = say if shown.disable else shown.write
    scored: dict[int, dict[str, dict[str, Any]]] = {split.seed: {} for split in splits}
    skipped: dict[int, dict[str, str]] = {split.seed: {} for split in splits}

    def finished(index: int, trained: _Trained) -> None:
        run = work[index]
        scored[run.split.seed].update(trained.scores)
        for line in trained.notes:
            note(f"seed {run.split.seed}: {line}")
        for name, why in trained.skipped.items():
            if why not in (s.get(name) for s in skipped.values()):  # once per reason
                note(f"{name}: skipped: {why}")
            skipped[run.split.seed][name] = why
        shown.update(run.steps)
        shown.set_description(f"seed {run.split.seed} {'+'.join(run.names)} done")

    stopped: BaseException | None = None
    try:
        run_tasks(_train, work, jobs=jobs, threads=threads, on_result=finished)
    except (Exception, KeyboardInterrupt) as error:
        stopped = error  # write what finished, then raise it
    finally:
        shown.close()
    ran = [m for m in methods if any(m in per_seed for per_seed in scored.values())]
    if not ran:
        if stopped is not None:
            raise stopped
        reasons = "; ".join(f"{m}: {why}" for m, why in skipped[splits[0].seed].items())
        fail(
            "--methods",
            "at least one method that can run on this data",
            Text(f"none could ({reasons})"),
        )
    runs = [
        _seed_record(split, methods, scored[split.seed], skipped[split.seed]) for split in splits
    ]
    document = _write_results(
        out,
        config,
        source,
        ran,
        runs,
        ratio=ratio,
        budget=budget,
        device=device,
        elapsed=time.perf_counter() - started,
        threads=threads,
        jobs=jobs,
        say=say,
        stopped=stopped,
        warnings=warnings,
    )
    if stopped is not None:
        say(f"torch-balance bench: stopped early; the runs that finished are written to {out}")
        raise stopped
    return document


def _split_sizes(runs: list[dict[str, Any]]) -> str:
    """The split sizes for the table's header: train / validation / test images (per seed,
    as a range where seeds differ) and the test images per class."""

    def span(values: list[int]) -> str:
        low, high = min(values), max(values)
        return f"{low}" if low == high else f"{low}-{high}"

    sizes = {
        part: span([sum(run[f"{part}_counts"]) for run in runs])
        for part in ("train", "val", "test")
    }
    per_class = span([n for run in runs for n in run["test_counts"]])
    return (
        f"split: {sizes['train']} train / {sizes['val']} validation / {sizes['test']} test"
        f" images (test: {per_class} per class)"
    )


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
    stopped: BaseException | None = None,
    warnings: list[str] | None = None,
) -> dict[str, Any]:
    """Describe the run (the command, the machine, the settings, the split sizes, what was
    skipped) and hand it to :func:`~torch_balance.bench.report.write_results`, which
    summarises and writes it. ``methods`` are those that ran in at least one seed;
    ``warnings`` (the splits' notes) go under the table with the methods skipped."""
    seeds = len(runs)
    asked = check_methods(config.methods)
    command = command_line(config, source, asked, ratio, budget, threads)
    info = {**machine(device), "torch_threads": threads, "jobs": jobs}
    ratio_text = "natural counts" if ratio is None else f"{config.profile} ratio {ratio:g}"
    balanced = all(len(set(run["test_counts"])) == 1 for run in runs)
    header = (
        f"{source.description}; {ratio_text}; {_split_sizes(runs)};"
        f" test {'balanced' if balanced else 'as given (not balanced)'}; {seeds} seed(s);"
        f" {budget.steps} SGD steps of {budget.batch_size} images per strategy (crt and"
        f" smote-embedding: erm's backbone plus {budget.head_steps} head steps); metrics in %"
        " as mean ± std over seeds; minority = "
        + ("the step's minority classes" if config.profile == "step" else "the tail third")
    )
    notes = [*(warnings or []), *(f"{m}: skipped: {why}" for m, why in _skips(runs).items())]
    if stopped is not None:
        notes.insert(0, f"INCOMPLETE: stopped by {type(stopped).__name__}: {stopped}".rstrip(": "))
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
            RESULTS_KEY: asked,
        },
        "data": source.description,
        "classes": source.classes,
        "machine": info,
        "seconds": round(elapsed, 1),
    }
    if stopped is not None:
        head["incomplete"] = f"{type(stopped).__name__}: {stopped}"
    return write_results(
        out,
        runs,
        methods,
        head,
        header=header,
        machine_line=machine_line,
        plot_title=f"{source.name}, {ratio_text}: per-class test recall (mean of {seeds} seeds)",
        say=say,
        notes=notes,
    )


def _skips(runs: list[dict[str, Any]]) -> dict[str, str]:
    """Each skipped method with its reason (the first seed's where seeds differ)."""
    out: dict[str, str] = {}
    for run in runs:
        for name, why in run.get("skipped", {}).items():
            out.setdefault(name, why)
    return out


def _slug(text: str) -> str:
    """A directory name from ``DATA``'s source name (the part before any ``:``)."""
    keep = [ch if ch.isalnum() or ch in "-." else "-" for ch in text.split(":", 1)[0]]
    return "".join(keep).strip("-") or "data"
