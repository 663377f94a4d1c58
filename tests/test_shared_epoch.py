"""The shared-memory cells of dataset wrappers and streams."""

from __future__ import annotations

import threading

from conftest import HANG_S

from torch_balance._shared_epoch import _SlotPool


def test_giving_a_cell_back_never_waits_for_the_pool_lock() -> None:
    """A cell goes back from a weakref finalizer, which the garbage collector may run while the
    same thread holds the pool's lock (inside take(), or inside another give_back()): waiting
    for the lock there would wait forever."""
    pool = _SlotPool()
    block, slot = pool.take()
    with pool._lock:  # as if a collection ran inside take()
        back = threading.Thread(target=pool.give_back, args=(block, slot), daemon=True)
        back.start()
        back.join(timeout=HANG_S)
        assert not back.is_alive(), "give_back waited for the pool's lock"
    assert pool.take() == (block, slot)  # the cell was handed back and is handed out again
