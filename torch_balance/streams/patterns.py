"""Shard patterns: ``train-{000..099}.tar`` expanded as webdataset expands them, counted
before any name is built (so a pattern of a trillion shards is refused at once)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any, NoReturn

from torch_balance._validation import Text, check_int, fail

__all__ = ["MAX_SHARDS", "expand_shards"]


#: Default limit on the number of shards a pattern may name (:func:`expand_shards`).
MAX_SHARDS = 1_000_000

_BRACE = re.compile(r"\{([^{}]*)\}")
_RANGE = re.compile(r"^(\d+)\.\.(\d+)$")


def expand_shards(pattern: str | Sequence[str], *, max_shards: int = MAX_SHARDS) -> list[str]:
    """Expand shard patterns the way webdataset does: ``{000..009}`` ranges (zero-padded to the
    width of the first bound), ``{a,b}`` alternatives, and ``::`` between patterns.

    The names a pattern makes are counted before any is built, so a pattern of a trillion
    shards is refused at once, with its count.

    Args:
        pattern: A pattern, or a list of patterns and names.
        max_shards: The most shard names a pattern may expand to (default 1,000,000).

    Returns:
        The shard names, in order.

    Raises:
        TypeError: If ``pattern`` is not a string or a list of strings.
        ValueError: For a range that runs backwards, a pattern that expands to nothing or to
            more than ``max_shards`` names.

    Example:
        >>> expand_shards("data-{000..002}.tar")
        ['data-000.tar', 'data-001.tar', 'data-002.tar']
        >>> expand_shards("a-{x,y}.tar::b.tar")
        ['a-x.tar', 'a-y.tar', 'b.tar']
        >>> expand_shards("a-{0..999999999999}.tar")
        Traceback (most recent call last):
        ...
        ValueError: pattern: expected a pattern of at most max_shards=1,000,000 shards, ...
    """
    limit = check_int("max_shards", max_shards, minimum=1)
    if isinstance(pattern, str):
        parts = pattern.split("::")
    elif isinstance(pattern, Sequence) and all(isinstance(p, str) for p in pattern):
        parts = list(pattern)
    else:
        fail("pattern", "a shard pattern or a list of shard names", pattern, kind=TypeError)
    total = sum(_count(part) for part in parts)
    if total > limit:
        _too_many(pattern, f"{total:,}", limit)
    names: list[str] = []
    for part in parts:
        names.extend(_expand(part, pattern, limit - len(names)))
    if not names:
        fail("pattern", "a pattern that names at least one shard", pattern)
    return names


def _too_many(pattern: Any, count: str, limit: int) -> NoReturn:
    fail(
        "pattern",
        f"a pattern of at most max_shards={limit:,} shards",
        Text(f"{_short(pattern)}, which names {count}"),
        "Split the pattern, or pass max_shards= a larger limit",
    )


def _short(pattern: Any) -> str:
    text = repr(pattern)
    return text if len(text) <= 60 else text[:57] + "..."


def _choices(body: str) -> tuple[int, int, int] | list[str]:
    """A brace group's choices: ``(low, high, width)`` of a range, or the alternatives."""
    bounds = _RANGE.match(body)
    if bounds is None:
        return body.split(",")
    low, high = bounds.groups()
    if max(len(low), len(high)) > 18:
        fail("pattern", "range bounds of at most 18 digits", Text("{" + body[:40] + "}"))
    if int(high) < int(low):
        fail("pattern", "a range {low..high} with low <= high", Text("{" + body + "}"))
    return int(low), int(high), len(low)


def _count(pattern: str) -> int:
    """How many names ``pattern`` makes (exact where its braces do not nest; nested ones are
    counted again as :func:`_expand` builds them)."""
    total = 1
    for body in _BRACE.findall(pattern):
        choices = _choices(body)
        total *= choices[1] - choices[0] + 1 if isinstance(choices, tuple) else len(choices)
    return total if pattern else 0


def _expand(pattern: str, whole: Any, limit: int) -> list[str]:
    match = _BRACE.search(pattern)
    if match is None:
        return [pattern] if pattern else []
    head, body, tail = pattern[: match.start()], match.group(1), pattern[match.end() :]
    found = _choices(body)
    if isinstance(found, tuple):
        low, high, width = found
        choices: Iterable[str] = (str(i).zfill(width) for i in range(low, high + 1))
    else:
        choices = found
    names: list[str] = []
    for choice in choices:
        names.extend(_expand(head + choice + tail, whole, limit - len(names)))
        if len(names) > limit:
            _too_many(whole, f"more than {limit:,}", limit)
    return names
