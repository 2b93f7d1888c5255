"""Model(desc): compile a ModelDesc into an nn.Module.

Ops that hold architecture weights (a DARTS MixedOp, for instance) subclass `ArchOp`. The Model creates
one parameter table per `arch_key` (one row per edge, one column per candidate) and binds every such op
to its row, so cells of the same type share one set of alphas and the framework never needs to know
which algorithm made them.
"""

from __future__ import annotations

import torch
from torch import nn

from archsearch.model.model_desc import CellDesc, ModelDesc, OpDesc
from archsearch.model.ops import AUX_TOWERS, Identity, build_op


class ArchOp(nn.Module):
    """An op whose behaviour depends on a row of a shared architecture parameter table."""

    arch_key: str  # ops with the same key share one table
    arch_row: int  # this op's row in the table
    arch_width: int  # the table's number of columns

    def bind_arch(self, table: nn.Parameter) -> None:
        # Not registered as this module's parameter: the Model owns it, so it appears once.
        object.__setattr__(self, "_arch_table", table)

    @property
    def arch_table(self) -> nn.Parameter:
        return self._arch_table  # type: ignore[attr-defined]

    def arch_params(self) -> list[nn.Parameter]:
        return [self.arch_table]

    def nonarch_params(self) -> list[nn.Parameter]:
        return list(self.parameters())

    def finalize(self) -> OpDesc:
        raise NotImplementedError


def drop_path(x: torch.Tensor, drop_prob: float) -> torch.Tensor:
    """Zero whole samples with probability drop_prob and rescale the rest (DARTS' drop path)."""
    keep = 1.0 - drop_prob
    mask = torch.empty(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype).bernoulli_(keep)
    return x * mask / keep


class Cell(nn.Module):
    def __init__(self, desc: CellDesc) -> None:
        super().__init__()
        self.desc = desc
        self.stems = nn.ModuleList(build_op(s) for s in desc.stems)
        self.nodes = nn.ModuleList(nn.ModuleList(build_op(e.op) for e in node.edges) for node in desc.nodes)
        self.edge_inputs = [[e.input_id for e in node.edges] for node in desc.nodes]
        self.concat = list(desc.concat)

    def set_edge_inputs(self, node: int, input_ids: list[int]) -> None:
        """Rewire which states a node's edges read (weight-sharing supernets pick inputs per child)."""
        if len(input_ids) != len(self.edge_inputs[node]) or not all(0 <= i < node + len(self.stems) for i in input_ids):
            raise ValueError(f"node {node} cannot read states {input_ids}")
        self.edge_inputs[node] = list(input_ids)

    def forward(self, inputs: list[torch.Tensor], drop_prob: float = 0.0) -> torch.Tensor:
        states = [stem(x) for stem, x in zip(self.stems, inputs)]
        use_drop_path = self.training and drop_prob > 0.0
        for ops, input_ids in zip(self.nodes, self.edge_inputs):
            node = None
            for op, i in zip(ops, input_ids):
                out = op(states[i])
                if use_drop_path and not isinstance(op, Identity):
                    out = drop_path(out, drop_prob)
                node = out if node is None else node + out
            states.append(node)
        if len(self.concat) == 1:
            return states[self.concat[0]]
        return torch.cat([states[i] for i in self.concat], dim=1)


class Model(nn.Module):
    """A network compiled from a ModelDesc.

    forward returns logits, or (logits, aux_logits) while training with an auxiliary tower.
    """

    def __init__(self, desc: ModelDesc) -> None:
        super().__init__()
        self.desc = desc
        self.drop_path_prob = 0.0  # set per epoch by the trainer's drop path schedule
        self.stems = nn.ModuleList(build_op(s) for s in desc.stems)
        self.cells = nn.ModuleList(Cell(c) for c in desc.cells)
        self.pool = build_op(desc.pool_op)
        self.logits = build_op(desc.logits_op)
        aux = desc.aux_tower
        self.aux_tower = AUX_TOWERS[aux.kind](aux.ch_in, aux.n_classes) if aux is not None else None
        self.aux_after_cell = aux.after_cell if aux is not None else -1
        self.lookback = max([2] + [-r for c in desc.cells for r in c.input_states])
        self.arch_tables = nn.ParameterDict()
        self._bind_arch_ops()

    def _bind_arch_ops(self) -> None:
        arch_ops = [m for m in self.modules() if isinstance(m, ArchOp)]
        shapes: dict[str, tuple[int, int]] = {}
        for op in arch_ops:
            rows, width = shapes.get(op.arch_key, (0, op.arch_width))
            if width != op.arch_width:
                raise ValueError(f"arch ops of key {op.arch_key!r} disagree on width: {width} vs {op.arch_width}")
            shapes[op.arch_key] = (max(rows, op.arch_row + 1), width)
        for key, shape in shapes.items():
            # DARTS initializes alphas to 1e-3 * N(0, 1)
            self.arch_tables[key] = nn.Parameter(1e-3 * torch.randn(*shape))
        for op in arch_ops:
            op.bind_arch(self.arch_tables[op.arch_key])

    def arch_params(self) -> list[nn.Parameter]:
        return list(self.arch_tables.values())

    def nonarch_params(self) -> list[nn.Parameter]:
        arch_ids = {id(p) for p in self.arch_params()}
        return [p for p in self.parameters() if id(p) not in arch_ids]

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        states = []
        for stem in self.stems:
            x = stem(x)
            states.append(x)
        if len(states) == 1:
            states.append(x)  # CIFAR networks feed the one stem's output as both cell inputs
        aux_logits = None
        for i, cell in enumerate(self.cells):
            out = cell([states[r] for r in cell.desc.input_states], self.drop_path_prob)
            states.append(out)
            if len(states) > self.lookback:
                del states[0]
            if i == self.aux_after_cell and self.aux_tower is not None and self.training:
                aux_logits = self.aux_tower(out)
        logits = self.logits(self.pool(states[-1]))
        return logits if aux_logits is None else (logits, aux_logits)


def count_params(module: nn.Module, exclude_aux: bool = True) -> int:
    """Weight parameters, excluding architecture tables and (by default) the auxiliary tower, as the
    DARTS papers count them."""
    if isinstance(module, Model):
        params = module.nonarch_params()
        if exclude_aux and module.aux_tower is not None:
            aux_ids = {id(p) for p in module.aux_tower.parameters()}
            params = [p for p in params if id(p) not in aux_ids]
    else:
        params = list(module.parameters())
    return sum(p.numel() for p in params)
