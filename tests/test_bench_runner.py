"""bench.runner: the run order, the progress bar, the run loop and its --jobs and --threads."""

from __future__ import annotations

import io
import json
import random
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from torch_balance.bench.runner import (
    BenchConfig,
    progress_bar,
    resolve_jobs,
    resolve_threads,
    run_bench,
    run_order,
)
from torch_balance.bench.workers import usable_cores


class Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_progress_bar_is_disabled_when_output_is_not_a_terminal() -> None:
    assert progress_bar(10, file=io.StringIO()).disable
    shown = progress_bar(10, file=Terminal())
    assert not shown.disable
    shown.close()
    assert progress_bar(10, enabled=False, file=Terminal()).disable


def test_run_bench_writes_no_progress_updates_into_a_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = BenchConfig(methods=["erm"], seeds=1, steps=3, out=str(tmp_path), progress=True)
    document = run_bench(config)
    captured = capsys.readouterr()  # pytest's capture is not a terminal
    assert "\r" not in captured.err and "\r" not in captured.out
    assert "step/s" not in captured.err
    assert json.loads((tmp_path / "results.json").read_text())["config"]["strategies"] == ["erm"]
    assert set(document["runs"][0]["strategies"]) == {"erm"}


@pytest.mark.parametrize(
    "asked,order",
    [
        (["over", "erm"], ["erm", "over"]),
        (["logit-adjust", "class"], ["erm", "class", "logit-adjust"]),
        (["crt", "smote-embedding", "sqrt"], ["erm", "sqrt", "crt", "smote-embedding"]),
        (["under"], ["under"]),
    ],
)
def test_run_order_puts_erm_before_the_methods_built_on_it(
    asked: list[str], order: list[str]
) -> None:
    assert run_order(asked) == order


def _numbers(document: dict[str, Any]) -> dict[str, Any]:
    """The results of a document, without the wall times (which no two runs share)."""

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k != "seconds"}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return strip({k: document[k] for k in ("command", "summary", "recall_by_size_rank", "runs")})


def test_two_jobs_give_the_results_of_one(tmp_path: Path) -> None:
    psutil = pytest.importorskip("psutil")
    before = {child.pid for child in psutil.Process().children(recursive=True)}
    documents, tables = [], []
    for jobs in (1, 2):
        out = tmp_path / f"jobs{jobs}"
        config = BenchConfig(
            methods=["under", "crt"], seeds=2, steps=6, head_steps=3, out=str(out), jobs=jobs
        )
        documents.append(run_bench(config, say=lambda line: None))
        tables.append((out / "results.md").read_text().split("\n\nMachine:")[0])
    one, two = documents
    assert (one["config"]["jobs"], two["config"]["jobs"]) == (1, 2)
    assert (one["machine"]["torch_threads"], two["machine"]["torch_threads"]) == (1, 1)
    assert _numbers(one) == _numbers(two)
    assert tables[0] == tables[1]
    assert [list(run["strategies"]) for run in two["runs"]] == [["under", "crt"]] * 2
    assert [run["seed"] for run in two["runs"]] == [0, 1]
    after = psutil.Process().children(recursive=True)
    leftover = [p for p in after if p.pid not in before and "resource_tracker" not in _cmd(p)]
    assert not leftover, "worker processes outlived run_bench"


def _cmd(process: Any) -> str:
    try:
        return " ".join(process.cmdline())
    except Exception:
        return ""


@pytest.mark.parametrize("field,value", [("jobs", 0), ("jobs", -2), ("threads", 0)])
def test_bad_jobs_and_threads_are_refused_by_name(tmp_path: Path, field: str, value: int) -> None:
    config = BenchConfig(methods=["erm"], seeds=1, steps=2, out=str(tmp_path), **{field: value})
    with pytest.raises(ValueError, match=f"--{field}: expected an integer >= 1, got {value}"):
        run_bench(config, say=lambda line: None)


def test_jobs_default_to_the_usable_cores_and_threads_to_one() -> None:
    assert resolve_jobs(None, torch.device("cpu")) == usable_cores()
    assert resolve_jobs(None, torch.device("cuda")) == 1
    assert resolve_threads(None) == 1
    with pytest.raises(TypeError, match="--jobs: expected an integer"):
        resolve_jobs(1.5, torch.device("cpu"))  # type: ignore[arg-type]


def test_a_run_leaves_the_global_rngs_alone(tmp_path: Path) -> None:
    states = (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())
    config = BenchConfig(methods=["under-static", "crt"], seeds=1, steps=3, head_steps=2)
    run_bench(replace(config, out=str(tmp_path), jobs=1), say=lambda line: None)
    assert torch.equal(states[0], torch.get_rng_state())
    assert np.array_equal(states[1], np.random.get_state()[1])
    assert states[2] == random.getstate()


def test_the_command_names_threads_but_not_jobs(tmp_path: Path) -> None:
    config = BenchConfig(methods=["erm"], seeds=1, steps=2, out=str(tmp_path), threads=2, jobs=1)
    document = run_bench(config, say=lambda line: None)
    assert "--threads 2" in document["command"] and "--jobs" not in document["command"]
    assert document["machine"]["torch_threads"] == 2
