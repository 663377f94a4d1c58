"""The one progress bar of the package: tqdm, shown only on a terminal.

Every loop that shows progress (the label scan, the encoder pass of ``embed`` and
``SMOTEDataset``, the VOC reader, the benchmark) opens its bar here, so that a log file, a pipe
or CI never receives carriage-return updates: ``disable=None`` makes tqdm quiet when its
output (``sys.stderr`` by default) is not a terminal.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import IO, Any

__all__ = ["progress_bar"]


def progress_bar(
    iterable: Iterable[Any] | None = None,
    *,
    total: int | None = None,
    desc: str | None = None,
    unit: str = "it",
    enabled: bool = True,
    file: IO[str] | None = None,
    leave: bool = True,
    dynamic_ncols: bool = False,
) -> Any:
    """A tqdm bar over ``iterable`` (or of ``total`` steps), shown only when ``enabled`` and
    ``file`` (default ``sys.stderr``) is a terminal.

    Example:
        >>> import io
        >>> progress_bar(range(3), file=io.StringIO()).disable
        True
        >>> list(progress_bar(range(3), enabled=False))
        [0, 1, 2]
    """
    from tqdm.auto import tqdm

    return tqdm(
        iterable,
        total=total,
        desc=desc,
        unit=unit,
        disable=None if enabled else True,
        file=file,
        leave=leave,
        dynamic_ncols=dynamic_ncols,
    )
