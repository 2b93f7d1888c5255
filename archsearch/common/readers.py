"""The one guarded way to read a file the project did not just write itself: configs, run folders, trial
indexes, architecture files, benchmark tables.

Every reader here
- opens only regular files (a FIFO with no writer would hang, /dev/zero would read until the kernel kills
  the process), checked before opening;
- reads at most `max_bytes` (a file that grows while being read is caught too);
- decodes UTF-8 and turns every failure into one `UserError` line naming the file;
- for YAML, uses `safe_load` only and refuses alias cycles and alias bombs (a small document whose aliases
  expand to billions of nodes when walked), so no later walk of the data can exhaust memory;
- optionally checks the top-level type, so a caller never indexes a list or a string as a mapping.

The error class is the caller's: a config file gives `ConfigError`, an architecture file
`ArchitectureError`, a run folder the report's own error.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import yaml

from archsearch.common.errors import ConfigError, UserError

MAX_TEXT_BYTES = 64 * 1024 * 1024  # the largest trial index or log.yaml a long run writes is a few MB
MAX_ARCH_BYTES = 16 * 1024 * 1024  # an architecture file (desc YAML, choice JSON, graph) is kilobytes
MAX_NODES = 100_000  # the node budget of a small document; larger files get one node per character
MAX_DEPTH = 200


def _type_name(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", type(None): "nothing"}.get(
        type(value), type(value).__name__
    )


def check_regular_file(
    path: str | os.PathLike, what: str, error: type[UserError], fix: str = "give a file", missing: str = ""
) -> os.stat_result:
    """`path`'s stat when it is a regular file; else one `error` line saying what it is instead (missing, a
    directory, a device, pipe or socket), with `fix` (and `missing` for a file that is not there) appended."""
    path = Path(path).expanduser()
    try:
        info = path.stat()
    except FileNotFoundError:
        raise error(f"{what} {path} does not exist" + (f"; {missing}" if missing else "")) from None
    except NotADirectoryError:
        raise error(f"{what} {path} does not exist (a part of the path is a file)") from None
    except OSError as e:
        raise error(f"cannot read {what} {path}: {e.strerror}") from None
    if stat.S_ISDIR(info.st_mode):
        raise error(f"{what} {path} is a directory, not a file; {fix}")
    if not stat.S_ISREG(info.st_mode):
        raise error(f"{what} {path} is not a regular file (a device, pipe or socket); {fix}")
    return info


def read_bytes(
    path: str | os.PathLike,
    what: str = "file",
    error: type[UserError] = ConfigError,
    max_bytes: int = MAX_TEXT_BYTES,
) -> bytes:
    """The bytes of the regular file `path`, or one `error` line: '<what> <path> ...'."""
    path = Path(path).expanduser()
    info = check_regular_file(path, what, error)
    if info.st_size > max_bytes:
        raise error(f"{what} {path} is {info.st_size:,} bytes, over the {max_bytes:,}-byte limit")
    try:
        # O_NONBLOCK: should the path have been swapped for a FIFO since the stat, opening does not hang
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise error(f"{what} {path} is not a regular file (a device, pipe or socket); give a file")
            data = _read_at_most(f, max_bytes)
    except OSError as e:
        raise error(f"cannot read {what} {path}: {e.strerror}") from None
    if data is None:  # it grew past the limit while being read
        raise error(f"{what} {path} is over the {max_bytes:,}-byte limit")
    return data


def _read_at_most(f: Any, max_bytes: int, chunk: int = 1 << 20) -> bytes | None:
    """The rest of `f` if it holds at most `max_bytes`, else None; read in chunks, so a large limit (a
    checkpoint's) never allocates the limit itself."""
    parts, total = [], 0
    while True:
        part = f.read(chunk)
        if not part:
            return b"".join(parts)
        total += len(part)
        if total > max_bytes:
            return None
        parts.append(part)


def read_text(
    path: str | os.PathLike,
    what: str = "file",
    error: type[UserError] = ConfigError,
    max_bytes: int = MAX_TEXT_BYTES,
) -> str:
    """The UTF-8 text of the regular file `path`, or one `error` line: '<what> <path> ...'."""
    path = Path(path).expanduser()
    data = read_bytes(path, what, error, max_bytes)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise error(f"{what} {path} is not UTF-8 text (byte {e.start})") from None


def safe_yaml(text: str, where: str, error: type[UserError] = ConfigError) -> Any:
    """yaml.safe_load that turns every way a document can be bad into one `error` line naming `where`.

    Besides syntax errors and unsafe tags (`!!python/object`), an alias that contains itself
    (`&a [*a]`) or a document nested too deeply would otherwise surface later as a RecursionError, and an
    alias bomb as a MemoryError in whatever walks it.
    """
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e)
        raise error(
            f"{where}{line} is not valid YAML: {problem.splitlines()[0] if problem else type(e).__name__}"
        ) from None
    except RecursionError:
        raise error(f"{where} is nested too deeply") from None
    except (ValueError, OverflowError) as e:  # e.g. a timestamp PyYAML cannot represent
        raise error(f"{where} holds a value YAML cannot read: {str(e).splitlines()[0]}") from None
    check_finite_tree(data, where, error, max_nodes=max(MAX_NODES, len(text)))
    return data


def check_finite_tree(data: Any, where: str, error: type[UserError] = ConfigError, max_nodes: int = MAX_NODES) -> None:
    """Reject alias cycles and alias bombs: the data must be a finite tree of at most `max_nodes` nodes.

    Without aliases a document has at most about one node per character, so `max_nodes` is the size of
    the text (or MAX_NODES for small ones): only aliases can exceed it.
    """
    seen = 0

    def walk(node: Any, ancestors: frozenset[int], depth: int) -> None:
        nonlocal seen
        seen += 1
        if seen > max_nodes or depth > MAX_DEPTH:
            raise error(f"{where} is too large or nested too deeply (YAML aliases?)")
        if isinstance(node, (dict, list)):
            if id(node) in ancestors:
                raise error(f"{where}: a YAML alias refers to itself (an alias cycle); write the values out")
            inner = ancestors | {id(node)}
            for child in node.values() if isinstance(node, dict) else node:
                walk(child, inner, depth + 1)

    walk(data, frozenset(), 0)


def _expect(data: Any, expect: type | tuple[type, ...] | None, where: str, error: type[UserError]) -> Any:
    if expect is None or isinstance(data, expect):
        return data
    wanted = " or ".join(_type_name(t()) for t in (expect if isinstance(expect, tuple) else (expect,)))
    raise error(f"{where} must hold {wanted} at the top, not {_type_name(data)}")


def read_yaml(
    path: str | os.PathLike,
    what: str = "file",
    error: type[UserError] = ConfigError,
    expect: type | tuple[type, ...] | None = None,
    empty: Any = None,
    max_bytes: int = MAX_TEXT_BYTES,
) -> Any:
    """The YAML document in `path`, read through `read_text` and `safe_yaml`; `empty` for an empty file,
    and `expect` (dict, list, or a tuple) checked at the top level."""
    text = read_text(path, what, error, max_bytes)
    where = f"{what} {Path(path).expanduser()}"
    data = safe_yaml(text, where, error)
    if data is None:
        return empty
    return _expect(data, expect, where, error)


def read_json(
    path: str | os.PathLike,
    what: str = "file",
    error: type[UserError] = ConfigError,
    expect: type | tuple[type, ...] | None = None,
    max_bytes: int = MAX_TEXT_BYTES,
) -> Any:
    """The JSON document in `path`, or one `error` line (invalid JSON names its line and column)."""
    text = read_text(path, what, error, max_bytes)
    where = f"{what} {Path(path).expanduser()}"
    return _expect(parse_json(text, where, error), expect, where, error)


def parse_json(text: str | bytes, where: str, error: type[UserError] = ConfigError) -> Any:
    """json.loads with every way the text can be bad as one `error` line naming `where`, and the same finite-tree
    check as YAML (a document nested past MAX_DEPTH or larger than its text allows)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise error(f"{where} is not valid JSON: {e.msg} (line {e.lineno}, column {e.colno})") from None
    except RecursionError:
        raise error(f"{where} is nested too deeply") from None
    check_finite_tree(data, where, error, max_nodes=max(MAX_NODES, len(text)))
    return data
