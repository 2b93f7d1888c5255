"""Weight-sharing choice ops: the searchable edges of every sampled supernet (ENAS-style one-shot).

A sampled supernet is an ordinary `Model` compiled from a ModelDesc whose searchable edges are two
registered ops, so any space builds one from its own skeleton:

- `enas_choice` holds one module per (possible input, candidate op) and runs only the selected one
  (`select(input_index, op_index)`). ENAS micro nodes get one per input slot, with weights per possible
  input as the original (`w[prev_cell]` in micro_child._enas_cell); an edge that always reads one input
  (a macro layer, an NB201 edge) gets one with `n_inputs=1`.
- `enas_gate` runs its inner op or returns zeros (`active`): loose-end outputs of a micro cell, macro skip
  inputs (the original's `tf.cond(skip, prev_layer, zeros)`).

`batch_statistics(model)` scores a child with batch statistics in any mode: each candidate's BN running
statistics only move when it is chosen, so they are stale for rarely chosen ones (ENAS computes its search
child's rewards this way).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from torch import nn

from archsearch.model.model_desc import OpDesc
from archsearch.model.ops import OPS, build_op

NOT_SELECTED = "no child selected: call set_arch(arch) on the supernet before forward"


class EnasChoice(nn.Module):
    """Candidates per possible input; params: candidates (op names), n_inputs, strided_inputs (inputs
    below this index use the desc's stride: a reduction cell strides only on the cell inputs)."""

    def __init__(self, desc: OpDesc) -> None:
        super().__init__()
        names = list(desc.params["candidates"])
        n_inputs = int(desc.params.get("n_inputs", 1))
        strided = int(desc.params.get("strided_inputs", n_inputs))
        self.candidate_descs = [
            [OpDesc.of(name, desc.ch_in, desc.ch_out, desc.stride if i < strided else 1, desc.affine) for name in names]
            for i in range(n_inputs)
        ]
        self.candidates = nn.ModuleList(nn.ModuleList(build_op(d) for d in row) for row in self.candidate_descs)
        self.selected: tuple[int, int] | None = None

    def select(self, input_index: int, op_index: int) -> None:
        self.selected = (input_index, op_index)

    def chosen(self) -> nn.Module:
        if self.selected is None:
            raise RuntimeError(NOT_SELECTED)
        i, o = self.selected
        return self.candidates[i][o]

    def chosen_desc(self) -> OpDesc:
        assert self.selected is not None
        i, o = self.selected
        return self.candidate_descs[i][o]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.chosen()(x)


class EnasGate(nn.Module):
    """Its inner op (params: op) when active, else zeros of the input's shape."""

    def __init__(self, desc: OpDesc) -> None:
        super().__init__()
        if desc.stride != 1 or desc.ch_in != desc.ch_out:
            raise ValueError("enas_gate needs stride 1 and ch_in == ch_out (its zeros take the input's shape)")
        self.inner = build_op(OpDesc.of(desc.params["op"], desc.ch_in, desc.ch_out, 1, desc.affine))
        self.active: bool | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.active is None:
            raise RuntimeError(NOT_SELECTED)
        return self.inner(x) if self.active else torch.zeros_like(x)


for _name, _builder in (("enas_choice", EnasChoice), ("enas_gate", EnasGate)):
    if _name not in OPS:  # a module reload must not register twice
        OPS.add(_name, _builder)


def choice_op(
    names: Sequence[str], ch: int, stride: int, affine: bool, n_inputs: int = 1, strided: int | None = None
) -> OpDesc:
    """The desc of an `enas_choice` edge over `names` (`strided`: inputs that take `stride`; None: all)."""
    # the key `candidates` makes templates_from_desc refuse this desc for evaluation, as for a MixedOp
    return OpDesc.of(
        "enas_choice",
        ch,
        ch,
        stride,
        affine,
        candidates=list(names),
        n_inputs=n_inputs,
        strided_inputs=n_inputs if strided is None else strided,
    )


def gate_op(op: str, ch: int, affine: bool) -> OpDesc:
    """The desc of an `enas_gate` around `op` (stride 1, ch -> ch)."""
    return OpDesc.of("enas_gate", ch, ch, affine=affine, op=op)


@contextlib.contextmanager
def batch_statistics(model: nn.Module) -> Iterator[nn.Module]:
    """Inside, every BatchNorm normalizes with the batch's statistics, in eval mode too, and leaves its
    running statistics alone (a BN without running statistics does both)."""
    saved = [
        (bn, bn.running_mean, bn.running_var)
        for bn in model.modules()
        if isinstance(bn, nn.modules.batchnorm._BatchNorm) and bn.running_mean is not None
    ]
    for bn, _, _ in saved:
        bn.running_mean = bn.running_var = None
    try:
        yield model
    finally:
        for bn, mean, var in saved:
            bn.running_mean, bn.running_var = mean, var


__all__ = ["EnasChoice", "EnasGate", "batch_statistics", "choice_op", "gate_op"]
