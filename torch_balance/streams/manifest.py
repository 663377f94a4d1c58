"""The manifest: per shard, its name and the labels of its samples, in order.

A manifest is what makes a stream's epoch plannable: with every label known up front,
:class:`~torch_balance.streams.BalancedIterableDataset` draws the same epoch as
:class:`~torch_balance.BalancedSampler` before a byte of image data is read. Build one from a
dict, from a JSON index file, by scanning tar shards for their label members only
(:meth:`Manifest.scan_tar`), or by reading the labels of any source once
(:meth:`Manifest.from_source`).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from torch_balance._validation import Text, check_int, fail
from torch_balance.labels import LabelIndex, as_label_array
from torch_balance.streams.manifest_file import (
    ManifestWriter,
    PrefixRows,
    checkpoint_stride,
    class_checkpoints,
    code_dtype,
    count_codes,
    is_manifest_file,
    read_manifest_file,
)
from torch_balance.streams.packing import Packed, bits_for
from torch_balance.streams.patterns import expand_shards
from torch_balance.streams.scan import MAX_LABEL_SIZE, manifest_label, scan_shards
from torch_balance.streams.sources import as_source, label_reader, label_value

__all__ = ["Manifest"]

#: The suffix :meth:`Manifest.save` writes the binary format for.
BINARY_SUFFIX = ".tbm"


class Manifest:
    """Per shard, its name (url or path) and the labels of its samples, in stream order.

    Sample ``j`` of shard ``s`` is sample ``offsets[s] + j`` of the whole collection; the
    labels of the collection, in that order, are what the epoch plan is drawn for.

    Args:
        shards: A dict ``{shard name: labels in order}`` or a sequence of ``(name, labels)``.

    Raises:
        TypeError: For names that are not strings or labels of the wrong kind.
        ValueError: For no shards, repeated names or no samples at all.

    Example:
        >>> m = Manifest({"a.tar": [0, 0, 1], "b.tar": [0, 2]})
        >>> len(m), m.num_shards, m.counts()
        (5, 2, {0: 3, 1: 1, 2: 1})
        >>> m.offsets.tolist()
        [0, 3, 5]
    """

    names: list[str]

    def __init__(self, shards: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> None:
        if isinstance(shards, Mapping):
            pairs = list(shards.items())
        elif (
            isinstance(shards, Iterable)
            and not isinstance(shards, str | bytes)
            and getattr(shards, "ndim", None) != 0  # a 0-d array or tensor cannot be iterated
        ):
            pairs = list(shards)
        else:
            fail(
                "shards",
                "a dict {shard name: labels} or a list of (name, labels)",
                shards,
                kind=TypeError,
            )
        if not pairs:
            fail("shards", "at least one shard", shards)
        names: list[str] = []
        sizes: list[int] = []
        values: list[Any] = []
        for i, pair in enumerate(pairs):
            if not isinstance(pair, tuple | list) or len(pair) != 2:
                fail("shards", "(name, labels) pairs", Text(f"{pair!r} at position {i}"))
            name, labels = pair
            if not isinstance(name, str):
                fail(
                    "shards",
                    "string shard names",
                    Text(f"{name!r} at position {i}"),
                    kind=TypeError,
                )
            if (
                isinstance(labels, str | bytes)
                or not hasattr(labels, "__len__")
                or getattr(labels, "ndim", None) == 0
            ):
                fail(f"shards[{name!r}]", "a sequence of labels", labels, kind=TypeError)
            part = labels.tolist() if hasattr(labels, "tolist") else list(labels)
            values.extend(
                manifest_label(v, f"shards[{name!r}]", f"at index {j}") for j, v in enumerate(part)
            )
            names.append(name)
            sizes.append(len(part))
        if len(set(names)) != len(names):
            repeated = sorted({n for n in names if names.count(n) > 1})
            fail("shards", "distinct shard names", Text(f"{repeated[:3]} more than once"))
        if not values:
            fail("shards", "at least one sample", Text("shards without samples"))
        labels = as_label_array(values, "shards")
        classes, codes = np.unique(labels, return_inverse=True)
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        packed = Packed.pack(codes.reshape(-1), offsets, bits_for(len(classes)))
        self._set(names, offsets, classes, packed)

    def _set(
        self,
        names: list[str],
        offsets: np.ndarray,
        classes: np.ndarray,
        packed: Packed,
        checkpoints: PrefixRows | None = None,
        stride: int | None = None,
        digest: str | None = None,
    ) -> None:
        """Hold the parts (built here, or read from a binary file without copying)."""
        self.names = names
        self.offsets = offsets
        self.sizes = np.diff(offsets)
        self.classes = classes
        self.packed = packed
        self._path: str | None = getattr(self, "_path", None)  # a memory-mapped file's
        if stride is None or checkpoints is None:
            total = len(packed)
            largest = int(count_codes(self._read, 0, total, len(classes)).max(initial=0))
            row_bits = bits_for(largest + 1)  # as the writer sets it
            stride = checkpoint_stride(len(names), len(classes), total, packed.width, row_bits)
            rows = class_checkpoints(self._read, offsets, len(classes), stride)
            checkpoints = PrefixRows.pack(rows, row_bits)
        self.stride = stride
        self.checkpoints = checkpoints
        self._digest = digest
        self._index: LabelIndex | None = None

    def __getstate__(self) -> dict[str, Any]:
        # a memory-mapped manifest travels as its path (a spawned DataLoader worker maps the
        # file again, sharing its pages), never as a copy of its codes
        state = self.__dict__.copy()
        state["_index"] = None
        if state.get("_path") is not None:
            for key in ("packed", "checkpoints"):
                state.pop(key)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if state.get("_path") is not None:
            found = read_manifest_file(state["_path"])
            self.packed, self.checkpoints = found["codes"], found["checkpoints"]

    def __len__(self) -> int:
        """The number of samples over all shards."""
        return int(self.offsets[-1])

    @property
    def num_shards(self) -> int:
        """The number of shards."""
        return len(self.names)

    @property
    def code_bits(self) -> int:
        """Bits per class code: ``max(1, ceil(log2(len(classes))))`` (8, 16 or 32 in a
        version 1 file)."""
        return self.packed.width

    @property
    def codes(self) -> np.ndarray:
        """Every sample's class code (an index into :attr:`classes`), in manifest order,
        unpacked on each call (``len(self)`` values of the smallest unsigned type that holds
        them; a reader uses :meth:`shard_codes` and :meth:`class_prefix` instead).

        Example:
            >>> Manifest({"a": ["y", "x"], "b": ["y"]}).codes.tolist()
            [1, 0, 1]
        """
        out = np.empty(len(self), dtype=code_dtype(len(self.classes)))
        for a in range(0, len(self), 1 << 20):
            b = min(a + (1 << 20), len(self))
            out[a:b] = self._read(a, b)
        return out

    @property
    def labels(self) -> np.ndarray:
        """Every sample's label, in manifest order (built on each call: ``len(self)`` values;
        a reader uses :meth:`shard_codes` and :meth:`class_prefix` instead)."""
        return self.classes[self.codes]

    @property
    def index(self) -> LabelIndex:
        """The labels of the whole collection, indexed by class (built on first use, in memory
        that grows with the collection; the copy counts of a stream do not use it)."""
        if self._index is None:
            self._index = LabelIndex(self.labels)
        return self._index

    def class_counts(self) -> np.ndarray:
        """Samples of each class (in :attr:`classes` order), ``int64``."""
        return self.checkpoints.row(len(self.checkpoints) - 1)

    def class_prefix(self, shard: int) -> np.ndarray:
        """Samples of each class in the shards before ``shard`` (manifest order): the nearest
        stored row, plus or minus the codes of at most half of :attr:`stride` shards' samples.

        Example:
            >>> Manifest({"a": [0, 1, 1], "b": [0], "c": [1]}).class_prefix(2).tolist()
            [2, 2]
        """
        k = shard // self.stride
        below = self.offsets[k * self.stride]
        above = self.offsets[min((k + 1) * self.stride, self.num_shards)]
        at, classes = self.offsets[shard], len(self.classes)
        if k + 1 < len(self.checkpoints) and above - at < at - below:
            return self.checkpoints.row(k + 1) - count_codes(self._read, at, above, classes)
        return self.checkpoints.row(k) + count_codes(self._read, below, at, classes)

    def shard_codes(self, first: int, stop: int | None = None) -> np.ndarray:
        """The class codes of shards ``first`` to ``stop`` (excluded; default one shard), as
        ``int64``, checked against the class count (a binary file's codes are checked where
        they are read, never all at once).

        Raises:
            ValueError: For a code that names no class (a damaged binary manifest; the
                message names the file).
        """
        stop = first + 1 if stop is None else stop
        return self._read(self.offsets[first], self.offsets[stop])

    def _read(self, first: int, stop: int) -> np.ndarray:
        """Codes ``first`` to ``stop`` (samples, manifest order), ``int64``: every reader of
        the codes unpacks them here, and each is checked against the class count."""
        codes = self.packed.read(first, stop)
        if codes.size and int(codes.max()) >= len(self.classes):
            where = "" if self._path is None else f" of {self._path!r}"
            shard = int(np.searchsorted(self.offsets, first + int(codes.argmax()), "right")) - 1
            fail(
                "manifest",
                f"class codes below its {len(self.classes)} classes",
                Text(f"code {int(codes.max())} in shard {shard}{where}"),
                "The manifest file is damaged: write it again with Manifest.save",
            )
        return codes

    def counts(self) -> dict[Any, int]:
        """``{class: number of samples}``, classes sorted."""
        return dict(zip(self.classes.tolist(), self.class_counts().tolist(), strict=True))

    def shard_labels(self) -> list[np.ndarray]:
        """The labels of each shard, in shard order."""
        return [self.classes[self.shard_codes(s)] for s in range(self.num_shards)]

    def fingerprint(self) -> str:
        """A digest of the names, sizes, classes and labels (a saved stream state is checked
        against it); a binary manifest stores it, so reading it costs nothing."""
        if self._digest is None:
            h = hashlib.blake2b(digest_size=16)  # as ManifestWriter computes it
            step = 1 << 20
            little = code_dtype(len(self.classes)).newbyteorder("<")
            for a in range(0, len(self), step):
                h.update(self._read(a, min(a + step, len(self))).astype(little).tobytes())
            h.update(json.dumps([self.names, self.classes.tolist()]).encode())
            h.update(np.ascontiguousarray(self.offsets, dtype="<i8").tobytes())
            self._digest = h.hexdigest()
        return self._digest

    def __repr__(self) -> str:
        classes = len(self.classes)
        return f"Manifest({self.num_shards} shards, {len(self)} samples, {classes} classes)"

    def to_dict(self) -> dict[str, list[Any]]:
        """``{shard name: labels}`` (Python values), the form :meth:`save` writes."""
        return {
            n: [label_value(v) for v in part.tolist()]
            for n, part in zip(self.names, self.shard_labels(), strict=True)
        }

    def save(self, path: str | os.PathLike[str], format: str | None = None) -> None:
        """Write the manifest: binary (``format="binary"``, or a path ending in ``.tbm``), the
        labels as class codes of :attr:`code_bits` bits that :meth:`from_file` memory-maps
        (:mod:`~torch_balance.streams.manifest_file`); else a JSON
        index ``{"shards": [{"url": ..., "labels": [...]}]}`` for interchange.

        Raises:
            ValueError: For a format other than ``"json"`` or ``"binary"``.

        Example:
            >>> import tempfile
            >>> path = tempfile.mkdtemp() + "/labels.tbm"
            >>> Manifest({"a.tar": [0, 2, 2], "b.tar": [1]}).save(path)
            >>> Manifest.from_file(path).counts()
            {0: 1, 1: 1, 2: 2}
        """
        if format is None:
            format = "binary" if os.fspath(path).endswith(BINARY_SUFFIX) else "json"
        if format not in ("json", "binary"):
            fail("format", "'json' or 'binary'", format)
        if format == "binary":
            with ManifestWriter(path, self.classes) as writer:
                for shard, name in enumerate(self.names):
                    writer.add(name, self.shard_codes(shard))
            return
        entries = [{"url": n, "labels": labels} for n, labels in self.to_dict().items()]
        with open(path, "w", encoding="utf-8") as stream:
            json.dump({"shards": entries}, stream)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Manifest:
        """Read a manifest written by :meth:`save`: a binary one memory-mapped (opening it
        reads its header and shard offsets only, whatever its number of samples), or a JSON
        index (or a plain ``{name: labels}`` dict).

        Raises:
            ValueError: If there is no such file, or it is not such an index (not UTF-8, not
                JSON, nested too deep; a binary file cut off, with another magic or a dtype
                that is not its class count's); the message names the path.
            TypeError: For labels of the wrong kind (named by shard and index).
        """
        if not os.path.isfile(path):
            fail(
                "path",
                "an existing manifest file (binary or JSON)",
                str(path),
                "Write one with Manifest.scan_tar(urls).save(path)",
            )
        if is_manifest_file(path):
            found = read_manifest_file(path)
            classes = as_label_array(found["classes"], "path")
            if classes.shape[0] > 1 and not (classes[1:] > classes[:-1]).all():
                fail("path", "a binary manifest with sorted classes", str(path))
            manifest = cls.__new__(cls)
            manifest._path = os.fspath(path)
            manifest._set(
                list(found["names"]),
                found["offsets"],
                classes,
                found["codes"],
                checkpoints=found["checkpoints"],
                stride=found["stride"],
                digest=found["fingerprint"],
            )
            return manifest
        try:
            with open(path, encoding="utf-8") as stream:
                data = json.load(stream)
        except json.JSONDecodeError as error:
            fail("path", "a JSON index file", Text(f"{str(path)!r}: {error}"))
        except UnicodeDecodeError as error:
            fail("path", "a JSON index file in UTF-8", Text(f"{str(path)!r}: {error}"))
        except RecursionError:
            fail(
                "path",
                "a JSON index file",
                Text(f"{str(path)!r}, nested too deep to read"),
                'An index is {"shards": [{"url": ..., "labels": [...]}]}: two levels deep',
            )
        shape = 'a JSON index {"shards": [{"url": ..., "labels": [...]}]}'
        if isinstance(data, dict) and isinstance(data.get("shards"), list):
            entries = data["shards"]
            if not all(isinstance(e, dict) and "url" in e and "labels" in e for e in entries):
                fail("path", shape, str(path))
            return cls([(e["url"], e["labels"]) for e in entries])
        if isinstance(data, dict):
            return cls(data)
        fail("path", shape, str(path))

    @classmethod
    def scan_tar(
        cls,
        paths: str | Sequence[str],
        label_key: str = "cls",
        *,
        max_label_size: int = MAX_LABEL_SIZE,
        workers: int = 8,
        journal: str | os.PathLike[str] | None = None,
        progress: bool = True,
        save: str | os.PathLike[str] | None = None,
    ) -> Manifest:
        """Read the labels of WebDataset tar shards from their label members alone.

        Samples are grouped as webdataset groups them (consecutive members sharing the key
        before the first dot of the file name); only the ``.<label_key>`` member of each is
        read, every other member (the image) is seeked over, neither read nor decoded
        (:func:`~torch_balance.streams.tar.tar_samples`).

        Args:
            paths: A shard pattern (``"train-{000..009}.tar"``) or a list of local paths.
            label_key: The extension of the label member (``"cls"``: ``000017.cls``).
            max_label_size: The largest label member accepted, in bytes (default 4096).
            workers: Shards scanned at once, in threads (reading is mostly waiting on I/O).
            journal: A file that records each shard as it is finished (JSON lines): a scan
                interrupted and run again with the same file scans only the shards it
                lacks. Removed when the scan completes.
            progress: Show a progress bar of shards (on a terminal only).
            save: Where to :meth:`save` the manifest (``.tbm``: binary), when given.

        Raises:
            ValueError: If a sample has no label member or a bad one (empty, not UTF-8, over
                ``max_label_size``), or a shard cannot be read or is damaged (the message
                names the shard and the byte offset).

        Example:
            >>> import io, tarfile, tempfile
            >>> path = tempfile.mkdtemp() + "/s-000.tar"
            >>> with tarfile.open(path, "w") as tar:
            ...     for key, label in [("a", b"1"), ("b", b"0")]:
            ...         for ext, data in [("png", b"..."), ("cls", label)]:
            ...             info = tarfile.TarInfo(f"{key}.{ext}"); info.size = len(data)
            ...             tar.addfile(info, io.BytesIO(data))
            >>> Manifest.scan_tar(path).to_dict()[path]
            [1, 0]
        """
        if not isinstance(label_key, str) or not label_key:
            fail("label_key", "a member extension such as 'cls'", label_key, kind=TypeError)
        limit = check_int("max_label_size", max_label_size, minimum=1)
        threads = check_int("workers", workers, minimum=1)
        names = expand_shards(paths)
        labels = scan_shards(
            names, label_key.lower(), limit, workers=threads, journal=journal, progress=progress
        )
        manifest = cls(list(zip(names, labels, strict=True)))
        if save is not None:
            manifest.save(save)
        return manifest

    @classmethod
    def from_source(cls, source: Any, label_fn: Callable[[Any], Any] | None = None) -> Manifest:
        """Read every sample's label from a source once (all its shards, in order).

        For a Hugging Face dataset only the label column is read; for other sources every
        sample is read, so prefer :meth:`scan_tar` or an index file for large tar shards.

        Args:
            source: Anything :func:`~torch_balance.streams.sources.as_source` accepts.
            label_fn: ``label_fn(sample) -> label``; default: the second item of a tuple, or
                the ``"label"``/``"cls"``/``"target"`` entry of a dict.
        """

        shards = as_source(source).labels_only(label_fn)
        read = label_reader(label_fn)
        return cls(
            [(name, [read(s) for s in shards.open(i)]) for i, name in enumerate(shards.names)]
        )
