"""DartsModelDescBuilder: the DARTS supernet. Only node building differs from the framework builder:
node i receives a MixedOp edge from every earlier state (2 cell inputs + nodes before it)."""

from __future__ import annotations

from archsearch.common.errors import ArchitectureError
from archsearch.nas.model_desc import EdgeDesc, NodeDesc, OpDesc
from archsearch.nas.model_desc_builder import ModelDescBuilder
from archsearch.nas.ops import DARTS_PRIMITIVES


class DartsModelDescBuilder(ModelDescBuilder):
    def build_nodes(self, index: int, cell_type: str, c_node: int) -> tuple[list[NodeDesc], list[int]]:
        if self.templates:  # scaling a found architecture: plain ops from its template
            return super().build_nodes(index, cell_type, c_node)
        primitives = list(self.conf["primitives"])
        if primitives[0] != "none" or set(primitives) - set(DARTS_PRIMITIVES):
            raise ArchitectureError(f"model_desc.primitives must start with none and use DARTS ops, got {primitives}")
        n_inputs, n_nodes = 2, self.conf["n_nodes"]
        nodes, row = [], 0
        for i in range(n_nodes):
            edges = []
            for j in range(i + n_inputs):
                stride = 2 if cell_type == "reduction" and j < n_inputs else 1
                op = OpDesc.of(
                    "mixed_op",
                    c_node,
                    c_node,
                    stride,
                    self.affine,
                    candidates=primitives,
                    arch_key=cell_type,
                    arch_row=row,
                )
                edges.append(EdgeDesc(op, j))
                row += 1
            nodes.append(NodeDesc(edges))
        return nodes, list(range(n_inputs, n_nodes + n_inputs))
