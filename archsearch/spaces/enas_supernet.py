"""ENAS weight sharing: one supernet holds every candidate's weights; `set_arc(arc_seq)` picks a child
(`set_arch`, the SampledSupernet protocol, is the same: an ENAS space's architecture is its arc_seq).

The supernet is an ordinary `Model` compiled from a ModelDesc whose searchable edges are the framework's
choice ops (archsearch.model.choice_ops): `enas_choice` per micro input slot or macro layer, `enas_gate`
per loose end and macro skip. Micro cells end with one gate per node that passes the
  node only if it is a loose end, so the cell output is the concat of *all* nodes with zeros in place of
  the used ones: the next 1x1 conv over it equals the original's conv over the loose ends with gathered
  weights (`final_conv` in micro_child._enas_layer). Macro skip inputs go through gates, as the
  original's `tf.cond(skip, prev_layer, zeros)`.

The micro head is the original search child's (`MicroSpace.final_conv`): ReLU-conv1x1-BN over the last
cell's loose ends, ReLU, pooling, linear. The classifier then sees one normalized width whatever the arc;
a linear layer straight over the zero-padded concat would see arc-dependent blocks and offsets (the
loose ends of pools are not normalized) and its loss climbs above chance while children change each step.

`set_arc` also rewires which state each micro edge reads (`Cell.set_edge_inputs`), so only the chosen
ops compute. `extract_child(supernet, arc)` builds the standalone `Model` of an arc (the same desc the
spaces give for evaluation) and copies the shared weights into it, slicing the zero blocks away.

BatchNorm: every candidate has its own BN (affine as `model_desc.affine`, ENAS: learnable scale and
offset per possible input and op) with its own running statistics, which only move when the candidate
is chosen. ENAS computes its search child with batch statistics even when validating: score children
inside `batch_statistics(model)` (any mode), or expect stale running statistics in eval mode.

Initialization (a deviation, see docs/enas.md): the last BN scale of every micro conv candidate starts
at 0 (`zero_init_convs`), so a candidate that has not been trained yet adds nothing to its node instead
of unit-variance random features; identity and pooling paths carry the signal until the convs learn.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from archsearch.model.builder import ModelDescBuilder
from archsearch.model.choice_ops import EnasChoice, EnasGate, batch_statistics, choice_op, gate_op
from archsearch.model.model_desc import EdgeDesc, ModelDesc, NodeDesc, OpDesc
from archsearch.model.network import Model
from archsearch.spaces.enas_spaces import CELL_INPUTS, EnasSpace, MacroDescBuilder, MacroSpace, MicroSpace


def _load_sliced(dst: nn.Module, src: nn.Module, in_index: torch.Tensor | None = None) -> None:
    """Copy src's weights and buffers into dst; where dst reads fewer input channels, take the
    channels `in_index` (the loose-end blocks of a supernet cell output)."""
    src_state = src.state_dict()
    state = {}
    for name, value in dst.state_dict().items():
        source = src_state[name]
        if source.shape != value.shape:
            if in_index is None or source.dim() < 2:
                raise ValueError(f"cannot map supernet weight {name} {tuple(source.shape)} to {tuple(value.shape)}")
            source = source.index_select(1, in_index.to(source.device))
        state[name] = source
    dst.load_state_dict(state)


# ---- micro -----------------------------------------------------------------------------------------


class MicroSupernetDescBuilder(ModelDescBuilder):
    """The DARTS skeleton with ENAS micro nodes: two `enas_choice` edges per node (their inputs are set
    per child), then one `enas_gate` node per node; the cell concatenates the gates."""

    def __init__(self, space: MicroSpace, conf_model_desc: Mapping, conf_dataset: Mapping) -> None:
        super().__init__(conf_model_desc, conf_dataset)
        self.space = space

    def build_nodes(self, index: int, cell_type: str, c_node: int) -> tuple[list[NodeDesc], list[int]]:
        n = self.space.n_nodes
        stride = 2 if cell_type == "reduction" else 1
        nodes = []
        for j in range(n):
            edges = [
                EdgeDesc(choice_op(self.space.ops, c_node, stride, self.affine, CELL_INPUTS + j, CELL_INPUTS), 0)
                for _ in range(2)
            ]
            nodes.append(NodeDesc(edges))
        for j in range(n):
            nodes.append(NodeDesc([EdgeDesc(gate_op("skip_connect", c_node, self.affine), CELL_INPUTS + j)]))
        return nodes, [CELL_INPUTS + n + j for j in range(n)]


class MicroSupernet(Model):
    """Shared weights of the ENAS micro space (cells are not shared: each cell has its own, as ENAS)."""

    def __init__(
        self, space: MicroSpace, conf_model_desc: Mapping, conf_dataset: Mapping, zero_init_convs: bool = True
    ) -> None:
        desc = MicroSupernetDescBuilder(space, conf_model_desc, conf_dataset).build(
            meta={"algorithm": "enas", "space": "micro", "supernet": True}
        )
        desc = space.with_head(desc, conf_model_desc["affine"])
        desc.validate("ENAS micro supernet")
        super().__init__(desc)
        self.space = space
        self.conf_model_desc = dict(conf_model_desc)
        self.conf_dataset = dict(conf_dataset)
        self.arc: list[int] | None = None
        if zero_init_convs:
            self.zero_init_convs()

    def zero_init_convs(self) -> None:
        """Set the last BN scale of every candidate but the identity (`skip_connect`) to 0: conv candidates
        start as no-ops. Pools hold no BN; without affine BN there is no scale to set."""
        for module in self.modules():
            if not isinstance(module, EnasChoice):
                continue
            for row, descs in zip(module.candidates, module.candidate_descs):
                for candidate, desc in zip(row, descs):
                    norms = [m for m in candidate.modules() if isinstance(m, nn.BatchNorm2d)]
                    if desc.name != "skip_connect" and norms and norms[-1].affine:
                        nn.init.zeros_(norms[-1].weight)

    def set_arc(self, arc_seq: Sequence[Any]) -> None:
        tokens = self.space.check(arc_seq)
        n = self.space.n_nodes
        templates = self.space.to_templates(tokens)
        for cell_type, nodes in self.space.cells(tokens).items():
            loose = set(templates[cell_type].concat)
            for cell in self.cells:
                if cell.desc.cell_type != cell_type:
                    continue
                for j, (in_1, op_1, in_2, op_2) in enumerate(nodes):
                    cell.set_edge_inputs(j, [in_1, in_2])
                    cell.nodes[j][0].select(in_1, op_1)
                    cell.nodes[j][1].select(in_2, op_2)
                for j in range(n):
                    cell.nodes[n + j][0].active = CELL_INPUTS + j in loose
        self.arc = tokens

    set_arch = set_arc  # the SampledSupernet protocol: an ENAS space's architecture is its arc_seq

    def child_desc(self, arc_seq: Sequence[Any]) -> ModelDesc:
        return self.space.to_desc(arc_seq, self.conf_model_desc, self.conf_dataset)

    def load_child_weights(self, child: Model, arc_seq: Sequence[Any]) -> None:
        cells = self.space.cells(arc_seq)
        templates = self.space.to_templates(arc_seq)

        def output_index(cell_index: int) -> torch.Tensor | None:
            """Channels of the supernet output of cell `cell_index` that the child keeps (None: a stem)."""
            if cell_index < 0:
                return None
            desc = self.cells[cell_index].desc
            blocks = [s - CELL_INPUTS for s in templates[desc.cell_type].concat]  # node j is block j
            return torch.cat([torch.arange(b * desc.c_node, (b + 1) * desc.c_node) for b in blocks])

        for dst, src in zip(child.stems, self.stems):
            _load_sliced(dst, src)
        for k, (child_cell, cell) in enumerate(zip(child.cells, self.cells)):
            # relative input -1 of cell k is cell k-1's output; below cell 0 lie the model stems
            for stem_child, stem, rel in zip(child_cell.stems, cell.stems, cell.desc.input_states):
                _load_sliced(stem_child, stem, output_index(k + rel))
            for j, (in_1, op_1, in_2, op_2) in enumerate(cells[cell.desc.cell_type]):
                _load_sliced(child_cell.nodes[j][0], cell.nodes[j][0].candidates[in_1][op_1])
                _load_sliced(child_cell.nodes[j][1], cell.nodes[j][1].candidates[in_2][op_2])
        # the first op with weights over the last cell's output (final_conv, or the DARTS head's linear) is sliced
        last = output_index(len(self.cells) - 1)
        _load_sliced(child.pool, self.pool, last)
        _load_sliced(child.logits, self.logits, last if not self.space.final_conv else None)
        if child.aux_tower is not None and self.aux_tower is not None:
            _load_sliced(child.aux_tower, self.aux_tower, output_index(self.aux_after_cell))


# ---- macro -----------------------------------------------------------------------------------------


class MacroSupernetDescBuilder(MacroDescBuilder):
    """Every layer reads every earlier source through a gate and holds all ops in one `enas_choice`;
    every pool layer reduces every earlier state (as the original)."""

    def layer_op(self, layer: int, op: int | None, width: int) -> OpDesc:
        return choice_op(self.space.ops, width, 1, self.affine)

    def combine_op(self, width: int, from_skip: bool) -> OpDesc:
        inner = super().combine_op(width, from_skip)
        if not from_skip:
            return inner
        return gate_op(inner.name, width, self.affine)

    def build_supernet(self) -> ModelDesc:
        n = self.space.n_layers
        desc = self.assemble(
            [None] * n, [list(range(j)) for j in range(n)], {"algorithm": "enas", "space": "macro", "supernet": True}
        )
        desc.validate("ENAS macro supernet")
        return desc


class MacroSupernet(Model):
    def __init__(self, space: MacroSpace, conf_model_desc: Mapping, conf_dataset: Mapping) -> None:
        super().__init__(MacroSupernetDescBuilder(space, conf_model_desc, conf_dataset).build_supernet())
        self.space = space
        self.conf_model_desc = dict(conf_model_desc)
        self.conf_dataset = dict(conf_dataset)
        self.roles: list[str] = list(self.desc.meta["enas_cells"])
        self.arc: list[int] | None = None

    def _layer_cells(self) -> list[nn.Module]:
        return [cell for cell, role in zip(self.cells, self.roles) if role.startswith("layer ")]

    def set_arc(self, arc_seq: Sequence[Any]) -> None:
        tokens = self.space.check(arc_seq)
        ops, skips = self.space.decode(tokens)
        for j, cell in enumerate(self._layer_cells()):
            cell.nodes[0][0].select(0, ops[j])
            if j > 0:
                for i, bit in enumerate(skips[j - 1]):
                    cell.nodes[1][1 + i].active = bool(bit)  # edge 1 + i reads source i
        self.arc = tokens

    set_arch = set_arc  # the SampledSupernet protocol: an ENAS space's architecture is its arc_seq

    def child_desc(self, arc_seq: Sequence[Any]) -> ModelDesc:
        return self.space.to_desc(arc_seq, self.conf_model_desc, self.conf_dataset)

    def load_child_weights(self, child: Model, arc_seq: Sequence[Any]) -> None:
        ops, skips = self.space.decode(arc_seq)
        by_role = dict(zip(self.roles, self.cells))
        for dst, src in zip(child.stems, self.stems):
            _load_sliced(dst, src)
        for child_cell, role in zip(child.cells, child.desc.meta["enas_cells"]):
            cell = by_role[role]
            if role.startswith("pool "):
                _load_sliced(child_cell.stems[0], cell.stems[0])
                continue
            j = int(role.split()[1])
            _load_sliced(child_cell.nodes[0][0], cell.nodes[0][0].candidates[0][ops[j]])
            if j == 0:
                continue
            sources = [i for i, bit in enumerate(skips[j - 1]) if bit]
            _load_sliced(child_cell.nodes[1][0], cell.nodes[1][0])
            for k, source in enumerate(sources, start=1):
                _load_sliced(child_cell.nodes[1][k], cell.nodes[1][1 + source].inner)
            _load_sliced(child_cell.nodes[2][0], cell.nodes[2][0])
        _load_sliced(child.logits, self.logits)


# ---- entry points ----------------------------------------------------------------------------------

Supernet = MicroSupernet | MacroSupernet


def build_supernet(
    space: EnasSpace, conf_model_desc: Mapping, conf_dataset: Mapping, zero_init_convs: bool = True
) -> Supernet:
    """`zero_init_convs` (micro only): start conv candidates as no-ops (False: the original's init)."""
    if isinstance(space, MicroSpace):
        return MicroSupernet(space, conf_model_desc, conf_dataset, zero_init_convs)
    return MacroSupernet(space, conf_model_desc, conf_dataset)


def extract_child(supernet: Supernet, arc_seq: Sequence[Any]) -> Model:
    """The standalone Model of `arc_seq`, holding the supernet's current weights (same device and mode)."""
    child = Model(supernet.child_desc(arc_seq))
    device = next(supernet.parameters()).device
    child.to(device)
    supernet.load_child_weights(child, arc_seq)
    child.train(supernet.training)
    return child


__all__ = [
    "EnasChoice",
    "EnasGate",
    "MicroSupernetDescBuilder",
    "MacroSupernetDescBuilder",
    "MicroSupernet",
    "MacroSupernet",
    "Supernet",
    "batch_statistics",
    "build_supernet",
    "extract_child",
]
