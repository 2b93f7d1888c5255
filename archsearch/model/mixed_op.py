"""MixedOp: every candidate op on one edge; output = softmax(alpha)-weighted sum of their outputs.

Framework code, because every cell space builds its differentiable supernet from it (DARTS cells,
NAS-Bench-201): a space compiles a desc whose searchable edges are `mixed_op`s into a `MixedOpSupernet`
and says how its alphas read as an architecture (`derive_arch`).

Its alphas are one row of a table the Model owns (one table per cell type), so all cells of a type share
them, as in DARTS. The `none` primitive keeps its alpha column (it competes in the softmax, exactly as
in the paper) but is never built or run: it would only add zeros.

The DARTS descendants are options of the same op (`MixedOpOptions`, set through the op's desc params),
so every cell space that builds MixedOp edges runs them (capability `mixed_op`: `mixed_op_supernet(options)`):
- partial channels (PC-DARTS, Xu et al. 2020): only the first 1/K of the input channels go through the
  candidates (built at C/K channels); the rest bypass the edge (2x2 max-pooled on a reduction edge),
  and a channel shuffle of K groups mixes both parts for the next edge (model_search.py of PC-DARTS).
- edge normalization (PC-DARTS): every edge's output is scaled by softmax over its node's input edges of
  one beta per edge; the betas are a (1, n_edges) table per node and cell type (`<key>_edges<node>`).
- Gumbel sampling (GDAS, Dong & Yang 2019): each forward of the network draws one op per edge from
  softmax((log_softmax(alpha) + Gumbel noise) / tau) as a hard one-hot with a straight-through gradient,
  the same draw for every cell of a type; only the drawn op runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from archsearch.model.model_desc import ModelDesc, OpDesc
from archsearch.model.network import ArchOp, Model
from archsearch.model.ops import OPS, build_op, declare_op

NONE = "none"
SAMPLINGS = ("softmax", "gumbel")



@dataclass(frozen=True)
class MixedOpOptions:
    """How a space's MixedOp edges mix their candidates; the defaults are DARTS."""

    partial_channels: int = 1  # K: 1/K of the channels go through the candidates (PC-DARTS: 4)
    edge_normalization: bool = False  # PC-DARTS' per-node softmax of one beta per input edge
    sampling: str = "softmax"  # gumbel: GDAS' one sampled op per edge

    def __post_init__(self) -> None:
        if self.partial_channels < 1:
            raise ValueError(f"partial_channels must be >= 1, got {self.partial_channels}")
        if self.sampling not in SAMPLINGS:
            raise ValueError(f"sampling must be one of {SAMPLINGS}, got {self.sampling!r}")

    def op_params(self, edge_key: str, edge_index: int, edge_count: int) -> dict[str, Any]:
        """The mixed_op desc params for one edge (`edge_index` of the `edge_count` edges into its node, whose
        beta table is `edge_key`); only non-default options are written, so a DARTS desc is unchanged."""
        params: dict[str, Any] = {}
        if self.partial_channels > 1:
            params["partial_channels"] = self.partial_channels
        if self.edge_normalization:
            params.update(edge_key=edge_key, edge_index=edge_index, edge_count=edge_count)
        if self.sampling != "softmax":
            params["sampling"] = self.sampling
        return params


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """(N, g*c, H, W) -> channels reordered as [0, c, 2c, ..., 1, c+1, ...] (ShuffleNet's shuffle)."""
    n, channels, h, w = x.shape
    return x.view(n, groups, channels // groups, h, w).transpose(1, 2).reshape(n, channels, h, w)


class MixedOp(ArchOp):
    def __init__(self, desc: OpDesc) -> None:
        super().__init__()
        self.desc = desc
        self.candidates: list[str] = list(desc.params["candidates"])
        self.arch_key: str = desc.params["arch_key"]
        self.arch_row: int = desc.params["arch_row"]
        self.arch_width = len(self.candidates)
        self.partial: int = desc.params.get("partial_channels", 1)
        self.edge_key: str | None = desc.params.get("edge_key")
        self.edge_index: int = desc.params.get("edge_index", 0)
        self.edge_count: int = desc.params.get("edge_count", 1)
        self.sampling: str = desc.params.get("sampling", "softmax")
        if self.sampling not in SAMPLINGS:
            raise ValueError(f"mixed_op sampling must be one of {SAMPLINGS}, got {self.sampling!r}")
        if self.partial > 1 and (desc.ch_in != desc.ch_out or desc.ch_in % self.partial):
            raise ValueError(
                f"partial channels K={self.partial} need an edge whose input and output widths are equal and a "
                f"multiple of K, got {desc.ch_in} -> {desc.ch_out}"
            )
        width = desc.ch_in // self.partial
        ops, columns = [], []
        for column, name in enumerate(self.candidates):
            if name == NONE:
                continue
            op = build_op(OpDesc.of(name, width, desc.ch_out // self.partial, desc.stride, desc.affine))
            if "pool" in name:  # DARTS normalizes pooling outputs inside the mixed op
                op = nn.Sequential(op, nn.BatchNorm2d(desc.ch_out // self.partial, affine=False))
            ops.append(op)
            columns.append(column)
        self.ops = nn.ModuleList(ops)
        self.columns = columns  # alpha column of each built op

    @property
    def plain(self) -> bool:
        """True for DARTS' mixed op (no partial channels, edge normalization or sampling): what the fused
        cell implements."""
        return self.partial == 1 and self.edge_key is None and self.sampling == "softmax"

    # ---- bound by MixedOpSupernet ---------------------------------------------------------------
    def bind_edges(self, table: nn.Parameter) -> None:
        object.__setattr__(self, "_edge_table", table)  # the Model owns it, as it owns the alpha tables

    def bind_sampler(self, sampler: GumbelSampler) -> None:
        object.__setattr__(self, "_sampler", sampler)

    def op_weights(self) -> torch.Tensor:
        """softmax over all candidates (none included) of this edge's alphas."""
        return F.softmax(self.arch_table[self.arch_row], dim=-1)

    def edge_weight(self) -> torch.Tensor | None:
        """PC-DARTS' beta weight of this edge among its node's input edges; None without edge normalization."""
        if self.edge_key is None:
            return None
        return F.softmax(self._edge_table[0], dim=-1)[self.edge_index]  # type: ignore[attr-defined]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        beta = self.edge_weight()
        if self.partial == 1:
            out = self.mix(x)
            return out if beta is None else out * beta
        c = x.shape[1] // self.partial
        mixed, bypass = self.mix(x[:, :c]), x[:, c:]
        if self.desc.stride > 1:
            bypass = F.max_pool2d(bypass, 2, 2)
        if beta is not None:
            # scaled before the shuffle: the products' backward keeps the C/K mixed part and the bypass,
            # a view of the input that stays alive anyway, instead of a whole C-channel output per edge
            mixed, bypass = mixed * beta, bypass * beta
        # cat + channel_shuffle(., K) in one copy: group g of the K groups ([mixed, bypass slices]) lands on
        # channels g, K + g, 2K + g, ...
        groups = [mixed, *bypass.split(c, dim=1)]
        return torch.stack(groups, dim=2).flatten(1, 2)

    def mix(self, x: torch.Tensor) -> torch.Tensor:
        if self.sampling == "gumbel":
            return self.sampled(x)
        weights = self.op_weights()
        out = None
        for op, column in zip(self.ops, self.columns):
            y = op(x) * weights[column]
            out = y if out is None else out + y
        return out

    def sampled(self, x: torch.Tensor) -> torch.Tensor:
        """GDAS' edge (xautodl forward_gdas): the drawn op's output times its hard weight (1 in value), plus the
        other candidates' hard weights (0 in value), so the straight-through gradient reaches every alpha."""
        hard, chosen = self._sampler.draw_for(self.arch_key)  # type: ignore[attr-defined]
        weights, column = hard[self.arch_row], chosen[self.arch_row]
        if column in self.columns:
            out = self.ops[self.columns.index(column)](x) * weights[column]
        else:  # none: zeros of the edge's output shape, never computed by an op
            n, _, h, w = x.shape
            s = self.desc.stride
            out = x.new_zeros(n, self.desc.ch_out // self.partial, (h + s - 1) // s, (w + s - 1) // s)
        others = torch.cat([weights[:column], weights[column + 1 :]]).sum()
        return out + others

    def strongest(self) -> tuple[str, float]:
        """The best non-none candidate and its weight (DARTS' rule for picking an edge's op); with edge
        normalization the weight is softmax(alpha) * beta weight, as PC-DARTS' genotype() ranks edges."""
        weights = self.op_weights().detach()
        column = max(self.columns, key=lambda c: weights[c].item())
        beta = self.edge_weight()
        return self.candidates[column], weights[column].item() * (1.0 if beta is None else beta.item())

    def finalize(self) -> OpDesc:
        name, _ = self.strongest()
        return OpDesc.of(name, self.desc.ch_in, self.desc.ch_out, self.desc.stride, self.desc.affine)


OPS.add("mixed_op", MixedOp)
OPTION_PARAMS = ("partial_channels", "edge_key", "edge_index", "edge_count", "sampling")
declare_op("mixed_op", params=("candidates", "arch_key", "arch_row", *OPTION_PARAMS))


class GumbelSampler:
    """GDAS' draw: per alpha table, one hard one-hot row per edge with a straight-through gradient
    (hard - probs.detach() + probs, probs = softmax((log_softmax(alpha) + Gumbel noise) / tau)), drawn
    once per forward of the network and read by every MixedOp of that table (xautodl search_model_gdas)."""

    def __init__(self, tables: nn.ParameterDict, keys: list[str], tau: float = 10.0) -> None:
        self.tables, self.keys, self.tau = tables, keys, tau
        self.drawn: dict[str, tuple[torch.Tensor, list[int]]] = {}

    def draw(self) -> None:
        self.drawn = {key: self.gumbel_hard(self.tables[key]) for key in self.keys}

    def gumbel_hard(self, alpha: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
        while True:  # redraw the (vanishingly rare) sample with an infinite noise term, as the original does
            gumbels = -torch.empty_like(alpha).exponential_().log()
            probs = F.softmax((alpha.log_softmax(dim=-1) + gumbels) / self.tau, dim=-1)
            if torch.isfinite(gumbels).all() and torch.isfinite(probs).all():
                break
        index = probs.argmax(dim=-1, keepdim=True)
        one_hot = torch.zeros_like(probs).scatter_(-1, index, 1.0)
        return one_hot - probs.detach() + probs, index.squeeze(-1).tolist()

    def draw_for(self, key: str) -> tuple[torch.Tensor, list[int]]:
        if key not in self.drawn:
            raise RuntimeError(f"no Gumbel sample drawn for alpha table {key!r}: call the supernet, not its ops")
        return self.drawn[key]


class MixedOpSupernet(Model):
    """A Model whose searchable edges are MixedOps, and what a DARTS-family trainer asks of it: the alpha
    tables' column names and the architecture they pick now (logged every epoch as `arch_label`).

    Edge-normalized ops get their beta tables here (1e-3 * N(0, 1), like the alphas); Gumbel-sampled ops
    a shared `sampler`, which each forward redraws before the cells run."""

    arch_label: ClassVar[str] = "arch"

    def __init__(self, desc: ModelDesc) -> None:
        super().__init__(desc)
        ops = self.mixed_ops()
        for op in ops:
            if op.edge_key is not None:
                if op.edge_key not in self.arch_tables:
                    self.arch_tables[op.edge_key] = nn.Parameter(1e-3 * torch.randn(1, op.edge_count))
                op.bind_edges(self.arch_tables[op.edge_key])
        sampled_keys = sorted({op.arch_key for op in ops if op.sampling == "gumbel"})
        self.sampler = GumbelSampler(self.arch_tables, sampled_keys) if sampled_keys else None
        for op in ops:
            if op.sampling == "gumbel":
                op.bind_sampler(self.sampler)

    def forward(self, x: torch.Tensor):
        if self.sampler is not None:
            self.sampler.draw()
        return super().forward(x)

    def set_tau(self, tau: float) -> None:
        """The Gumbel-softmax temperature (GDAS anneals it from tau_max to tau_min over the epochs)."""
        if self.sampler is None:
            raise RuntimeError("set_tau on a supernet without Gumbel-sampled edges")
        self.sampler.tau = tau

    def mixed_ops(self) -> list[MixedOp]:
        return [m for m in self.modules() if isinstance(m, MixedOp)]

    def op_arch_params(self) -> list[nn.Parameter]:
        """The alpha tables (what beta-decay regularizes), without PC-DARTS' edge betas."""
        keys = {op.arch_key for op in self.mixed_ops()}
        return [t for k, t in self.arch_tables.items() if k in keys]

    def column_names(self) -> dict[str, list[str]]:
        names: dict[str, list[str]] = {}
        for op in self.mixed_ops():
            names.setdefault(op.arch_key, list(op.candidates))
            if op.edge_key is not None:
                names.setdefault(op.edge_key, [f"in{j}" for j in range(op.edge_count)])
        return names

    def derive_arch(self) -> Any:
        raise NotImplementedError

    def log_view(self) -> dict[str, Any]:
        """{label: value} of the current architecture, for the per-epoch log line and log.yaml record."""
        return {self.arch_label: self.derive_arch()}
