"""``python -m torch_balance``: the ``torch-balance`` command."""

from __future__ import annotations

import sys

from torch_balance.cli import main

__all__: list[str] = []

if __name__ == "__main__":
    sys.exit(main())
