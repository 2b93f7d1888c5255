"""FusedDartsCell: the DARTS search cell computed per input state instead of per edge.

Every edge leaving a state reads the same tensor, so the k edges of a state share work the naive path
(Cell + MixedOp: 7 ops per edge, run separately) repeats:
- pooling and its BatchNorm(affine=False) give every edge the same output in train mode (batch
  statistics): pool and normalize once, update each edge's running statistics from that batch's.
- the ReLU that starts every sep/dil conv and factorized reduce runs once per state.
- the edges' pointwise convs run as one grouped conv, their second depthwise convs as one conv over k*C
  channels, their BatchNorms as one over the concatenated channels (running statistics concatenated,
  updated, copied back).
- the alpha weight of an op ending in BatchNorm is that BN's affine scale: no multiply pass, no output
  kept for the alpha gradient. The rest of the weighted sum is one broadcast op per shared term.
- depthwise outputs and the ReLU(BN) inside sep convs are recomputed in backward (cheap) instead of kept.
- on CPU the cell runs channels_last, where oneDNN's depthwise kernels are several times faster, and
  dilated convs run as plain convs on the 2x2 polyphase components of their input (dilation 2, stride 2:
  a plain conv on the even pixels; stride 1: four plain convs batched as one): the same products, but
  oneDNN's dilated depthwise backward is 2-4x slower.

Parameters and buffers stay in the MixedOps (gathered with torch.cat at forward time), so state_dict,
`finalize()`, `strongest()`, checkpoints and the DARTS finalizer see no difference. The naive path stays
the reference, and runs drop path (whose per-edge random masks a fused pass would draw differently).
`fuse_cells(model)` fuses a model's cells in place by changing their class (as torch.nn.utils.parametrize
does), so modules, parameters and the optimizers holding them are untouched.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from archsearch.model.mixed_op import MixedOp
from archsearch.model.network import Cell, Model
from archsearch.model.ops import DilConv, FactorizedReduce, Identity, SepConv

POOLS = ("max_pool_3x3", "avg_pool_3x3")
CONV_OPS = ("sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5")
FUSABLE = {"none", "skip_connect", *POOLS, *CONV_OPS}


@dataclass
class EdgeGroup:
    """The MixedOps of a cell that read one state: they share the input, stride and width."""

    input_id: int
    targets: list[int]  # the node each edge feeds
    start: int  # this group's rows in the cell's group-ordered weight matrix
    ops: list[MixedOp]
    columns: list[tuple[int, str, list[nn.Module]]] = field(default_factory=list)  # (alpha column, op, edges' ops)


def fusable(cell: nn.Module) -> bool:
    """True for a cell whose every edge is a MixedOp over candidates the fused path implements."""
    if not isinstance(cell, Cell) or not cell.nodes or not all(len(node) for node in cell.nodes):
        return False
    ops = [op for node in cell.nodes for op in node]
    if not all(isinstance(op, MixedOp) and op.plain for op in ops) or len({op.arch_key for op in ops}) != 1:
        return False  # partial channels, edge betas and sampled edges run the per-edge reference path
    if len({tuple(op.candidates) for op in ops}) != 1 or set(ops[0].candidates) - FUSABLE:
        return False  # the edges of a state are fused candidate by candidate
    if any(op.desc.ch_in != op.desc.ch_out for op in ops):
        return False
    bns = [m for op in ops for m in op.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    pool_bns = [op.ops[i][1] for op in ops for i, c in enumerate(op.columns) if op.candidates[c] in POOLS]
    return all(bn.track_running_stats and bn.momentum is not None for bn in bns) and not any(
        bn.affine for bn in pool_bns
    )


def fuse_cells(model: Model) -> Model:
    """Compute every fusable cell of `model` with FusedDartsCell (in place; returns the model)."""
    for cell in model.cells:
        if fusable(cell) and not isinstance(cell, FusedDartsCell):
            cell.__class__ = FusedDartsCell
            cell.build_plan()
    return model


class FusedDartsCell(Cell):
    """A Cell of MixedOps computed one input state at a time (see the module docstring)."""

    def __init__(self, desc) -> None:
        super().__init__(desc)
        self.build_plan()  # unbound MixedOps are fine: the arch table is read at forward time

    def build_plan(self) -> None:
        by_input: dict[tuple[int, int], list[tuple[int, MixedOp]]] = {}
        for node_index, (ops, input_ids) in enumerate(zip(self.nodes, self.edge_inputs)):
            for op, input_id in zip(ops, input_ids):
                by_input.setdefault((input_id, op.desc.stride), []).append((node_index, op))
        groups, start = [], 0
        for (input_id, _), edges in sorted(by_input.items()):
            group = EdgeGroup(input_id, [n for n, _ in edges], start, [op for _, op in edges])
            first = group.ops[0]
            for position, column in enumerate(first.columns):
                group.columns.append((column, first.candidates[column], [op.ops[position] for op in group.ops]))
            groups.append(group)
            start += len(edges)
        self.fused_groups = groups
        self.fused_rows = [op.arch_row for g in groups for op in g.ops]
        self.fused_bns = [m for g in groups for op in g.ops for m in op.modules() if isinstance(m, nn.BatchNorm2d)]
        self.fused_row_index: dict[torch.device, torch.Tensor] = {}

    def set_edge_inputs(self, node: int, input_ids: list[int]) -> None:
        super().set_edge_inputs(node, input_ids)
        self.build_plan()  # the groups follow the inputs

    # ---- forward -------------------------------------------------------------------------------
    def forward(self, inputs: list[torch.Tensor], drop_prob: float = 0.0) -> torch.Tensor:
        if self.training and drop_prob > 0.0:
            return super().forward(inputs, drop_prob)
        if cpu_tuned(inputs[0]):
            inputs = [x.contiguous(memory_format=torch.channels_last) for x in inputs]
        states: list[torch.Tensor | None] = [stem(x) for stem, x in zip(self.stems, inputs)]
        n_inputs = len(states)
        states += [None] * len(self.nodes)
        partial: list[torch.Tensor | None] = [None] * len(self.nodes)
        pending = [len(node) for node in self.nodes]
        weights = self.edge_weights()
        if self.training:
            torch._foreach_add_([bn.num_batches_tracked for bn in self.fused_bns], 1)
        for group in self.fused_groups:
            x = states[group.input_id]
            if x is None:
                raise RuntimeError(f"cell {self.desc.cell_type}: state {group.input_id} is used before it is computed")
            outs = self.mix_group(group, x, weights[group.start : group.start + len(group.ops)])
            for node, out in zip(group.targets, outs):
                partial[node] = out if partial[node] is None else partial[node] + out
                pending[node] -= 1
                if pending[node] == 0:
                    states[n_inputs + node] = partial[node]
        if len(self.concat) == 1:
            return states[self.concat[0]]
        # cat's backward hands each state a channel slice of the output's gradient; in channels_last that
        # is a strided view, which elementwise ops would answer with NCHW gradients for the whole cell
        return torch.cat([channels_last_grad(states[i]) for i in self.concat], dim=1)

    def edge_weights(self) -> torch.Tensor:
        """softmax(alpha) of every edge, rows in group order: one softmax per cell instead of one per edge."""
        table = self.fused_groups[0].ops[0].arch_table
        index = self.fused_row_index.get(table.device)
        if index is None:  # cached per device: a host list would be copied to the device on every forward
            index = self.fused_row_index[table.device] = torch.tensor(self.fused_rows, device=table.device)
        return F.softmax(table.index_select(0, index), dim=-1)

    def mix_group(self, group: EdgeGroup, x: torch.Tensor, weights: torch.Tensor) -> list[torch.Tensor]:
        """sum over ops of weight * op(x) for each of the group's k edges.

        Every op with per-edge weights ends in a BatchNorm, which takes the edges' alpha weights as its
        affine scale: w * BN(y) costs no extra pass, BN's backward computes the alpha gradient in its own
        pass, and no op output has to be kept for it. Those ops are summed as (N, k*C, H, W) tensors,
        then split per edge: split's backward is a cat, which keeps channels_last (slice backward would
        allocate NCHW gradients and send every later kernel down its mixed-layout slow path).
        """
        k = len(group.ops)
        shared = SharedInput(x, self.training)
        edge_sum, shared_terms = None, []
        for column, name, edge_ops in group.columns:
            if name == "skip_connect" and isinstance(edge_ops[0], Identity):
                shared_terms.append((column, x))
            elif name in POOLS and self.training:
                shared_terms.append((column, pool_bn(edge_ops, x)))
            elif name != "none":
                term = self.edge_op(name, edge_ops, shared, weights[:, column])
                # a BN output is not needed by any backward: summing into it in place saves a tensor per op
                edge_sum = term if edge_sum is None else edge_sum.add_(term)
        for column, term in shared_terms:
            # (N, H, W, k, C) views of the channels_last layout: one broadcast multiply-add for all k edges
            w = weights[:, column].to(term.dtype).view(1, 1, 1, k, 1)
            term = term.permute(0, 2, 3, 1).unsqueeze(3)
            if edge_sum is None:
                edge_sum = (term * w).flatten(3).permute(0, 3, 1, 2)
            else:
                mixed = torch.addcmul(edge_sum.permute(0, 2, 3, 1).unflatten(3, (k, -1)), term, w)
                edge_sum = mixed.flatten(3).permute(0, 3, 1, 2)
        if edge_sum is None:
            raise RuntimeError(f"cell {self.desc.cell_type}: an edge has no candidate but none")
        return list(edge_sum.split(edge_sum.shape[1] // k, 1))

    def edge_op(self, name: str, edge_ops: list[nn.Module], shared: SharedInput, weights: torch.Tensor) -> torch.Tensor:
        """weights[e] * candidate(x) on all k edges: (N, k*C, H', W'), edge-major channels."""
        if name == "skip_connect":
            return factorized_reduce(edge_ops, shared, weights)
        if name in POOLS:  # eval: each edge normalizes with its own running statistics
            pooled = edge_ops[0][0](shared.x)  # the pool has no parameters: the same for every edge
            return batch_norm(pooled.repeat(1, len(edge_ops), 1, 1), [op[1] for op in edge_ops], False, weights)
        if name.startswith("sep_conv"):
            return sep_conv(edge_ops, shared, weights)
        return dil_conv(edge_ops, shared, weights)


class SharedInput:
    """A state and what its edges derive from it, each computed once: relu(x) and its polyphase forms."""

    def __init__(self, x: torch.Tensor, training: bool) -> None:
        self.x, self.training = x, training
        self._relu: torch.Tensor | None = None
        self._derived: dict[str, torch.Tensor] = {}

    @property
    def relu(self) -> torch.Tensor:
        if self._relu is None:
            self._relu = F.relu(self.x)
        return self._relu

    def derived(self, kind: str) -> torch.Tensor:
        if kind not in self._derived:
            r = self.relu
            if kind == "even":  # the pixels a stride-2, dilation-2 conv reads
                self._derived[kind] = channels_last_grad(r)[:, :, ::2, ::2].contiguous(memory_format=memory_format(r))
            else:
                self._derived[kind] = space_to_batch(r)
        return self._derived[kind]


# ---- the per-candidate fused computations ---------------------------------------------------------
CPU_TUNING = True  # channels_last and polyphase dilated convs on CPU (tests switch it off for the other path)


def cpu_tuned(x: torch.Tensor) -> bool:
    """Whether to use what measured faster with oneDNN on CPU; elsewhere the caller's layout is kept."""
    return CPU_TUNING and x.device.type == "cpu"


class ChannelsLastGrad(torch.autograd.Function):
    """Identity whose backward makes the gradient channels_last. Slicing and cat backward produce NCHW or
    strided gradients; one copy here spares every later kernel its mixed-layout slow path."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad.contiguous(memory_format=torch.channels_last)


def channels_last_grad(x: torch.Tensor) -> torch.Tensor:
    if x.requires_grad and memory_format(x) == torch.channels_last:
        return ChannelsLastGrad.apply(x)
    return x


def memory_format(x: torch.Tensor) -> torch.memory_format:
    return torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format


def batch_norm(
    x: torch.Tensor, bns: list[nn.BatchNorm2d], training: bool, scale: torch.Tensor | None = None
) -> torch.Tensor:
    """The k edges' BatchNorms as one over their concatenated channels, updating each edge's statistics;
    edge e's output is multiplied by scale[e] (its alpha weight) through the affine parameters."""
    mean = torch.cat([bn.running_mean for bn in bns])
    var = torch.cat([bn.running_var for bn in bns])
    bn, n = bns[0], bns[0].num_features
    weight = torch.cat([b.weight for b in bns]) if bn.affine else None
    bias = torch.cat([b.bias for b in bns]) if bn.affine else None
    if scale is not None:
        scale = scale.repeat_interleave(n)
        weight = scale if weight is None else weight * scale
        bias = None if bias is None else bias * scale
    y = F.batch_norm(x, mean, var, weight, bias, training, bn.momentum, bn.eps)
    if training:
        with torch.no_grad():
            torch._foreach_copy_(
                [b.running_mean for b in bns] + [b.running_var for b in bns], [*mean.split(n), *var.split(n)]
            )
    return y


def pool_bn(edge_ops: list[nn.Module], x: torch.Tensor) -> torch.Tensor:
    """Pool + BatchNorm(affine=False) of k edges in train mode: one output for all, as all use the batch's
    statistics; each edge's running statistics are updated from them as its own BN would."""
    pooled = edge_ops[0][0](x)  # the pool has no parameters: the same for every edge
    bns = [op[1] for op in edge_ops]
    bn = bns[0]
    # momentum 1 makes the scratch statistics exactly the batch mean and unbiased variance
    stats = torch.zeros(2, bn.num_features, device=x.device, dtype=bn.running_mean.dtype)
    y = F.batch_norm(pooled, stats[0], stats[1], None, None, True, 1.0, bn.eps)
    with torch.no_grad():
        for buffers, batch in (([b.running_mean for b in bns], stats[0]), ([b.running_var for b in bns], stats[1])):
            torch._foreach_mul_(buffers, 1.0 - bn.momentum)
            torch._foreach_add_(buffers, [batch] * len(bns), alpha=bn.momentum)
    return y


def factorized_reduce(edge_ops: list[FactorizedReduce], shared: SharedInput, scale: torch.Tensor) -> torch.Tensor:
    """k FactorizedReduce skips: two strided 1x1 convs for all edges at once, then one BatchNorm."""
    r = shared.relu
    if r.shape[-1] % 2 or r.shape[-2] % 2:
        r = F.pad(r, (0, r.shape[-1] % 2, 0, r.shape[-2] % 2))
    k = len(edge_ops)
    y1 = F.conv2d(r, torch.cat([op.conv_1.weight for op in edge_ops]), stride=2)
    y2 = F.conv2d(channels_last_grad(r)[:, :, 1:, 1:], torch.cat([op.conv_2.weight for op in edge_ops]), stride=2)
    return batch_norm(interleave(y1, y2, k), [op.bn for op in edge_ops], shared.training, scale)


def interleave(a: torch.Tensor, b: torch.Tensor, k: int) -> torch.Tensor:
    """Channels [a_1, b_1, ..., a_k, b_k] from a = [a_1..a_k], b = [b_1..b_k], in a's memory format."""
    if memory_format(a) == torch.channels_last:
        nhwc = torch.cat([a.permute(0, 2, 3, 1).unflatten(3, (k, -1)), b.permute(0, 2, 3, 1).unflatten(3, (k, -1))], 4)
        return nhwc.flatten(3).permute(0, 3, 1, 2)
    return torch.cat([a.unflatten(1, (k, -1)), b.unflatten(1, (k, -1))], 2).flatten(1, 2)


def dil_conv(
    edge_ops: list[DilConv], shared: SharedInput, scale: torch.Tensor | None = None, normalize: bool = True
) -> torch.Tensor:
    """k DilConvs (ReLU, depthwise, pointwise, BN) reading the shared state."""
    conv = edge_ops[0][1]
    kernel, stride, dilation, padding = conv.kernel_size[0], conv.stride[0], conv.dilation[0], conv.padding[0]
    r = shared.relu
    same = padding == dilation * (kernel // 2) and conv.kernel_size[1] == kernel
    phases = same and dilation == 2 and stride == 1 and cpu_tuned(r) and not r.shape[-1] % 2 + r.shape[-2] % 2
    if same and dilation == 2 and stride == 2:
        depthwise = shared_depthwise(edge_ops, shared.derived("even"), 1, kernel // 2, 1)
    elif phases:
        depthwise = shared_depthwise(edge_ops, shared.derived("phases"), 1, kernel // 2, 1)
    else:
        depthwise = shared_depthwise(edge_ops, r, stride, padding, dilation)
    y = pointwise_bn(edge_ops, depthwise(), depthwise, shared.training, scale, normalize)
    # BN statistics and 1x1 convs do not care about pixel order: the polyphase layout is undone only here
    return batch_to_space(y, r.shape[0]) if phases else y


def sep_conv(edge_ops: list[SepConv], shared: SharedInput, scale: torch.Tensor) -> torch.Tensor:
    """k SepConvs: two DilConvs, the first reading the shared state, the second each edge's own tensor.

    Between them, relu(BN(p1)) is recomputed in backward from p1 (which BN keeps anyway) instead of kept,
    and so is the second depthwise output, read by the pointwise conv's backward."""
    first, second = [op[0] for op in edge_ops], [op[1] for op in edge_ops]
    p1 = dil_conv(first, shared, normalize=False)
    bns = [op[3] for op in first]
    weight = torch.cat([b.weight for b in bns]) if bns[0].affine else None
    bias = torch.cat([b.bias for b in bns]) if bns[0].affine else None
    activation = Recomputed(lambda: F.relu(F.batch_norm(p1, None, None, weight, bias, True, 0.0, bns[0].eps)), [p1])
    y = batch_norm(p1, bns, shared.training)
    with activation.replacing(y):  # y is alive throughout: no other tensor can take its address
        a = F.relu_(y)  # a BatchNorm output, which its backward does not need
        depthwise = wide_depthwise(second, a)
        y = depthwise(a)
    return pointwise_bn(second, y, lambda: depthwise(activation.get()), shared.training, scale)


def wide_depthwise(edge_ops: list[DilConv], x: torch.Tensor):
    """x -> each edge's depthwise conv of its own input, stacked edge-major in x: (N, k*C, H, W)."""
    conv = edge_ops[0][1]
    weight = torch.cat([op[1].weight for op in edge_ops])
    return lambda x: F.conv2d(x, weight, None, conv.stride, conv.padding, conv.dilation, x.shape[1])


def shared_depthwise(edge_ops: list[DilConv], x: torch.Tensor, stride: int, padding: int, dilation: int):
    """() -> each edge's depthwise conv of the shared input x, concatenated edge-major (one conv per edge:
    groups=C with k*C outputs would interleave the edges' channels)."""

    weights = [op[1].weight for op in edge_ops]  # now: backward may run after the module's weights are swapped

    def depthwise() -> torch.Tensor:
        return torch.cat([F.conv2d(x, w, None, stride, padding, dilation, x.shape[1]) for w in weights], 1)

    return depthwise


def pointwise_bn(
    edge_ops: list[DilConv],
    y: torch.Tensor,
    recompute,
    training: bool,
    scale: torch.Tensor | None,
    normalize: bool = True,
) -> torch.Tensor:
    """Each edge's 1x1 conv as one grouped conv, then (if normalize) the edges' BatchNorms as one. `y`, the
    depthwise output, is recomputed in backward rather than kept: cheap to compute, and a third of what
    the naive path keeps."""
    with Recomputed(recompute, [op[1].weight for op in edge_ops]).replacing(y):
        y = F.conv2d(y, torch.cat([op[2].weight for op in edge_ops]), groups=len(edge_ops))
    return batch_norm(y, [op[3] for op in edge_ops], training, scale) if normalize else y


class Recomputed:
    """A tensor that autograd keeps as this recipe, recomputed in backward when first needed (under the
    autocast state of its forward) and dropped after its last use. The recipe may read only tensors that
    autograd keeps anyway and `inputs`, which must not change before backward (as for any saved tensor)."""

    def __init__(self, recompute, inputs: list[torch.Tensor]) -> None:
        self.recompute, self.inputs = recompute, inputs
        self.versions = [t._version for t in inputs]
        self.key: tuple | None = None
        self.uses = 0
        self.value: torch.Tensor | None = None

    @contextlib.contextmanager
    def replacing(self, tensor: torch.Tensor):
        """Ops in this context that save `tensor` for backward keep this recipe instead."""
        self.key = (tensor.data_ptr(), tensor.shape, tensor.stride())
        self.device = tensor.device.type
        self.autocast = (torch.is_autocast_enabled(self.device), torch.get_autocast_dtype(self.device))
        with torch.autograd.graph.saved_tensors_hooks(self.pack, Recomputed.unpack):
            yield

    def pack(self, t: torch.Tensor):
        if (t.data_ptr(), t.shape, t.stride()) != self.key:
            return t
        self.uses += 1
        return self

    @staticmethod
    def unpack(saved):
        if not isinstance(saved, Recomputed):
            return saved
        value = saved.get()
        saved.uses -= 1
        if saved.uses <= 0:
            saved.value = None
        return value

    def get(self) -> torch.Tensor:
        if self.value is None:
            if [t._version for t in self.inputs] != self.versions:  # what autograd checks for a saved tensor
                raise RuntimeError("an input of a fused DARTS cell was modified in place between forward and backward")
            enabled, dtype = self.autocast
            # grad mode is as backward set it: off, or on under create_graph, where higher-order
            # gradients must see how the recomputed tensor depends on its inputs
            with torch.autocast(self.device, dtype=dtype, enabled=enabled):
                self.value = self.recompute()
        return self.value


def space_to_batch(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (4N, C, H/2, W/2): the 2x2 polyphase components, phase-major, channels_last."""
    n, c, h, w = x.shape
    phases = x.permute(0, 2, 3, 1).unflatten(1, (h // 2, 2)).unflatten(3, (w // 2, 2))  # n, i, p, j, q, c
    return phases.permute(2, 4, 0, 1, 3, 5).reshape(4 * n, h // 2, w // 2, c).permute(0, 3, 1, 2)


def batch_to_space(y: torch.Tensor, n: int) -> torch.Tensor:
    """The inverse of space_to_batch, channels_last."""
    _, c, h, w = y.shape
    phases = y.permute(0, 2, 3, 1).reshape(2, 2, n, h, w, c)  # p, q, n, i, j, c
    return phases.permute(2, 3, 0, 4, 1, 5).reshape(n, 2 * h, 2 * w, c).permute(0, 3, 1, 2)
