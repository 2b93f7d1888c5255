"""MixedOp: every candidate op on one edge; output = softmax(alpha)-weighted sum of their outputs.

Framework code, because every cell space builds its differentiable supernet from it (DARTS cells,
NAS-Bench-201): a space compiles a desc whose searchable edges are `mixed_op`s into a `MixedOpSupernet`
and says how its alphas read as an architecture (`derive_arch`).

Its alphas are one row of a table the Model owns (one table per cell type), so all cells of a type share
them, as in DARTS. The `none` primitive keeps its alpha column (it competes in the softmax, exactly as
in the paper) but is never built or run: it would only add zeros.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from archsearch.nas.model import ArchOp, Model
from archsearch.nas.model_desc import OpDesc
from archsearch.nas.ops import OPS, build_op, declare_op

NONE = "none"


class MixedOp(ArchOp):
    def __init__(self, desc: OpDesc) -> None:
        super().__init__()
        self.desc = desc
        self.candidates: list[str] = list(desc.params["candidates"])
        self.arch_key: str = desc.params["arch_key"]
        self.arch_row: int = desc.params["arch_row"]
        self.arch_width = len(self.candidates)
        ops, columns = [], []
        for column, name in enumerate(self.candidates):
            if name == NONE:
                continue
            op = build_op(OpDesc.of(name, desc.ch_in, desc.ch_out, desc.stride, desc.affine))
            if "pool" in name:  # DARTS normalizes pooling outputs inside the mixed op
                op = nn.Sequential(op, nn.BatchNorm2d(desc.ch_out, affine=False))
            ops.append(op)
            columns.append(column)
        self.ops = nn.ModuleList(ops)
        self.columns = columns  # alpha column of each built op

    def op_weights(self) -> torch.Tensor:
        """softmax over all candidates (none included) of this edge's alphas."""
        return F.softmax(self.arch_table[self.arch_row], dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = self.op_weights()
        out = None
        for op, column in zip(self.ops, self.columns):
            y = op(x) * weights[column]
            out = y if out is None else out + y
        return out

    def strongest(self) -> tuple[str, float]:
        """The best non-none candidate and its weight (DARTS' rule for picking an edge's op)."""
        weights = self.op_weights().detach()
        column = max(self.columns, key=lambda c: weights[c].item())
        return self.candidates[column], weights[column].item()

    def finalize(self) -> OpDesc:
        name, _ = self.strongest()
        return OpDesc.of(name, self.desc.ch_in, self.desc.ch_out, self.desc.stride, self.desc.affine)


OPS.add("mixed_op", MixedOp)
declare_op("mixed_op", params=("candidates", "arch_key", "arch_row"))


class MixedOpSupernet(Model):
    """A Model whose searchable edges are MixedOps, and what a DARTS-family trainer asks of it: the alpha
    tables' column names and the architecture they pick now (logged every epoch as `arch_label`)."""

    arch_label: ClassVar[str] = "arch"

    def mixed_ops(self) -> list[MixedOp]:
        return [m for m in self.modules() if isinstance(m, MixedOp)]

    def column_names(self) -> dict[str, list[str]]:
        names: dict[str, list[str]] = {}
        for op in self.mixed_ops():
            names.setdefault(op.arch_key, list(op.candidates))
        return names

    def derive_arch(self) -> Any:
        raise NotImplementedError

    def log_view(self) -> dict[str, Any]:
        """{label: value} of the current architecture, for the per-epoch log line and log.yaml record."""
        return {self.arch_label: self.derive_arch()}
