"""Config: YAML files with Archai's `__include__` and `_copy` semantics plus dotted overrides.

Resolution order (later wins): the algorithm file (which includes common.yaml), the dataset file,
toy.yaml unless --full, the user's --config files, then --dotted.key value overrides. After loading,
the config is read-only: code reads the section it was handed (`conf_trainer["epochs"]`), and a key that
does not exist is an error naming the full dotted path, never a silent default.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from archsearch.common.errors import ConfigError

INCLUDE_KEY = "__include__"
COPY_KEY = "_copy"


def _read_yaml(path: Path) -> dict:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"config file {path}{where} is not valid YAML: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top, not {type(data).__name__}")
    return data


def deep_merge(base: dict, top: Mapping) -> dict:
    """Merge `top` into a copy of `base`; nested mappings merge key by key, anything else is replaced."""
    merged = copy.deepcopy(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def load_yaml_with_includes(path: str | os.PathLike, _chain: tuple[Path, ...] = ()) -> dict:
    """Load a YAML file, merging its `__include__` files (relative to it) first, depth-first."""
    path = Path(path).expanduser().resolve()
    if path in _chain:
        cycle = " -> ".join(str(p) for p in (*_chain, path))
        raise ConfigError(f"include cycle: {cycle}")
    data = _read_yaml(path)
    includes = data.pop(INCLUDE_KEY, None)
    if includes is None:
        return data
    if isinstance(includes, str):
        includes = [includes]
    if not isinstance(includes, list) or not all(isinstance(i, str) for i in includes):
        raise ConfigError(f"{path}: {INCLUDE_KEY} must be a path or a list of paths")
    merged: dict = {}
    for include in includes:
        merged = deep_merge(merged, load_yaml_with_includes(path.parent / include, (*_chain, path)))
    return deep_merge(merged, data)


def _lookup(root: dict, abs_path: str, where: str) -> Any:
    node: Any = root
    for part in [p for p in abs_path.strip("/").split("/") if p]:
        if not isinstance(node, dict) or part not in node:
            raise ConfigError(f"{where}: {COPY_KEY} target {abs_path!r} does not exist in the config")
        node = node[part]
    return node


def resolve_copies(root: dict) -> dict:
    """Replace every mapping holding `_copy: /abs/path` by a copy of that section overlaid with its keys.

    Targets are resolved against the merged config, recursively, so a copy of a section that itself
    copies another ends up fully resolved. Copy cycles are an error.
    """

    def resolve(node: Any, where: str, active: tuple[str, ...]) -> Any:
        if isinstance(node, list):
            return [resolve(v, f"{where}[{i}]", active) for i, v in enumerate(node)]
        if not isinstance(node, dict):
            return node
        own = {k: v for k, v in node.items() if k != COPY_KEY}
        result: dict = {}
        if COPY_KEY in node:
            target = node[COPY_KEY]
            if not isinstance(target, str) or not target.startswith("/"):
                raise ConfigError(f"{where or '/'}: {COPY_KEY} needs an absolute path like /nas/search/loader")
            if target in active:
                raise ConfigError(f"{COPY_KEY} cycle: {' -> '.join((*active, target))}")
            source = _lookup(root, target, where or "/")
            if not isinstance(source, dict):
                raise ConfigError(f"{where}: {COPY_KEY} target {target!r} is not a mapping")
            result = resolve(copy.deepcopy(source), target.strip("/").replace("/", "."), (*active, target))
        for key, value in own.items():
            child = resolve(value, f"{where}.{key}" if where else key, active)
            if isinstance(child, dict) and isinstance(result.get(key), dict):
                result[key] = deep_merge(result[key], child)
            else:
                result[key] = child
        return result

    return resolve(root, "", ())


def parse_override_value(text: str, key: str) -> Any:
    """Parse a command-line value as a YAML scalar or flow collection (`true`, `1e-3`, `[1,2]`, `null`)."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        raise ConfigError(f"--{key}: cannot parse value {text!r} (use YAML syntax: 3, 1e-3, true, [1,2])") from None
    # YAML 1.1 reads "1e-3" as a string; users mean a float.
    if isinstance(value, str) and any(c in value.lower() for c in ".e"):
        with contextlib.suppress(ValueError):
            value = float(value)
    return value


def _type_fits(old: Any, new: Any) -> bool:
    if old is None or new is None:
        return True
    if isinstance(old, bool) or isinstance(new, bool):
        return isinstance(old, bool) and isinstance(new, bool)
    if isinstance(old, (int, float)) and isinstance(new, (int, float)):
        return isinstance(old, float) or isinstance(new, int) or float(new).is_integer()
    if isinstance(old, (list, tuple)):
        return isinstance(new, (list, tuple))
    if isinstance(old, dict):
        return isinstance(new, dict)
    return isinstance(new, type(old))


def _all_keys(node: Any, prefix: str = "") -> list[str]:
    keys = []
    if isinstance(node, dict):
        for k, v in node.items():
            full = f"{prefix}.{k}" if prefix else str(k)
            keys.append(full)
            keys.extend(_all_keys(v, full))
    return keys


def apply_override(root: dict, dotted_key: str, raw_value: str) -> None:
    """Set `a.b.c` in the unresolved tree `root` to the parsed value.

    The key must exist in the resolved config and the type must fit its value there. The value is set
    before `_copy` is resolved (Archai's order), so overriding `nas.search.loader.batch_size` also
    reaches a section that copies it, and a key that exists only through a copy can be overridden.
    """
    resolved = resolve_copies(root)
    parts = dotted_key.split(".")
    node: Any = resolved
    for i, part in enumerate(parts):
        if not isinstance(node, dict) or part not in node:
            close = difflib.get_close_matches(dotted_key, _all_keys(resolved), n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join('--' + c for c in close)}?" if close else ""
            where = ".".join(parts[:i]) or "the top level"
            raise ConfigError(f"--{dotted_key}: no key {part!r} under {where}{hint}")
        node = node[part]
    value = parse_override_value(raw_value, dotted_key)
    if not _type_fits(node, value):
        raise ConfigError(
            f"--{dotted_key}: value {raw_value!r} is a {type(value).__name__}, "
            f"but this key holds a {type(node).__name__} (current value {node!r})"
        )
    if isinstance(node, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    target = root
    for part in parts[:-1]:
        target = target.setdefault(part, {})
    target[parts[-1]] = value


class Config(Mapping):
    """A read-only view of a nested config mapping that knows its dotted path for error messages."""

    def __init__(self, data: Mapping, path: str = "") -> None:
        self._data = data
        self.path = path

    def __getitem__(self, key: str) -> Any:
        if key not in self._data:
            full = f"{self.path}.{key}" if self.path else key
            close = difflib.get_close_matches(key, [str(k) for k in self._data], n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ConfigError(f"config key {full!r} is missing{hint}; add it to your config file")
        value = self._data[key]
        if isinstance(value, Mapping):
            return Config(value, f"{self.path}.{key}" if self.path else key)
        if isinstance(value, list):
            return copy.deepcopy(value)
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"Config({self.path or '/'}: {self.to_dict()!r})"

    def to_dict(self) -> dict:
        return copy.deepcopy(dict(self._data))

    def error(self, key: str, message: str) -> ConfigError:
        """A ConfigError about `key` of this section, prefixed with its dotted path."""
        full = f"{self.path}.{key}" if self.path else key
        return ConfigError(f"config {full}: {message}")


def choice(conf: Mapping, key: str, valid: Sequence[str]) -> Any:
    """conf[key], which must be one of `valid` (a ConfigError naming the dotted key otherwise)."""
    value = conf[key]
    if value not in valid:
        where = f"{conf.path}.{key}" if isinstance(conf, Config) and conf.path else key
        raise ConfigError(f"config {where}: {value!r} is not one of {', '.join(map(str, valid))}")
    return value


def load_config(
    files: Sequence[str | os.PathLike],
    overrides: Sequence[tuple[str, str]] = (),
) -> Config:
    """Merge `files` in order (each with its includes), resolve `_copy`, then apply overrides."""
    merged: dict = {}
    for f in files:
        merged = deep_merge(merged, load_yaml_with_includes(f))
    for key, value in overrides:
        apply_override(merged, key, value)
    return Config(resolve_copies(merged))


def to_yaml(conf: Config) -> str:
    return yaml.safe_dump(conf.to_dict(), sort_keys=False, default_flow_style=None)
