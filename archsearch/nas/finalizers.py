"""Finalizers: turn a trained supernet into a plain ModelDesc.

finalize_model -> finalize_cell -> finalize_node -> finalize_edge, each a seam. The default keeps every
edge and asks ops that hold architecture weights (`ArchOp.finalize()`) for their chosen op; DARTS
overrides finalize_node to keep the strongest two edges.
"""

from __future__ import annotations

import copy

from archsearch.nas.model import ArchOp, Cell, Model
from archsearch.nas.model_desc import CellDesc, EdgeDesc, ModelDesc, NodeDesc


class Finalizers:
    def finalize_model(self, model: Model) -> ModelDesc:
        desc = copy.deepcopy(model.desc)
        desc.cells = [self.finalize_cell(cell) for cell in model.cells]
        return desc

    def finalize_cell(self, cell: Cell) -> CellDesc:
        desc = copy.deepcopy(cell.desc)
        desc.nodes = [self.finalize_node(cell, i, node_ops) for i, node_ops in enumerate(cell.nodes)]
        return desc

    def finalize_node(self, cell: Cell, node_index: int, node_ops) -> NodeDesc:
        node_desc = cell.desc.nodes[node_index]
        return NodeDesc([self.finalize_edge(op, edge) for op, edge in zip(node_ops, node_desc.edges)])

    def finalize_edge(self, op, edge: EdgeDesc) -> EdgeDesc:
        if isinstance(op, ArchOp):
            return EdgeDesc(op.finalize(), edge.input_id)
        return copy.deepcopy(edge)
