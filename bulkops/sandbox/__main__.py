"""``python -m bulkops.sandbox --port 0 --ready-file PATH ...`` (see cli.py for the flags)."""

from __future__ import annotations

import sys

from .cli import run

if __name__ == "__main__":
    sys.exit(run())
