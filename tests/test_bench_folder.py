"""``torch-balance`` on a small long-tailed image folder, as a new user's first run meets it:
methods that cannot run are skipped by name, finished methods are never thrown away, small
test sets are warned about, split sizes and labelled imbalance ratios are shown, the defaults
are in ``--help`` and the printed command is the one that ran."""

from __future__ import annotations

import json
import shlex
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from torch_balance.bench import runner
from torch_balance.bench.methods import METHODS, CannotRun, Job, Method, Recipe, run_method
from torch_balance.bench.report import RESULTS_KEY, write_results
from torch_balance.bench.settings import BenchConfig, command_line, resolve_budget
from torch_balance.bench.sources import load_source
from torch_balance.bench.split import Tensors
from torch_balance.bench.train import Budget
from torch_balance.cli import build_parser, main

FAST = ["--seeds", "1", "--steps", "4", "--head-steps", "2", "--batch-size", "8"]
FAST += ["--image-size", "8", "--jobs", "1", "--no-progress"]
NAMES = "abcdef"


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_BALANCE_CACHE", str(tmp_path / "cache"))


def write_folder(root: Path, sizes: list[int]) -> Path:
    """One sub-folder of tiny PNGs per class, class ``c`` a shade of its own."""
    rng = np.random.default_rng(3)
    for c, n in enumerate(sizes):
        (root / NAMES[c]).mkdir(parents=True)
        for i in range(n):
            pixels = rng.integers(0, 30, size=(6, 6, 3)) + 40 * c
            Image.fromarray(pixels.astype(np.uint8)).save(root / NAMES[c] / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def long_tail(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pooled folder 40/16/6/4/3/3: one test image per class, and classes 'e' and 'f'
    keep one training image each (SMOTE needs two)."""
    return write_folder(tmp_path_factory.mktemp("pooled") / "imgs", [40, 16, 6, 4, 3, 3])


def rows(table: str) -> list[str]:
    """The method column of the first table (the metrics; the per-class table follows)."""
    lines: list[str] = []
    for line in table.splitlines():
        if line.startswith("|"):
            lines.append(line)
        elif lines:
            break
    return [line.split("|")[1].strip() for line in lines[2:]]


def test_methods_that_cannot_run_are_skipped_and_the_rest_are_kept(
    long_tail: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    methods = "erm,pixel-smote,class,smote-embedding,crt,logit-adjust"
    argv = ["bench", f"imagefolder:{long_tail}", *FAST, "--methods", methods, "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    for name in ("pixel-smote", "smote-embedding"):
        line = next(line for line in printed.splitlines() if line.startswith(f"{name}: skipped"))
        assert "classes 'e', 'f' have 1 training image;" in line and "--methods" in line
    table = (out / "results.md").read_text()
    assert rows(table) == ["erm", "class", "crt", "logit-adjust"]  # every method that ran
    assert "pixel-smote: skipped: classes 'e', 'f' have" in table
    document = json.loads((out / "results.json").read_text())
    (run,) = document["runs"]
    assert set(run[RESULTS_KEY]) == {"erm", "class", "crt", "logit-adjust"}
    assert set(run["skipped"]) == {"pixel-smote", "smote-embedding"}
    assert document["config"][RESULTS_KEY] == methods.split(",")  # what was asked, in order

    # the small test set is warned about, printed and under the table
    warning = next(line for line in printed.splitlines() if line.startswith("warning:"))
    assert "6 of 6 classes have fewer than 10 test images" in warning
    assert "steps of 100 %" in warning and warning in table
    # the header gives the split sizes
    train, val = sum(run["train_counts"]), sum(run["val_counts"])
    assert f"split: {train} train / {val} validation / 6 test images (test: 1 per class)" in table


def test_the_printed_command_is_the_one_that_ran(long_tail: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    argv = ["bench", f"imagefolder:{long_tail}", *FAST, "--methods", "erm,crt", "--out", str(out)]
    assert main(argv) == 0
    document = json.loads((out / "results.json").read_text())
    command = document["command"]
    assert command in (out / "results.md").read_text()
    assert "--profile" not in command and "--ratio" not in command  # the folder's own counts
    words = shlex.split(command)
    assert words[0] == "torch-balance"
    again = build_parser().parse_args(words[1:])
    config = document["config"]
    assert again.data == f"imagefolder:{long_tail}" and again.ratio is None
    assert (again.seeds, again.steps, again.batch_size) == (1, 4, 8)
    assert (again.head_steps, again.image_size, again.methods) == (2, 8, "erm,crt")
    assert (config["steps"], config["head_steps"], config["image_size"]) == (4, 2, 8)


def test_digits_command_keeps_profile_and_ratio() -> None:
    source = load_source("digits")
    config = BenchConfig(steps=40, seeds=1, methods=["erm"], profile="step")
    ratio, budget = resolve_budget(config, source)
    command = command_line(config, source, ["erm"], ratio, budget, 1)
    assert "--profile step --ratio 10" in command and "--image-size" not in command


def test_a_run_that_fails_keeps_the_runs_that_finished(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(job: Any) -> Recipe:
        raise RuntimeError("out of memory, say")

    monkeypatch.setitem(METHODS, "boom", Method("fails", "backbone", boom))
    lines: list[str] = []
    config = BenchConfig(methods=["erm", "boom"], seeds=1, steps=2, out=str(tmp_path), jobs=1)
    with pytest.raises(RuntimeError, match="out of memory, say"):
        runner.run_bench(config, say=lines.append)
    table = (tmp_path / "results.md").read_text()
    assert rows(table) == ["erm"]
    assert "INCOMPLETE: stopped by RuntimeError: out of memory, say" in table
    document = json.loads((tmp_path / "results.json").read_text())
    assert document["incomplete"] == "RuntimeError: out of memory, say"
    assert set(document["runs"][0][RESULTS_KEY]) == {"erm"}
    assert any("stopped early" in line for line in lines)


def test_no_method_that_can_run_is_an_error_naming_the_class(
    long_tail: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["bench", f"imagefolder:{long_tail}", *FAST, "--methods", "pixel-smote"]
    assert main([*argv, "--out", str(tmp_path / "o")]) == 2
    error = capsys.readouterr().err
    assert "--methods: expected at least one method that can run on this data" in error
    assert "pixel-smote: classes 'e', 'f' have 1 training image" in error


def test_a_method_that_ran_in_some_seeds_only_says_so(tmp_path: Path) -> None:
    def result(recall: list[float]) -> dict[str, Any]:
        return {"accuracy": float(np.mean(recall)), "per_class_recall": recall}

    runs = [
        {"train_counts": [9, 3], RESULTS_KEY: {"a": result([1.0, 0.0]), "b": result([1, 1])}},
        {"train_counts": [9, 3], RESULTS_KEY: {"a": result([1.0, 1.0])}, "skipped": {"b": "x"}},
    ]
    document = write_results(
        tmp_path,
        runs,
        ["a", "b"],
        {"command": "torch-balance bench"},
        header="h",
        machine_line="m",
        plot_title="t",
        say=lambda line: None,
        notes=["b: skipped: x"],
    )
    table = (tmp_path / "results.md").read_text()
    assert rows(table) == ["a", "b (1 of 2 seeds)"]
    assert document["summary"]["b"]["accuracy"] == {"mean": 1.0, "std": 0.0}
    assert document["summary"]["a"]["accuracy"]["mean"] == pytest.approx(0.75)
    assert document["recall_by_size_rank"]["b"] == [1.0, 1.0]
    assert "\n\nb: skipped: x\n\n" in table


def test_inspect_labels_the_ratio_of_the_whole_folder_and_of_each_split(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "d"
    write_folder(root / "train", [40, 16, 6, 3, 2, 1])
    write_folder(root / "val", [2] * 6)
    write_folder(root / "test", [3] * 6)
    assert main(["inspect", f"imagefolder:{root}"]) == 0
    text = capsys.readouterr().out
    lines = {line.split("  ")[1].strip(): line for line in text.splitlines() if line[:2] == "  "}
    # whole folder: a = 40 + 2 + 3 images, f = 1 + 2 + 3
    assert "7.5  (45 'a' / 6 'f')" in lines["whole data"]
    assert "40.0  (40 'a' / 1 'f')" in lines["training split"]
    assert "1.0  (2 in every class)" in lines["validation split"]
    assert "1.0  (3 in every class)" in lines["test split"]
    assert "warning: 6 of 6 classes have fewer than 10 test images" in text
    assert "add test images to those classes" in text


def test_a_class_too_small_for_validation_is_named_without_blaming_the_ratio(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "d"
    write_folder(root / "train", [8, 4, 1])
    write_folder(root / "test", [2, 2, 2])
    assert main(["inspect", f"imagefolder:{root}"]) == 2
    error = capsys.readouterr().err
    assert "imagefolder: expected at least 2 training images in every class" in error
    assert "class 'c' with 1" in error and "val/ sub-folder" in error and "--ratio" not in error


def test_help_shows_the_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "1500 on an image folder" in text and "400 on digits" in text
    assert "64 on an image folder" in text and "(default longtail)" in text
    assert "an image folder keeps its own counts unless --ratio is given" in text


def test_cannot_run_names_the_one_class_before_any_training() -> None:
    x = torch.zeros(4, 3, 4, 4, dtype=torch.uint8)
    y = torch.tensor([0, 0, 0, 1])
    data = Tensors(x, y, x, y, x, y)
    job = Job(data, 2, 0, Budget(steps=10**9, batch_size=2), torch.device("cpu"))
    named = replace(job, classes=("cat", "dog"))
    with pytest.raises(CannotRun, match=r"^pixel-smote: skipped: class 1 has 1 training image; "):
        run_method("pixel-smote", job)  # 10**9 steps: it would never return if it trained
    with pytest.raises(CannotRun, match=r"class 'dog' has 1 training image; .* that class, or"):
        run_method("pixel-smote", named)
