"""The helper thread: when one may run, a result started early, an iterator run ahead.

An epoch's work is a few long torch calls (a permutation, a gather) that release the GIL,
and one long Python loop that cannot (turning indices into Python ints). With a second
usable core, a helper thread runs the torch calls while the main thread does the rest.

Rules, each enforced here:

- a helper runs only where more than one CPU is usable (``os.sched_getaffinity``) and never
  inside a DataLoader worker process (whose cores belong to the other workers);
- a helper never outlives what started it: :class:`Early` is joined by ``result()``,
  :func:`run_ahead` and :func:`alongside` join their thread when the iterator finishes,
  fails or is closed (a generator that is dropped is closed), and :class:`Prefetch` is
  closed by its owner, which cancels what it has not started and joins its threads;
- whatever the helper raises is raised again in the caller's thread.

Results do not depend on whether a helper ran: it computes the same calls, on its own
generators, that the caller would otherwise compute itself.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Generic, TypeVar

from torch.utils.data import get_worker_info

__all__ = ["Early", "Prefetch", "alongside", "helper_allowed", "run_ahead", "usable_cpus"]

T = TypeVar("T")


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask; ``os.cpu_count()`` where unknown).

    Example:
        >>> usable_cpus() >= 1
        True
    """
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


MIN_WORK = 1 << 17
"""Indices below which a helper thread costs more to start than it saves."""


def helper_allowed(work: int = MIN_WORK) -> bool:
    """Whether a helper thread may run here for ``work`` indices: enough work, two or more
    usable CPUs, and not a DataLoader worker process."""
    return work >= MIN_WORK and usable_cpus() > 1 and get_worker_info() is None


class Early(Generic[T]):
    """``fn(*args)`` started now in a helper thread, or run by :meth:`result` if none may run.

    Example:
        >>> Early(sum, [1, 2, 3]).result()
        6
    """

    def __init__(self, fn: Callable[..., T], *args: Any, helper: bool | None = None) -> None:
        self._fn, self._args = fn, args
        self._value: Any = None
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        if helper_allowed() if helper is None else helper:
            self._thread = threading.Thread(target=self._run, name="torch_balance-early")
            self._thread.start()

    def _run(self) -> None:
        try:
            self._value = self._fn(*self._args)
        except BaseException as error:  # handed to the caller's thread by result()
            self._error = error

    def result(self) -> T:
        """The value (waiting for the helper if it runs); the helper's error is raised here."""
        if self._thread is None:
            return self._fn(*self._args)
        self._thread.join()
        if self._error is not None:
            raise self._error
        value: T = self._value
        return value


class Prefetch(Generic[T]):
    """``fn(i)`` for ``i`` in ``range(count)``, drawn up to ``depth`` items ahead of the one
    asked for on ``workers`` threads, where helpers may run; ``fn`` itself otherwise.

    For independent pieces of one result (each with its own generator), asked for mostly in
    increasing order by one thread: asking for ``i`` starts ``i + 1 .. i + depth - 1`` too.
    An item asked for again (or never started) is computed on demand; the value is ``fn(i)``
    either way. :meth:`close` cancels what has not started and joins the threads.

    Example:
        >>> with Prefetch(lambda i: i * i, 5, helper=True) as squares:
        ...     [squares(i) for i in range(5)]
        [0, 1, 4, 9, 16]
    """

    def __init__(
        self,
        fn: Callable[[int], T],
        count: int,
        *,
        depth: int = 3,
        workers: int = 2,
        helper: bool | None = None,
    ) -> None:
        self._fn, self._count, self._depth = fn, count, depth
        self._futures: dict[int, Future[T]] = {}
        self._pool: ThreadPoolExecutor | None = None
        if count > 1 and (helper_allowed() if helper is None else helper):
            self._pool = ThreadPoolExecutor(workers, thread_name_prefix="torch_balance-prefetch")

    def __call__(self, i: int) -> T:
        pool = self._pool
        if pool is None:
            return self._fn(i)
        for j in range(i, min(i + self._depth, self._count)):
            if j not in self._futures:
                self._futures[j] = pool.submit(self._fn, j)
        for j in [j for j in self._futures if j < i]:  # passed over: not needed any more
            self._futures.pop(j).cancel()
        return self._futures.pop(i).result()

    def close(self) -> None:
        """Cancel what has not started, wait for what has, and join the threads."""
        if self._pool is not None:
            for future in self._futures.values():
                future.cancel()
            self._futures.clear()
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> Prefetch[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _End:
    """What the helper puts last: nothing, or the error that stopped it."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


def run_ahead(items: Iterator[T], depth: int = 4, *, helper: bool | None = None) -> Iterator[T]:
    """Iterate ``items`` in a helper thread, up to ``depth`` items ahead of the consumer.

    Without a helper (one usable CPU, or in a DataLoader worker) this is ``items`` itself.
    The helper stops, and is joined, when the returned iterator ends, raises or is closed.

    Example:
        >>> list(run_ahead(iter(range(5)), depth=2, helper=True))
        [0, 1, 2, 3, 4]
    """
    if not (helper_allowed() if helper is None else helper):
        return items
    return _ahead(items, depth)


def _ahead(items: Iterator[T], depth: int) -> Iterator[T]:
    ready: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        ready.put(item, timeout=0.05)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            ready.put(_End())
        except BaseException as error:
            ready.put(_End(error))

    thread = threading.Thread(target=produce, name="torch_balance-ahead", daemon=True)
    thread.start()
    try:
        while True:
            item = ready.get()
            if isinstance(item, _End):
                if item.error is not None:
                    raise item.error
                return
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue, then join
            with contextlib.suppress(queue.Empty):
                ready.get_nowait()
            thread.join(timeout=0.01)


def alongside(items: Iterator[T], fn: Callable[[], object], *, helper: bool) -> Iterator[T]:
    """Yield ``items`` while ``fn()`` runs in a helper thread: work done ahead of time (the
    next epoch's draws) while the consumer reads this epoch.

    The helper starts once the first item is out and is joined when ``items`` end, fail or
    are closed. Without ``helper``, ``fn`` does not run at all. What ``fn`` raises is
    dropped: its results are only a head start, and whoever needs one computes it again
    (and meets the error there).

    Example:
        >>> done = []
        >>> list(alongside(iter([1, 2]), lambda: done.append("ahead"), helper=True)), done
        ([1, 2], ['ahead'])
    """
    thread: threading.Thread | None = None

    def run() -> None:
        with contextlib.suppress(Exception):
            fn()

    try:
        for item in items:
            yield item
            if thread is None and helper:
                thread = threading.Thread(target=run, name="torch_balance-alongside")
                thread.start()
    finally:
        if thread is not None:
            thread.join()
