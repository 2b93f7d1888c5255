"""Test-only interrupt points, importing nothing but the standard library (the CLI calls one before it has
imported click or torch).

At the named point (`interrupt_point`), with ARCHSEARCH_TEST_SIGINT_AT naming it, the process touches the file
$ARCHSEARCH_TEST_SIGINT_READY and waits there for a SIGINT (at most 120 s), so a test interrupts at an exact
moment without relying on timing. (Points inside training use checkpoint.fault_point's ARCHSEARCH_TEST_WAIT_AT.)
"""

from __future__ import annotations

import os
import time
from pathlib import Path

SIGINT_AT_ENV = "ARCHSEARCH_TEST_SIGINT_AT"
SIGINT_READY_ENV = "ARCHSEARCH_TEST_SIGINT_READY"


def interrupt_point(name: str) -> None:
    """Wait for Ctrl-C here if ARCHSEARCH_TEST_SIGINT_AT names `name` (tests only; see above)."""
    if os.environ.get(SIGINT_AT_ENV) != name:
        return
    ready = os.environ.get(SIGINT_READY_ENV)
    if ready:
        Path(ready).touch()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # the SIGINT raises KeyboardInterrupt out of this sleep
        time.sleep(0.01)
