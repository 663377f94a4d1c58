"""Where the benchmark's training runs execute: in this process, or in worker processes.

:func:`run_tasks` calls one function on every task, ``jobs`` at a time, and hands each result
back as it arrives. Every task runs under :func:`limit_threads`, with the same thread count
whether it runs here (``jobs=1``) or in a worker, so the numbers a task produces do not depend
on ``jobs``. Workers are spawned (never forked: a fork of a process that has started torch's
thread pools is not safe), ignore Ctrl-C (the parent handles it), leave the global RNGs alone
(their tasks draw from their own generators) and exit if the parent dies. On an error, an
interruption or the end of the work, every worker is stopped before :func:`run_tasks` returns
or raises.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from multiprocessing.connection import wait
from typing import Any, TypeVar

import torch

__all__ = ["limit_threads", "run_tasks", "usable_cores"]

T = TypeVar("T")
R = TypeVar("R")

# How long a worker may take to exit after SIGTERM before it gets SIGKILL.
_GRACE_S = 5.0


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS has one), at least 1.

    Example:
        >>> usable_cores() >= 1
        True
    """
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


@contextmanager
def limit_threads(threads: int) -> Iterator[None]:
    """Run the block on ``threads`` torch threads and as many native-pool threads.

    The native pools (OpenMP and BLAS, through threadpoolctl) are those of NumPy and
    scikit-learn, which imbalanced-learn's SMOTE and the nearest-neighbour searches use; their
    chunking can depend on the thread count. Both settings are restored on exit.

    Example:
        >>> before = torch.get_num_threads()
        >>> with limit_threads(1):
        ...     torch.get_num_threads()
        1
        >>> torch.get_num_threads() == before
        True
    """
    import sklearn.neighbors  # noqa: F401  (loads scikit-learn's native pools, so they are limited)
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(limits=threads):
            yield
    finally:
        torch.set_num_threads(before)


def run_tasks(
    fn: Callable[[T], R],
    tasks: Sequence[T],
    *,
    jobs: int,
    threads: int,
    on_result: Callable[[int, R], None] | None = None,
) -> list[R]:
    """``[fn(task) for task in tasks]``, ``jobs`` tasks at a time, each on ``threads`` threads.

    With one job (or one task) the tasks run here, in order. Otherwise they run in up to
    ``jobs`` spawned worker processes, started in the order given (so put the longest first);
    ``fn``, the tasks and the results must then be picklable, and ``fn`` importable by name.

    Args:
        fn: The work of one task.
        tasks: The tasks.
        jobs: How many tasks may run at once (at least 1).
        threads: Torch and native-pool threads of each task (at least 1).
        on_result: Called in this process with ``(index, result)`` as each task finishes.

    Returns:
        The results, in the order of ``tasks``.

    Raises:
        RuntimeError: If a worker process died (killed, or out of memory).
        Exception: Whatever ``fn`` raised, after every worker has been stopped.

    Example:
        >>> run_tasks(abs, [-2, 3, -4], jobs=1, threads=1)
        [2, 3, 4]
    """
    results: dict[int, R] = {}

    def done(index: int, result: R) -> None:
        results[index] = result
        if on_result is not None:
            on_result(index, result)

    workers = min(jobs, len(tasks))
    if workers <= 1:
        for index, task in enumerate(tasks):
            done(index, _call(fn, task, threads))
    else:
        _in_workers(fn, tasks, workers, threads, done)
    return [results[index] for index in range(len(tasks))]


def _call(fn: Callable[[T], R], task: T, threads: int) -> R:
    with limit_threads(threads):
        return fn(task)


def _in_workers(
    fn: Callable[[T], R],
    tasks: Sequence[T],
    workers: int,
    threads: int,
    done: Callable[[int, R], None],
) -> None:
    executor = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_start_worker,
    )
    finished = False
    try:
        futures: dict[Future[R], int] = {
            executor.submit(_call, fn, task, threads): index for index, task in enumerate(tasks)
        }
        for future in as_completed(futures):
            done(futures[future], future.result())
        finished = True
    except BrokenProcessPool as error:
        raise RuntimeError(
            "a benchmark worker process died (killed, or out of memory?); "
            "try fewer --jobs, or --jobs 1 to train in this process"
        ) from error
    finally:
        _stop(executor, wait=finished)


def _stop(executor: ProcessPoolExecutor, *, wait: bool) -> None:
    """Shut ``executor`` down; unless ``wait``, terminate its workers instead of waiting."""
    if wait:
        executor.shutdown(wait=True)
        return
    # Python 3.14 has executor.terminate_workers(); before it, the workers are only reachable
    # through this attribute, which every version since 3.2 has.
    processes = list((getattr(executor, "_processes", None) or {}).values())
    executor.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(_GRACE_S)
        if process.is_alive():
            process.kill()
            process.join()


def _start_worker() -> None:
    """A worker's set-up: Ctrl-C is the parent's to handle; exit when the parent is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = multiprocessing.parent_process()
    if parent is not None:
        watcher = threading.Thread(target=_exit_after, args=(parent.sentinel,), daemon=True)
        watcher.start()


def _exit_after(sentinel: Any) -> None:
    """Block until ``sentinel`` (the parent process's) is ready, which is when it has ended."""
    wait([sentinel])
    os._exit(1)
