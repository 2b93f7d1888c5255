"""What one experiment folder holds, read once for the report: summary.yaml, config.yaml, log.yaml's event
stream, the search's trials and the final architecture file. Reading only: nothing here writes."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from archsearch.common.errors import UserError


def _yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise UserError(f"{path}{where} is not valid YAML; was the run interrupted while writing it?") from None


@dataclass
class RunData:
    """One experiment folder (logdir/<name>/<algo>) as the report reads it."""

    path: Path
    summary: dict[str, Any]
    config: dict[str, Any]
    events: list[dict[str, Any]] = field(default_factory=list)
    trials: list[dict[str, Any]] = field(default_factory=list)

    # ---- identity --------------------------------------------------------------------------------
    @property
    def algo(self) -> str:
        return str(self.summary.get("algo") or self.path.name)

    @property
    def dataset(self) -> str:
        return str(self.summary.get("dataset") or self.config.get("dataset", {}).get("name", "?"))

    @property
    def name(self) -> str:
        """A short label telling runs apart on a comparison page: experiment/algo."""
        return f"{self.path.parent.name}/{self.path.name}"

    @property
    def seed(self) -> Any:
        return self.config.get("common", {}).get("seed")

    @property
    def command(self) -> str:
        start = self.first("start")
        return "archsearch " + shlex.join(str(a) for a in start["argv"]) if start and start.get("argv") else ""

    @property
    def final_arch_path(self) -> Path | None:
        rel = self.summary.get("final_arch")
        if not rel:
            return None
        path = Path(rel)
        return path if path.is_absolute() else self.path / path

    @property
    def model_path(self) -> Path | None:
        rel = self.summary.get("model")
        if not rel:
            return None
        path = Path(rel) if Path(rel).is_absolute() else self.path / rel
        return path if path.is_file() else None

    def final_arch(self) -> Any:
        """The final architecture file's content (a ModelDesc dict or a JSON document), None if absent."""
        path = self.final_arch_path
        if path is None or not path.is_file():
            return None
        if path.suffix == ".json":
            return json.loads(path.read_text(encoding="utf-8"))
        return _yaml(path)

    @property
    def space(self) -> str:
        """The search space: the final file's tag, else the configured name, else '-' (not a space search)."""
        arch = self.final_arch()
        if isinstance(arch, dict):
            tag = (arch.get("meta") or arch.get("archsearch") or {}).get("space")
            if isinstance(tag, dict):  # ENAS writes its geometry under the name
                tag = tag.get("name")
            if tag:
                return str(tag)
        configured = self.config.get("nas", {}).get("search", {}).get("space", {})
        name = configured.get("name") if isinstance(configured, dict) else None
        return str(name) if name else "-"

    # ---- events ----------------------------------------------------------------------------------
    def of(self, event: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("event") == event]

    def first(self, event: str) -> dict[str, Any] | None:
        found = self.of(event)
        return found[0] if found else None

    @property
    def differentiable(self) -> bool:
        """A search with architecture weights (DARTS and its relatives: PC-DARTS, GDAS, ...)."""
        return bool(self.of("arch_weights"))

    def search_metric(self, key: str) -> Any:
        return (self.summary.get("search") or {}).get(key)

    def eval_metric(self, key: str) -> Any:
        return (self.summary.get("eval") or {}).get(key)


def is_experiment(path: Path) -> bool:
    return (path / "summary.yaml").is_file() or (path / "log.yaml").is_file() and (path / "config.yaml").is_file()


def experiment_folders(paths: list[Path]) -> list[Path]:
    """The experiment folders `paths` name: each path itself, or for a folder holding several (one
    --exp-prefix with several --algos: logdir/<name>/<algo>), its experiment subfolders."""
    found: list[Path] = []
    for path in paths:
        path = Path(path).expanduser()
        if not path.is_dir():
            raise UserError(f"{path} is not a folder; pass an experiment folder such as ~/logdir/<name>/<algo>")
        if is_experiment(path):
            found.append(path)
            continue
        children = sorted(p for p in path.iterdir() if p.is_dir() and is_experiment(p))
        if not children:
            raise UserError(
                f"{path} holds no experiment (no summary.yaml or log.yaml); pass a folder such as "
                "~/logdir/<name>/<algo> written by `archsearch --algos ...`"
            )
        found.extend(children)
    return found


def load_run(path: Path) -> RunData:
    """Read an experiment folder; a one-line UserError when it is not one."""
    path = Path(path).expanduser()
    if not is_experiment(path):
        raise UserError(f"{path} is not an experiment folder (no summary.yaml); run `archsearch --algos ...` first")
    summary = _yaml(path / "summary.yaml") if (path / "summary.yaml").is_file() else {}
    config = _yaml(path / "config.yaml") if (path / "config.yaml").is_file() else {}
    events = _yaml(path / "log.yaml") if (path / "log.yaml").is_file() else []
    trials_file = path / "search" / "trials.yaml"
    trials = _yaml(trials_file) if trials_file.is_file() else []
    return RunData(path, summary or {}, config or {}, [e for e in events or [] if isinstance(e, dict)], trials or [])
