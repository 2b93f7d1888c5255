"""A phase's fingerprint: everything its result depends on, so a resume continues only the same run.

Search depends on the resolved nas.search section, the dataset section and the seed; eval on nas.eval, the
dataset, the seed and the bytes of the architecture file it trains. Both carry FORMAT_VERSION, the version
of what the code writes (checkpoint layout, RNG streams): bump it when a change makes old checkpoints
resume differently. Keys that do not change results (where outputs go, threads, the device, where the data
lives) are left out, so a copied experiment folder or another data path still resumes.

`<phase>/fingerprint.yaml` is written when a phase starts fresh; on resume it is compared and a difference
is one line naming the dotted keys that changed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from archsearch.common.errors import ArchitectureError, UserError
from archsearch.common.io import atomic_write_yaml
from archsearch.common.logging import plain
from archsearch.common.readers import read_bytes, read_yaml

FORMAT_VERSION = 2  # 2: checksummed checkpoints, algorithm state built before restore, morphism RNG in trials
FINGERPRINT = "fingerprint.yaml"
IGNORED = frozenset(
    {
        "dataset.dataroot",
        "dataset.download",
        "nas.search.loader.workers",
        "nas.eval.loader.workers",
        "nas.eval.final_desc",  # the architecture is fingerprinted by its bytes, not by where it lies
    }
)
FRESH = "rerun without --common.resume true to start over (the earlier run is moved aside)"
MAX_FINGERPRINT_BYTES = 4 * 1024 * 1024  # a few KB: the flattened config section of one phase


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists stay values."""
    if not isinstance(data, Mapping):
        return {prefix: data}
    flat: dict[str, Any] = {}
    for key, value in data.items():
        flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def file_sha256(path: Path) -> str:
    """The sha256 of the architecture file `path` (a regular file of bounded size, or one line naming it)."""
    return hashlib.sha256(read_bytes(path, "architecture file", ArchitectureError)).hexdigest()


def phase_fingerprint(conf: Mapping, phase: str, arch_file: Path | None = None) -> dict[str, Any]:
    """The flat {dotted key: value} a phase depends on; `phase` is "search" or "eval"."""
    common = conf["common"]
    sections = {
        f"nas.{phase}": _plain(conf["nas"][phase]),
        "dataset": _plain(conf["dataset"]),
        "common": {"seed": common["seed"], "deterministic": common["deterministic"]},
    }
    flat = {k: v for k, v in flatten(sections).items() if k not in IGNORED}
    flat["format_version"] = FORMAT_VERSION
    if arch_file is not None:
        flat["architecture.sha256"] = file_sha256(arch_file)
    return yaml.safe_load(yaml.safe_dump(plain(flat)))  # as it reads back from fingerprint.yaml (tuples -> lists)


def _plain(section: Any) -> Any:
    return section.to_dict() if hasattr(section, "to_dict") else dict(section)


def check_fingerprint(phase_dir: Path, fingerprint: dict[str, Any], resume: bool, phase: str) -> None:
    """Record the fingerprint of a fresh phase; on resume, refuse (one line) if it differs from the recorded one.

    A resumed phase folder with results but no fingerprint was written by an older archsearch (or tampered
    with): it is refused too, since nothing says what it was computed from.
    """
    path = Path(phase_dir) / FINGERPRINT
    if resume and path.exists():
        recorded = _read(path)
        changed = differences(recorded, fingerprint)
        if changed:
            shown = "; ".join(changed[:4]) + (f"; and {len(changed) - 4} more" if len(changed) > 4 else "")
            raise UserError(f"cannot resume {phase} in {phase_dir}: the settings changed ({shown}); {FRESH}")
        return
    if resume and Path(phase_dir).exists() and any(p.name != FINGERPRINT for p in Path(phase_dir).iterdir()):
        raise UserError(f"cannot resume {phase} in {phase_dir}: it has no {FINGERPRINT} (an older run?); {FRESH}")
    atomic_write_yaml(path, fingerprint)


def differences(recorded: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """ "key: old -> new" for every key whose value differs (missing shown as <unset>)."""
    keys = sorted(set(recorded) | set(current))
    return [
        f"{k}: {_show(recorded.get(k, '<unset>'))} -> {_show(current.get(k, '<unset>'))}"
        for k in keys
        if recorded.get(k, "<unset>") != current.get(k, "<unset>")
    ]


def _show(value: Any) -> str:
    text = str(value)
    return text[:12] + "..." if len(text) == 64 and all(c in "0123456789abcdef" for c in text) else text[:60]


def _read(path: Path) -> dict[str, Any]:
    try:
        return read_yaml(path, "fingerprint", UserError, expect=dict, max_bytes=MAX_FINGERPRINT_BYTES)
    except UserError as e:
        raise UserError(f"{e}; {FRESH}") from None
