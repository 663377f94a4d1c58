"""Reading a Hugging Face ``datasets.IterableDataset`` shard by shard, decoding only what is kept.

A streaming dataset with media features (``Image``, ``Audio``, ``Video``) decodes every sample
as it reads it. A reader that keeps every ``g``-th sample of a shard it shares with others
(:func:`~torch_balance.streams.sources.reader_parts`) reads the shard with decoding off
(``dataset.decode(False)``: the media stay bytes or paths) and decodes the samples it keeps
with the features' own ``decode_example``, which is what ``datasets`` runs: the samples come
out the same, and the ones skipped cost their raw read alone.

Decoded this way, samples are decoded in the reading generator, never in a thread pool of
``datasets``'s (which ``decode(num_threads=...)`` and remote ``load_dataset(...,
streaming=True)`` set up): that pool, once started in the main process (by a peek, or by
reading the labels through it), is inherited by forked DataLoader workers without its
threads, and a worker that hands it a sample waits forever. The thread count the dataset
asked for is kept, in a pool each reading generator makes for itself. A dataset whose
decoding feeds a ``map`` is read through its own stages; in a process other than the one that
built the stream its pools are first forgotten (:func:`forget_inherited_pools`), so that they
start again with threads of their own.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

__all__ = ["decode_ahead", "forget_inherited_pools", "rows", "undecoded"]


def rows(dataset: Any, shard: int, num_shards: int) -> Iterator[dict[str, Any]]:
    """The samples of shard ``shard`` of a Hugging Face dataset, as dicts."""
    part = dataset.shard(num_shards=num_shards, index=shard, contiguous=True)
    # iter(batch_size=1), not iter(part): inside a DataLoader worker, datasets would split
    # this one shard among the workers again and leave all but one with nothing.
    for batch in part.iter(batch_size=1):
        yield {key: value[0] for key, value in batch.items()}


def undecoded(dataset: Any) -> tuple[Any, int]:
    """``(dataset.decode(False), threads)`` where ``dataset`` decodes media (``Image``,
    ``Audio``...) that can be decoded sample by sample after reading with the same result:
    features known, no format set, no ``map`` or ``filter`` (which may see decoded samples);
    ``threads`` its ``decode(num_threads=...)``. ``(None, 0)`` otherwise."""
    features = getattr(dataset, "features", None)
    if not features or getattr(dataset, "_formatting", None) is not None:
        return None, 0
    if not _decodes(features):
        return None, 0
    stage = dataset._ex_iterable
    pool = getattr(stage, "decoding_pool", None)  # decode(num_threads=...): a map on top
    if pool is not None:
        stage = stage.ex_iterable
    while stage is not None:
        if not _plain_stage(stage):
            return None, 0
        stage = getattr(stage, "ex_iterable", None)
    return dataset.decode(False), int(getattr(pool, "max_workers", 0) or 0)


def _decodes(features: Any) -> bool:
    from datasets.features.features import require_decoding

    return any(require_decoding(feature) for feature in features.values())


def _plain_stage(stage: Any) -> bool:
    """A stage of a ``datasets.IterableDataset`` that passes samples on as read: a file
    reader, a column selection, or a cast to features that decode nothing."""
    name = type(stage).__name__
    if name == "FormattedExamplesIterable":
        features = getattr(stage, "features", None)
        return stage.formatting is None and not (features and _decodes(features))
    return name in (
        "ExamplesIterable",
        "ArrowExamplesIterable",
        "RebatchedArrowExamplesIterable",
        "SelectColumnsIterable",
    )


def decode_ahead(
    samples: Iterator[Any], decode: Callable[[Any], Any], threads: int
) -> Iterator[Any]:
    """``map(decode, samples)``, in order; with ``threads``, ``2 * threads`` decoded ahead in
    a thread pool of this generator's own (made where it runs: a forked reader never
    inherits one)."""
    if threads <= 0:
        yield from map(decode, samples)
        return
    pending: collections.deque[Future[Any]] = collections.deque()
    with ThreadPoolExecutor(threads, thread_name_prefix="torch_balance_decode") as pool:
        try:
            for sample in samples:
                pending.append(pool.submit(decode, sample))
                if len(pending) >= 2 * threads:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


def forget_inherited_pools(dataset: Any) -> None:
    """Reset the decoding thread pools of ``dataset``'s stages (``decode(num_threads=...)``)
    to not started, as unpickling does: call it in a process forked from the one that used
    them, where the pools' threads did not come along."""
    stage = getattr(dataset, "_ex_iterable", None)
    while stage is not None:
        for arg in getattr(getattr(stage, "function", None), "args", ()):
            if type(arg).__name__ == "_LazyThreadPoolExecutor":  # datasets' own, made lazily
                arg.__setstate__(arg.__getstate__())
        stage = getattr(stage, "ex_iterable", None)
