"""Checkpoints: written atomically with a sha256 beside them, read with weights_only=True (no arbitrary code
on load) and verified, so a flipped bit, a truncated file or another file copied in its place is one line.

`safe_torch_load` is the project's one `torch.load`: every tensor file (checkpoints, trial weights, models)
is read through it. `fault_point` is the one place a test can make the process SIGKILL itself, raise, or
stop and wait for a signal.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import signal
import sys
import time
from pathlib import Path
from typing import Any

import torch

from archsearch.common import distributed
from archsearch.common.errors import CheckpointError
from archsearch.common.io import atomic_write_bytes, atomic_write_text
from archsearch.common.readers import read_bytes, read_text

# Test-only fault injection: the process kills itself (SIGKILL, like the OOM killer or a lost node) when it
# reaches the named point, e.g. ARCHSEARCH_TEST_KILL_AT="search:epoch:1" right after search's epoch-1 checkpoint.
# Under torchrun ARCHSEARCH_TEST_KILL_RANK=R limits it to rank R (a lost node), the other ranks carry on.
KILL_AT_ENV = "ARCHSEARCH_TEST_KILL_AT"
KILL_RANK_ENV = "ARCHSEARCH_TEST_KILL_RANK"
# ... or raises RuntimeError there (a trial that fails on purpose: "trial:run:2" makes trial 2 raise)
RAISE_AT_ENV = "ARCHSEARCH_TEST_RAISE_AT"
# ... or stops there until a signal arrives (a Ctrl-C test sends SIGINT to a process that cannot have finished):
# it first writes "PID waiting at POINT" to the file ARCHSEARCH_TEST_WAIT_FILE names (atomically, so a test
# that sees the file sees all of it), or to stderr without one. Every process reaching the point waits.
WAIT_AT_ENV = "ARCHSEARCH_TEST_WAIT_AT"
WAIT_FILE_ENV = "ARCHSEARCH_TEST_WAIT_FILE"
WAIT_LIMIT_S = 1800.0  # a safety net only: a test that never signals leaves no process behind for ever


def fault_point(name: str) -> None:
    """SIGKILL this process if ARCHSEARCH_TEST_KILL_AT names `name` (resume tests kill at exact points) and,
    when ARCHSEARCH_TEST_KILL_RANK is set, this process is that torchrun rank; raise RuntimeError if
    ARCHSEARCH_TEST_RAISE_AT names it; wait for a signal if ARCHSEARCH_TEST_WAIT_AT names it."""
    if os.environ.get(RAISE_AT_ENV) == name:
        raise RuntimeError(f"test fault at {name} ({RAISE_AT_ENV})")
    if os.environ.get(WAIT_AT_ENV) == name:
        wait_for_signal(name)
    if os.environ.get(KILL_AT_ENV) != name:
        return
    target = os.environ.get(KILL_RANK_ENV)
    if target is None or target == os.environ.get("RANK", "0"):
        os.kill(os.getpid(), signal.SIGKILL)


def wait_for_signal(name: str, limit_s: float | None = None) -> None:
    """Say that this process reached `name`, then sleep until a signal ends the wait: SIGINT raises
    KeyboardInterrupt out of the sleep (as a Ctrl-C at this point would), SIGTERM or SIGKILL end the process.
    A signal whose handler returns (SIGCHLD, ...) does not; after `limit_s` (WAIT_LIMIT_S) without one,
    RuntimeError."""
    limit_s = WAIT_LIMIT_S if limit_s is None else limit_s
    line = f"{os.getpid()} waiting at {name}\n"
    marker = os.environ.get(WAIT_FILE_ENV)
    if marker:
        atomic_write_text(Path(marker), line)
    else:
        sys.stderr.write(f"{WAIT_AT_ENV}: {line}")
        sys.stderr.flush()
    deadline = time.monotonic() + limit_s
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(left)
    raise RuntimeError(f"test fault at {name}: no signal came within {limit_s:.0f} s ({WAIT_AT_ENV})")


def checksum_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def save_checkpoint(state: dict[str, Any], path: Path) -> Path:
    """Write `state` and its sha256. The checksum file lists the new digest and the old one while the
    checkpoint is replaced, so a kill between the two renames leaves a pair that still verifies."""
    path = Path(path)
    if not distributed.is_writer():  # under torchrun rank 0 writes; every rank holds the same state
        return path
    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    previous = _valid_digests(path) if path.exists() else []
    atomic_write_text(checksum_path(path), "\n".join([digest, *previous]) + "\n")
    atomic_write_bytes(path, data)
    atomic_write_text(checksum_path(path), digest + "\n")
    return path


def _valid_digests(path: Path) -> list[str]:
    sums = checksum_path(path)
    return read_text(sums, "checksum file", CheckpointError, max_bytes=4096).split() if sums.exists() else []


def delete_checkpoint(path: Path) -> None:
    if not distributed.is_writer():
        return
    Path(path).unlink(missing_ok=True)
    checksum_path(Path(path)).unlink(missing_ok=True)


def safe_torch_load(path: Path, map_location: str | torch.device = "cpu", what: str = "file") -> Any:
    """torch.load(weights_only=True) with one-line errors: a pickle that would run code, a truncated file
    and a foreign file all say which file and what to do."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: {what} does not exist") from None
    except Exception as e:  # a truncated, malicious or foreign file: say which, do not dump a trace
        raise CheckpointError(unreadable_message(path, what, e)) from None


def unreadable_message(path: Path, what: str, error: Exception) -> str:
    """The one line for a torch file that cannot be loaded. It never passes on torch's advice to load with
    weights_only=False (that would run whatever code the file holds), and it advises a fresh run only for a
    run's own checkpoint ("checkpoint"): a model file given to load_model, export or show is the user's to fix."""
    plain = re.sub(r"\x1b\[[0-9;]*m", "", str(error))  # torch colours its advice for terminals
    advice = ("weights_only", "torch.load", "file an issue", "weights only load failed", "can still be loaded",
              "trust the source", "two options")  # fmt: skip
    lines = [line.strip() for line in plain.splitlines() if line.strip()]
    # torch's weights-only refusal: keep its reason (the blocked global or opcode), drop its advice
    reason = [
        line.removeprefix("WeightsUnpickler error:").strip()
        for line in lines
        if not any(phrase in line.lower() for phrase in advice)
    ]
    reason = [line for line in reason if line]
    # a valid pickle of objects other than tensors: a class torch would allow-list ("can still be loaded"), or a
    # global it blocks outright (os.system, posix.getcwd); anything else is a file that is not a torch checkpoint
    if "can still be loaded" in plain or "unsupported global" in plain.lower():
        found = (
            f"it holds Python objects beyond tensors ({(reason or ['unsupported content'])[0][:160]}), "
            "which archsearch never unpickles"
        )
    else:
        found = f"{type(error).__name__}: {(reason or lines or [''])[0][:200]}"
    if what == "checkpoint":
        fix = "delete it, or rerun without --common.resume true to start over (the earlier run is moved aside)"
    else:
        fix = "check that it is a file archsearch wrote (e.g. an experiment's eval/model.pt) and is complete"
    return f"{path}: {what} cannot be read ({found}); {fix}"


def load_checkpoint(
    path: Path, map_location: str | torch.device = "cpu", require_checksum: bool = False
) -> dict[str, Any]:
    """Read a file written by save_checkpoint after checking its sha256 when one is beside it; a resume
    passes require_checksum (its own checkpoints always have one), a model.pt a user copied alone need not."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint does not exist")
    if not path.is_file():  # a directory, FIFO or device: torch.load would fail obscurely or wait forever
        raise CheckpointError(f"{path}: not a regular file (a directory, pipe or device); give a model.pt file")
    digests = _valid_digests(path)
    # a resume reads its own checkpoints (require_checksum): start over; any other caller reads a model file
    fresh = (
        "rerun without --common.resume true to start over (the earlier run is moved aside)"
        if require_checksum
        else "use a model file archsearch wrote (an experiment's eval/model.pt), complete and with its .sha256"
    )
    if digests:
        actual = hashlib.sha256(read_bytes(path, "checkpoint", CheckpointError, max_bytes=1 << 40)).hexdigest()
        if actual not in digests:
            raise CheckpointError(
                f"{path}: checksum mismatch (the file is corrupt or was replaced; {checksum_path(path).name} "
                f"expects {digests[0][:12]}..., the file is {actual[:12]}...); {fresh}"
            )
    elif require_checksum:
        raise CheckpointError(f"{path}: no checksum file {checksum_path(path).name} beside it; {fresh}")
    state = safe_torch_load(path, map_location, "checkpoint" if require_checksum else "model file")
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a checkpoint dictionary, got {type(state).__name__}; {fresh}")
    return state


def require_keys(path: Path, state: dict[str, Any], keys: tuple[str, ...], kind: str) -> None:
    """One line when a file is a valid torch file but not the kind expected (a model.pt for a checkpoint)."""
    missing = [k for k in keys if k not in state]
    if missing:
        raise CheckpointError(
            f"{path}: not a {kind} (missing {', '.join(missing)}; has {', '.join(map(str, state)) or 'nothing'}); "
            f"rerun without --common.resume true to start over (the earlier run is moved aside)"
        )
