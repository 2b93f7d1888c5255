"""ModelDesc: the single description of a cell-based network, as plain dataclasses saved as YAML.

A network is: stems (applied in a chain to the input), cells (each takes some earlier states, runs its
nodes, and concatenates some of its states), a pooling op and a logits op, plus an optional auxiliary
tower after one cell. A cell's states are its preprocessed inputs (ids 0..len(stems)-1) followed by its
nodes; every node is the sum of its edges, and every edge applies one op to one earlier state.

`ModelDesc.load()` validates types and channel bookkeeping and names the bad field, e.g.
`cells[3].nodes[1].edges[0].op.ch_in: expected an int, got 'x'`.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import yaml

from archsearch.common.errors import ArchitectureError
from archsearch.common.io import atomic_write_text
from archsearch.common.readers import MAX_ARCH_BYTES, read_text, safe_yaml
from archsearch.model import ops as _builtin_ops  # noqa: F401 - registers the ops every desc may name
from archsearch.model.op_registry import REGISTERED_OPS, OpTable

CELL_TYPES = ("regular", "reduction")
AUX_KINDS = ("cifar", "imagenet")  # the auxiliary heads ops.AUX_TOWERS builds


@dataclass
class ConvMacroParams:
    """Channels into and out of an op (Archai's name)."""

    ch_in: int
    ch_out: int


@dataclass
class OpDesc:
    name: str  # a key of the op registry
    conv: ConvMacroParams
    stride: int = 1
    affine: bool = True  # BatchNorm affine (False in DARTS search ops)
    params: dict[str, Any] = field(default_factory=dict)  # op-specific settings

    @property
    def ch_in(self) -> int:
        return self.conv.ch_in

    @property
    def ch_out(self) -> int:
        return self.conv.ch_out

    @classmethod
    def of(cls, name: str, ch_in: int, ch_out: int, stride: int = 1, affine: bool = True, **params: Any) -> OpDesc:
        return cls(name, ConvMacroParams(ch_in, ch_out), stride, affine, dict(params))


@dataclass
class EdgeDesc:
    op: OpDesc
    input_id: int  # index into the cell's states: preprocessed inputs first, then nodes


@dataclass
class NodeDesc:
    edges: list[EdgeDesc]


@dataclass
class CellDesc:
    cell_type: str  # "regular" or "reduction"
    input_states: list[int]  # which model states feed the cell, relative to the newest: [-2, -1]
    stems: list[OpDesc]  # one preprocessing op per input
    nodes: list[NodeDesc]
    concat: list[int]  # cell states concatenated along channels to form the output
    c_node: int  # channels of every state inside the cell

    @property
    def c_out(self) -> int:
        return self.c_node * len(self.concat)

    @property
    def n_inputs(self) -> int:
        return len(self.stems)


@dataclass
class AuxTowerDesc:
    ch_in: int
    n_classes: int
    weight: float  # loss weight of the auxiliary logits
    after_cell: int  # index of the cell whose output feeds the tower
    kind: str = "cifar"  # which head: the DARTS CIFAR or ImageNet one (ops.AUX_TOWERS); older files: cifar


@dataclass
class ModelDesc:
    ch_in: int  # input image channels
    n_classes: int
    stems: list[OpDesc]
    cells: list[CellDesc]
    pool_op: OpDesc
    logits_op: OpDesc
    aux_tower: AuxTowerDesc | None = None
    meta: dict[str, Any] = field(default_factory=dict)  # free-form: algorithm, genotype, arc_seq, ...

    # ---- serialization -------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)

    def save(self, path: str | Path) -> Path:
        return atomic_write_text(path, self.to_yaml())

    @classmethod
    def from_dict(cls, data: Any, source: str = "model desc") -> ModelDesc:
        desc = _build(cls, data, "", source)
        desc.validate(source)
        return desc

    @classmethod
    def from_yaml(cls, text: str, source: str = "model desc") -> ModelDesc:
        data = safe_yaml(text, source, ArchitectureError)
        return cls.from_dict(data, source)

    @classmethod
    def load(cls, path: str | Path) -> ModelDesc:
        path = Path(path).expanduser()
        text = read_text(path, "model desc file", ArchitectureError, max_bytes=MAX_ARCH_BYTES)
        return cls.from_yaml(text, str(path))

    # ---- checks --------------------------------------------------------------------------------
    def validate(self, source: str = "model desc", ops: OpTable | None = None) -> None:
        """Check ids, channel bookkeeping and ops against `ops` (default: every registered op); raise
        ArchitectureError naming the first bad field."""

        def fail(where: str, message: str) -> typing.NoReturn:
            raise ArchitectureError(f"{source}: {where}: {message}")

        if ops is None:
            ops = REGISTERED_OPS
        OPS, OP_PARAMS, OP_DOWNSAMPLE = ops.builders, ops.params, ops.downsample  # noqa: N806 - table names

        def check_op(op: OpDesc, where: str) -> None:
            if op.name not in OPS:
                fail(f"{where}.name", OPS.unknown_message(op.name))
            if op.ch_in <= 0 or op.ch_out <= 0 or op.stride <= 0:
                fail(where, "ch_in, ch_out and stride must be positive")
            unknown = sorted(set(op.params) - OP_PARAMS.get(op.name, set(op.params)), key=str)
            if unknown:
                takes = ", ".join(sorted(OP_PARAMS[op.name])) or "none"
                fail(f"{where}.params", f"unknown param(s) {', '.join(map(repr, unknown))}; {op.name} takes {takes}")

        def scaled(scale: int | None, op: OpDesc) -> int | None:
            """The downsampling factor after `op` (None once an op of unknown downsampling was applied)."""
            factor = OP_DOWNSAMPLE.get(op.name)
            return None if scale is None or factor is None else scale * factor(op)

        def agree(scales: list[int | None], where: str, what: str) -> int | None:
            """The common factor of maps that are summed or concatenated; they must be the same size."""
            known = [s for s in scales if s is not None]
            if any(s != known[0] for s in known):
                fail(
                    where,
                    f"{what} are downsampled {', '.join(f'{s}x' if s else '?' for s in scales)}: mismatched strides",
                )
            return known[0] if known and len(known) == len(scales) else None

        if not self.stems:
            fail("stems", "a model needs at least one stem op")
        channels, scale = self.ch_in, 1
        stem_scales = []
        for i, stem in enumerate(self.stems):
            check_op(stem, f"stems[{i}]")
            if stem.ch_in != channels:
                fail(f"stems[{i}].ch_in", f"is {stem.ch_in} but its input has {channels} channels")
            channels, scale = stem.ch_out, scaled(scale, stem)
            stem_scales.append(scale)
        states = [self.stems[-2].ch_out if len(self.stems) > 1 else channels, channels]
        scales = [stem_scales[-2] if len(self.stems) > 1 else scale, scale]  # each model state's downsampling
        for ci, cell in enumerate(self.cells):
            w = f"cells[{ci}]"
            if cell.cell_type not in CELL_TYPES:
                fail(f"{w}.cell_type", f"{cell.cell_type!r} is not one of {', '.join(CELL_TYPES)}")
            if len(cell.input_states) != len(cell.stems) or not cell.stems:
                fail(f"{w}.input_states", "needs one entry per cell stem (and at least one)")
            cell_scales: list[int | None] = []  # the downsampling of each state inside the cell
            for k, (rel, stem) in enumerate(zip(cell.input_states, cell.stems)):
                if not -len(states) <= rel < 0:
                    fail(f"{w}.input_states[{k}]", f"{rel} must be in -{len(states)}..-1")
                check_op(stem, f"{w}.stems[{k}]")
                cell_scales.append(scaled(scales[rel], stem))
                if stem.ch_in != states[rel]:
                    fail(f"{w}.stems[{k}].ch_in", f"is {stem.ch_in} but state {rel} has {states[rel]} channels")
                if stem.ch_out != cell.c_node:
                    fail(f"{w}.stems[{k}].ch_out", f"is {stem.ch_out}, expected c_node={cell.c_node}")
            n_states = cell.n_inputs
            for ni, node in enumerate(cell.nodes):
                if not node.edges:
                    fail(f"{w}.nodes[{ni}].edges", "a node needs at least one edge")
                for ei, edge in enumerate(node.edges):
                    we = f"{w}.nodes[{ni}].edges[{ei}]"
                    if not 0 <= edge.input_id < n_states:
                        fail(f"{we}.input_id", f"{edge.input_id} must be in 0..{n_states - 1}")
                    check_op(edge.op, f"{we}.op")
                    if (edge.op.ch_in, edge.op.ch_out) != (cell.c_node, cell.c_node):
                        fail(f"{we}.op", f"channels {edge.op.ch_in}->{edge.op.ch_out}, expected c_node={cell.c_node}")
                edge_scales = [scaled(cell_scales[e.input_id], e.op) for e in node.edges]
                cell_scales.append(agree(edge_scales, f"{w}.nodes[{ni}].edges", "the maps its edges sum"))
                n_states += 1
            if not cell.concat:
                fail(f"{w}.concat", "must name at least one state")
            for k, sid in enumerate(cell.concat):
                if not 0 <= sid < n_states:
                    fail(f"{w}.concat[{k}]", f"{sid} must be in 0..{n_states - 1}")
            states.append(cell.c_out)
            scales.append(agree([cell_scales[i] for i in cell.concat], f"{w}.concat", "the states it joins"))
        check_op(self.pool_op, "pool_op")
        check_op(self.logits_op, "logits_op")
        if self.pool_op.ch_in != states[-1]:
            fail("pool_op.ch_in", f"is {self.pool_op.ch_in} but the last state has {states[-1]} channels")
        if self.logits_op.ch_in != self.pool_op.ch_out:
            fail("logits_op.ch_in", f"is {self.logits_op.ch_in}, expected {self.pool_op.ch_out}")
        if self.logits_op.ch_out != self.n_classes:
            fail("logits_op.ch_out", f"is {self.logits_op.ch_out}, expected n_classes={self.n_classes}")
        if self.aux_tower is not None:
            aux = self.aux_tower
            if not 0 <= aux.after_cell < len(self.cells):
                fail("aux_tower.after_cell", f"{aux.after_cell} must be in 0..{len(self.cells) - 1}")
            if aux.ch_in != self.cells[aux.after_cell].c_out:
                fail("aux_tower.ch_in", f"is {aux.ch_in}, expected {self.cells[aux.after_cell].c_out}")
            if aux.kind not in AUX_KINDS:
                fail("aux_tower.kind", f"{aux.kind!r} is not one of {', '.join(AUX_KINDS)}")

    def cell_types(self) -> list[str]:
        return [c.cell_type for c in self.cells]


# ---- typed construction from plain data, naming the bad field ------------------------------------


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _build(tp: Any, value: Any, where: str, source: str) -> Any:
    def fail(message: str) -> typing.NoReturn:
        raise ArchitectureError(f"{source}: {where or 'top level'}: {message}")

    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _build(inner, value, where, source)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            fail(f"expected a mapping for {tp.__name__}, got {type(value).__name__}")
        hints = typing.get_type_hints(tp)
        fields = {f.name: f for f in dataclasses.fields(tp)}
        unknown = sorted(set(value) - set(fields), key=str)
        if unknown:
            fail(f"unknown field(s) {', '.join(map(repr, unknown))}; valid: {', '.join(fields)}")
        kwargs = {}
        for name, f in fields.items():
            if name not in value:
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                    fail(f"missing field {name!r}")
                continue
            kwargs[name] = _build(hints[name], value[name], f"{where}.{name}" if where else name, source)
        return tp(**kwargs)
    if origin is list:
        (inner,) = typing.get_args(tp)
        if not isinstance(value, list):
            fail(f"expected a list, got {type(value).__name__}")
        return [_build(inner, v, f"{where}[{i}]", source) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            fail(f"expected a mapping, got {type(value).__name__}")
        return dict(value)
    if tp is Any:
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            fail(f"expected a number, got {value!r}")
        return float(value)
    if tp is int and (isinstance(value, bool) or not isinstance(value, int)):
        fail(f"expected an int, got {value!r}")
    if tp is bool and not isinstance(value, bool):
        fail(f"expected true or false, got {value!r}")
    if tp is str and not isinstance(value, str):
        fail(f"expected a string, got {value!r}")
    return value


__all__ = ["ConvMacroParams", "OpDesc", "EdgeDesc", "NodeDesc", "CellDesc", "AuxTowerDesc", "ModelDesc", "CELL_TYPES"]
