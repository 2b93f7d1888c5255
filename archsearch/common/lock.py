"""One run per experiment folder at a time: a lock file beside the folder, naming the holder's pid and host.

The lock sits beside `<logdir>/<experiment>/<algo>/` (as `<algo>.lock`), not inside it, because a fresh run
moves an earlier folder aside; a lock inside would move with it and let a second run in. A lock left by a
process that died (same host, pid gone) is taken over with a note in the log; one held by a live process,
or by another host (whose pids we cannot check), stops the second run with one line.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from archsearch.common import distributed
from archsearch.common.errors import UserError
from archsearch.common.readers import read_json


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _read_holder(path: Path) -> dict | None:
    try:  # a lock is a few dozen bytes; a FIFO or /dev/zero planted as the lock must not hang the run
        return read_json(path, "lock file", UserError, expect=dict, max_bytes=4096)
    except UserError:
        return None


@contextlib.contextmanager
def experiment_lock(folder: Path, note=print) -> Iterator[Path]:
    """Hold `<folder>.lock` for the duration of the block; a second holder gets a UserError. Under torchrun
    rank 0 holds it for the whole job (the other ranks write nothing)."""
    lock = folder.with_name(folder.name + ".lock")
    if not distributed.is_writer():
        yield lock
        return
    lock.parent.mkdir(parents=True, exist_ok=True)
    me = {"pid": os.getpid(), "host": socket.gethostname()}
    for _ in range(2):  # the second try follows the removal of a stale lock
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            holder = _read_holder(lock)
            if holder is None:  # being written this instant, or garbage: either way not ours to delete
                raise UserError(
                    f"{folder} is locked by {lock}, which cannot be read; if no run is using it, delete the lock"
                ) from None
            same_host = holder.get("host") == me["host"]
            pid = holder.get("pid")
            if same_host and isinstance(pid, int) and not isinstance(pid, bool) and 0 < pid < 2**31 and not _alive(pid):
                note(f"taking over the lock of a run that ended without releasing it (pid {pid})")
                with contextlib.suppress(FileNotFoundError):
                    lock.unlink()
                continue
            raise UserError(
                f"{folder} is in use by another run (pid {pid} on {holder.get('host')}, lock {lock}); wait for it "
                "to finish or pick another --common.experiment_name"
            ) from None
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        break
    else:  # pragma: no cover - two stale-lock races in a row
        raise OSError(errno.EEXIST, "could not take the experiment lock", str(lock))
    try:
        yield lock
    finally:
        with contextlib.suppress(FileNotFoundError):
            lock.unlink()
