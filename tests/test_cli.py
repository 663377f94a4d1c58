"""``torch-balance`` end to end on tiny budgets: digits, a generated image folder, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import HANG_S
from PIL import Image

from torch_balance.bench import runner
from torch_balance.bench.methods import METHODS
from torch_balance.bench.metrics import METRIC_NAMES
from torch_balance.cli import build_parser, main

FAST = ["--seeds", "1", "--steps", "12", "--head-steps", "6", "--no-progress"]


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_BALANCE_CACHE", str(tmp_path / "cache"))


def make_image_folder(root: Path, sizes: dict[str, int]) -> Path:
    rng = np.random.default_rng(2)
    for c, (name, n) in enumerate(sizes.items()):
        (root / name).mkdir(parents=True)
        for i in range(n):
            pixels = rng.integers(0, 50, size=(12, 12, 3)) + 70 * c
            Image.fromarray(pixels.astype(np.uint8)).save(root / name / f"{i}.png")
    return root


def test_bench_digits_every_method_end_to_end(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    names = [s for s in METHODS if s != "smote-embedding"]
    out = tmp_path / "out"
    status = main(["bench", "digits", *FAST, "--methods", ",".join(names), "--out", str(out)])
    assert status == 0
    printed = capsys.readouterr().out
    for path in ("results.md", "results.json", "recall.png"):
        assert (out / path).is_file() and str(out / path) in printed
    table = (out / "results.md").read_text()
    first = table.split("\n\n")[1]  # the metrics table (the per-class table follows)
    rows = [line for line in first.splitlines() if line.startswith("| ") and "---" not in line]
    assert [row.split("|")[1].strip() for row in rows[1:]] == names
    assert table.split("\n\n")[1] in printed  # the printed table is the written one
    document = json.loads((out / "results.json").read_text())
    assert document["config"]["steps"] == 12 and document["config"]["ratio"] == 10
    (run,) = document["runs"]
    assert sum(run["test_counts"]) == 500 and len(set(run["test_counts"])) == 1
    for name in names:
        result = run["strategies"][name]
        assert len(result["per_class_recall"]) == 10
        for metric in METRIC_NAMES:
            assert 0.0 <= result[metric] <= 1.0
    assert run["strategies"]["progressive"]["num_epochs"] >= 1
    assert run["strategies"]["deferred"]["start_epoch"] >= 1
    assert run["strategies"]["logit-adjust"]["tau"] in run["strategies"]["logit-adjust"]["tau_grid"]
    assert run["strategies"]["pixel-smote"]["k_neighbors"] <= 5
    # Deterministic: the same seed gives the same numbers.
    again = tmp_path / "again"
    assert main(["bench", "digits", *FAST, "--methods", "erm,under", "--out", str(again)]) == 0
    second = json.loads((again / "results.json").read_text())["runs"][0]["strategies"]
    assert second["erm"]["per_class_recall"] == run["strategies"]["erm"]["per_class_recall"]
    assert second["under"]["per_class_recall"] == run["strategies"]["under"]["per_class_recall"]


def test_bench_smote_embedding(tmp_path: Path) -> None:
    pytest.importorskip("torch_balance.smote")
    out = tmp_path / "out"
    status = main(["bench", "digits", *FAST, "--methods", "smote-embedding", "--out", str(out)])
    assert status == 0
    result = json.loads((out / "results.json").read_text())["runs"][0]["strategies"]
    assert set(result) == {"smote-embedding"}
    assert result["smote-embedding"]["resampled_size"] > 0


def test_bench_on_a_generated_image_folder_clamps_smote_k(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_image_folder(tmp_path / "imgs", {"big": 24, "mid": 10, "tiny": 6})
    out = tmp_path / "out"
    argv = ["bench", f"imagefolder:{root}", *FAST, "--image-size", "8", "--batch-size", "8"]
    argv += ["--methods", "erm,class,pixel-smote,crt", "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "pixel-smote: k_neighbors clamped to 3 (smallest class has 4)" in printed
    document = json.loads((out / "results.json").read_text())
    assert document["classes"] == ["big", "mid", "tiny"]
    assert document["runs"][0]["test_counts"] == [1, 1, 1]
    assert document["runs"][0]["train_counts"] == [18, 7, 4]


def test_inspect_prints_histogram_ratio_and_epochs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", "digits", "--profile", "step", "--ratio", "4"]) == 0
    text = capsys.readouterr().out
    assert "imbalance ratio (largest / smallest class):" in text and "█" in text
    assert "  training split      4.0  (99 " in text
    for column in ("erm", "over", "under", "sqrt", "class", "progr. first", "deferred"):
        assert column in text
    assert "| total | 620 | 990 | 250 |" in text


def test_inspect_image_folder_decodes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_image_folder(tmp_path / "imgs", {"a": 9, "b": 5})
    (root / "a" / "0.png").write_bytes(b"not an image")  # would fail if decoded
    assert main(["inspect", f"imagefolder:{root}"]) == 0
    assert "natural counts" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["bench", "--methods", "erm,bogus"], "erm, over, under, under-static"),
        (["bench", "--strategies", "erm,bogus"], "--methods: expected names from erm, over"),
        (["bench", "svhn"], "digits, fashion-mnist[:DIR], cifar10[:DIR], imagefolder:PATH"),
        (["inspect", "cifar10:/nonexistent/dir"], "download=True"),
        (["bench", "digits", "--seeds", "0"], "--seeds: expected an integer >= 1"),
        (
            ["bench", "digits", "--jobs", "0"],
            "--jobs: expected an integer >= 1, got 0. Use --jobs 1",
        ),
        (["bench", "digits", "--jobs", "-3"], "--jobs: expected an integer >= 1, got -3"),
        (["bench", "digits", "--threads", "0"], "--threads: expected an integer >= 1, got 0"),
    ],
)
def test_bad_input_exits_2_with_a_message(
    tmp_path: Path, argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*argv, "--out", str(tmp_path / "o")] if argv[0] == "bench" else argv) == 2
    assert needle in capsys.readouterr().err


def test_unwritable_output_is_reported_before_any_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a directory")

    def no_loading(*args: object, **kwargs: object) -> None:
        raise AssertionError("data was loaded before the output directory was checked")

    monkeypatch.setattr(runner, "load_source", no_loading)
    assert main(["bench", "digits", "--out", str(blocker / "out")]) == 2
    assert "--out: expected a directory that can be created and written" in capsys.readouterr().err


def test_python_dash_m_runs_the_command() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "torch_balance", "bench", "--help"],
        capture_output=True,
        text=True,
        timeout=HANG_S,
        check=False,
    )
    assert done.returncode == 0
    assert "smote-embedding" in done.stdout and "--methods" in done.stdout
    assert "--strategies" not in done.stdout  # a hidden alias


def test_strategies_is_a_hidden_alias_of_methods(tmp_path: Path) -> None:
    parser = build_parser()
    old = parser.parse_args(["bench", "--strategies", "erm,crt"])
    new = parser.parse_args(["bench", "--methods", "erm,crt"])
    assert old.methods == new.methods == "erm,crt"
    assert parser.parse_args(["bench"]).methods == ",".join(METHODS)
    out = tmp_path / "out"
    assert main(["bench", "digits", *FAST, "--strategies", "under", "--out", str(out)]) == 0
    document = json.loads((out / "results.json").read_text())
    assert document["config"]["strategies"] == ["under"]
    assert document["command"].endswith("--methods under")
