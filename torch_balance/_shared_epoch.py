"""Numbers in shared memory that DataLoader workers read and write: a dataset wrapper's epoch,
and the count that notices a second pass over the same draw.

A dataset wrapper travels to DataLoader workers (persistent ones for the whole run), so its
epoch cannot live in the object: each number is a cell of a shared-memory block, and the
workers' copies point at the same cell.
"""

from __future__ import annotations

import threading
import warnings
import weakref
from typing import Any

import torch

__all__ = ["SameDrawWatch", "SharedCount", "SharedEpoch"]


class _SlotPool:
    """Shared-memory int64 cells handed out one at a time.

    Each block of cells is one shared-memory segment (one file descriptor), so a thousand
    dataset wrappers hold one descriptor, not a thousand. A freed cell is handed out again.
    """

    BLOCK = 4096

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._blocks: list[torch.Tensor] = []
        self._free: list[tuple[int, int]] = []

    def take(self) -> tuple[torch.Tensor, int]:
        with self._lock:
            if not self._free:
                block = torch.zeros(self.BLOCK, dtype=torch.int64).share_memory_()
                number = len(self._blocks)
                self._blocks.append(block)
                self._free = [(number, slot) for slot in range(self.BLOCK - 1, -1, -1)]
            number, slot = self._free.pop()
            block = self._blocks[number]
            block[slot] = 0
            return block, slot

    def give_back(self, block: torch.Tensor, slot: int) -> None:
        # No lock: this runs from a weakref finalizer, which the garbage collector may call
        # in the middle of take() or of another give_back() on the same thread, where
        # waiting for the lock would wait forever. Reading the block list and appending to
        # the free list are each atomic under the GIL, which is all this needs.
        for number, held in enumerate(list(self._blocks)):
            if held is block:
                self._free.append((number, slot))
                return


_POOL = _SlotPool()


class SharedEpoch:
    """One epoch number in shared memory, read by DataLoader workers at every access.

    The numbers of all wrappers in a process share one shared-memory block, so the number of
    open file descriptors does not grow with the number of wrappers.

    Example:
        >>> cell = SharedEpoch()
        >>> cell.set(3); cell.get()
        3
    """

    def __init__(self) -> None:
        self._block, self._slot = _POOL.take()
        weakref.finalize(self, _POOL.give_back, self._block, self._slot)

    def get(self) -> int:
        return int(self._block[self._slot])

    def set(self, epoch: int) -> None:
        self._block[self._slot] = epoch

    def __getstate__(self) -> dict[str, Any]:
        # Workers get the block itself (shared through torch's multiprocessing pickler); a
        # plain pickle copies it, and that copy's cell is its own.
        return {"_block": self._block, "_slot": self._slot}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._block, self._slot = state["_block"], state["_slot"]


class SharedCount(SharedEpoch):
    """A counter in shared memory: DataLoader workers add to the one their parent holds.

    Example:
        >>> reads = SharedCount()
        >>> reads.add(2), reads.add(1)
        (2, 3)
    """

    def add(self, amount: int) -> int:
        """Add ``amount`` and return the new value (concurrent adds may lose one another's
        count: it is a signal, not an exact tally)."""
        self._block[self._slot] += amount
        return int(self._block[self._slot])


class SameDrawWatch:
    """Notices a dataset wrapper read for a second pass at one epoch, and says so once.

    A dataset sees no passes, only reads; its reads at the current epoch are counted in shared
    memory (DataLoader workers add to the count their parent holds). More than ``len()`` reads
    at one epoch is a second pass over the same draw, almost always a trainer that never sets
    the dataset's epoch.
    """

    def __init__(self) -> None:
        self._reads = SharedCount()
        self._warned = SharedCount()

    def reset(self) -> None:
        """A new epoch was set."""
        self._reads.set(0)

    def read(self, owner: str, length: int, epoch: SharedEpoch) -> None:
        """One item read (``epoch`` is read only for the warning: this runs on every item)."""
        if self._reads.add(1) > length and not self._warned.get():
            self._warned.set(1)
            warnings.warn(
                f"{owner}: more than len() = {length} items read at epoch {epoch.get()}, so a "
                "second pass trains on the same draw. Call set_epoch(epoch) before each epoch; "
                "under Lightning or the Hugging Face Trainer add SetEpochCallback "
                "(torch_balance.integrations.lightning or torch_balance.integrations.huggingface)",
                UserWarning,
                stacklevel=4,
            )
