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

from archsearch.common.errors import ConfigError, UserError
from archsearch.common.readers import read_yaml, safe_yaml
from archsearch.config import schema as config_schema

MAX_CONFIG_BYTES = 4 * 1024 * 1024  # a config is a few KB; anything near this is a mistake
INCLUDE_KEY = "__include__"
COPY_KEY = "_copy"


def _read_yaml(path: Path) -> dict:
    return read_yaml(path, "config file", ConfigError, expect=dict, empty={}, max_bytes=MAX_CONFIG_BYTES)


def deep_merge(base: dict, top: Mapping) -> dict:
    """Merge `top` into a copy of `base`; nested mappings merge key by key, anything else is replaced."""
    merged = copy.deepcopy(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


Origins = dict[str, str]  # dotted key -> the file (or --override) that set it last


# resolved path -> the file's parsed mapping: one resolution of a run's config reads each file once, although
# the space is chosen from the files before the whole config (which includes the space's own file) is merged
YamlCache = dict[Path, dict]


def load_yaml_with_includes(path: str | os.PathLike, cache: YamlCache | None = None) -> dict:
    """Load a YAML file, merging its `__include__` files (relative to it) first, depth-first."""
    return _load_with_origins(path, (), cache)[0]


def _read_cached(path: Path, cache: YamlCache | None) -> dict:
    if cache is None:
        return _read_yaml(path)
    if path not in cache:
        cache[path] = _read_yaml(path)
    return copy.deepcopy(cache[path])  # the caller pops __include__ and merges into it


def _leaf_origins(data: Any, source: str, prefix: str = "") -> Origins:
    origins: Origins = {}
    if isinstance(data, dict):
        for k, v in data.items():
            full = f"{prefix}.{k}" if prefix else str(k)
            origins[full] = source
            origins.update(_leaf_origins(v, source, full))
    return origins


def _load_with_origins(
    path: str | os.PathLike, chain: tuple[Path, ...], cache: YamlCache | None = None
) -> tuple[dict, Origins]:
    path = Path(path).expanduser().resolve()
    if path in chain:
        cycle = " -> ".join(str(p) for p in (*chain, path))
        raise ConfigError(f"include cycle: {cycle}")
    data = _read_cached(path, cache)
    includes = data.pop(INCLUDE_KEY, None)
    if isinstance(includes, str):
        includes = [includes]
    if includes is not None and (not isinstance(includes, list) or not all(isinstance(i, str) for i in includes)):
        raise ConfigError(f"{path}: {INCLUDE_KEY} must be a path or a list of paths")
    merged: dict = {}
    origins: Origins = {}
    for include in includes or []:
        included, included_origins = _load_with_origins(path.parent / include, (*chain, path), cache)
        merged = deep_merge(merged, included)
        origins.update(included_origins)
    origins.update(_leaf_origins(data, str(path)))
    return deep_merge(merged, data), origins


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
        value = safe_yaml(text, f"--{key} value {text[:40]!r}")
    except ConfigError as e:
        raise ConfigError(f"{e} (use YAML syntax: 3, 1e-3, true, [1,2])") from None
    # YAML 1.1 reads "1e-3" as a string; users mean a float.
    if isinstance(value, str) and any(c in value.lower() for c in ".e"):
        with contextlib.suppress(ValueError):
            value = float(value)
    return value


def _verbatim_string(text: str) -> bool:
    """True for a value of a string key that YAML would read as a block scalar ('|...' or '>...'), such as a
    NAS-Bench-201 cell '|nor_conv_3x3~0|+...': the user means the text itself. Anything else goes through YAML
    (so an unsafe tag is still refused)."""
    return text.lstrip()[:1] in ("|", ">")


def _all_keys(node: Any, prefix: str = "") -> list[str]:
    keys = []
    if isinstance(node, dict):
        for k, v in node.items():
            full = f"{prefix}.{k}" if prefix else str(k)
            keys.append(full)
            keys.extend(_all_keys(v, full))
    return keys


def apply_override(root: dict, dotted_key: str, raw_value: str) -> Any:
    """Set `a.b.c` in the unresolved tree `root` to the parsed value, and return that value.

    The key must exist in the resolved config and the value must fit the key's declared type and range
    (config_schema), so `--common.num_threads 2` works although the shipped value is null. The value is
    set before `_copy` is resolved (Archai's order), so overriding `nas.search.loader.batch_size` also
    reaches a section that copies it, and a key that exists only through a copy can be overridden.
    """
    resolved = resolve_copies(root)
    parts = dotted_key.split(".")
    node: Any = resolved
    for i, part in enumerate(parts):
        if not isinstance(node, dict) or part not in node:
            renamed = config_schema.RENAMED.get(config_schema.schema_path(dotted_key))
            if renamed is not None:
                raise ConfigError(f"--{dotted_key} was renamed: use {renamed}")
            close = difflib.get_close_matches(dotted_key, _all_keys(resolved), n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join('--' + c for c in close)}?" if close else ""
            where = ".".join(parts[:i]) or "the top level"
            raise ConfigError(f"--{dotted_key}: no key {part!r} under {where}{hint}")
        node = node[part]
    declared = config_schema.key_schema(dotted_key)
    if declared is not None and declared.kind == "str" and _verbatim_string(raw_value):
        value: Any = raw_value  # e.g. an NB201 cell '|nor_conv_3x3~0|+...', which YAML reads as a block scalar
    else:
        value = parse_override_value(raw_value, dotted_key)
    if isinstance(node, dict) and "name" in node and isinstance(value, str):
        # a section chosen by name takes its name directly: --nas.search.space nasbench201
        return apply_override(root, f"{dotted_key}.name", raw_value)
    if declared is not None:
        fits, value = declared.check(value)
        if not fits:
            raise ConfigError(f"--{dotted_key}: {declared.refusal(raw_value)}")
    elif isinstance(node, dict) and not isinstance(value, dict):
        raise ConfigError(f"--{dotted_key}: {raw_value!r} is not allowed (this is a section: a mapping like {{a: 1}})")
    target = root
    for part in parts[:-1]:
        if not isinstance(target.get(part), dict):
            target[part] = {}
        target = target[part]
    existing = target.get(parts[-1])
    # a mapping merges into its section, as a --config file's would: `--...optimizer "{lr: 0.1}"` keeps the type
    both_mappings = isinstance(existing, dict) and isinstance(value, dict)
    target[parts[-1]] = deep_merge(existing, value) if both_mappings else value
    return value


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

    def __contains__(self, key: object) -> bool:  # Mapping's would call __getitem__, which raises ConfigError
        return key in self._data

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


def _source_path(root: dict, parts: list[str]) -> str:
    """Where resolved key `parts` was written in the unresolved tree, following `_copy` targets."""
    node: Any = root
    for i, part in enumerate(parts):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, dict) and isinstance(node.get(COPY_KEY), str):
            target = [p for p in node[COPY_KEY].strip("/").split("/") if p]
            return _source_path(root, target + parts[i:])
        else:
            break
    return ".".join(parts)


def load_files(files: Sequence[str | os.PathLike], cache: YamlCache | None = None) -> tuple[dict, Origins]:
    """Merge `files` in order (each with its includes): the unresolved tree and where each key came from.
    Every declared section in it is checked to be a mapping (one line naming the file otherwise), so a caller
    may walk its sections before the whole config is validated."""
    merged: dict = {}
    origins: Origins = {}
    for f in files:
        data, file_origins = _load_with_origins(f, (), cache)
        merged = deep_merge(merged, data)
        origins.update(file_origins)
    config_schema.check_sections(merged, lambda dotted: origins.get(_source_path(merged, dotted.split("."))))
    return merged, origins


def load_config(
    files: Sequence[str | os.PathLike],
    overrides: Sequence[tuple[str, str]] = (),
    cache: YamlCache | None = None,
) -> Config:
    """Merge `files` in order (each with its includes), apply overrides, resolve `_copy`, then validate
    the whole result against config_schema: the first problem is one ConfigError line naming the key,
    the file or override it came from, the value and what is allowed."""
    merged, origins = load_files(files, cache)
    config_schema.fill_defaults(merged)  # the defaults plugins declare beside their code, where no file set them
    for key, value in overrides:
        parsed = apply_override(merged, key, value)
        origins[key] = f"--{key}"
        origins.update({k: f"--{key}" for k in _all_keys(parsed, key)})
    resolved = resolve_copies(merged)

    def origin(dotted: str) -> str | None:
        return origins.get(_source_path(merged, dotted.split(".")))

    return Config(config_schema.validate(resolved, origin))


def confs_dir() -> Path:
    """The shipped configs: $ARCHSEARCH_CONFS, else confs/ inside the installed package (a wheel ships it
    there), else confs/ at the top of the checkout this package runs from."""
    env = os.environ.get("ARCHSEARCH_CONFS")
    if env:
        path = Path(env).expanduser()
        where = "ARCHSEARCH_CONFS"
    else:
        package = Path(__file__).resolve().parent.parent
        installed, checkout = package / "confs", package.parent / "confs"
        path = installed if (installed / "common.yaml").exists() else checkout
        where = "the installed package"
    if not (path / "common.yaml").exists():
        raise UserError(
            f"config folder {path} (from {where}) has no common.yaml; point ARCHSEARCH_CONFS at a copy "
            "of the shipped confs/ or reinstall archsearch"
        )
    return path


def to_yaml(conf: Config) -> str:
    return yaml.safe_dump(conf.to_dict(), sort_keys=False, default_flow_style=None)
