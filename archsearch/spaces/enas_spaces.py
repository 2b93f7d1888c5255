"""The two ENAS search spaces (Pham et al., 2018) as token sequences, and their conversion to ModelDesc.

Micro (cell) space, as melodyguan/enas micro_controller/micro_child: a cell has 2 inputs (the two previous
cell outputs) and B nodes (ENAS: 5). Each node picks two inputs among the earlier states and an op for each;
per node the sequence holds `[input_1, op_1, input_2, op_2]` (the original's `x_id, x_op, y_id, y_op`; its
controller *samples* both inputs before both ops, the layout interleaves them). The arc is the normal cell's
4B tokens followed by the reduction cell's. The cell output concatenates its loose ends: the nodes no
other node reads. Ops, in the original's index order: sep_conv_3x3, sep_conv_5x5, avg_pool_3x3,
max_pool_3x3, identity (our `skip_connect`, a factorized reduce when it strides). With `final_conv` (the
default), the last cell's loose ends reach the classifier through the original search child's
`final_conv` (ReLU, 1x1 conv to the cell's node width, BN) and a ReLU before pooling, so the classifier sees
the same normalized width whatever the arc; `final_conv=False` gives the DARTS head (pool + linear over
the concat), which is also what evaluation rebuilds (`ModelDescBuilder.scale`), as the original's
fixed-arc child.

Macro space, as general_controller/general_child with whole-channel search: a chain of L layers (ENAS: 12),
each choosing one of 6 ops, in the original's index order conv 3x3, sep conv 3x3, conv 5x5, sep conv 5x5,
avg pool, max pool, followed by skip bits in AMBER's layout (`ModelSpace`). Bit i of layer j adds the
original's `prev_layers[i]`: the *input* of layer i (the stem output for i = 0), so a layer never
re-reads its immediate predecessor through a skip. Skips are summed with the layer output and batch
normalized (ENAS search child), or optionally concatenated and mixed by ReLU-conv1x1-BN (ENAS fixed-arc
child). After the pool layers (ENAS: n//3 - 1 and 2*(n//3) - 1) every earlier state still needed is
halved by its own factorized reduction, shared by all later readers, as in the original.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from archsearch.common.errors import ArchitectureError, ConfigError
from archsearch.model.builder import ModelDescBuilder
from archsearch.model.genotype import CellTemplate, Genotype, genotype_to_templates, templates_to_genotype
from archsearch.model.model_desc import CellDesc, EdgeDesc, ModelDesc, NodeDesc, OpDesc
from archsearch.model.ops import OPS
from archsearch.spaces.enas_ops import MACRO_OPS
from archsearch.spaces.token_space import ModelSpace, Operation, Token, check_arc
from archsearch.spaces.token_space import random_arc as _random_arc

MICRO_OPS = ("sep_conv_3x3", "sep_conv_5x5", "avg_pool_3x3", "max_pool_3x3", "skip_connect")
CELL_INPUTS = 2  # a micro cell reads the two previous cell outputs
SKIP_COMBINES = ("sum", "concat")


# ---- micro space -----------------------------------------------------------------------------------


def loose_ends(nodes: Sequence[Sequence[tuple[str, int]]], n_inputs: int = CELL_INPUTS) -> list[int]:
    """State ids of the nodes that no other node reads: ENAS's cell output."""
    used = {input_id for node in nodes for _, input_id in node}
    return [n_inputs + j for j in range(len(nodes)) if n_inputs + j not in used]


@dataclass(frozen=True)
class MicroSpace:
    n_nodes: int = 5
    ops: tuple[str, ...] = MICRO_OPS
    final_conv: bool = True  # the search child's head (see the module doc); False: the DARTS head

    CELL_TYPES = ("regular", "reduction")  # token groups 0 and 1: ENAS's normal_arc, reduce_arc

    def __post_init__(self) -> None:
        if self.n_nodes < 1:
            raise ConfigError(f"micro space n_nodes={self.n_nodes}: needs at least 1 node")
        for op in self.ops:
            if op not in OPS:
                raise ConfigError(f"micro space ops: {OPS.unknown_message(op)}")

    def describe(self) -> str:
        return f"2 cells x {self.n_nodes} nodes x [input, op, input, op]"

    def arc_length(self) -> int:
        return 2 * 4 * self.n_nodes

    def token_spec(self) -> list[Token]:
        spec = []
        for group, cell_type in enumerate(self.CELL_TYPES):
            label = f"{'normal' if cell_type == 'regular' else 'reduction'} cell node"
            for node in range(self.n_nodes):
                for slot in range(2):
                    spec.append(Token("input", node, node + CELL_INPUTS, group, slot, label=label))
                    spec.append(Token("op", node, len(self.ops), group, slot, self.ops, label=label))
        return spec

    def check(self, arc_seq: Sequence[Any]) -> list[int]:
        return check_arc(arc_seq, self.token_spec(), self.describe())

    def random_arc(self, rng: random.Random | None = None) -> list[int]:
        return _random_arc(self.token_spec(), rng)

    def cells(self, arc_seq: Sequence[Any]) -> dict[str, list[tuple[int, int, int, int]]]:
        """Per cell type, per node: (input_1, op_1, input_2, op_2)."""
        tokens = self.check(arc_seq)
        half = 4 * self.n_nodes
        return {
            cell_type: [tuple(tokens[g * half + 4 * j : g * half + 4 * j + 4]) for j in range(self.n_nodes)]
            for g, cell_type in enumerate(self.CELL_TYPES)
        }  # type: ignore[misc]

    def to_templates(self, arc_seq: Sequence[Any]) -> dict[str, CellTemplate]:
        templates = {}
        for cell_type, nodes in self.cells(arc_seq).items():
            edges = [[(self.ops[op_1], in_1), (self.ops[op_2], in_2)] for in_1, op_1, in_2, op_2 in nodes]
            templates[cell_type] = CellTemplate(nodes=edges, concat=loose_ends(edges), n_inputs=CELL_INPUTS)
        return templates

    def to_genotype(self, arc_seq: Sequence[Any]) -> Genotype:
        return templates_to_genotype(self.to_templates(arc_seq))

    def encode(self, cells: Genotype | Mapping[str, CellTemplate]) -> list[int]:
        """The arc of a genotype (or templates) this space can express; inverse of `to_genotype`."""
        templates = genotype_to_templates(cells) if isinstance(cells, Genotype) else cells
        arc: list[int] = []
        for cell_type in self.CELL_TYPES:
            template = templates[cell_type]
            if len(template.nodes) != self.n_nodes or any(len(node) != 2 for node in template.nodes):
                raise ArchitectureError(
                    f"{cell_type} cell: the micro space needs {self.n_nodes} nodes of exactly 2 edges"
                )
            for j, node in enumerate(template.nodes):
                for op, input_id in node:
                    if op not in self.ops:
                        raise ArchitectureError(f"{cell_type} node {j}: op {op!r} is not one of {', '.join(self.ops)}")
                    arc += [input_id, self.ops.index(op)]
            if sorted(template.concat) != loose_ends(template.nodes):
                raise ArchitectureError(
                    f"{cell_type} concat {template.concat} must be the cell's loose ends {loose_ends(template.nodes)}"
                )
        return self.check(arc)

    def to_desc(self, arc_seq: Sequence[Any], conf_model_desc: Mapping, conf_dataset: Mapping) -> ModelDesc:
        """The network of an arc: the DARTS CIFAR skeleton (ModelDescBuilder) with these cells."""
        self._check_conf(conf_model_desc)
        tokens = self.check(arc_seq)
        builder = ModelDescBuilder(conf_model_desc, conf_dataset, self.to_templates(tokens))
        meta = {"algorithm": "enas", "space": "micro", "arc_seq": tokens, "genotype": str(self.to_genotype(tokens))}
        desc = self.with_head(builder.build(meta=meta), conf_model_desc["affine"])
        desc.validate("ENAS micro arc")
        return desc

    def with_head(self, desc: ModelDesc, affine: bool) -> ModelDesc:
        """`desc` with the search child's `final_conv` head when the space has one (the supernet and
        `to_desc` both end this way, so a child equals its standalone network)."""
        if self.final_conv:
            width = desc.cells[-1].c_node
            desc.pool_op = OpDesc.of("enas_final_conv_pool", desc.pool_op.ch_in, width, affine=affine)
            desc.logits_op = OpDesc.of("linear", width, desc.n_classes)
        return desc

    def _check_conf(self, conf_model_desc: Mapping) -> None:
        n_nodes = conf_model_desc.get("n_nodes", self.n_nodes)
        if n_nodes != self.n_nodes:
            raise ConfigError(f"model_desc.n_nodes={n_nodes} disagrees with the micro space's n_nodes={self.n_nodes}")


# ---- macro space -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class MacroSpace:
    n_layers: int = 12
    ops: tuple[str, ...] = MACRO_OPS
    pool_layers: tuple[int, ...] | None = None  # None: ENAS's n//3 - 1 and 2*(n//3) - 1
    skip_combine: str = "sum"  # "sum": ENAS search child; "concat": ENAS fixed-arc child
    double_channels: bool = True  # at each pool layer (ENAS fixed-arc child; its search child keeps them)

    def __post_init__(self) -> None:
        if self.n_layers < 1:
            raise ConfigError(f"macro space n_layers={self.n_layers}: needs at least 1 layer")
        if self.skip_combine not in SKIP_COMBINES:
            raise ConfigError(f"macro space skip_combine={self.skip_combine!r}: use one of {', '.join(SKIP_COMBINES)}")
        for op in self.ops:
            if op not in OPS:
                raise ConfigError(f"macro space ops: {OPS.unknown_message(op)}")
        for p in self.resolved_pool_layers():
            if not 0 <= p < self.n_layers - 1:
                raise ConfigError(
                    f"macro space pool_layers: {p} must be in 0..{self.n_layers - 2} (not the last layer)"
                )

    def resolved_pool_layers(self) -> list[int]:
        if self.pool_layers is not None:
            return sorted(set(self.pool_layers))
        distance = self.n_layers // 3
        return sorted({p for p in (distance - 1, 2 * distance - 1) if 0 <= p < self.n_layers - 1})

    def model_space(self) -> ModelSpace:
        return ModelSpace([[Operation(op) for op in self.ops] for _ in range(self.n_layers)], skip_connections=True)

    def describe(self) -> str:
        return self.model_space().describe()

    def arc_length(self) -> int:
        return self.model_space().arc_length()

    def token_spec(self) -> list[Token]:
        return self.model_space().token_spec()

    def check(self, arc_seq: Sequence[Any]) -> list[int]:
        return self.model_space().check(arc_seq)

    def decode(self, arc_seq: Sequence[Any]) -> tuple[list[int], list[list[int]]]:
        return self.model_space().decode(arc_seq)

    def encode(self, operations: Sequence[int], skip_connections: Sequence[Sequence[int]]) -> list[int]:
        return self.model_space().encode(operations, skip_connections)

    def random_arc(self, rng: random.Random | None = None) -> list[int]:
        return _random_arc(self.token_spec(), rng)

    def to_desc(self, arc_seq: Sequence[Any], conf_model_desc: Mapping, conf_dataset: Mapping) -> ModelDesc:
        return MacroDescBuilder(self, conf_model_desc, conf_dataset).build(arc_seq)


class MacroDescBuilder:
    """Macro arc -> ModelDesc. Every layer is a CellDesc whose inputs are its predecessor and its skip
    sources (relative `input_states`, e.g. [-1, -4]); node 0 applies the layer op to input 0, node 1
    combines it with the skip inputs, node 2 batch-normalizes (layers > 0, as the original). A pool
    layer is followed by one single-input "reduction" cell per earlier state still read later, holding
    that state's factorized reduction. `desc.meta["enas_cells"]` names each cell's role.

    `layer_op` and `combine_op` are the seams the weight-sharing supernet overrides.
    """

    def __init__(self, space: MacroSpace, conf_model_desc: Mapping, conf_dataset: Mapping) -> None:
        self.space = space
        self.init_channels: int = conf_model_desc["init_channels"]
        self.affine: bool = conf_model_desc["affine"]
        self.ch_in: int = conf_dataset["channels"]
        self.n_classes: int = conf_dataset["n_classes"]

    def build(self, arc_seq: Sequence[Any]) -> ModelDesc:
        tokens = self.space.check(arc_seq)
        ops, skips = self.space.decode(tokens)
        sources = [[]] + [[i for i, bit in enumerate(bits) if bit] for bits in skips]
        desc = self.assemble(ops, sources, {"algorithm": "enas", "space": "macro", "arc_seq": tokens})
        desc.validate("ENAS macro arc")
        return desc

    # ---- seams ---------------------------------------------------------------------------------
    def layer_op(self, layer: int, op: int | None, width: int) -> OpDesc:
        assert op is not None
        return OpDesc.of(self.space.ops[op], width, width, affine=self.affine)

    def combine_op(self, width: int, from_skip: bool) -> OpDesc:
        """How the layer output (from_skip False) or one skip input enters the combining node."""
        name = "skip_connect" if self.space.skip_combine == "sum" else "enas_relu_conv_1x1"
        return OpDesc.of(name, width, width, affine=self.affine)

    # ---- assembly ------------------------------------------------------------------------------
    def assemble(self, ops: Sequence[int | None], skip_sources: Sequence[Sequence[int]], meta: dict) -> ModelDesc:
        """`skip_sources[j]`: the sources (0 = stem, i = input of layer i) layer j adds to its output."""
        width = self.init_channels
        stems = [OpDesc.of("stem_conv3x3", self.ch_in, width)]
        last_use: dict[int, int] = {}
        for j, sources in enumerate(skip_sources):
            for s in [j, *sources]:
                last_use[s] = j
        # Model.forward keeps states [stem, stem, cell 0, cell 1, ...]; `where` holds each source's
        # newest (pooled) version as an absolute position in that list.
        where = {0: 1}
        cells: list[CellDesc] = []
        roles: list[str] = []

        def rel(source: int) -> int:
            return where[source] - (2 + len(cells))

        pools = self.space.resolved_pool_layers()
        for j in range(self.space.n_layers):
            inputs = [j, *skip_sources[j]]
            cells.append(self._layer_cell(j, ops[j], [rel(s) for s in inputs], width))
            roles.append(f"layer {j}")
            where[j + 1] = 1 + len(cells)
            if j in pools:
                new_width = 2 * width if self.space.double_channels else width
                for s in range(j + 2):
                    if last_use.get(s, -1) > j:
                        reduce = OpDesc.of("factorized_reduce", width, new_width, stride=2, affine=self.affine)
                        cells.append(CellDesc("reduction", [rel(s)], [reduce], [], [0], new_width))
                        roles.append(f"pool {j} source {s}")
                        where[s] = 1 + len(cells)
                width = new_width
        pool_op = OpDesc.of("global_avg_pool", width, width)
        logits_op = OpDesc.of("linear", width, self.n_classes)
        return ModelDesc(
            self.ch_in, self.n_classes, stems, cells, pool_op, logits_op, None, {**meta, "enas_cells": roles}
        )

    def _layer_cell(self, layer: int, op: int | None, input_states: list[int], width: int) -> CellDesc:
        n_in = len(input_states)
        # the inputs already have the layer's width and resolution: identity stems
        stems = [OpDesc.of("skip_connect", width, width, affine=self.affine) for _ in input_states]
        nodes = [NodeDesc([EdgeDesc(self.layer_op(layer, op, width), 0)])]
        if layer == 0:  # the original adds no skip/BN block to the first layer
            return CellDesc("regular", input_states, stems, nodes, [n_in], width)
        combine = [EdgeDesc(self.combine_op(width, False), n_in)]
        combine += [EdgeDesc(self.combine_op(width, True), k) for k in range(1, n_in)]
        nodes.append(NodeDesc(combine))
        nodes.append(NodeDesc([EdgeDesc(OpDesc.of("enas_batch_norm", width, width, affine=self.affine), n_in + 1)]))
        return CellDesc("regular", input_states, stems, nodes, [n_in + 2], width)


EnasSpace = MicroSpace | MacroSpace


__all__ = [
    "CELL_INPUTS",
    "MICRO_OPS",
    "MACRO_OPS",
    "EnasSpace",
    "MicroSpace",
    "MacroSpace",
    "MacroDescBuilder",
    "loose_ends",
]
