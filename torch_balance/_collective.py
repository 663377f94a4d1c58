"""The data-parallel group, and every exchange across its ranks.

Which processes share one epoch is *told*, never guessed:

* ``process_group=`` names the data-parallel group: a ``torch.distributed`` ``ProcessGroup``
  or a 1-D ``DeviceMesh`` (for example ``mesh["dp"]`` of a (dp, tp) mesh). Under tensor,
  context or pipeline parallelism the default group holds every process, so the peers of one
  model replica would get different batches; naming the data-parallel group gives them the
  same ones, and every collective here (weight reports, feedback counts) counts each replica
  once.
* Without it, the default group (``torch.distributed``'s world) when it is up; one process
  otherwise.
* accelerate states its topology in its own process state: once an ``Accelerator`` (or
  ``PartialState``) runs on more than one process, its ``prepare()`` shards the batches of
  every DataLoader by data-parallel rank itself (``BatchSamplerShard``, ``IterableDatasetShard``,
  or rank 0 dispatching). A sampler left to find its ranks then hands out the whole epoch and
  lets accelerate split it (:func:`trainer_sharder`), the same answer whoever asks.

Collectives run only where every rank of the group is in step: in calls every rank makes
(``update_weights``, ``per_class_recall``, an explicit check), never in ``set_epoch``,
``__len__`` or a property.
"""

from __future__ import annotations

import sys
from typing import Any

import torch
import torch.distributed as dist

from torch_balance._validation import Text, fail

__all__ = [
    "all_gather_int",
    "all_gather_varying",
    "all_reduce_sum",
    "check_group",
    "distributed",
    "group_ranks",
    "trainer_sharder",
]


def check_group(process_group: Any) -> Any:
    """Validate ``process_group=``: None, a ``ProcessGroup`` or a 1-D ``DeviceMesh``.

    Example:
        >>> check_group(None) is None
        True
    """
    if process_group is None:
        return None
    mesh_type = _device_mesh_type()
    if mesh_type is not None and isinstance(process_group, mesh_type):
        if process_group.ndim != 1:
            fail(
                "process_group",
                "a ProcessGroup or a 1-D DeviceMesh (the data-parallel dimension)",
                Text(f"a {process_group.ndim}-D DeviceMesh {process_group.mesh_dim_names}"),
                'Pass the data-parallel dimension alone, for example mesh["dp"]',
            )
        return process_group
    group_type = getattr(dist, "ProcessGroup", None)
    if group_type is not None and isinstance(process_group, group_type):
        return process_group
    fail(
        "process_group",
        "None, a torch.distributed ProcessGroup or a 1-D DeviceMesh",
        Text(type(process_group).__name__),
        "Pass the data-parallel group your trainer uses (for example mesh['dp']), or leave "
        "it unset for the default group",
        kind=TypeError,
    )


def _device_mesh_type() -> Any:
    try:
        from torch.distributed.device_mesh import DeviceMesh
    except ImportError:  # pragma: no cover - torch built without distributed
        return None
    return DeviceMesh


def _as_group(group: Any) -> Any:
    """The ``ProcessGroup`` behind ``group`` (None: the default group)."""
    mesh_type = _device_mesh_type()
    if group is not None and mesh_type is not None and isinstance(group, mesh_type):
        return group.get_group()
    return group


def _initialised() -> bool:
    return dist.is_available() and dist.is_initialized()


def group_ranks(group: Any) -> tuple[int, int]:
    """``(size, rank)`` of ``group`` (None: the default group), ``(1, 0)`` without one.

    Example:
        >>> group_ranks(None)
        (1, 0)
    """
    if group is None and not _initialised():
        return 1, 0
    pg = _as_group(group)
    if pg is not None and not _initialised():
        fail(
            "process_group",
            "a group of an initialised torch.distributed",
            Text("a group, but torch.distributed is not initialised in this process"),
            "Call init_process_group before the epoch starts",
        )
    return dist.get_world_size(pg), dist.get_rank(pg)


def distributed(group: Any) -> bool:
    """Whether ``group`` (None: the default group) spans more than one process."""
    return group_ranks(group)[0] > 1


def trainer_sharder() -> str | None:
    """The trainer that shards every prepared DataLoader's batches itself, if one runs here.

    accelerate keeps its topology in ``PartialState``'s shared state: once it is set up on more
    than one process, ``Accelerator.prepare()`` gives each data-parallel rank its own batches
    (and the Hugging Face ``Trainer`` prepares its loaders that way). This reads that state
    without creating it; it never looks at the call stack.

    Example:
        >>> trainer_sharder() is None
        True
    """
    module = sys.modules.get("accelerate.state")
    if module is None:
        return None
    state = getattr(getattr(module, "PartialState", None), "_shared_state", None)
    if not isinstance(state, dict) or not state:
        return None
    processes = state.get("num_processes", 1)
    if isinstance(processes, int) and processes > 1:
        return "accelerate"
    return None


def _device(pg: Any) -> torch.device:
    """Where a collective's tensors live: CUDA for NCCL, the CPU otherwise."""
    if dist.get_backend(pg) == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_gather_int(value: torch.Tensor, group: Any) -> list[torch.Tensor]:
    """A small int64 tensor from every rank of ``group``."""
    pg = _as_group(group)
    device = _device(pg)
    parts = [torch.empty_like(value, device=device) for _ in range(dist.get_world_size(pg))]
    dist.all_gather(parts, value.to(device), group=pg)
    return [part.cpu() for part in parts]


def all_gather_varying(tensor: torch.Tensor, sizes: list[int], group: Any) -> list[torch.Tensor]:
    """Every rank's 1-D ``tensor`` (lengths ``sizes``, already exchanged), padded to the
    longest for ``all_gather`` and cut back."""
    pg = _as_group(group)
    device = _device(pg)
    longest = max(max(sizes), 1)
    padded = torch.zeros(longest, dtype=tensor.dtype, device=device)
    padded[: tensor.shape[0]] = tensor.to(device)
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded, group=pg)
    return [part[:size].cpu() for part, size in zip(parts, sizes, strict=True)]


def all_reduce_sum(tensor: torch.Tensor, group: Any) -> torch.Tensor:
    """``tensor`` summed over the ranks of ``group``, in place, when it spans several."""
    if distributed(group):
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM, group=_as_group(group))
    return tensor
