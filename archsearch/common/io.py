"""Atomic file writes: write a temp file in the same folder, fsync, rename. A crash never leaves a
half-written desc, checkpoint or model behind. The file gets the mode `open()` would give it (0o666 less the
umask, like log.log), not mkstemp's private 0o600."""

from __future__ import annotations

import functools
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import yaml


@functools.cache
def _umask() -> int:
    """The process umask, read once. Linux reports it in /proc; elsewhere it can only be read by setting
    it, which briefly changes it for every thread, so that happens at most once."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> Path:
    path = Path(path)
    if os.environ.get("RANK", "0") != "0" and _not_writer(path, write):
        return path  # under torchrun only rank 0 writes (archsearch.common.distributed)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp_name, 0o666 & ~_umask())
        os.replace(tmp_name, path)
    except OSError as e:
        _discard(tmp_name)
        if e.filename is None:  # a failed write() names no file; the user needs to know which one
            raise OSError(e.errno, e.strerror, str(path)) from e
        raise
    except BaseException:
        _discard(tmp_name)
        raise
    return path


def _not_writer(path: Path, write: Callable[[IO[bytes]], None]) -> bool:
    """True on a torchrun rank other than 0, which keeps the digest of the bytes instead of writing them."""
    import io

    from archsearch.common import distributed

    if distributed.is_writer():
        return False
    buffer = io.BytesIO()
    write(buffer)
    distributed.note_unwritten(path, buffer.getvalue())
    return True


def _discard(tmp_name: str) -> None:
    if os.path.exists(tmp_name):
        os.unlink(tmp_name)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return _atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_yaml(path: str | os.PathLike, data: Any) -> Path:
    return atomic_write_text(path, yaml.safe_dump(data, sort_keys=False, default_flow_style=None))
