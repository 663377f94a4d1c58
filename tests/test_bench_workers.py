"""bench.workers: tasks in spawned workers, results in order, every worker stopped at the end.

The task functions are defined here, at module level, so that spawned workers can import them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from conftest import HANG_S

from torch_balance.bench.workers import limit_threads, run_tasks, usable_cores

psutil = pytest.importorskip("psutil")


def pid_and_threads(value: int) -> tuple[int, int, int]:
    return value * value, os.getpid(), torch.get_num_threads()


def refuse_three(value: int) -> int:
    if value == 3:
        raise ValueError("three: expected anything else, got 3")
    return value


def touch_later_or_not(task: tuple[str, float]) -> None:
    path, seconds = task
    time.sleep(seconds)
    if path:
        Path(path).touch()


def workers() -> set[int]:
    """Worker processes started by this process (not the resource tracker)."""
    return {
        child.pid
        for child in psutil.Process().children(recursive=True)
        if any("spawn_main" in part for part in _cmdline(child))
    }


def _cmdline(process: psutil.Process) -> list[str]:
    try:
        return list(process.cmdline())
    except psutil.Error:
        return []


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_usable_cores_follows_the_affinity() -> None:
    expected = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert usable_cores() == expected


def test_limit_threads_sets_and_restores() -> None:
    before = torch.get_num_threads()
    with limit_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_results_come_back_in_task_order_from_single_thread_workers() -> None:
    seen: list[int] = []
    results = run_tasks(
        pid_and_threads,
        list(range(6)),
        jobs=2,
        threads=1,
        on_result=lambda index, result: seen.append(index),
    )
    assert [square for square, _, _ in results] == [v * v for v in range(6)]
    assert sorted(seen) == list(range(6))
    pids = {pid for _, pid, _ in results}
    assert os.getpid() not in pids and 1 <= len(pids) <= 2
    assert {threads for _, _, threads in results} == {1}
    assert not any(alive(pid) for pid in pids), "workers outlived run_tasks"
    assert not workers()


def test_one_job_runs_here_on_the_asked_threads() -> None:
    results = run_tasks(pid_and_threads, [1, 2], jobs=1, threads=1)
    assert {pid for _, pid, _ in results} == {os.getpid()}
    assert {threads for _, _, threads in results} == {1}


def test_an_error_in_a_task_stops_every_worker_and_is_raised() -> None:
    with pytest.raises(ValueError, match="three: expected anything else"):
        run_tasks(refuse_three, list(range(8)), jobs=2, threads=1)
    assert not workers()


def test_an_interruption_stops_running_workers_without_waiting_for_them(tmp_path: Path) -> None:
    marker = tmp_path / "finished"
    started: set[int] = set()

    def interrupt(index: int, result: object) -> None:
        started.update(workers())
        raise KeyboardInterrupt

    # Task 0 returns at once; task 1 would touch the marker 20 s later, unless stopped.
    tasks = [("", 0.0), (str(marker), 20.0)]
    with pytest.raises(KeyboardInterrupt):
        run_tasks(touch_later_or_not, tasks, jobs=2, threads=1, on_result=interrupt)
    assert started, "the workers were not seen while running"
    assert not any(alive(pid) for pid in started)
    assert not workers()
    assert not marker.exists()


def test_workers_exit_when_the_parent_is_killed(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import multiprocessing, os, signal, sys, threading, time
        from torch_balance.bench.workers import run_tasks

        def kill_parent():
            while len(multiprocessing.active_children()) < 2:
                time.sleep(0.05)
            print(" ".join(str(p.pid) for p in multiprocessing.active_children()), flush=True)
            os.kill(os.getpid(), signal.SIGKILL)

        threading.Thread(target=kill_parent, daemon=True).start()
        run_tasks(time.sleep, [60, 60], jobs=2, threads=1)
        """
    )
    # Output to a file, not a pipe: orphaned workers would hold a pipe open.
    log = tmp_path / "log"
    with log.open("w") as out:
        done = subprocess.run(
            [sys.executable, "-c", script], stdout=out, stderr=out, timeout=HANG_S, check=False
        )
    assert done.returncode == -9, log.read_text()
    pids = [int(pid) for pid in log.read_text().split()]
    assert len(pids) == 2
    try:
        deadline = time.monotonic() + HANG_S
        while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(alive(pid) for pid in pids), "orphaned workers kept running"
    finally:
        for pid in pids:
            if alive(pid):
                psutil.Process(pid).kill()


def test_the_workers_register_no_named_semaphore(monkeypatch: pytest.MonkeyPatch) -> None:
    # Named semaphores are owned twice (by their finaliser here and by the resource tracker);
    # on a busy machine the second unlink failed in a finaliser. The pool uses pipes only.
    from multiprocessing import resource_tracker

    registered: list[tuple[str, str]] = []
    real = resource_tracker.register

    def record(name: str, rtype: str) -> None:
        registered.append((name, rtype))
        real(name, rtype)

    monkeypatch.setattr(resource_tracker, "register", record)
    results = run_tasks(pid_and_threads, list(range(4)), jobs=2, threads=1)
    assert [square for square, _, _ in results] == [0, 1, 4, 9]
    assert len({pid for _, pid, _ in results}) == 2
    assert not [r for r in registered if r[1] == "semaphore"], registered


def test_a_worker_that_dies_is_reported_and_the_others_stopped() -> None:
    with pytest.raises(RuntimeError, match="worker process died"):
        run_tasks(os._exit, [0, 3, 5], jobs=2, threads=1)
    assert not workers()
