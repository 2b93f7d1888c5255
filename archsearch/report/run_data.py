"""What one experiment folder holds, read once for the report: summary.yaml, config.yaml, log.yaml's event
stream, the search's trials and scores and the final architecture file. Reading only: nothing here writes.

A run folder may come from anywhere (mailed, downloaded, edited), so everything here is checked once, on
reading, and the drawing code after it can trust what it gets:
- every file is read through archsearch.common.readers (regular files only, a size limit, UTF-8, safe YAML
  without alias bombs, the top-level type) and only from inside the run folder: a path a file names is
  resolved (symlinks too) and refused when it leaves the folder;
- every value the report shows or draws has its type checked: a wrong one is one `ReportError` line naming
  the file and the key. Numbers that are not finite (.nan, .inf) are taken as not recorded ('-' on the
  page, a gap in a curve).
"""

from __future__ import annotations

import math
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import archsearch.plugins  # noqa: F401 - every space's ops and formats, so any run's architecture file validates
from archsearch.common import readers
from archsearch.common.errors import UserError

MAX_NAME = 80  # the longest op, cell or table name drawn as it is; longer ones are cut (a figure's size follows)


class ReportError(UserError):
    """A run folder the report cannot read: one line naming the file and the key or value at fault."""


# ---- typed values ----------------------------------------------------------------------------------


def _kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", type(None): "nothing"}.get(
        type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__
    )


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _fail(where: str, key: str, wanted: str, value: Any) -> ReportError:
    shown = repr(value) if isinstance(value, (str, int, float)) and len(repr(value)) <= 40 else _kind(value)
    return ReportError(f"{where}: {key} must be {wanted}, not {shown}")


def number(value: Any, where: str, key: str, *, integer: bool = False, finite: bool = False) -> float | int | None:
    """`value` as a number (None when absent, or not finite unless `finite` demands it), else one line."""
    if value is None:
        return None
    if integer:
        if not isinstance(value, int) or isinstance(value, bool):
            raise _fail(where, key, "a whole number", value)
        return value
    if not is_number(value):
        raise _fail(where, key, "a number", value)
    if not math.isfinite(value):
        if finite:
            raise _fail(where, key, "a finite number", value)
        return None
    return value


def text(value: Any, where: str, key: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise _fail(where, key, "a string", value)
    return value


def mapping(value: Any, where: str, key: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _fail(where, key, "a mapping", value)
    return value


def entry(value: Any, where: str, key: str) -> dict:
    """A list's item that must be a mapping (an event, a trial, a score)."""
    if not isinstance(value, dict):
        raise _fail(where, key, "a mapping", value)
    return value


def sequence(value: Any, where: str, key: str) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _fail(where, key, "a list", value)
    return value


def names(value: Any, where: str, key: str) -> list[str] | None:
    """A list of strings (op names, table columns), None when absent."""
    if value is None:
        return None
    items = sequence(value, where, key)
    for i, item in enumerate(items):
        text(item, where, f"{key}[{i}]")
    return items


def table(value: Any, where: str, key: str) -> list[list[float]]:
    """A non-empty table of finite numbers whose rows have one width (a softmax of architecture weights)."""
    rows = sequence(value, where, key)
    if not rows:
        raise _fail(where, key, "a table with at least one row", value)
    width = None
    for i, row in enumerate(rows):
        if not isinstance(row, list) or not row:
            raise _fail(where, f"{key}[{i}]", "a non-empty list of numbers", row)
        if width is not None and len(row) != width:
            raise ReportError(f"{where}: {key}[{i}] has {len(row)} values, the rows before it {width}")
        width = len(row)
        for j, v in enumerate(row):
            number(v, where, f"{key}[{i}][{j}]", finite=True)
    return rows


def clip(name: Any) -> str:
    """A user-supplied name as drawn: a string of at most MAX_NAME characters."""
    name = str(name)
    return name if len(name) <= MAX_NAME else name[: MAX_NAME - 3] + "..."


# ---- paths -----------------------------------------------------------------------------------------


def inside(root: Path, rel: Any, where: str, key: str) -> Path:
    """The path `rel` (a value of `key` in `where`) names, resolved, when it lies inside the run folder
    `root`; one line otherwise: the report reads only the run's own files."""
    rel = text(rel, where, key)
    if not rel or "\x00" in rel:
        raise _fail(where, key, "a path inside the run folder", rel)
    base = root.resolve()
    path = (base / rel).resolve()  # an absolute rel replaces base; symlinks are followed, then checked
    if not path.is_relative_to(base):
        raise ReportError(
            f"{where}: {key} {rel!r} leaves the run folder {root}; the report reads only the run's own files"
        )
    return path


# ---- the run ---------------------------------------------------------------------------------------


@dataclass
class RunData:
    """One experiment folder (logdir/<name>/<algo>) as the report reads it, every value checked."""

    path: Path
    summary: dict[str, Any]
    config: dict[str, Any]
    events: list[dict[str, Any]] = field(default_factory=list)
    trials: list[dict[str, Any]] = field(default_factory=list)
    arch: Any = None  # the final architecture file's checked content (a dict), None when there is none
    arch_path: Path | None = None
    arch_kind: str = ""  # "desc" | "macro" | "morphism" | "choices"
    pareto: Pareto | None = None  # search/pareto.yaml, checked: a multi-objective search's front

    # ---- identity --------------------------------------------------------------------------------
    @property
    def algo(self) -> str:
        return self.summary.get("algo") or self.path.name

    @property
    def dataset(self) -> str:
        return self.summary.get("dataset") or self.config["dataset"].get("name") or "?"

    @property
    def name(self) -> str:
        """A short label telling runs apart on a comparison page: experiment/algo."""
        return f"{self.path.parent.name}/{self.path.name}"

    @property
    def seed(self) -> Any:
        return self.config["common"].get("seed")

    @property
    def command(self) -> str:
        start = self.first("start")
        return "archsearch " + shlex.join(str(a) for a in start["argv"]) if start and start.get("argv") else ""

    @property
    def search_conf(self) -> dict[str, Any]:
        return self.config["nas"]["search"]

    @property
    def final_arch_path(self) -> Path | None:
        return self.arch_path

    @property
    def model_path(self) -> Path | None:
        rel = self.summary.get("model")
        if not rel:
            return None
        path = inside(self.path, rel, f"{self.path / 'summary.yaml'}", "model")
        return path if path.is_file() else None

    def final_arch(self) -> Any:
        """The final architecture file's checked content (a dict), None if absent."""
        return self.arch

    @property
    def space(self) -> str:
        """The search space: the final file's tag, else the configured name, else '-' (not a space search)."""
        arch = self.arch
        if isinstance(arch, dict):
            tag = mapping(arch.get("meta") or arch.get("archsearch"), str(self.arch_path), "meta").get("space")
            if isinstance(tag, dict):  # ENAS writes its geometry under the name
                tag = tag.get("name")
            if isinstance(tag, str) and tag:
                return tag
        configured = self.search_conf.get("space")
        name = configured.get("name") if isinstance(configured, dict) else None
        return name if isinstance(name, str) and name else "-"

    @property
    def space_class(self) -> Any:
        """The registered space that draws this run's architectures: `space`, else (a run that named none) the
        space whose files have this run's kind; None for a space not registered here."""
        kinds = {"morphism": "morphism", "choices": "user_model", "macro": "enas_macro"}
        return space_class(self.space if self.space != "-" else kinds.get(self.arch_kind, "darts"))

    def scores(self) -> list[dict[str, Any]]:
        """search/scores.yaml's scored architectures ({arch: str, score: number}), checked; [] without it."""
        path = self.path / "search" / "scores.yaml"
        if not path.is_file():
            return []
        path = inside(self.path, "search/scores.yaml", str(self.path), "search/scores.yaml")
        where = str(path)
        items = readers.read_yaml(path, "scores file", ReportError, expect=list, empty=[])
        for i, item in enumerate(items):
            entry(item, where, f"[{i}]")
            text(item.get("arch"), where, f"[{i}].arch")
            item["score"] = number(item.get("score"), where, f"[{i}].score")
        return items

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
        return self.summary["search"].get(key)

    def eval_metric(self, key: str) -> Any:
        return self.summary["eval"].get(key)


def is_experiment(path: Path) -> bool:
    return (path / "summary.yaml").is_file() or (path / "log.yaml").is_file() and (path / "config.yaml").is_file()


def experiment_folders(paths: list[Path]) -> list[Path]:
    """The experiment folders `paths` name: each path itself, or for a folder holding several (one
    --exp-prefix with several --algos: logdir/<name>/<algo>), its experiment subfolders (a symlinked one
    that leads out of the folder is refused: the report writes into each)."""
    found: list[Path] = []
    for path in paths:
        path = Path(path).expanduser()
        if not path.is_dir():
            raise ReportError(f"{path} is not a folder; pass an experiment folder such as ~/logdir/<name>/<algo>")
        if is_experiment(path):
            found.append(path)
            continue
        children = sorted(p for p in path.iterdir() if p.is_dir() and is_experiment(p))
        if not children:
            raise ReportError(
                f"{path} holds no experiment (no summary.yaml or log.yaml); pass a folder such as "
                "~/logdir/<name>/<algo> written by `archsearch --algos ...`"
            )
        for child in children:
            if not child.resolve().is_relative_to(path.resolve()):
                raise ReportError(f"{child} is a link leading out of {path}; pass the folder it leads to itself")
        found.extend(children)
    return found


# ---- checking what a run folder holds ----------------------------------------------------------------

SUMMARY_TEXT = ("algo", "dataset", "final_arch", "model")
SEARCH_NUMBERS = (
    "benchmark_top1", "benchmark_best_top1", "best_val_top1", "val_top1", "search_time_s", "kendall_tau",
    "spearman_rho", "hypervolume", "expected_cost", "arch_cost",
)  # fmt: skip
SEARCH_COUNTS = ("n_trials", "n_rejected", "n_infeasible", "front_size", "best_trial")
EVAL_NUMBERS = ("test_top1", "macs", "train_time_s")
EPOCH_EVENTS = ("search_epoch", "eval_epoch", "arch_weights", "collapse", "genotype", "cell", "choices", "cost")
EPOCH_NUMBERS = (
    "lr", "epoch_time", "controller_reward", "controller_baseline", "controller_entropy", "expected_cost",
    "arch_cost",
)  # fmt: skip
COST_NUMBERS = ("expected", "arch")  # the DARTS family's cost term, per epoch (a `cost` event)
COLLAPSE_NUMBERS = ("param_free", "n_ops", "entropy", "hessian_eigenvalue")


def check_summary(summary: dict, where: str) -> dict:
    for key in SUMMARY_TEXT:
        text(summary.get(key), where, key)
    search = summary["search"] = mapping(summary.get("search"), where, "search")
    for key in SEARCH_NUMBERS:
        search[key] = number(search.get(key), where, f"search.{key}")
    text(search.get("proxy"), where, "search.proxy")
    for key in SEARCH_COUNTS:
        number(search.get(key), where, f"search.{key}", integer=True)
    text(search.get("selected_by"), where, "search.selected_by")
    selected = search["selected_metrics"] = mapping(search.get("selected_metrics"), where, "search.selected_metrics")
    for name in list(selected):
        text(name, where, "search.selected_metrics key")
        selected[name] = number(selected[name], where, f"search.selected_metrics.{clip(name)}")
    ev = summary["eval"] = mapping(summary.get("eval"), where, "eval")
    for key in EVAL_NUMBERS:
        ev[key] = number(ev.get(key), where, f"eval.{key}")
    number(ev.get("params"), where, "eval.params", integer=True)
    return summary


def check_config(config: dict, where: str) -> dict:
    config["dataset"] = mapping(config.get("dataset"), where, "dataset")
    text(config["dataset"].get("name"), where, "dataset.name")
    config["common"] = mapping(config.get("common"), where, "common")
    seed = config["common"].get("seed")
    if seed is not None and not isinstance(seed, (int, str)):
        raise _fail(where, "common.seed", "a whole number", seed)
    config["nas"] = nas = mapping(config.get("nas"), where, "nas")
    nas["search"] = search = mapping(nas.get("search"), where, "nas.search")
    space = search.get("space")
    if isinstance(space, dict):
        text(space.get("name"), where, "nas.search.space.name")
        text(space.get("model"), where, "nas.search.space.model")
    elif space is not None:
        text(space, where, "nas.search.space")
    search["model_desc"] = mapping(search.get("model_desc"), where, "nas.search.model_desc")
    names(search["model_desc"].get("primitives"), where, "nas.search.model_desc.primitives")
    text(search.get("benchmark"), where, "nas.search.benchmark")
    columns = names(search.get("benchmark_columns"), where, "nas.search.benchmark_columns")
    if columns is not None and len(columns) != 2:
        raise _fail(where, "nas.search.benchmark_columns", "two column names", columns)
    return config


def check_events(events: list, where: str) -> list[dict]:
    shapes = None  # every arch_weights entry holds tables of the same names and shapes
    for i, e in enumerate(events):
        key = f"entry {i}"
        entry(e, where, key)
        kind = text(e.get("event"), where, f"{key}.event")
        if kind == "start":
            argv = sequence(e.get("argv"), where, f"{key}.argv")
            for j, arg in enumerate(argv):
                if not isinstance(arg, (str, int, float)):
                    raise _fail(where, f"{key}.argv[{j}]", "a string", arg)
        if kind not in EPOCH_EVENTS:
            continue
        if number(e.get("epoch"), where, f"{key}.epoch", finite=True) is None:
            raise ReportError(f"{where}: {key} ({kind}) has no epoch")
        if kind in ("search_epoch", "eval_epoch"):
            for name in [k for k in e if k in EPOCH_NUMBERS or k.endswith(("_loss", "_top1", "_top5"))]:
                e[name] = number(e[name], where, f"{key}.{clip(name)}")
        elif kind == "collapse":
            for name in COLLAPSE_NUMBERS:
                if name in e:
                    e[name] = number(e[name], where, f"{key}.{name}")
        elif kind == "cost":
            for name in COST_NUMBERS:
                e[name] = number(e.get(name), where, f"{key}.{name}")
            for name in ("source", "unit"):
                text(e.get(name), where, f"{key}.{name}")
        elif kind == "arch_weights":
            softmax = mapping(e.get("softmax"), where, f"{key}.softmax")
            if not softmax:
                raise ReportError(f"{where}: {key} (arch_weights) holds no softmax tables")
            for name, rows in softmax.items():
                text(name, where, f"{key}.softmax key")
                table(rows, where, f"{key}.softmax.{clip(name)}")
            for name, cols in mapping(e.get("columns"), where, f"{key}.columns").items():
                names(cols, where, f"{key}.columns.{clip(name)}")
            shape = {name: (len(rows), len(rows[0])) for name, rows in softmax.items()}
            if shapes is not None and shape != shapes:
                raise ReportError(
                    f"{where}: {key} (arch_weights) holds tables of other names or shapes than the entries before it"
                )
            shapes = shape
    return events


def check_trials(trials: list, where: str) -> list[dict]:
    for i, t in enumerate(trials):
        key = f"trial {i}"
        entry(t, where, key)
        if number(t.get("index"), where, f"{key}.index", integer=True) is None:
            raise ReportError(f"{where}: {key} has no index")
        metrics = t["metrics"] = mapping(t.get("metrics"), where, f"{key}.metrics")
        for name in list(metrics):
            text(name, where, f"{key}.metrics key")
            metrics[name] = number(metrics[name], where, f"{key}.metrics.{clip(name)}")
        t["best_so_far"] = number(t.get("best_so_far"), where, f"{key}.best_so_far")
        t["time_s"] = number(t.get("time_s"), where, f"{key}.time_s")
        number(t.get("father_id"), where, f"{key}.father_id", integer=True)
        # a multi-objective search's fields (search/trial_loop.py): absent in a single-objective run
        if t.get("feasible") is not None and not isinstance(t["feasible"], bool):
            raise _fail(where, f"{key}.feasible", "true or false", t["feasible"])
        number(t.get("rejected"), where, f"{key}.rejected", integer=True)
        t["hypervolume"] = number(t.get("hypervolume"), where, f"{key}.hypervolume")
        # a multi-fidelity search's fields (search/fidelity.py): absent with one fidelity
        for field_name in ("candidate", "bracket", "rung", "resource"):
            number(t.get(field_name), where, f"{key}.{field_name}", integer=True)
    return trials


# ---- a multi-objective search's front -----------------------------------------------------------------

GOALS = ("max", "min")


@dataclass
class FrontMember:
    index: int
    arch: str  # the architecture's encoding as one line, cut to MAX_ARCH characters
    metrics: dict[str, float | None]
    arch_file: Path | None  # resolved, inside the run folder; None when the file is not there


@dataclass
class Pareto:
    """search/pareto.yaml, every value checked (search/trial_eval.py write_pareto writes it)."""

    objectives: list[tuple[str, str]]  # (metric, goal: max | min)
    constraints: dict[str, dict[str, float]]  # metric -> {min?, max?}
    reference_point: list[float] | None
    hypervolume: float | None
    rejected: int
    front: list[FrontMember]
    selected: int | None  # a front member's index
    rule: str
    # (trials finished, hypervolume) against the final reference point; empty in files written before it
    hypervolume_curve: list[tuple[int, float]] = field(default_factory=list)

    @property
    def metrics(self) -> list[str]:
        return [m for m, _ in self.objectives]

    def member(self, index: int | None) -> FrontMember | None:
        return next((m for m in self.front if m.index == index), None)


MAX_ARCH = 200  # an architecture's encoding is shown up to this many characters in the front table


def arch_text(value: Any, where: str, key: str) -> str:
    """An architecture's encoding (an NB201 cell string, a genotype, a JSON value) as one line of text."""
    import json

    if isinstance(value, str):
        shown = value
    elif value is None or isinstance(value, (bool, int, float, list, dict)):
        try:
            shown = json.dumps(value, sort_keys=True, default=str, allow_nan=True)
        except (TypeError, ValueError, RecursionError):
            raise _fail(where, key, "an architecture encoding (a string or a JSON value)", value) from None
    else:
        raise _fail(where, key, "an architecture encoding (a string or a JSON value)", value)
    shown = " ".join(shown.split())
    return shown if len(shown) <= MAX_ARCH else shown[: MAX_ARCH - 3] + "..."


def check_pareto(doc: dict, root: Path, where: str) -> Pareto:
    objectives = []
    items = sequence(doc.get("objectives"), where, "objectives")
    if not items:
        raise _fail(where, "objectives", "a list of at least one {metric, goal}", doc.get("objectives"))
    for i, item in enumerate(items):
        entry(item, where, f"objectives[{i}]")
        metric = text(item.get("metric"), where, f"objectives[{i}].metric")
        if not metric:
            raise _fail(where, f"objectives[{i}].metric", "a metric name", metric)
        goal = item.get("goal")
        if goal not in GOALS:
            raise _fail(where, f"objectives[{i}].goal", "max or min", goal)
        objectives.append((metric, goal))
    constraints: dict[str, dict[str, float]] = {}
    for metric, bounds in mapping(doc.get("constraints"), where, "constraints").items():
        text(metric, where, "constraints key")
        bounds = mapping(bounds, where, f"constraints.{clip(metric)}")
        for bound in bounds:
            if bound not in ("min", "max"):
                raise _fail(where, f"constraints.{clip(metric)} key", "min or max", bound)
            number(bounds[bound], where, f"constraints.{clip(metric)}.{bound}", finite=True)
        constraints[metric] = {b: float(v) for b, v in bounds.items() if v is not None}
    reference = doc.get("reference_point")
    if reference is not None:
        reference = sequence(reference, where, "reference_point")
        for i, v in enumerate(reference):
            number(v, where, f"reference_point[{i}]")
    hv = number(doc.get("hypervolume"), where, "hypervolume")
    curve = []
    for i, point in enumerate(sequence(doc.get("hypervolume_curve"), where, "hypervolume_curve")):
        pair = sequence(point, where, f"hypervolume_curve[{i}]")
        if len(pair) != 2:
            raise _fail(where, f"hypervolume_curve[{i}]", "a pair [trials finished, hypervolume]", point)
        finished = number(pair[0], where, f"hypervolume_curve[{i}][0]", integer=True, finite=True)
        curve.append((finished, number(pair[1], where, f"hypervolume_curve[{i}][1]", finite=True)))
    rejected = number(doc.get("rejected"), where, "rejected", integer=True) or 0
    front = []
    for i, item in enumerate(sequence(doc.get("front"), where, "front")):
        key = f"front[{i}]"
        entry(item, where, key)
        index = number(item.get("index"), where, f"{key}.index", integer=True)
        if index is None:
            raise ReportError(f"{where}: {key} has no index")
        metrics = mapping(item.get("metrics"), where, f"{key}.metrics")
        for name in list(metrics):
            text(name, where, f"{key}.metrics key")
            metrics[name] = number(metrics[name], where, f"{key}.metrics.{clip(name)}")
        arch_file = None
        if item.get("arch_file") is not None:
            path = inside(root, item["arch_file"], where, f"{key}.arch_file")
            arch_file = path if path.is_file() else None
        front.append(FrontMember(index, arch_text(item.get("arch"), where, f"{key}.arch"), metrics, arch_file))
    selected = number(doc.get("selected"), where, "selected", integer=True)
    if selected is not None and selected not in {m.index for m in front}:
        raise ReportError(f"{where}: selected {selected} is not the index of a front member")
    rule = text(doc.get("rule"), where, "rule") or "-"
    return Pareto(objectives, constraints, reference, hv, rejected, front, selected, rule, curve)


def check_choices(arch: dict, where: str) -> None:
    text(arch.get("model"), where, "model")
    for name, value in mapping(arch.get("choices"), where, "choices").items():
        text(name, where, "choices key")
        items = value if isinstance(value, list) else [value]
        for item in items:
            if not isinstance(item, (str, int, float)):
                raise _fail(where, f"choices.{clip(name)}", "a string, number or list of them", value)


def check_macro(arch: dict, where: str) -> dict:
    """ENAS' macro network: the geometry and arc sequence its meta names, checked by the space itself."""
    from archsearch.spaces.enas_spaces import MacroSpace

    meta = mapping(arch.get("meta"), where, "meta")
    space = mapping(meta.get("space"), where, "meta.space")
    geometry = {}
    for key, kind in (("n_layers", int), ("pool_layers", list), ("skip_combine", str), ("double_channels", bool)):
        if space.get(key) is not None:
            if not isinstance(space[key], kind) or (kind is int and isinstance(space[key], bool)):
                raise _fail(where, f"meta.space.{key}", f"a {kind.__name__}", space[key])
            geometry[key] = space[key]
    for i, p in enumerate(geometry.get("pool_layers") or []):
        number(p, where, f"meta.space.pool_layers[{i}]", integer=True)
    if "pool_layers" in geometry:
        geometry["pool_layers"] = tuple(geometry["pool_layers"])
    arc = sequence(meta.get("arc_seq"), where, "meta.arc_seq")
    if "n_layers" in geometry and geometry["n_layers"] > 1000:
        raise _fail(where, "meta.space.n_layers", "at most 1000", geometry["n_layers"])
    try:
        macro = MacroSpace(**geometry)
        macro.check(arc)
        ops, skips = macro.decode(arc)
    except UserError as e:
        raise ReportError(f"{where}: {e}") from None
    return {"ops": [macro.ops[o] for o in ops], "skips": skips}


def read_arch(run_root: Path, summary: dict, summary_where: str, configured: str) -> tuple[Any, Path | None, str]:
    """(the final architecture's checked content, its path, its kind) or (None, None, '') without one."""
    rel = summary.get("final_arch")
    if not rel:
        return None, None, ""
    path = inside(run_root, rel, summary_where, "final_arch")
    if not path.exists():  # a FIFO or a folder in its place is one line, from the reader
        return None, path, ""
    where = f"final architecture {path}"
    if path.suffix == ".json":
        arch = readers.read_json(path, "final architecture", ReportError, expect=dict)
    else:
        arch = readers.read_yaml(path, "final architecture", ReportError, expect=dict)
    if arch is None:
        return None, path, ""
    if "choices" in arch:
        check_choices(arch, where)
        return arch, path, "choices"
    if "layer_list" in arch:
        from archsearch.spaces.morphism.ir_json import json_to_graph

        try:
            json_to_graph(arch)
        except UserError as e:
            raise ReportError(f"{where}: {e}") from None
        return arch, path, "morphism"
    from archsearch.model.model_desc import ModelDesc

    try:
        desc = ModelDesc.from_dict(arch, where)
    except UserError as e:
        raise ReportError(str(e) if where in str(e) else f"{where}: {e}") from None
    meta = desc.meta if isinstance(desc.meta, dict) else {}
    tag = meta.get("space")
    tag = tag.get("name") if isinstance(tag, dict) else tag
    if (tag if isinstance(tag, str) and tag else configured) == "enas_macro":
        arch["macro"] = check_macro(arch, where)
        return arch, path, "macro"
    for key in ("genotype", "arch"):
        if meta.get(key) is not None and not isinstance(meta[key], str):
            raise _fail(where, f"meta.{key}", "a string", meta[key])
    arch["desc"] = desc
    return arch, path, "desc"


def load_run(path: Path) -> RunData:
    """Read and check an experiment folder; a one-line ReportError when it is not one or a file is bad."""
    path = Path(path).expanduser()
    if not is_experiment(path):
        raise ReportError(f"{path} is not an experiment folder (no summary.yaml); run `archsearch --algos ...` first")

    def read(rel: str, what: str, expect: type, empty: Any) -> Any:
        file = path / rel
        if not file.exists() and not file.is_symlink():
            return empty
        inside(path, rel, str(path), rel)  # a symlinked file leading out of the folder is refused
        return readers.read_yaml(file, what, ReportError, expect=expect, empty=empty)

    summary = check_summary(read("summary.yaml", "summary", dict, {}), str(path / "summary.yaml"))
    config = check_config(read("config.yaml", "config", dict, {}), str(path / "config.yaml"))
    events = check_events(read("log.yaml", "event log", list, []), str(path / "log.yaml"))
    trials = check_trials(read("search/trials.yaml", "trials file", list, []), str(path / "search" / "trials.yaml"))
    space = config["nas"]["search"].get("space")
    configured = space.get("name") if isinstance(space, dict) else space
    arch, arch_path, kind = read_arch(path, summary, str(path / "summary.yaml"), configured or "-")
    doc = read("search/pareto.yaml", "Pareto front file", dict, None)
    pareto = None if doc is None else check_pareto(doc, path, str(path / "search" / "pareto.yaml"))
    return RunData(path, summary, config, events, trials, arch, arch_path, kind, pareto)


def space_class(name: str) -> Any:
    """The registered search space `name` (every shipped one, and plugins imported before the report), or None:
    the report asks the space how to draw its architectures instead of knowing every space itself."""
    from archsearch.search.space import SPACES

    return SPACES.get(name) if isinstance(name, str) and name in SPACES else None
