#!/usr/bin/env python
"""Thin wrapper over the archsearch CLI: `python scripts/main.py --algos darts [--full] [--key.path value]`."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

if __name__ == "__main__":
    try:  # Ctrl-C while Python imports the CLI is one line too; from then on main() handles it
        from archsearch.cli import main
    except KeyboardInterrupt:
        import signal

        signal.signal(signal.SIGINT, signal.SIG_IGN)
        print("interrupted before the run started; nothing was written", file=sys.stderr, flush=True)
        sys.exit(130)
    sys.exit(main())
