"""The conformance suite every torch_balance sampler passes, public so you can run it on yours.

:func:`check_sampler` takes a factory ``make(labels, **options) -> sampler`` and checks
length, index bounds, determinism in (seed, epoch), that a new epoch changes the order, that
the composition matches ``target_counts``, the complete-pass rule (``len()`` items make a
pass complete), checkpoints at any moment (mid-epoch, at pass boundaries, after
``set_epoch``) restoring the uninterrupted sequence, states that load on every rank and with
another number of ranks, refusal of states saved for other labels or seeds, sharding across
ranks, the attributes of a ``DistributedSampler`` in their meaning (for a sampler that is
one), pickling, a DataLoader with worker processes, and that the global RNGs of torch, numpy
and ``random`` are left alone.

Options passed to the factory: ``seed``, ``num_replicas``, ``rank`` and ``drop_last``.
Batch samplers (yielding lists of indices) are checked on their flattened output and must
shard whole batches.

:func:`check_dataset` does the same for dataset wrappers (``ResampledDataset``,
``SMOTEDataset``, yours): length, bounds, determinism in (seed, epoch), new epochs,
composition, global RNGs, pickling, and ``set_epoch`` reaching persistent DataLoader workers.

:func:`check_stream` does it for balanced streams (``BalancedIterableDataset``,
``BalancedMix``, yours), built by ``make(seed=..., num_replicas=..., rank=...)``: equal
lengths on every rank, determinism in (seed, epoch), ``set_epoch`` and the repeated-pass
warning, counts against the plan where the stream promises them, resume (mid-pass, at the
epoch's end, from another rank's state), each rank reading its own samples, pickling, and
DataLoader workers.
"""

from __future__ import annotations

from torch_balance.testing._support import IndexDataset, conformance_labels
from torch_balance.testing.datasets import (
    DATASET_CHECKS,
    check_dataset,
    check_dataset_basics,
    check_dataset_dataloader,
    check_dataset_pickles,
)
from torch_balance.testing.samplers import (
    CHECKS,
    check_sampler,
    check_sampler_basics,
    check_sampler_checkpoints,
    check_sampler_complete_pass,
    check_sampler_dataloader,
    check_sampler_distributed_attributes,
    check_sampler_pickles,
    check_sampler_refuses_foreign_states,
    check_sampler_shards,
    check_sampler_states_any_world,
)
from torch_balance.testing.streams import (
    STREAM_CHECKS,
    check_stream,
    check_stream_counts,
    check_stream_dataloader,
    check_stream_determinism,
    check_stream_epochs,
    check_stream_lengths,
    check_stream_pickles,
    check_stream_resume,
    check_stream_shards,
)

__all__ = [
    "CHECKS",
    "DATASET_CHECKS",
    "STREAM_CHECKS",
    "IndexDataset",
    "check_dataset",
    "check_dataset_basics",
    "check_dataset_dataloader",
    "check_dataset_pickles",
    "check_sampler",
    "check_sampler_basics",
    "check_sampler_checkpoints",
    "check_sampler_complete_pass",
    "check_sampler_dataloader",
    "check_sampler_distributed_attributes",
    "check_sampler_pickles",
    "check_sampler_refuses_foreign_states",
    "check_sampler_shards",
    "check_sampler_states_any_world",
    "check_stream",
    "check_stream_counts",
    "check_stream_dataloader",
    "check_stream_determinism",
    "check_stream_epochs",
    "check_stream_lengths",
    "check_stream_pickles",
    "check_stream_resume",
    "check_stream_shards",
    "conformance_labels",
]
