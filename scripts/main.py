#!/usr/bin/env python
"""Thin wrapper over the archsearch CLI: `python scripts/main.py --algos darts [--full] [--key.path value]`."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from archsearch.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
