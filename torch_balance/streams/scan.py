"""The label scan of tar shards: each shard's label members read alone (the images seeked
over), many shards at once in threads, with a progress bar on a terminal, resumable through
a journal of finished shards.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import Any

from torch_balance._progress import progress_bar
from torch_balance._validation import Text, fail
from torch_balance.labels.kinds import LabelProblem, scalar_label
from torch_balance.streams.sources import label_value
from torch_balance.streams.tar import tar_samples

__all__ = ["MAX_LABEL_SIZE", "manifest_label", "scan_shards"]

#: Default size limit of a label member read by :meth:`Manifest.scan_tar`, in bytes.
MAX_LABEL_SIZE = 4096


def manifest_label(value: Any, name: str, where: str = "") -> Any:
    """One label of a manifest, by :func:`~torch_balance.get_labels`' rule: an integer, a bool
    or a string (bytes decoded as :func:`label_value` does), one per sample.

    Raises:
        TypeError: For a float, or anything that is not a class label.
        ValueError: For a dict, list or other container, None, or bad bytes.

    Example:
        >>> manifest_label(b"3", "shards")
        3
        >>> manifest_label({"a": 1}, "shards", "at index 0")
        Traceback (most recent call last):
        ...
        ValueError: shards: expected one scalar class label per sample, got a dict of 1 values ...
    """
    try:
        return scalar_label(label_value(value, name, where))
    except LabelProblem as problem:
        suffix = f" {where}" if where else ""
        fail(name, problem.expected, Text(f"{problem.got}{suffix}"), problem.fix, kind=problem.kind)


def scan_shards(
    names: Sequence[str],
    label_key: str,
    max_label_size: int,
    *,
    workers: int = 8,
    journal: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> list[list[Any]]:
    """The labels of each shard, in ``names`` order, read ``workers`` shards at a time.

    With ``journal``, each finished shard is appended to that file (one JSON line: its name
    and labels) as soon as it is read, and the shards the file already holds are not read
    again; the file is removed when every shard is read.

    Raises:
        ValueError: As :meth:`~torch_balance.streams.Manifest.scan_tar`; a journal that is
            not one (or records shards of another list) is refused, naming its path.
    """
    done = _read_journal(journal, names) if journal is not None else {}
    todo = [i for i, name in enumerate(names) if name not in done]
    lock = threading.Lock()
    bar = progress_bar(total=len(names), desc="scan", unit="shard", enabled=progress)
    bar.update(len(names) - len(todo))
    log = open(journal, "a", encoding="utf-8") if journal is not None else None  # noqa: SIM115

    def one(i: int) -> None:
        labels = _scan_one(names[i], label_key, max_label_size)
        with lock:
            done[names[i]] = labels
            if log is not None:
                values = [label_value(v) for v in labels]
                log.write(json.dumps({"url": names[i], "labels": values}) + "\n")
                log.flush()
            bar.update(1)

    try:
        with ThreadPoolExecutor(max_workers=min(workers, max(len(todo), 1))) as pool:
            futures = [pool.submit(one, i) for i in todo]
            finished, _ = wait(futures, return_when=FIRST_EXCEPTION)
            for future in futures:
                future.cancel()
            for future in finished:
                future.result()  # the first error, as raised in its thread
    finally:
        bar.close()
        if log is not None:
            log.close()
    if journal is not None:
        os.remove(journal)
    return [done[name] for name in names]


def _read_journal(journal: str | os.PathLike[str], names: Sequence[str]) -> dict[str, list[Any]]:
    if not os.path.exists(journal):
        return {}
    known = set(names)
    done: dict[str, list[Any]] = {}
    with open(journal, encoding="utf-8") as stream:
        lines = stream.read().split("\n")
    for number, line in enumerate(lines[:-1] if lines and lines[-1] == "" else lines):
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines) - 1:  # a line cut off when the scan was stopped: drop it
                with open(journal, "w", encoding="utf-8") as stream:
                    stream.write("".join(f"{kept}\n" for kept in lines[:-1]))
                break
            fail("journal", "a scan journal", Text(f"{str(journal)!r}: line {number + 1}"))
        if not isinstance(entry, dict) or entry.get("url") not in known:
            fail(
                "journal",
                "a journal of a scan of these shards",
                Text(f"{str(journal)!r}: line {number + 1} names another shard"),
                "Pass a new journal path, or delete this one",
            )
        done[entry["url"]] = entry["labels"]
    return done


def _scan_one(path: str, label_key: str, max_label_size: int) -> list[Any]:

    labels: list[Any] = []
    try:
        for sample in tar_samples(path, {label_key}, max_member_size=max_label_size):
            value = sample.get(label_key)
            if value is None:
                _no_label(path, sample["__key__"], label_key)
            where = f"in sample {sample['__key__']!r} of {path!r}"
            labels.append(manifest_label(value, "paths", where))
    except OSError as error:
        fail("paths", "readable tar shards", Text(f"{path!r} ({error})"))
    return labels


def _no_label(path: str, key: str | None, label_key: str) -> None:
    fail(
        "paths",
        f"a .{label_key} member in every sample",
        Text(f"sample {key!r} of {path!r} without one"),
        "Pass label_key= the extension your shards store labels under",
    )
