"""The config schema: every key of every section, declared once with its type, null-ness and range.

`validate(tree)` checks a whole resolved config before any work starts and raises one ConfigError line
for the first problem, e.g. `config nas.search.loader.batch_size (from my.yaml): 0 is not allowed
(an integer >= 1)`. Unknown keys are errors with close-match suggestions.

Here: the engine and the framework's own sections (common, dataset, loaders, trainer, model_desc, report,
export, the executors). Each plugin — a strategy, a space — declares its own keys beside its code with
`register_section` (and `register_check` for rules spanning keys) when its module is imported; its default
values stay in the shipped YAML (confs/algos/<name>.yaml, confs/spaces/<name>.yaml), where users read them.
Validation is complete once the plugins are registered: the run imports archsearch.plugins before it
loads a config, and so must any other caller of `load_config` (tests/conftest.py does).

The eval sections `nas.eval.{loader, trainer, model_desc}` start as `_copy`s of their search twins, so
they share their schema (`ALIASES`): a key declared for `nas.search.trainer` is valid in both.
"""

from __future__ import annotations

import copy
import difflib
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from archsearch.common.errors import ConfigError


def show(value: Any) -> str:
    """A value as the user wrote it in YAML (null, true, 'text', 3.0), cut to one short line."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    text = repr(value).replace("\n", " ")
    return text if len(text) <= 60 else text[:57] + "..."


def _bound_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


@dataclass(frozen=True)
class Value:
    """One key's type and range. `kind` is int, float, bool, str, list or mapping (free-form)."""

    kind: str
    null: bool = False
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: tuple[str, ...] | None = None
    pattern: str | None = None  # a regex the whole string must match; `allowed` says it in words
    item: Value | None = None  # list items
    length: int | None = None  # exact list length
    min_length: int = 0
    allowed_text: str | None = None
    default: Any = None  # filled in when no file sets the key (has_default): a plugin's defaults beside its code
    has_default: bool = False

    def allowed(self) -> str:
        """What this key accepts, in words: 'an integer >= 1 or null'."""
        if self.allowed_text:
            words = self.allowed_text
        elif self.choices is not None:
            words = "one of " + ", ".join(self.choices)
        elif self.kind == "list":
            size = f"{self.length} " if self.length is not None else ""
            size = size or (f"{self.min_length}+ " if self.min_length else "")
            words = f"a list of {size}values" + (f", each {self.item.allowed()}" if self.item else "")
        else:
            words = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string"}.get(
                self.kind, "a mapping"
            )
            bounds = [(">=", self.ge), (">", self.gt), ("<=", self.le), ("<", self.lt)]
            words += "".join(f" {op} {_bound_text(b)}" for op, b in bounds if b is not None)
        return words + (" or null" if self.null else "")

    def refusal(self, value: Any) -> str:
        """Why `value` does not fit, in one phrase: `0 is not allowed (an integer >= 1)`."""
        if self.choices is not None and isinstance(value, str):  # the phrase config.choice() uses too
            return f"{show(value)} is not {self.allowed()}"
        return f"{show(value)} is not allowed ({self.allowed()})"

    def check(self, value: Any) -> tuple[bool, Any]:
        """(fits, value as stored): ints become floats in float keys; nothing else is converted."""
        if value is None:
            return self.null, None
        if self.kind == "int":
            return isinstance(value, int) and not isinstance(value, bool) and self._in_range(value), value
        if self.kind == "float":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                return False, value
            return math.isfinite(value) and self._in_range(value), float(value)
        if self.kind == "bool":
            return isinstance(value, bool), value
        if self.kind == "str":
            fits = isinstance(value, str) and (self.choices is None or value in self.choices)
            return fits and (self.pattern is None or re.fullmatch(self.pattern, value) is not None), value
        if self.kind == "list":
            if not isinstance(value, list) or len(value) < self.min_length:
                return False, value
            if self.length is not None and len(value) != self.length:
                return False, value
            items = [self.item.check(v) if self.item else (True, v) for v in value]
            return all(ok for ok, _ in items), [v for _, v in items]
        return isinstance(value, dict), value  # mapping: free-form content

    def _in_range(self, v: float) -> bool:
        return not (
            (self.ge is not None and not v >= self.ge)
            or (self.gt is not None and not v > self.gt)
            or (self.le is not None and not v <= self.le)
            or (self.lt is not None and not v < self.lt)
        )


_UNSET: Any = object()  # no default: the key must come from a config file


def _default(value: Any) -> dict[str, Any]:
    return {} if value is _UNSET else {"default": value, "has_default": True}


def Int(null: bool = False, default: Any = _UNSET, **bounds: float) -> Value:  # noqa: N802 - reads as a type
    return Value("int", null, **bounds, **_default(default))


def Float(null: bool = False, default: Any = _UNSET, **bounds: float) -> Value:  # noqa: N802
    return Value("float", null, **bounds, **_default(default))


def Bool(default: Any = _UNSET) -> Value:  # noqa: N802
    return Value("bool", **_default(default))


def Str(  # noqa: N802
    *choices: str, null: bool = False, pattern: str | None = None, allowed: str | None = None, default: Any = _UNSET
) -> Value:
    return Value("str", null, choices=choices or None, pattern=pattern, allowed_text=allowed, **_default(default))


def List(  # noqa: N802
    item: Value, null: bool = False, length: int | None = None, min_length: int = 0, default: Any = _UNSET
) -> Value:
    return Value("list", null, item=item, length=length, min_length=min_length, **_default(default))


def FreeMapping() -> Value:  # noqa: N802 - free-form mapping (a model's constructor kwargs)
    return Value("mapping")


# A rule over a whole section: returns (key, message) for the first problem, or None.
Check = Callable[[Mapping[str, Any]], "tuple[str, str] | None"]


@dataclass
class Section:
    keys: dict[str, Value] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)


SECTIONS: dict[str, Section] = {}
ALIASES = {"nas.eval.loader": "nas.search.loader", "nas.eval.trainer": "nas.search.trainer",
           "nas.eval.model_desc": "nas.search.model_desc"}  # fmt: skip


# keys that were renamed or dropped: old dotted key -> the text naming what replaces it
RENAMED: dict[str, str] = {}


def register_rename(old: str, new: str) -> None:
    """Make `old` (a dotted key no longer declared) a one-line error pointing at `new`."""
    RENAMED[old] = new


def register_section(path: str, keys: Mapping[str, Value] | None = None) -> None:
    """Declare section `path` (dotted) and its keys; a section may be declared piecewise, a key once."""
    section = SECTIONS.setdefault(path, Section())
    for key, value in (keys or {}).items():
        if key in section.keys and section.keys[key] != value:
            raise ValueError(f"config key {path}.{key} is declared twice, differently")
        section.keys[key] = value
    parent = path.rpartition(".")[0]
    if path and parent not in SECTIONS:
        register_section(parent)


def fill_defaults(tree: dict) -> None:
    """Add every declared key that has a default and that no file set to the unresolved `tree` (in place), so a
    plugin that declares its defaults beside its code needs no YAML file, and its keys can be overridden."""
    for path, section in SECTIONS.items():
        defaults = {k: v.default for k, v in section.keys.items() if v.has_default}
        if not defaults or path in ALIASES:
            continue
        node: Any = tree
        for part in path.split("."):
            if not isinstance(node, dict):
                break
            node = node.setdefault(part, {})
        if isinstance(node, dict):
            for key, value in defaults.items():
                node.setdefault(key, copy.deepcopy(value))


def register_check(path: str, check: Check) -> None:
    """A rule spanning keys of section `path`, run after each key passed on its own."""
    register_section(path)
    SECTIONS[path].checks.append(check)


def schema_path(path: str) -> str:
    """The declared section that `path` (a resolved config path) follows."""
    for alias, source in ALIASES.items():
        if path == alias or path.startswith(alias + "."):
            return source + path[len(alias) :]
    return path


def key_schema(dotted: str) -> Value | None:
    """The declared Value of a key, or None when it is a section or not declared."""
    section, _, key = schema_path(dotted).rpartition(".")
    declared = SECTIONS.get(section)
    return declared.keys.get(key) if declared else None


def _subsections(path: str) -> list[str]:
    prefix = path + "." if path else ""
    return [p[len(prefix) :] for p in SECTIONS if p.startswith(prefix) and p and "." not in p[len(prefix) :]]


Origin = Callable[[str], "str | None"]


def problem(dotted: str, message: str, origin: Origin) -> ConfigError:
    """The one-line error about key `dotted`, naming the file or override its value came from."""
    where = origin(dotted)
    return ConfigError(f"config {dotted}{f' (from {where})' if where else ''}: {message}")


def validate(tree: Mapping[str, Any], origin: Origin = lambda _: None) -> dict:
    """Check the resolved config `tree` against SECTIONS; a copy with float keys stored as floats.

    `origin(dotted_key)` names the file or override a value came from, for the error message.
    """

    def walk(node: Mapping, path: str) -> dict:
        declared = SECTIONS[schema_path(path)]
        subsections = _subsections(schema_path(path))
        out: dict = {}
        for key, value in node.items():
            dotted = f"{path}.{key}" if path else str(key)
            if isinstance(key, str) and key in subsections:
                if not isinstance(value, dict):
                    raise problem(dotted, f"{show(value)} is not allowed (a mapping of settings)", origin)
                out[key] = walk(value, dotted)
            elif isinstance(key, str) and key in declared.keys:
                fits, stored = declared.keys[key].check(value)
                if not fits:
                    raise problem(dotted, declared.keys[key].refusal(value), origin)
                out[key] = stored
            elif schema_path(dotted) in RENAMED:
                raise problem(dotted, f"was renamed: use {RENAMED[schema_path(dotted)]}", origin)
            else:
                valid = sorted([*declared.keys, *subsections])
                close = difflib.get_close_matches(str(key), valid, n=3, cutoff=0.6)
                hint = f"; did you mean {', '.join(close)}?" if close else f"; valid: {', '.join(valid)}"
                raise problem(dotted, f"unknown key {show(key)}{hint}", origin)
        for check in declared.checks:
            found = check(out)
            if found is not None:
                key, message = found
                raise problem(f"{path}.{key}" if path else key, message, origin)
        return out

    if not isinstance(tree, Mapping):
        raise ConfigError(f"config must be a mapping of sections, not {show(tree)}")
    return walk(tree, "")


def check_sections(tree: Mapping[str, Any], origin: Origin = lambda _: None) -> None:
    """Every declared section present in `tree` (merged, not yet resolved or overridden) is a mapping: code that
    reads a section before the whole config is validated (the search space a run picks, an override walking
    to its key) then never meets a list or a number, and the error names the file that set it."""
    if not isinstance(tree, Mapping):
        raise ConfigError(f"config must be a mapping of sections, not {show(tree)}")

    def walk(node: Mapping, path: str) -> None:
        subsections = _subsections(schema_path(path))
        for key, value in node.items():
            if not (isinstance(key, str) and key in subsections):
                continue
            dotted = f"{path}.{key}" if path else key
            if not isinstance(value, Mapping):
                raise problem(dotted, f"{show(value)} is not allowed (a mapping of settings)", origin)
            walk(value, dotted)

    walk(tree, "")


# ---- declarations -------------------------------------------------------------------------------

# a run's seed: what numpy's legacy seeding takes (torch takes up to 2**64 - 1, and a trial's seed,
# seed * 7919 + index, stays far below that); a larger value was torch's overflow traceback
SEED_MAX = 2**32 - 1
SEED = Value("int", ge=0, le=SEED_MAX, allowed_text=f"an integer from 0 to {SEED_MAX} (2**32 - 1)")
# a name that becomes a folder (and a URL path in reports): no separators, quotes, colons, spaces or
# brackets, no leading '.', so never '.' or '..'
SAFE_NAME = r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}"
SAFE_NAME_TEXT = "a folder name: 1-100 of A-Z a-z 0-9 . _ -, not starting with '.'"
POSITIVE_INT = Int(ge=1)
COUNT = Int(ge=0)
PRIMITIVES = List(Str(pattern=r".+", allowed="an op name"), min_length=1)
FRACTION = Float(ge=0, lt=1)
OPTIMIZER = {
    "type": Str("sgd", "adam"),
    "lr": Float(gt=0),
    "momentum": Float(ge=0, le=1),
    "weight_decay": Float(ge=0),
    "nesterov": Bool(),
    "betas": List(Float(ge=0, lt=1), length=2),
}

register_section(
    "common",
    {
        "experiment_name": Str(null=True, pattern=SAFE_NAME, allowed=SAFE_NAME_TEXT),
        "logdir": Str(pattern=r".+", allowed="a folder path"),
        "seed": SEED,
        "device": Str(pattern=r"auto|cpu|cuda(:\d+)?", allowed="auto, cpu, cuda or cuda:N"),
        "resume": Bool(),
        "deterministic": Bool(),
        "num_threads": Int(null=True, ge=1),
    },
)
register_section(
    "dataset",
    {
        "name": Str(pattern=r".+", allowed="a dataset name"),
        "dataroot": Str(pattern=r".+", allowed="a folder path"),
        "download": Bool(),
        "channels": POSITIVE_INT,
        "n_classes": Int(ge=2),
        "image_size": POSITIVE_INT,
        # null: computed from the training images (in-memory datasets; the npz default)
        "mean": List(Float(ge=0, le=1), null=True, min_length=1),
        "std": List(Float(gt=0), null=True, min_length=1),
        "crop_padding": COUNT,
        "hflip": Bool(),
        "test_fraction": Float(gt=0, lt=1),
        "path": Str(null=True, pattern=r".+", allowed="a file or folder path"),
        "synthetic_train": POSITIVE_INT,
        "synthetic_test": POSITIVE_INT,
    },
)


def _normalization_matches_channels(conf: Mapping[str, Any]) -> tuple[str, str] | None:
    channels = conf.get("channels")
    if (conf.get("mean") is None) != (conf.get("std") is None):
        return "mean", "dataset.mean and dataset.std must both be set or both be null (computed from the data)"
    for key in ("mean", "std"):
        values = conf.get(key)
        if values is not None and channels is not None and len(values) != channels:
            return key, (
                f"has {len(values)} values but dataset.channels is {channels}; set --dataset.mean and "
                f"--dataset.std to {channels} values each, or null to compute them from the training images"
            )
    return None


register_check("dataset", _normalization_matches_channels)

register_section("nas.eval", {"final_desc": Str(null=True, pattern=r".+", allowed="an architecture file")})
register_section(
    "nas.search.model_desc",
    {
        "n_cells": POSITIVE_INT,
        "init_channels": POSITIVE_INT,
        "n_nodes": POSITIVE_INT,
        "stem_multiplier": POSITIVE_INT,
        "n_reductions": COUNT,
        "aux_weight": Float(ge=0),
        "affine": Bool(),
    },
)


def _a_regular_cell_remains(conf: Mapping[str, Any]) -> tuple[str, str] | None:
    # reductions sit at n_cells * k // (n_reductions + 1): below n_reductions + 1 cells every cell reduces,
    # and the cell structure (the normal cell of a genotype) has nowhere to live
    n_cells, n_reductions = conf.get("n_cells"), conf.get("n_reductions")
    if n_cells is not None and n_reductions is not None and n_cells < n_reductions + 1:
        return "n_cells", f"{n_cells} is not allowed (with n_reductions={n_reductions}, n_cells >= {n_reductions + 1})"
    return None


register_check("nas.search.model_desc", _a_regular_cell_remains)
register_section(
    "nas.search.loader",
    {
        "batch_size": POSITIVE_INT,
        "test_batch_size": POSITIVE_INT,
        "train_portion": Float(gt=0, lt=1),
        "augment": Bool(),
        "cutout": COUNT,
        "workers": COUNT,
        "limit_batches": Int(null=True, ge=1),
    },
)
register_section(
    "nas.search.trainer",
    {
        "epochs": Value("int", ge=1, allowed_text="an integer >= 1; skip a phase with --search-only or --eval-only"),
        "grad_clip": Float(ge=0),  # 0 = no clipping
        "drop_path_prob": FRACTION,
        "label_smoothing": FRACTION,
        "amp": Bool(),
        "channels_last": Bool(),
    },
)
register_section("nas.search.trainer.optimizer", OPTIMIZER)
register_section(
    "nas.search.trainer.lr_schedule",
    {
        "type": Str("cosine", "cosine_restarts", "step", "constant", "linear"),
        "min_lr": Float(ge=0),
        "step_size": POSITIVE_INT,
        "gamma": Float(gt=0, le=1),
        "t0": POSITIVE_INT,
        "t_mul": POSITIVE_INT,
    },
)
for _alias in ALIASES:  # the copies are sections of their own parents (nas.eval), following their twins' schema
    register_section(_alias)

# A user's own nn.Module as the search space (algos/user_model).
register_section("nas.search.space", {"model": Str(null=True, pattern=r".+", allowed="module:Class"),
                                      "model_kwargs": FreeMapping()})  # fmt: skip
# the search space (archsearch.search.space.SPACES) and how black-box strategies evaluate candidates
register_section(
    "nas.search.space",
    {
        "name": Str(
            null=True,
            pattern=r"[a-z0-9_]+",
            allowed="a registered search space name, or null for the strategy's default",
        )
    },
)
register_section(
    "nas.search",
    {
        "evaluate_by": Str("train", "table", "proxy", "supernet"),
        "benchmark": Str(null=True, pattern=r".+", allowed="a CSV file of architecture keys and accuracies"),
        "benchmark_columns": List(Str(pattern=r".+", allowed="a column name"), length=2),
    },
)

# --- issue 13: parallel trials (archsearch/search/ray_executor.py) ---
register_section("common", {"executor": Str("local", "ray")})
register_section(
    "common.ray",
    {
        "address": Str(null=True, pattern=r"auto|ray://[^\s:]+:\d+|[^\s:/]+:\d+",
                       allowed="auto, ray://HOST:PORT, HOST:PORT"),
        "num_cpus": Float(gt=0),
        "num_gpus": Float(ge=0),
        "max_concurrent": Int(null=True, ge=1),
        "max_retries": Int(ge=0),
        "local_cpus": Int(null=True, ge=1),
        "local_gpus": Int(null=True, ge=0),
        "dashboard": Bool(),
    },
)  # fmt: skip

# --- issue 12: torchrun / DDP (archsearch/common/distributed.py) ---
register_section("common", {"dist_timeout_s": Float(gt=0)})  # process-group timeout of a torchrun job
register_section("nas.search.trainer", {"sync_bn": Bool()})  # SyncBatchNorm under torchrun (CUDA only)

# --- issue 14: the HTML report and framework-free export (archsearch/report/) ---
register_section(
    "report",
    {
        "auto": Bool(),  # write report.html into the experiment folder when a run ends
        "latency": Bool(),  # time eval/model.pt for the report's summary table
    },
)
# the search trainer reads it: per epoch, the architecture-weight heatmap and the derived cell as TensorBoard images
register_section("nas.search.trainer", {"tensorboard_images": Bool()})
# the opsets torch's TorchScript-based ONNX exporter writes (torch.onnx._constants: ONNX_MIN_OPSET and
# ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET), the exporter `archsearch export --format onnx` uses
ONNX_OPSETS = (7, 20)
register_section("export", {"onnx_opset": Int(ge=ONNX_OPSETS[0], le=ONNX_OPSETS[1])})  # --format onnx default

# --- issue 15: the DARTS ImageNet network (archsearch/model/builder.py; confs/datasets/imagenet.yaml) ---
register_section("nas.search.model_desc", {"skeleton": Str("cifar", "imagenet")})

# --- issue 21: metrics, objectives and constraints (archsearch/search/metrics.py, objectives.py) ---
# the entries' metric names and bounds are checked against the metric registry by a rule that
# archsearch/search/objectives.py registers (the registry lives above this layer)
register_section(
    "nas.search",
    {
        "objectives": List(Value("mapping", allowed_text="a mapping {metric: NAME, goal: max|min}"), null=True,
                           min_length=1),
        "constraints": Value("mapping", allowed_text="a mapping {METRIC: {min: X, max: Y}}"),
        "select": Str("best", "knee"),
        "reference_point": List(Float(), null=True, min_length=1),
    },
)  # fmt: skip
register_section(
    "nas.search.metrics",
    {
        "batch_size": POSITIVE_INT,
        "threads": POSITIVE_INT,
        "warmup": COUNT,
        "repeats": POSITIVE_INT,
        "device": Str(pattern=r"cpu|cuda(:\d+)?", allowed="cpu, cuda or cuda:N"),
        "latency_table": Str(null=True, pattern=r".+", allowed="a latency table file"),
    },
)
