"""Balanced streams: over- and undersampling for ``IterableDataset``s, WebDataset shards and
Hugging Face streaming datasets, across ranks and DataLoader workers.

* :mod:`~torch_balance.streams.sources`: every format as named shards (:class:`Shards`,
  :func:`~torch_balance.streams.sources.as_source`), labels as stored, and what each reader
  reads; :mod:`~torch_balance.streams.patterns`: brace patterns (:func:`expand_shards`);
* :mod:`~torch_balance.streams.manifest`: per shard, its labels (:class:`Manifest`), read
  from an index file (JSON, or the memory-mapped binary format of
  :mod:`~torch_balance.streams.manifest_file`), from the label members of tar shards
  (:mod:`~torch_balance.streams.scan`) or from any source;
* :mod:`~torch_balance.streams.balanced`: :class:`BalancedIterableDataset`, mode 1 (a
  manifest: the plan's exact per-class counts, each reader's copies from its own shards,
  :mod:`~torch_balance.streams.copies`, :mod:`~torch_balance.streams.readers`) and mode 2
  (labels seen as they flow, :mod:`~torch_balance.streams.online`), both through the
  :class:`~torch_balance.streams.buffer.CopyBuffer`;
* :mod:`~torch_balance.streams.mix`: :class:`BalancedMix`, mode 3 (one stream per class).
"""

from __future__ import annotations

from torch_balance.streams.balanced import BalancedIterableDataset
from torch_balance.streams.manifest import Manifest
from torch_balance.streams.mix import BalancedMix
from torch_balance.streams.patterns import expand_shards
from torch_balance.streams.sources import Shards

__all__ = ["BalancedIterableDataset", "BalancedMix", "Manifest", "Shards", "expand_shards"]
