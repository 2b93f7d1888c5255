"""DARTS' discretization: per node keep the two incoming edges whose strongest non-`none` op weighs most,
and on each kept edge that strongest op (Liu et al., 2019, sec. 2.4; genotype() in model_search.py)."""

from __future__ import annotations

from archsearch.algos.darts.mixed_op import MixedOp
from archsearch.nas.finalizers import Finalizers
from archsearch.nas.model import Cell
from archsearch.nas.model_desc import EdgeDesc, NodeDesc


class DartsFinalizers(Finalizers):
    def __init__(self, edges_per_node: int = 2) -> None:
        self.edges_per_node = edges_per_node

    def finalize_node(self, cell: Cell, node_index: int, node_ops) -> NodeDesc:
        edges = cell.desc.nodes[node_index].edges
        if not all(isinstance(op, MixedOp) for op in node_ops):
            return super().finalize_node(cell, node_index, node_ops)
        ranked = sorted(range(len(edges)), key=lambda e: -node_ops[e].strongest()[1])  # stable: ties keep order
        kept = ranked[: self.edges_per_node]
        return NodeDesc([EdgeDesc(node_ops[e].finalize(), edges[e].input_id) for e in kept])
