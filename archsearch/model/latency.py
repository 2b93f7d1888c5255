"""A latency model: a lookup table of measured op latencies, per device, and the prediction of a network's
latency as the sum of the latencies of what it runs.

A network is a list of `CostItem`s: each op it runs at the shape it runs it (op name, C_in, C_out, stride,
input H and W), plus the skeleton's fixed parts (the stem, the cells' preprocessing, the sums of a node's
edges, the concatenation of a cell's nodes, the head). `desc_cost_items` walks a ModelDesc into that list;
a search space's `cost_items(arch)` is that walk over `build(arch)`'s desc, and its `profile_items()` is
every item any of its architectures can hold, so one profiling pass (`archsearch profile --space NAME`)
fills the table for the whole space.

`LatencyTable` maps `CostItem.key` to milliseconds, with how they were measured (device, runtime, batch
size, threads) and two calibrated constants, fitted by least squares on a few whole networks of the space
(`archsearch profile --calibrate K`): `scale`, because an op timed alone, again and again on the same
input, runs from warm caches that it does not find inside a network, and `overhead_ms`, the network's own
forward-pass glue that no single op pays. `predict(items) = scale * sum(op_ms(item)) + overhead_ms`; the
ranking of architectures depends only on the sum (scale > 0).

The table is JSON, one file per device and space: `~/.cache/archsearch/latency/<device-name>/<space>.json`
(`<space>.onnxruntime.json` for ONNX Runtime), where the device name carries the CPU model or GPU name, so
a table measured on one machine is never read as another's.
"""

from __future__ import annotations

import os
import platform
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from archsearch.common.errors import UserError
from archsearch.common.io import atomic_write_text
from archsearch.common.readers import read_json
from archsearch.model.model_desc import ModelDesc, OpDesc
from archsearch.model.op_registry import OP_DOWNSAMPLE
from archsearch.model.ops import build_op
from archsearch.model.stats import measure_latency_ms, measure_onnx_latency_ms

FORMAT = "archsearch-latency-table"
VERSION = 1
RUNTIMES = ("torch", "onnxruntime")
ADD = "add"  # the sum of two edge outputs at a node (a node with k edges runs k-1 of them)
CONCAT = "concat"  # a cell's output: its `n` node states of C_in channels each, concatenated


class LatencyTableError(UserError):
    """A latency table is missing, malformed, or lacks an entry the prediction needs."""


@dataclass(frozen=True)
class CostItem:
    """One op a network runs, at the shape it runs it. `h`, `w` are its input's height and width (1, 1 for
    the final linear layer, which reads a vector); `n` is the number of equal inputs of a concatenation;
    `fixed` marks the skeleton (stem, cell preprocessing, node sums, concatenation, head) as opposed to a
    searchable edge op. `fixed` is not part of the key: the same op at the same shape costs the same."""

    op: str
    c_in: int
    c_out: int
    stride: int
    h: int
    w: int
    fixed: bool = False
    n: int = 1

    @property
    def key(self) -> str:
        key = f"{self.op}|{self.c_in}|{self.c_out}|{self.stride}|{self.h}x{self.w}"
        return key if self.n == 1 else f"{key}|n{self.n}"

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One sample's input to the item's module (see `item_module`)."""
        return (self.c_in,) if self.op == "linear" else (self.c_in, self.h, self.w)


# ---- networks as cost items -----------------------------------------------------------------------------


def _out_size(op: OpDesc, h: int, w: int) -> tuple[int, int]:
    factor = OP_DOWNSAMPLE[op.name](op) if op.name in OP_DOWNSAMPLE else op.stride
    return (h + factor - 1) // factor, (w + factor - 1) // factor


def desc_cost_items(desc: ModelDesc, image_hw: tuple[int, int]) -> list[CostItem]:
    """What the network of `desc` runs in eval mode (no auxiliary tower, no drop path) for one image of
    height and width `image_hw`, in forward order. Edge ops of cell nodes are the non-fixed items."""
    h, w = image_hw
    items: list[CostItem] = []
    states: list[tuple[int, int, int]] = []  # (channels, h, w) of the states cells read
    for stem in desc.stems:
        items.append(CostItem(stem.name, stem.ch_in, stem.ch_out, stem.stride, h, w, fixed=True))
        h, w = _out_size(stem, h, w)
        states.append((stem.ch_out, h, w))
    if len(states) == 1:
        states.append(states[0])
    for cell in desc.cells:
        inputs = [states[r] for r in cell.input_states]
        cell_states = []
        for stem, (_, sh, sw) in zip(cell.stems, inputs):
            items.append(CostItem(stem.name, stem.ch_in, stem.ch_out, stem.stride, sh, sw, fixed=True))
            cell_states.append((stem.ch_out, *_out_size(stem, sh, sw)))
        for node in cell.nodes:
            node_shape = None
            for k, edge in enumerate(node.edges):
                _, eh, ew = cell_states[edge.input_id]
                op = edge.op
                items.append(CostItem(op.name, op.ch_in, op.ch_out, op.stride, eh, ew))
                node_shape = (op.ch_out, *_out_size(op, eh, ew))
                if k:
                    items.append(CostItem(ADD, node_shape[0], node_shape[0], 1, node_shape[1], node_shape[2], True))
            if node_shape is None:
                raise LatencyTableError("a cell node without edges has no cost model")
            cell_states.append(node_shape)
        if len(cell.concat) == 1:
            out = cell_states[cell.concat[0]]
        else:
            parts = [cell_states[i] for i in cell.concat]
            c, ch, cw = parts[0]
            if any(p != parts[0] for p in parts):
                raise LatencyTableError(f"cell concatenates states of different shapes {parts}: no cost model")
            items.append(CostItem(CONCAT, c, c * len(parts), 1, ch, cw, fixed=True, n=len(parts)))
            out = (c * len(parts), ch, cw)
        states.append(out)
    c, h, w = states[-1]
    pool, logits = desc.pool_op, desc.logits_op
    items.append(CostItem(pool.name, pool.ch_in, pool.ch_out, pool.stride, h, w, fixed=True))
    items.append(CostItem(logits.name, logits.ch_in, logits.ch_out, 1, 1, 1, fixed=True))
    return items


def unique_items(groups: Iterable[Iterable[CostItem]]) -> list[CostItem]:
    """The distinct keys of `groups`, first occurrence kept, in order."""
    seen: dict[str, CostItem] = {}
    for group in groups:
        for item in group:
            seen.setdefault(item.key, item)
    return list(seen.values())


class _Add(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + x


class _Concat(nn.Module):
    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x] * self.n, dim=1)


def item_module(item: CostItem, affine: bool = False) -> nn.Module:
    """A module that runs `item` on an input of `item.input_shape` (the registered op, or the node sum or
    the concatenation), in eval mode."""
    if item.op == ADD:
        module: nn.Module = _Add()
    elif item.op == CONCAT:
        module = _Concat(item.n)
    else:
        module = build_op(OpDesc.of(item.op, item.c_in, item.c_out, item.stride, affine))
    return module.eval()


def measure_ms(
    module: nn.Module,
    input_shape: tuple[int, ...],
    runtime: str = "torch",
    device: torch.device | str = "cpu",
    batch_size: int = 1,
    threads: int | None = 1,
    warmup: int = 3,
    repeats: int = 10,
) -> float:
    """Median milliseconds of `module` on one batch with `runtime` (torch on `device`, or ONNX Runtime on CPU)."""
    if check_runtime(runtime) == "onnxruntime":
        return measure_onnx_latency_ms(module, input_shape, batch_size, warmup, repeats, threads)
    module = module.to(device)
    return measure_latency_ms(module, input_shape, batch_size, warmup, repeats, device, threads)


# ---- the table ----------------------------------------------------------------------------------------


def device_name(device: torch.device | str = "cpu") -> str:
    """A file-name-safe name of the device that says which hardware: `cpu-<CPU model>` or `cuda-<GPU name>`."""
    device = torch.device(device)
    if device.type == "cuda":
        model = torch.cuda.get_device_name(device)
    else:
        model = _cpu_model()
    slug = re.sub(r"[^A-Za-z0-9]+", "-", model).strip("-") or "unknown"
    return f"{device.type}-{slug}"[:120]


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cache_root() -> Path:
    """$ARCHSEARCH_CACHE, else $XDG_CACHE_HOME/archsearch, else ~/.cache/archsearch."""
    env = os.environ.get("ARCHSEARCH_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "archsearch"


def default_table_path(space: str, device: torch.device | str = "cpu", runtime: str = "torch") -> Path:
    """Where `archsearch profile --space SPACE` writes its table for this device and runtime."""
    suffix = "" if runtime == "torch" else f".{runtime}"
    return cache_root() / "latency" / device_name(device) / f"{space}{suffix}.json"


@dataclass
class LatencyTable:
    """Measured milliseconds per `CostItem.key`, and how they were measured (`meta`: device, runtime,
    batch_size, threads, warmup, repeats, space, ...). The sum of a network's entries is multiplied by
    `scale`, and `overhead_ms` added once per network (see the module's docstring)."""

    entries: dict[str, float] = field(default_factory=dict)
    overhead_ms: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)
    scale: float = 1.0

    def op_ms(self, name: str, shape: Sequence[int] | CostItem) -> float:
        """Milliseconds of op `name` at `shape`: a CostItem, or (c_in, c_out, stride, h, w[, n])."""
        if isinstance(shape, CostItem):
            item = shape
        else:
            values = [int(v) for v in shape]
            if len(values) not in (5, 6):
                raise ValueError(f"shape must be (c_in, c_out, stride, h, w[, n]), got {tuple(shape)}")
            item = CostItem(name, *values[:5], n=values[5] if len(values) == 6 else 1)
        if item.op != name:
            raise ValueError(f"op_ms({name!r}, ...) was given an item of op {item.op!r}")
        try:
            return self.entries[item.key]
        except KeyError:
            space = self.meta.get("space", "NAME")
            raise LatencyTableError(
                f"latency table{self._where()} has no entry for {item.op} at C_in={item.c_in} C_out={item.c_out} "
                f"stride={item.stride} {item.h}x{item.w}; profile this network's sizes with "
                f"`archsearch profile --space {space}` (its --init-channels, --cells, --image-size)"
            ) from None

    def sum_ms(self, items: Iterable[CostItem]) -> float:
        """The sum of the items' entries, uncalibrated."""
        return sum(self.op_ms(item.op, item) for item in items)

    def predict(self, items: Iterable[CostItem]) -> float:
        """Predicted milliseconds of a network: `scale` times the sum of its items' entries plus `overhead_ms`."""
        return self.scale * self.sum_ms(items) + self.overhead_ms

    def calibrate(self, sums: Sequence[float], measured: Sequence[float]) -> None:
        """Fit `scale` and `overhead_ms` to whole networks (their `sum_ms` and measured ms) by least squares;
        with fewer than 3 networks, or a fit whose scale is not positive, only the mean offset (scale 1)."""
        if not sums:
            self.scale, self.overhead_ms = 1.0, 0.0
            return
        n = len(sums)
        mean_s, mean_m = sum(sums) / n, sum(measured) / n
        var = sum((s - mean_s) ** 2 for s in sums)
        scale = sum((s - mean_s) * (m - mean_m) for s, m in zip(sums, measured)) / var if n >= 3 and var > 0 else 0.0
        self.scale = scale if scale > 0 else 1.0
        self.overhead_ms = mean_m - self.scale * mean_s

    def merge(self, other: LatencyTable) -> None:
        """Add `other`'s entries (same device, runtime, batch size and threads), its overhead replacing ours."""
        self.entries.update(other.entries)
        self.overhead_ms, self.scale = other.overhead_ms, other.scale
        self.meta.update(other.meta)

    def compatible(self, other: LatencyTable) -> bool:
        keys = ("device_name", "runtime", "batch_size", "threads")
        return all(self.meta.get(k) == other.meta.get(k) for k in keys)

    def _where(self) -> str:
        path = self.meta.get("path")
        return f" {path}" if path else ""

    # ---- files --------------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        meta = {k: v for k, v in self.meta.items() if k != "path"}
        return {
            "format": FORMAT,
            "version": VERSION,
            "meta": meta,
            "scale": self.scale,
            "overhead_ms": self.overhead_ms,
            "entries": dict(sorted(self.entries.items())),
        }

    def save(self, path: str | os.PathLike) -> Path:
        import json

        path = Path(path).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(self.to_json(), indent=1) + "\n")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> LatencyTable:
        path = Path(path).expanduser()
        data = read_json(path, "latency table", LatencyTableError, expect=dict)
        where = f"latency table {path}"
        if data.get("format") != FORMAT:
            raise LatencyTableError(
                f"{where} is not a latency table (no format: {FORMAT}); write one with archsearch profile"
            )
        if data.get("version") != VERSION:
            raise LatencyTableError(f"{where} has version {data.get('version')!r}, expected {VERSION}; profile again")
        entries, meta = data.get("entries"), data.get("meta", {})
        overhead, scale = data.get("overhead_ms", 0.0), data.get("scale", 1.0)
        if not isinstance(entries, dict) or not isinstance(meta, dict):
            raise LatencyTableError(f"{where}: entries and meta must be JSON objects")
        for key, value in [*entries.items(), ("overhead_ms", overhead), ("scale", scale)]:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or abs(value) > 1e9:
                raise LatencyTableError(f"{where}: {key} must be a finite number of milliseconds, got {value!r}")
        entries = {str(k): float(v) for k, v in entries.items()}
        return cls(entries, float(overhead), {**meta, "path": str(path)}, float(scale))


def load_table_for(
    space: str, path: str | os.PathLike | None, device: torch.device | str = "cpu", runtime: str = "torch"
) -> LatencyTable:
    """The table at `path`, else this device's default table of `space`; a missing default is one line
    saying how to make it."""
    if path is not None:
        return LatencyTable.load(path)
    default = default_table_path(space, device, runtime)
    if not default.exists():
        flags = "" if torch.device(device).type == "cpu" else f" --device {torch.device(device).type}"
        flags += "" if runtime == "torch" else f" --runtime {runtime}"
        raise LatencyTableError(
            f"no latency table for space {space} on {device_name(device)} ({default}); "
            f"run `archsearch profile --space {space}{flags}` first"
        )
    return LatencyTable.load(default)


def check_runtime(runtime: str) -> str:
    if runtime not in RUNTIMES:
        raise UserError(f"unknown runtime {runtime!r}; valid: {', '.join(RUNTIMES)}")
    return runtime


__all__ = [
    "CostItem",
    "LatencyTable",
    "LatencyTableError",
    "desc_cost_items",
    "unique_items",
    "item_module",
    "device_name",
    "default_table_path",
    "load_table_for",
    "check_runtime",
]
