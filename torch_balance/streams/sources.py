"""Sources: every streaming format seen as named shards, each opened on its own.

A balanced stream needs two things from its source: the list of shards, and a way to read
one shard from its start. :class:`Shards` is that view; :func:`as_source` builds it for

* a webdataset pipeline (``webdataset.WebDataset(urls)`` with any later stages such as
  ``.decode()`` and ``.to_tuple()``): one shard is read by running the pipeline's stages from
  its opener on, for that one url (its own shard list, node and worker splitters and shard
  shuffle are not used: this module does that part);
* a Hugging Face ``datasets.IterableDataset``: shard ``i`` is ``dataset.shard(num_shards, i)``
  (of the whole dataset: one that ``datasets.distributed.split_dataset_by_node`` split is read
  whole, and the rank it was split for must be the stream's, see :attr:`Shards.node_split`);
* :class:`Shards` built by you: names and ``open(name) -> iterable of samples``;
* a shard pattern such as ``"train-{000..099}.tar"``: read with
  :func:`~torch_balance.streams.tar.tar_samples` (dicts of bytes, no webdataset needed);
* any other iterable (a torch ``IterableDataset`` yielding ``(x, y)`` or dicts): one shard.

Splitting among readers follows webdataset and ``torch.utils.data.get_worker_info``: the
epoch's shard order is split by rank (``order[rank::num_replicas]``), then by DataLoader worker
(``[worker::num_workers]``), so reader ``k = rank + num_replicas * worker`` of ``K`` reads
``order[k::K]`` (:func:`reader_parts`). With fewer shards ``S`` than readers, reader ``k``
reads shard ``order[k % S]`` with the ``g`` readers that share it (at most ``ceil(K / S)``),
and keeps every ``g``-th sample from its own offset ``k // S``: each sample is still read by
one reader. A source that can skip samples unread (the built-in tar reader seeks past their
members; any ``open_fn`` that takes ``every=(start, step)``) never reads the others; a
webdataset pipeline drops them before its ``.decode()``, a Hugging Face dataset with media
features reads them with decoding off (:mod:`~torch_balance.streams.hf_rows`); any other
source reads them and drops them before the stream sees them.

**Pre-sharded sources are never split twice.** A split that is visible in the source's
structure is either undone, because this module splits the same way, or refused: a Hugging
Face dataset split by ``split_dataset_by_node`` is read whole (its split, rank ``r`` of ``R``,
is checked against the stream's ranks); a webdataset pipeline's node and worker splitters
before its opener (``nodesplitter=``, ``workersplitter=``) are not run; one after the opener
(``.compose(wds.split_by_worker)``), which would split samples, is refused. A source that
splits itself in a way its structure does not show (an ``IterableDataset`` that reads
``get_worker_info`` or the rank) cannot be seen from here: give the stream the whole source.
"""

from __future__ import annotations

import copy
import functools
import inspect
import itertools
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch.utils.data import get_worker_info

from torch_balance._validation import Text, fail
from torch_balance.sharding import current_ranks
from torch_balance.streams.hf_rows import decode_ahead, forget_inherited_pools, rows, undecoded
from torch_balance.streams.patterns import expand_shards
from torch_balance.streams.tar import tar_samples

__all__ = [
    "LabelReader",
    "Shards",
    "Slot",
    "as_source",
    "current_slot",
    "label_reader",
    "label_value",
    "read_slot",
    "reader_parts",
    "slot_part",
]

_LABEL_KEYS = ("label", "cls", "target", "labels")


class LabelReader:
    """``sample -> label``, a picklable object (a stream holding it reaches spawned DataLoader
    workers): ``label_fn`` if given, else the second item of a tuple or list, or the
    ``"label"``, ``"cls"``, ``"target"`` or ``"labels"`` entry of a dict. Bytes (a raw ``.cls``
    member) become an int or str.

    Example:
        >>> import pickle
        >>> read = pickle.loads(pickle.dumps(LabelReader(None)))
        >>> read(("x", 3)), read({"jpg": b"...", "cls": b"2"})
        (3, 2)
    """

    def __init__(self, label_fn: Callable[[Any], Any] | None = None) -> None:
        if label_fn is not None and not callable(label_fn):
            fail("label_fn", "a callable label_fn(sample) -> label", label_fn, kind=TypeError)
        self.label_fn = label_fn

    def __call__(self, sample: Any) -> Any:
        """The label of ``sample``."""
        if self.label_fn is not None:
            return label_value(self.label_fn(sample))
        if isinstance(sample, tuple | list) and len(sample) >= 2:
            return label_value(sample[1])
        if isinstance(sample, dict):
            for key in _LABEL_KEYS:
                if key in sample:
                    return label_value(sample[key])
        fail(
            "label_fn",
            "a label_fn for samples that are neither (x, y) nor dicts with a 'label' or 'cls'",
            Text(f"a sample of type {type(sample).__name__}"),
            "Pass label_fn=lambda sample: ... that returns the class",
            kind=TypeError,
        )


def label_reader(label_fn: Callable[[Any], Any] | None) -> Callable[[Any], Any]:
    """``sample -> label``: a :class:`LabelReader` (see there).

    Example:
        >>> read = label_reader(None)
        >>> read(("x", 3)), read({"jpg": b"...", "cls": b"2"})
        (3, 2)
    """
    return LabelReader(label_fn)


class Shards:
    """A source as named shards: ``names`` and ``open(i)``, which reads shard ``i`` from its start.

    Args:
        names: The shard names (urls or paths), or a webdataset-style pattern.
        open_fn: ``open_fn(name) -> iterable of samples``, in the same order every time.

    Example:
        >>> data = {"a": [("x0", 0), ("x1", 1)], "b": [("x2", 0)]}
        >>> shards = Shards(["a", "b"], data.__getitem__)
        >>> shards.names, list(shards.open(1))
        (['a', 'b'], [('x2', 0)])
    """

    named = True  # names are urls or paths (a manifest's names must match them)
    #: ``(num_replicas, rank)`` the source was split for by its own library (Hugging Face's
    #: ``split_dataset_by_node``), now read whole: the stream must run as that rank
    node_split: tuple[int, int] | None = None

    def __init__(self, names: str | Sequence[str], open_fn: Callable[[str], Iterable[Any]]) -> None:
        self.names = expand_shards(names)
        if not callable(open_fn):
            fail(
                "open_fn",
                "a callable open_fn(name) -> iterable of samples",
                open_fn,
                kind=TypeError,
            )
        self._open_fn = open_fn

    def open(self, shard: int) -> Iterator[Any]:
        """An iterator over the samples of shard number ``shard``."""
        return iter(self._open_fn(self.names[shard]))

    def open_part(self, shard: int, start: int, step: int) -> Iterator[tuple[int, Any]]:
        """``(position, sample)`` of the samples at ``start, start + step, ...`` of a shard:
        unread where ``open_fn`` takes ``every=(start, step)`` (the built-in tar reader
        does), else read and dropped."""
        if step == 1 and start == 0:
            return enumerate(self.open(shard))
        open_fn = getattr(self, "_open_fn", None)
        if open_fn is not None and _takes_every(open_fn):
            picked = open_fn(self.names[shard], every=(start, step))
            return zip(itertools.count(start, step), picked, strict=False)
        return itertools.islice(enumerate(self.open(shard)), start, None, step)

    def labels_only(self, label_fn: Callable[[Any], Any] | None) -> Shards:
        """The same shards, read as cheaply as the format allows for labels alone."""
        return self

    def __iter__(self) -> Iterator[Any]:
        """Every shard's samples, in shard order (one unbalanced pass)."""
        for shard in range(len(self.names)):
            yield from self.open(shard)


class _WebDatasetShards(Shards):
    def __init__(self, pipeline: Any) -> None:
        from webdataset import cache

        stages = list(pipeline.pipeline)
        openers = (cache.StreamingOpen, cache.FileCache)
        at = next((i for i, s in enumerate(stages) if isinstance(s, openers)), None)
        urls = getattr(stages[0], "urls", None) if stages else None
        if at is None or not isinstance(urls, list):
            fail(
                "source",
                "a webdataset.WebDataset(urls) pipeline over a list of shards",
                Text(f"a {type(pipeline).__name__} without a shard list and opener"),
                "Build it with webdataset.WebDataset(urls) (not resampled), or wrap your "
                "reader in torch_balance.streams.Shards(names, open_fn)",
                kind=TypeError,
            )
        splitters = [_splitter_name(s) for s in stages[at:]]
        if any(splitters):
            fail(
                "source",
                "a webdataset pipeline that splits shards by node and worker before its opener "
                "or not at all",
                Text(f"{next(n for n in splitters if n)} after the opener, on samples"),
                "Remove that stage: BalancedIterableDataset splits shards by rank and "
                "DataLoader worker itself, and would split them twice",
            )
        self.names = list(urls)
        self._pipeline = pipeline
        self._stages = stages[at:]

    def open(self, shard: int) -> Iterator[Any]:
        source: Any = iter([{"url": self.names[shard]}])
        for stage in self._stages:
            source = self._pipeline.invoke(stage, source)
        return iter(source)

    def open_part(self, shard: int, start: int, step: int) -> Iterator[tuple[int, Any]]:
        """As :meth:`Shards.open_part`; the samples not kept leave right after webdataset
        groups them (``group_by_keys``), before any later stage (``.decode()``) sees them."""
        names = [getattr(getattr(s, "f", s), "__name__", None) for s in self._stages]
        if (start, step) == (0, 1) or "group_by_keys" not in names:
            return super().open_part(shard, start, step)
        at = names.index("group_by_keys") + 1
        source: Any = iter([{"url": self.names[shard]}])
        for stage in self._stages[:at]:
            source = self._pipeline.invoke(stage, source)
        source = itertools.islice(source, start, None, step)
        for stage in self._stages[at:]:
            source = self._pipeline.invoke(stage, source)
        return zip(itertools.count(start, step), source, strict=False)


class _HuggingFaceShards(Shards):
    named = False

    def __init__(self, dataset: Any) -> None:
        split = getattr(dataset, "_distributed", None)  # split_dataset_by_node's config
        if split is not None:
            # read the whole dataset (a copy: the caller's keeps its split); the stream splits
            # it by rank and worker itself and checks that its rank is the one split for
            whole = copy.copy(dataset)
            whole.__dict__ = {**vars(dataset), "_distributed": None}
            dataset = whole
            self.node_split = (int(split.world_size), int(split.rank))
        self._dataset = dataset
        self.names = [f"shard-{i}" for i in range(int(dataset.num_shards))]
        self._raw, self._threads = undecoded(dataset)
        self._pid = os.getpid()

    def open(self, shard: int) -> Iterator[Any]:
        self._in_this_process()
        if self._raw is not None:
            return (sample for _, sample in self._decoded(shard, 0, 1))
        return rows(self._dataset, shard, len(self.names))

    def open_part(self, shard: int, start: int, step: int) -> Iterator[tuple[int, Any]]:
        """As :meth:`Shards.open_part`; the samples not kept are read without decoding their
        media (an ``Image`` column's pictures stay bytes) where the dataset allows it."""
        self._in_this_process()
        if self._raw is None:
            return super().open_part(shard, start, step)
        return self._decoded(shard, start, step)

    def _in_this_process(self) -> None:
        """In a forked DataLoader worker, forget the decoding threads ``datasets`` started in
        the main process (a ``map`` after ``decode(num_threads=...)``; see ``hf_rows``)."""
        if self._pid != os.getpid():
            forget_inherited_pools(self._dataset)
            self._pid = os.getpid()

    def _decoded(self, shard: int, start: int, step: int) -> Iterator[tuple[int, Any]]:
        """Read the shard undecoded, keep ``start::step`` and decode those alone, with the
        features' own ``decode_example`` (what ``datasets`` itself does), in this process."""
        read = rows(self._raw, shard, len(self.names))
        kept = itertools.islice(read, start, None, step)
        decode = functools.partial(
            self._dataset.features.decode_example,
            token_per_repo_id=getattr(self._dataset, "_token_per_repo_id", None),
        )
        return zip(itertools.count(start, step), decode_ahead(kept, decode, self._threads))

    def labels_only(self, label_fn: Callable[[Any], Any] | None) -> Shards:
        columns = list(self._dataset.column_names or [])
        key = next((k for k in _LABEL_KEYS if k in columns), None)
        if label_fn is not None or key is None:
            return self
        dataset = self._dataset if self._raw is None else self._raw  # no media decoded
        labels = _HuggingFaceShards(dataset.select_columns([key]))
        labels.node_split = self.node_split
        return labels


class _IterableShards(Shards):
    named = False

    def __init__(self, iterable: Any) -> None:
        self._iterable = iterable
        self.names = [type(iterable).__name__]

    def open(self, shard: int) -> Iterator[Any]:
        return iter(self._iterable)


def _takes_every(open_fn: Callable[..., Any]) -> bool:
    """Whether ``open_fn`` can skip samples unread (a keyword argument ``every``)."""
    try:
        return "every" in inspect.signature(open_fn).parameters
    except (TypeError, ValueError):  # a builtin or a callable without a signature
        return False


_SPLITTERS = ("split_by_node", "split_by_worker", "single_node_only")


def _splitter_name(stage: Any) -> str | None:
    """The name of a webdataset stage that splits by node or worker (None for another)."""
    function = getattr(stage, "f", stage)  # a FilterFunction wraps its function
    name = getattr(function, "__name__", None)
    module = getattr(function, "__module__", None) or ""
    return name if name in _SPLITTERS and module.startswith("webdataset") else None


def _zero_dim(value: Any) -> bool:
    """A 0-d array or tensor: iterable by type, but iterating it raises."""
    return getattr(value, "ndim", None) == 0


def as_source(source: Any, name: str = "source") -> Shards:
    """View ``source`` as :class:`Shards` (see the module text for what is accepted);
    ``name`` is the argument an error names.

    Raises:
        TypeError: If ``source`` cannot be iterated.

    Example:
        >>> as_source([("x", 0), ("y", 1)]).names
        ['list']
    """
    if isinstance(source, Shards):
        return source
    if isinstance(source, str):  # a shard pattern: read with the built-in tar reader
        return Shards(source, tar_samples)
    if type(source).__module__.startswith("webdataset") and hasattr(source, "pipeline"):
        return _WebDatasetShards(source)
    if type(source).__module__.startswith("datasets") and hasattr(source, "num_shards"):
        return _HuggingFaceShards(source)
    if isinstance(source, bytes) or not isinstance(source, Iterable) or _zero_dim(source):
        fail(
            name,
            "a webdataset pipeline, a Hugging Face IterableDataset, Shards, or an iterable of "
            "samples",
            Text(f"a {type(source).__name__}"),
            kind=TypeError,
        )
    return _IterableShards(source)


@dataclass(frozen=True)
class Slot:
    """One reader of a stream: a DataLoader worker of a rank."""

    rank: int = 0
    num_replicas: int = 1
    worker: int = 0
    num_workers: int = 1

    @property
    def count(self) -> int:
        """Readers in all: ranks times workers."""
        return self.num_replicas * self.num_workers

    def siblings(self) -> list[Slot]:
        """The readers of this rank (this one included), in worker order."""
        return [
            Slot(self.rank, self.num_replicas, w, self.num_workers) for w in range(self.num_workers)
        ]


def current_slot(requested: tuple[int | None, int | None]) -> Slot:
    """The reader this process is: ranks as :func:`~torch_balance.sharding.current_ranks` finds
    them, the worker from ``torch.utils.data.get_worker_info``."""
    world, rank = current_ranks(*requested)
    info = get_worker_info()
    if info is None:
        return Slot(rank, world)
    return Slot(rank, world, int(info.id), int(info.num_workers))


def slot_part(items: Any, slot: Slot) -> Any:
    """What ``slot`` takes of ``items`` (a list or array): ``[rank::R][worker::W]``.

    Example:
        >>> slot_part(list(range(10)), Slot(rank=1, num_replicas=2, worker=1, num_workers=2))
        [3, 7]
    """
    return items[slot.rank :: slot.num_replicas][slot.worker :: slot.num_workers]


def by_shard(num_shards: int, slot: Slot) -> bool:
    """Whether readers split shards (enough for all of them) rather than samples."""
    return num_shards >= slot.count


def reader_parts(order: Sequence[int], slot: Slot) -> list[tuple[int, int, int]]:
    """What ``slot`` reads in an epoch whose shard order is ``order``: ``(shard, start, step)``
    for each of its shards, the positions ``start, start + step, ...`` of that shard (see the
    module text). Each sample of every shard is read by exactly one reader.

    Example:
        >>> reader_parts([3, 1, 0, 2], Slot(rank=1, num_replicas=2))
        [(1, 0, 1), (2, 0, 1)]
        >>> [reader_parts([5, 4], Slot(rank=r, num_replicas=3)) for r in range(3)]
        [[(5, 0, 2)], [(4, 0, 1)], [(5, 1, 2)]]
    """
    readers = slot.count
    k = slot.rank + slot.num_replicas * slot.worker
    if by_shard(len(order), slot):
        return [(int(shard), 0, 1) for shard in order[k::readers]]
    shard = k % len(order)
    sharing = len(range(shard, readers, len(order)))
    return [(int(order[shard]), k // len(order), sharing)]


def read_slot(
    shards: Shards,
    order: Sequence[int],
    slot: Slot,
    sizes: np.ndarray | None = None,
) -> Iterator[tuple[int, int, Any]]:
    """Read this reader's samples: ``(shard, position in the shard, sample)``.

    Args:
        shards: The source.
        order: The epoch's shard order.
        slot: Which reader.
        sizes: Samples per shard, where a manifest says; a shard that holds another number
            is refused (the manifest and the source disagree).

    Raises:
        ValueError: If a shard holds more or fewer samples than ``sizes`` says.
    """
    for shard, start, step in reader_parts(order, slot):
        for position, sample in _read_part(shards, shard, start, step, sizes):
            yield shard, position, sample


def _read_part(
    shards: Shards, shard: int, start: int, step: int, sizes: np.ndarray | None
) -> Iterator[tuple[int, Any]]:
    expected = None if sizes is None else int(sizes[shard])
    count = 0
    for position, sample in shards.open_part(shard, start, step):
        if expected is not None and position >= expected:
            _disagree(shards.names[shard], expected, "more")
        count += 1
        yield position, sample
    if expected is not None and count != len(range(start, expected, step)):
        read = f"{count}" if step == 1 else f"{count} of every {step} (from {start})"
        _disagree(shards.names[shard], expected, read)


def _disagree(name: str, expected: int, got: str) -> None:
    fail(
        "manifest",
        f"the samples the source reads from shard {name!r} ({expected})",
        Text(f"{got} samples read"),
        "Rebuild the manifest from these shards (Manifest.scan_tar), with the same filtering",
    )


def label_value(value: Any, name: str = "source", where: str = "") -> Any:
    """One label as a plain Python value: bytes of a ``.cls`` member become an ``int`` (or a
    ``str``), numpy and 0-d torch scalars their Python value; anything else is returned as
    it is (a stream checks it when it first sees it; a manifest with :func:`manifest_label`).

    Args:
        value: The label as stored (bytes of a label member, a number, a string...).
        name: The argument named in error messages.
        where: Where the label was found (``"in sample 'a' of 's.tar'"``), for messages.

    Raises:
        ValueError: For empty or non-UTF-8 bytes, or the digits of an integer beyond 64 bits.

    Example:
        >>> label_value(b"7\\n"), label_value(b"cat"), label_value(np.int64(3))
        (7, 'cat', 3)
    """
    suffix = f" {where}" if where else ""
    if isinstance(value, bytes | bytearray):
        try:
            text = bytes(value).decode("utf-8").strip()
        except UnicodeDecodeError:
            fail(name, "a label in UTF-8 text", Text(f"{bytes(value)[:20]!r}{suffix}"))
        if not text:
            fail(
                name,
                "a non-empty label",
                Text(f"{bytes(value)[:20]!r}{suffix}"),
                "Write the class (a number or a name) into every label member",
            )
        if re.fullmatch(r"-?\d+", text):
            if len(text.lstrip("-")) > 19 or not -(2**63) <= int(text) < 2**63:
                fail(
                    name,
                    "an integer label that fits in 64 bits",
                    Text(f"a number of {len(text.lstrip('-'))} digits{suffix}"),
                )
            return int(text)
        return text
    item = getattr(value, "item", None)
    if item is not None and getattr(value, "ndim", 0) == 0:
        return item()
    return value
