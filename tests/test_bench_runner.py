"""bench.runner: the run order, the progress bar and the run loop."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from torch_balance.bench.runner import BenchConfig, progress_bar, run_bench, run_order


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
