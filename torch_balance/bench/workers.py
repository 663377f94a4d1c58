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
import pickle
import signal
import threading
import traceback
from collections.abc import Callable, Iterator, Sequence
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
    """Run ``tasks`` in ``workers`` spawned processes, each fed over its own pipe.

    A pool of plain processes and pipes, not ``ProcessPoolExecutor``: the executor's queues hold
    five named POSIX semaphores, owned twice (by their finalisers here and by the resource
    tracker, which unlinks whatever is still registered when its pipe closes), and on a busy
    machine the second unlink surfaced as ``FileNotFoundError`` in ``sem_unlink``. Pipes need no
    named semaphore, so nothing here is registered with the resource tracker.
    """
    context = multiprocessing.get_context("spawn")
    pool: list[_Worker] = []
    finished = False
    try:
        for _ in range(workers):
            pool.append(_Worker(context, fn, threads))
        queue = iter(enumerate(tasks))
        for worker in pool:
            worker.give(next(queue, None))
        while any(worker.task is not None for worker in pool):
            busy = [worker for worker in pool if worker.task is not None]
            ready = wait([w.conn for w in busy] + [w.process.sentinel for w in busy])
            for worker in busy:
                if worker.conn in ready:
                    index, result = worker.receive()
                    done(index, result)
                    worker.give(next(queue, None))
                elif worker.process.sentinel in ready:
                    raise RuntimeError(
                        "a benchmark worker process died (killed, or out of memory?); "
                        "try fewer --jobs, or --jobs 1 to train in this process"
                    )
        finished = True
    finally:
        for worker in pool:
            worker.stop(wait=finished)


class _RemoteTraceback(Exception):
    """The traceback of an exception raised in a worker, attached as the re-raised one's cause."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return f'\n"""\n{self.text}"""'


class _Worker:
    """One spawned worker process and the parent's end of its pipe."""

    def __init__(self, context: Any, fn: Callable[[Any], Any], threads: int) -> None:
        self.conn, child_end = context.Pipe(duplex=True)
        self.process = context.Process(
            target=_serve, args=(child_end, fn, threads), name="torch-balance-bench"
        )
        self.process.start()
        child_end.close()
        self.task: int | None = None

    def give(self, item: tuple[int, Any] | None) -> None:
        """Send the next ``(index, task)``, or ``None`` (no more work: the worker exits)."""
        self.task = None if item is None else item[0]
        self.conn.send(item)

    def receive(self) -> tuple[int, Any]:
        """The ``(index, result)`` of the task in flight; a task's exception is raised here."""
        try:
            outcome, payload = self.conn.recv()
        except EOFError:
            raise RuntimeError(
                "a benchmark worker process died (killed, or out of memory?); "
                "try fewer --jobs, or --jobs 1 to train in this process"
            ) from None
        index, self.task = self.task, None
        if outcome == "error":
            error, text = payload
            raise error from _RemoteTraceback(text)
        assert index is not None, "a result came from a worker without a task in flight"
        return index, payload

    def stop(self, *, wait: bool) -> None:
        """Let the worker exit (``wait``) or terminate it; SIGKILL after a grace period."""
        if not wait and self.process.is_alive():
            self.process.terminate()
        self.process.join(None if wait else _GRACE_S)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.conn.close()


def _serve(conn: Any, fn: Callable[[Any], Any], threads: int) -> None:
    """A worker's loop: run each task sent over ``conn`` and send back its result or error."""
    _start_worker()
    while True:
        item = conn.recv()
        if item is None:
            break
        _, task = item
        try:
            reply: tuple[str, Any] = ("ok", _call(fn, task, threads))
        except BaseException as error:  # every failure goes back to the parent
            reply = ("error", (_picklable(error), traceback.format_exc()))
        conn.send(reply)
    conn.close()


def _picklable(error: BaseException) -> BaseException:
    """``error`` if it survives pickling, else a ``RuntimeError`` carrying its text."""
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:  # any pickling failure
        return RuntimeError(f"{type(error).__name__}: {error}")
    return error


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
