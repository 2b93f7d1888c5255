"""The expected-cost term of hardware-aware one-shot search (FBNet, ProxylessNAS, TuNAS), for every supernet built
from MixedOp edges and every DARTS-family strategy (darts, pcdarts, betadarts, gdas).

Cost of candidate j on edge e, c_ej: what op j costs at the edge's shape (c_in, c_out, stride, h, w), from one
of three pluggable sources (`nas.search.trainer.cost.source`):
- `params`: the op's weights, in millions, counted on a fresh op built from the edge's OpDesc;
- `macs`: the op's multiply-accumulates of conv and linear layers for one image, in millions (model/stats.py's
  count, on the same fresh op);
- `latency`: milliseconds from a latency lookup table (`archsearch.model.latency.LatencyTable.load(table)`,
  `op_ms(name, (c_in, c_out, stride, h, w))`; `archsearch profile --space NAME` makes one), loaded only for this
  source.
The candidate is always costed at the edge's full width, as the derived network will run it (PC-DARTS' edges
run their candidates at C/K channels; the architecture they pick does not); `none` costs 0. The shapes are read
once, by a forward pass of one zero image through the supernet with pre-hooks on every MixedOp (eval mode,
the RNG, BatchNorm statistics and a Gumbel draw left as they were; fused cells run their reference path for it).

Expected cost: E[cost] = fixed + sum_e w_e sum_j p_ej c_ej, where
- p_e = softmax(alpha_e) (DARTS, PC-DARTS, beta-DARTS), or GDAS' sampled hard one-hot with its
  straight-through gradient (the value is the sampled architecture's cost, the gradient that of
  softmax((log_softmax(alpha) + g) / tau));
- w_e = 1, or with PC-DARTS' edge normalization n_in * softmax(beta_node)_e, the edge's beta weight rescaled so
  that uniform betas give 1 (the betas then steer the cost as they weight the edges in the forward, and E keeps
  the scale of the plain sum);
- fixed: the network outside the MixedOps (stem, preprocessing, classifier) for params and macs, 0 for latency
  (the lookup table prices candidate ops only). It does not change the gradient.
Every cell counts: the cells of a type share their alphas, so an alpha row's costs are summed over the cells.

The term joins the architecture objective as one of the published forms (`form`), with L the validation loss:
- `additive` (ProxylessNAS, Cai et al. ICLR 2019, eq. "L_CE + lambda_2 E[LAT]"): L + weight * E; with a target,
  the code's add#linear, L + weight * (E - target) / target.
- `fbnet` (FBNet, Wu et al. CVPR 2019, eq. 2 "CE * alpha * log(LAT)^beta"): L * weight * log(E)^exponent; with
  a target, ProxylessNAS' mul#log, L * weight * (log(E) / log(target))^exponent. Needs E > 1 and target > 1 in
  the source's unit (the log must be positive).
- `tunas_abs` (TuNAS, Bender et al. CVPR 2020, the absolute-value reward Q + beta |T / T0 - 1|, beta < 0): as a
  loss, L + weight * |E / target - 1|.
Deviation, on purpose: FBNet samples with Gumbel-softmax and TuNAS scores the sampled architecture in a REINFORCE
reward; here the term is the expectation under softmax(alpha) (or GDAS' sample) in a gradient step.

After each epoch the trainer logs E[cost] (under softmax(alpha), with the betas) and the cost of the architecture
`derive_arch()` gives: the strategy hands the trainer its space's `build`, the derived network is built at
search size and its cell edges are costed the same way (plus the same fixed part).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from archsearch.common.errors import ConfigError, UserError
from archsearch.config.schema import Float, Str, register_check, register_section
from archsearch.model.mixed_op import NONE, MixedOp
from archsearch.model.model_desc import OpDesc
from archsearch.model.network import Cell
from archsearch.model.ops import build_op
from archsearch.model.stats import count_macs
from archsearch.strategies.darts.fused import FusedDartsCell

SOURCES = ("params", "macs", "latency")
FORMS = ("additive", "fbnet", "tunas_abs")
UNITS = {"params": "M params", "macs": "M MACs", "latency": "ms"}
SECTION = "nas.search.trainer.cost"


# ---- the cost of one op ------------------------------------------------------------------------------
class OpCoster:
    """c(op, shape) for one source, cached per (op, shape)."""

    def __init__(self, source: str, table: str | None = None) -> None:
        if source not in SOURCES:
            raise ValueError(f"cost source must be one of {SOURCES}, got {source!r}")
        self.source, self.unit = source, UNITS[source]
        self.cache: dict[tuple, float] = {}
        self.table = load_latency_table(table) if source == "latency" else None

    def __call__(self, desc: OpDesc, h: int, w: int) -> float:
        if desc.name == NONE:
            return 0.0
        key = (desc.name, desc.ch_in, desc.ch_out, desc.stride, desc.affine, tuple(sorted(desc.params.items())), h, w)
        if key not in self.cache:
            self.cache[key] = self.measure(desc, h, w)
        return self.cache[key]

    def measure(self, desc: OpDesc, h: int, w: int) -> float:
        if self.table is not None:
            return float(self.table.op_ms(desc.name, (desc.ch_in, desc.ch_out, desc.stride, h, w)))
        with torch.random.fork_rng(devices=[]):  # building initializes weights: the search's RNG stays put
            op = build_op(desc)
        if self.source == "params":
            return sum(p.numel() for p in op.parameters()) / 1e6
        return count_macs(op, (desc.ch_in, h, w)) / 1e6


def load_latency_table(path: str | None) -> Any:
    """The latency lookup table, imported only here (the latency source); a one-line UserError when there is none."""
    make = "`archsearch profile --space NAME` makes one"
    if path is None:
        raise ConfigError(f"config {SECTION}.source latency needs a latency table: set {SECTION}.table ({make})")
    try:
        from archsearch.model.latency import LatencyTable
    except ImportError as e:
        raise UserError(f"{SECTION}.source latency: this build has no latency model ({e})") from None
    try:
        return LatencyTable.load(path)
    except FileNotFoundError:
        raise UserError(f"latency table {path} not found ({make}; {SECTION}.table names it)") from None


# ---- reading a supernet's edges -----------------------------------------------------------------------
@contextlib.contextmanager
def quiet_forward(model: nn.Module) -> Iterator[None]:
    """A forward pass that leaves no trace: eval mode, RNG forked, buffers and a Gumbel draw restored, fused cells
    on their reference path (which calls every MixedOp), no autocast, no gradients."""
    buffers = [b.detach().clone() for b in model.buffers()]
    was_training = model.training
    sampler = getattr(model, "sampler", None)
    drawn = dict(sampler.drawn) if sampler is not None else None
    fused = [(m, type(m)) for m in model.modules() if isinstance(m, FusedDartsCell)]
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    devices = [device] if device.type == "cuda" else []
    try:
        for cell, _ in fused:
            cell.__class__ = Cell
        with torch.random.fork_rng(devices=devices), torch.no_grad(), torch.autocast(device.type, enabled=False):
            model.eval()
            yield
    finally:
        for cell, cls in fused:
            cell.__class__ = cls
        model.train(was_training)
        with torch.no_grad():
            for b, saved in zip(model.buffers(), buffers):
                b.copy_(saved)
        if sampler is not None:
            sampler.drawn = drawn


def input_shapes(model: nn.Module, modules: list[nn.Module], image_shape: tuple[int, ...]) -> dict[int, tuple]:
    """{id(module): its input's (C, H, W)} for one zero image of `image_shape` through `model`, and the MACs of the
    conv and linear layers outside `modules` under key -1 (the fixed part, by count_macs' rule)."""
    shapes: dict[int, tuple] = {}
    inside = {id(m) for module in modules for m in module.modules()}
    fixed_macs = 0

    def record(module: nn.Module, args: tuple) -> None:
        shapes[id(module)] = tuple(args[0].shape[1:])

    def conv_macs(m: nn.Conv2d, _inp, out) -> None:
        nonlocal fixed_macs
        fixed_macs += out.numel() // out.shape[0] * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]

    def linear_macs(m: nn.Linear, _inp, _out) -> None:
        nonlocal fixed_macs
        fixed_macs += m.in_features * m.out_features

    hooks = [m.register_forward_pre_hook(record) for m in modules]
    for m in model.modules():
        if id(m) not in inside and isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(conv_macs))
        elif id(m) not in inside and isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(linear_macs))
    first = next(model.parameters(), None)
    device, dtype = (first.device, first.dtype) if first is not None else (torch.device("cpu"), torch.float32)
    try:
        with quiet_forward(model):
            model(torch.zeros(1, *image_shape, device=device, dtype=dtype))
    finally:
        for h in hooks:
            h.remove()
    shapes[-1] = (fixed_macs,)
    return shapes


def fixed_cost(model: nn.Module, modules: list[nn.Module], source: str, macs: int) -> float:
    """The cost of everything outside `modules` (and outside the architecture tables): 0 for latency."""
    if source == "latency":
        return 0.0
    if source == "macs":
        return macs / 1e6
    inside = {id(p) for module in modules for p in module.parameters()}
    arch = {id(p) for p in getattr(model, "arch_params", list)()}
    return sum(p.numel() for p in model.parameters() if id(p) not in inside and id(p) not in arch) / 1e6


def candidate_desc(op: MixedOp, name: str) -> OpDesc:
    """A candidate as the derived network builds it: the edge's full width (MixedOp.finalize's desc)."""
    return OpDesc.of(name, op.desc.ch_in, op.desc.ch_out, op.desc.stride, op.desc.affine)


@dataclass
class TableCosts:
    """One alpha table's costs: rows x candidates, summed over the cells that share the table."""

    costs: torch.Tensor
    sampled: bool  # GDAS: the sampler's hard one-hot instead of the softmax
    edge_keys: list[tuple[str, int, int] | None]  # per row: PC-DARTS' (beta table, index, count), or None


class SupernetCosts:
    """The per-edge cost tables of a MixedOp supernet and its differentiable expected cost."""

    def __init__(self, model: nn.Module, coster: OpCoster, image_shape: tuple[int, ...]) -> None:
        ops = [m for m in model.modules() if isinstance(m, MixedOp)]
        if not ops:
            raise ConfigError(
                f"config {SECTION}.source: the cost term needs a supernet built from MixedOp edges "
                "(spaces darts and nasbench201); this space has none: set it to null"
            )
        shapes = input_shapes(model, ops, image_shape)
        self.fixed = fixed_cost(model, ops, coster.source, shapes[-1][0])
        tables: dict[str, TableCosts] = {}
        for op in ops:
            entry = tables.get(op.arch_key)
            if entry is None:
                rows = model.arch_tables[op.arch_key].shape[0]
                entry = tables[op.arch_key] = TableCosts(
                    torch.zeros(rows, op.arch_width, dtype=torch.float64), op.sampling == "gumbel", [None] * rows
                )
            _, h, w = shapes[id(op)]
            for column, name in enumerate(op.candidates):
                entry.costs[op.arch_row, column] += coster(candidate_desc(op, name), h, w)
            if op.edge_key is not None:
                entry.edge_keys[op.arch_row] = (op.edge_key, op.edge_index, op.edge_count)
        self.tables = tables
        self.model = model

    def edge_weights(self, table: TableCosts, device: torch.device, dtype: torch.dtype) -> torch.Tensor | None:
        """Per row, n_in * softmax(beta_node)[edge]: 1 for uniform betas; None without edge normalization."""
        if all(k is None for k in table.edge_keys):
            return None
        weights = []
        for key in table.edge_keys:
            if key is None:
                weights.append(torch.ones((), device=device, dtype=dtype))
            else:
                edge_key, index, count = key
                beta = self.model.arch_tables[edge_key][0].to(dtype)
                weights.append(count * F.softmax(beta, dim=-1)[index])
        return torch.stack(weights)

    def expected(self, sampled: bool = True) -> torch.Tensor:
        """E[cost] as a differentiable scalar of the architecture parameters (float32, or float64 in a float64
        model); `sampled=False` takes the
        softmax expectation even on GDAS' sampled tables (what the per-epoch log shows)."""
        total = None
        for key, table in self.tables.items():
            alpha = self.model.arch_tables[key]
            dtype = torch.promote_types(alpha.dtype, torch.float32)  # float32 under AMP, float64 in a float64 model
            costs = table.costs.to(device=alpha.device, dtype=dtype)
            if sampled and table.sampled:
                weights = self.model.sampler.draw_for(key)[0].to(dtype)  # the draw of the last forward
            else:
                weights = F.softmax(alpha.to(dtype), dim=-1)
            per_row = (weights * costs).sum(dim=-1)
            edge = self.edge_weights(table, alpha.device, dtype)
            if edge is not None:
                per_row = per_row * edge
            total = per_row.sum() if total is None else total + per_row.sum()
        return total + self.fixed


def derived_cost(network: nn.Module, coster: OpCoster, image_shape: tuple[int, ...], fixed: float) -> float | None:
    """The cost of a built (derived) network's cell edges at their shapes plus `fixed`; None for a network that is
    not made of cells."""
    cells = [m for m in network.modules() if isinstance(m, Cell)]
    edges = [(op, edge.op) for cell in cells for ops, node in zip(cell.nodes, cell.desc.nodes)
             for op, edge in zip(ops, node.edges)]  # fmt: skip
    if not edges:
        return None
    shapes = input_shapes(network, [op for op, _ in edges], image_shape)
    total = fixed
    for op, desc in edges:
        if id(op) in shapes:  # an edge that never ran (a loose end) costs nothing
            _, h, w = shapes[id(op)]
            total += coster(desc, h, w)
    return total


# ---- the term --------------------------------------------------------------------------------------
class CostTerm:
    """The configured term: off (source null) by default; with a source it logs costs, and with weight > 0 it also
    enters the architecture objective."""

    def __init__(self, conf: Mapping[str, Any] | None) -> None:
        conf = dict(conf or {})
        self.source: str | None = conf.get("source")
        self.weight: float = float(conf.get("weight") or 0.0)
        self.target: float | None = conf.get("target")
        self.form: str = conf.get("form") or "additive"
        self.exponent: float = float(conf.get("exponent") or 0.6)
        self.table_path: str | None = conf.get("table")
        self.coster: OpCoster | None = None
        self.costs: SupernetCosts | None = None
        self.image_shape: tuple[int, ...] | None = None
        problem = check_cost(conf)
        if problem is not None:
            raise ConfigError(f"config {SECTION}.{problem[0]}: {problem[1]}")

    @property
    def enabled(self) -> bool:
        """Costs are computed and logged."""
        return self.source is not None

    @property
    def active(self) -> bool:
        """The term enters the architecture objective."""
        return self.enabled and self.weight > 0

    @property
    def unit(self) -> str:
        return UNITS[self.source] if self.source else ""

    def open(self) -> None:
        """Load what the source needs (the latency table) before any training."""
        if self.enabled and self.coster is None:
            self.coster = OpCoster(self.source, self.table_path)

    def prepare(self, model: nn.Module, x: torch.Tensor) -> None:
        """Read the supernet's edges once, at the shape of the first batch's images."""
        if not self.enabled or self.costs is not None:
            return
        self.open()
        self.image_shape = tuple(x.shape[1:])
        self.costs = SupernetCosts(model, self.coster, self.image_shape)
        if self.form == "fbnet" and self.active:
            low = self.minimum()
            if low <= 1.0:
                raise ConfigError(
                    f"config {SECTION}.form fbnet takes log(E[cost]), but E[cost] can fall to {low:.4g} {self.unit} "
                    "(<= 1, where the log is not positive): use source macs or latency, or form additive or tunas_abs"
                )

    def minimum(self) -> float:
        """The lowest E[cost] any architecture can reach (the cheapest candidate on every edge, betas aside)."""
        return self.costs.fixed + sum(t.costs.min(dim=-1).values.sum().item() for t in self.costs.tables.values())

    def expected(self, sampled: bool = True) -> torch.Tensor:
        return self.costs.expected(sampled)

    def objective(self, loss: torch.Tensor) -> torch.Tensor:
        """The architecture objective of the validation loss `loss`, read after the forward that computed it (so
        GDAS' cost is that of the architecture the loss sampled)."""
        return apply_form(self.form, loss, self.expected(), self.weight, self.target, self.exponent)

    def derived(self, network_of: Callable[[], nn.Module] | None) -> float | None:
        """The derived architecture's cost; None without a builder or for a network not made of cells."""
        if network_of is None or self.costs is None:
            return None
        with torch.random.fork_rng(devices=[]):
            network = network_of()
        return derived_cost(network, self.coster, self.image_shape, self.costs.fixed)


def apply_form(
    form: str, loss: torch.Tensor, cost: torch.Tensor, weight: float, target: float | None, exponent: float
) -> torch.Tensor:
    """The published ways a cost joins a loss (see the module docstring for the sources)."""
    if form == "additive":
        return loss + weight * (cost if target is None else (cost - target) / target)
    if form == "fbnet":
        ratio = torch.log(cost) if target is None else torch.log(cost) / math.log(target)
        return loss * weight * ratio**exponent
    if form == "tunas_abs":
        return loss + weight * torch.abs(cost / target - 1.0)
    raise ValueError(f"cost form must be one of {FORMS}, got {form!r}")


def check_cost(conf: Mapping[str, Any]) -> tuple[str, str] | None:
    """The rules spanning the section's keys, as (key, one-line message)."""
    source, weight, target, form = conf.get("source"), conf.get("weight") or 0.0, conf.get("target"), conf.get("form")
    if weight > 0 and source is None:
        return "weight", f"{weight:g} needs a cost to weigh: set source to params, macs or latency"
    if weight > 0 and form == "tunas_abs" and target is None:
        return "target", "null: form tunas_abs is |E[cost] / target - 1|, set a target (in the source's unit)"
    if weight > 0 and form == "fbnet" and target is not None and target <= 1.0:
        return "target", f"{target:g} must be above 1 for form fbnet (log(E[cost]) / log(target))"
    return None


register_section(
    SECTION,
    {
        "source": Str(*SOURCES, null=True),
        "weight": Float(ge=0),
        "target": Float(null=True, gt=0),
        "form": Str(*FORMS),
        "exponent": Float(gt=0),
        "table": Str(null=True, pattern=r".+", allowed="a latency table file"),
    },
)
register_check(SECTION, check_cost)
