"""The collapse monitor of differentiable searches, and RobustDARTS' eigenvalue early stop (DARTS-ES).

DARTS collapses: run long enough (or on NAS-Bench-201) its architecture weights drift to skip connections
and other parameter-free ops. After every search epoch the monitor records, for whatever supernet the
bilevel trainer trains (DARTS cells, NAS-Bench-201, a user model; DARTS' relatives that train through the
same trainer too):

- `param_free` / `n_ops`: how many ops of the architecture the supernet derives now (`derive_arch()`, the
  same value the per-epoch architecture log shows) are parameter-free, and how many ops it has. An op is
  one candidate name (a column of `column_names()`) in the derived architecture's JSON; it is
  parameter-free when it is `none`, `skip_connect`, `identity`, `zero` or a pooling op (its name contains
  `pool`). So a DARTS genotype counts its 16 ops, an NB201 cell its 6 edges, a user model its LayerChoices,
  without the monitor asking which space it watches.
- `entropy`: the softmax entropy (nats) of every row (edge) of every architecture table, averaged; it falls
  from log(n_candidates) as the search commits.
- `hessian_eigenvalue` (`hessian: true`): the dominant (largest) eigenvalue of the Hessian of the validation loss with
  respect to the architecture parameters, by power iteration on Hessian-vector products (double backward),
  on the first `hessian_batches` batches of the epoch's arch split with the supernet in training mode, as
  the architecture step sees it (Zela et al., "Understanding and Robustifying Differentiable Architecture
  Search", ICLR 2020; automl/RobustDARTS computes the full Hessian of one validation batch and takes its
  largest eigenvalue; power iteration gives the same number without the n x n matrix). It measures without
  disturbing the search: RNG state, BatchNorm statistics and gradients are left as they were.

With the expected-cost term's source set (nas.search.trainer.cost, cost.py), the line also shows E[cost] and the
cost of the architecture derived now (the trainer's `cost_line`; the numbers are the `cost` record).

The settings are `nas.search.trainer.collapse` (declared at the end of this module, defaults in confs/common.yaml:
everything off but the counts, which cost nothing). Each epoch is one `collapse` event in log.yaml ({epoch,
param_free, n_ops, entropy, hessian_eigenvalue when computed}), one log line and TensorBoard scalars
`collapse/*`.

Early stop (`early_stop: true`, needs `hessian`) is RobustDARTS' DARTS-ES as its code implements it
(utils.EVLocalAvg with train_search.py's defaults): the eigenvalue is smoothed by a centred moving average
over `window` (5) epochs; at epoch e the average centred on j = e - window // 2 is compared with the one
`delta` (4) epochs earlier, and when it has grown by more than `factor` (1.3; the paper's "ratio below
0.75" is its inverse, rounded) and j - delta is past `start_epoch` (10, counted from 0 as there), the search
stops and returns the architecture of epoch j - delta: the supernet's architecture parameters are set
back to their values at the end of that epoch, so `derive_arch()` (and every strategy's final file) gives
it. The epochs are recorded in the search metrics (search/result.yaml) as `early_stop_epoch` and
`early_stop_arch_epoch` (counted from 1, as the logs count).

Deviation: RobustDARTS adds the architecture weight decay to the Hessian's diagonal (1e-3 in DARTS), which
shifts every eigenvalue by exactly that constant; the monitor reports the validation loss' own Hessian.
Like RobustDARTS it reports the largest (algebraic) eigenvalue; power iteration converges to it at the rate
of the ratio of the two largest magnitudes, so `hessian_iters` bounds the accuracy when they are close.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from archsearch.config.schema import COUNT, POSITIVE_INT, Bool, Float, register_check, register_section

PARAM_FREE_NAMES = frozenset({"none", "skip_connect", "identity", "zero"})
_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def is_param_free(op_name: str) -> bool:
    """skip, identity, none/zero and pooling ops: the ops a collapsed DARTS cell is made of."""
    return op_name in PARAM_FREE_NAMES or "pool" in op_name


def arch_op_names(arch: Any, candidates: set[str]) -> list[str]:
    """The candidate op names an architecture's JSON value holds, in order (mapping keys are names of
    choices, not ops, and are skipped)."""
    if isinstance(arch, str):
        return [t for t in _TOKEN.findall(arch) if t in candidates]
    if isinstance(arch, Mapping):
        return [name for value in arch.values() for name in arch_op_names(value, candidates)]
    if isinstance(arch, (list, tuple)):
        return [name for value in arch for name in arch_op_names(value, candidates)]
    return []


def op_weight_tables(model: Any) -> dict[str, torch.Tensor]:
    """The op-choice tables of a supernet: its arch tables less PC-DARTS' edge-normalization betas, whose rows
    weigh a node's input edges, not an edge's ops, and would skew the entropy of the op choices."""
    tables = dict(model.arch_tables)
    if hasattr(model, "op_arch_params"):
        ops = {id(p) for p in model.op_arch_params()}
        tables = {k: t for k, t in tables.items() if id(t) in ops}
    return tables


def mean_entropy(tables: Mapping[str, torch.Tensor]) -> float:
    """Mean over every row (edge) of every table of the softmax's entropy, in nats."""
    entropies = []
    for table in tables.values():
        logp = torch.log_softmax(table.detach().double(), dim=-1)
        entropies.append(-(logp.exp() * logp).sum(dim=-1).flatten())
    return torch.cat(entropies).mean().item() if entropies else 0.0


def dominant_eigenvalue(
    loss_fn: Callable[[], torch.Tensor],
    params: Sequence[torch.Tensor],
    iters: int = 50,
    tol: float = 1e-3,
    seed: int = 0,
) -> float:
    """The largest eigenvalue of d^2 loss / d params^2 (RobustDARTS' max(eigvals(H))), by power iteration on
    Hessian-vector products: the gradient is built once with create_graph, each product is one more backward
    through it. Power iteration finds the eigenvalue of largest magnitude, lambda_m; when that one is
    negative, a second run on H - lambda_m I (whose eigenvalues are >= 0, its largest lambda_max - lambda_m)
    finds lambda_max. Each run stops when the Rayleigh quotient changes by less than `tol` (relative) or
    after `iters` products."""
    params = list(params)
    grads = torch.autograd.grad(loss_fn(), params, create_graph=True, allow_unused=True)
    pairs = [(p, g) for p, g in zip(params, grads) if g is not None]
    if not pairs or not any(g.requires_grad for _, g in pairs):
        return 0.0  # the loss is linear in (or independent of) the parameters
    params, grads = [p for p, _ in pairs], [g for _, g in pairs]

    def hvp(v: list[torch.Tensor]) -> list[torch.Tensor]:
        hv = torch.autograd.grad(grads, params, grad_outputs=v, retain_graph=True, allow_unused=True)
        return [torch.zeros_like(p) if h is None else h.detach() for p, h in zip(params, hv)]

    generator = torch.Generator().manual_seed(seed)
    start = _normalized([torch.randn(p.shape, generator=generator, dtype=torch.float64).to(p) for p in params])
    largest_magnitude = _power_iteration(hvp, start, iters, tol)
    if largest_magnitude >= 0:
        return largest_magnitude
    shift = largest_magnitude
    shifted = _power_iteration(lambda v: [h - shift * x for h, x in zip(hvp(v), v)], start, iters, tol)
    return shifted + shift


def _power_iteration(
    matvec: Callable[[list[torch.Tensor]], list[torch.Tensor]], v: list[torch.Tensor], iters: int, tol: float
) -> float:
    """The eigenvalue of largest magnitude of the symmetric operator `matvec`, from the unit vector `v`."""
    eigenvalue = 0.0
    for step in range(iters):
        mv = matvec(v)
        rayleigh = sum((m * x).sum() for m, x in zip(mv, v)).item()  # v has norm 1
        converged = step > 0 and abs(rayleigh - eigenvalue) <= tol * max(abs(rayleigh), 1e-12)
        eigenvalue = rayleigh
        norm = math.sqrt(sum((m * m).sum().item() for m in mv))
        if converged or norm == 0.0:
            break
        v = [m / norm for m in mv]
    return eigenvalue


def _normalized(vectors: list[torch.Tensor]) -> list[torch.Tensor]:
    norm = math.sqrt(sum((x * x).sum().item() for x in vectors))
    return [x / norm for x in vectors]


class EigenvalueEarlyStop:
    """DARTS-ES' rule on a sequence of per-epoch eigenvalues (epochs counted from 0)."""

    def __init__(self, window: int = 5, delta: int = 4, factor: float = 1.3, start_epoch: int = 10) -> None:
        self.window, self.delta, self.factor, self.start_epoch = window, delta, factor, start_epoch

    def smoothed(self, eigenvalues: Sequence[float], j: int) -> float:
        """The moving average centred on epoch j (cut at epoch 0, as EVLocalAvg's first averages are)."""
        half = self.window // 2
        values = eigenvalues[max(0, j - half) : j + half + 1]
        return sum(values) / len(values)

    def check(self, eigenvalues: Sequence[float]) -> tuple[int, float] | None:
        """After the epoch of eigenvalues[-1]: (the epoch whose architecture to return, the growth ratio)
        when the rule says stop, else None."""
        j = len(eigenvalues) - 1 - self.window // 2  # the newest epoch with a full centred window
        back = j - self.delta
        if back < self.start_epoch or back < 0:
            return None
        before = self.smoothed(eigenvalues, back)
        ratio = self.smoothed(eigenvalues, j) / before if before > 0 else math.inf
        return (back, ratio) if ratio > self.factor else None


class CollapseMonitor:
    """Per-epoch collapse figures of a differentiable supernet, and the optional eigenvalue early stop.

    A trainer calls `after_epoch(trainer, epoch, metrics)` at the end of its post_epoch and checkpoints
    `state_dict()` with its extra state, so a resumed search computes and stops exactly as an
    uninterrupted one."""

    def __init__(self, conf: Mapping[str, Any]) -> None:
        self.hessian: bool = conf["hessian"]
        self.iters: int = conf["hessian_iters"]
        self.tol: float = conf["hessian_tol"]
        self.batches: int = conf["hessian_batches"]
        self.early_stop = (
            EigenvalueEarlyStop(conf["window"], conf["delta"], conf["factor"], conf["start_epoch"])
            if conf["early_stop"]
            else None
        )
        self.eigenvalues: list[float] = []
        # architecture parameters at the end of the last epochs, for the one early stop may go back to
        self.snapshots: dict[int, list[torch.Tensor]] = {}

    # ---- the figures -----------------------------------------------------------------------------
    @staticmethod
    def op_counts(supernet: nn.Module) -> tuple[int, int]:
        """(parameter-free ops, ops) of the architecture the supernet derives now."""
        candidates = {name for names in supernet.column_names().values() for name in names}
        names = arch_op_names(supernet.derive_arch(), candidates)
        return sum(map(is_param_free, names)), len(names)

    def eigenvalue(self, trainer: Any, epoch: int) -> float:
        """The dominant validation-loss Hessian eigenvalue w.r.t. the architecture, on the first batches of
        this epoch's arch split, leaving the search's RNG, BatchNorm statistics and gradients untouched."""
        model, device = trainer.model, trainer.device
        batches = []
        for x, y in trainer.arch_loader:
            batches.append((x, y))
            if len(batches) == self.batches:
                break
        buffers = [b.detach().clone() for b in model.buffers()]
        was_training = model.training
        devices = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.autocast(device.type, enabled=False):
            torch.manual_seed(epoch)  # a stochastic supernet (GDAS' sampling) draws the same for every product
            model.train()

            def loss() -> torch.Tensor:
                losses = [trainer.loss_of(model(trainer.prepare(x)), y)[0] for x, y in batches]
                return torch.stack(losses).mean()

            try:
                return dominant_eigenvalue(loss, model.arch_params(), self.iters, self.tol, seed=epoch)
            finally:
                model.train(was_training)
                with torch.no_grad():
                    for b, saved in zip(model.buffers(), buffers):
                        b.copy_(saved)

    # ---- the hook ----------------------------------------------------------------------------------
    def after_epoch(self, trainer: Any, epoch: int, metrics: dict[str, Any]) -> None:
        model, log = trainer.model, trainer.log
        param_free, n_ops = self.op_counts(model)
        entropy = mean_entropy(op_weight_tables(model))
        event: dict[str, Any] = {"epoch": epoch + 1, "param_free": param_free, "n_ops": n_ops, "entropy": entropy}
        line = f"[search] epoch {epoch + 1} collapse: {param_free}/{n_ops} parameter-free ops, entropy {entropy:.4f}"
        if self.hessian:
            value = self.eigenvalue(trainer, epoch)
            self.eigenvalues.append(value)
            event["hessian_eigenvalue"] = value
            line += f", hessian eigenvalue {value:.4g}"
        if getattr(trainer, "cost_line", ""):  # the expected-cost term's figures (cost.py), when a source is set
            line += f", {trainer.cost_line}"
        log.info(line)
        log.record("collapse", **event)
        log.scalars("collapse", {k: v for k, v in event.items() if k != "epoch"}, epoch + 1)
        if self.early_stop is not None:
            self.consider_stopping(trainer, epoch, metrics)

    def consider_stopping(self, trainer: Any, epoch: int, metrics: dict[str, Any]) -> None:
        params = trainer.model.arch_params()
        self.snapshots[epoch] = [p.detach().clone() for p in params]
        keep = self.early_stop.window // 2 + self.early_stop.delta  # how far back the rule can reach
        self.snapshots = {e: s for e, s in self.snapshots.items() if e >= epoch - keep}
        if epoch + 1 >= trainer.epochs:
            return  # the last epoch: the search ends anyway, with its own architecture (as RobustDARTS does)
        found = self.early_stop.check(self.eigenvalues)
        if found is None:
            return
        back, ratio = found
        with torch.no_grad():
            for p, saved in zip(params, self.snapshots[back]):
                p.copy_(saved)
        trainer.stop_requested = True
        metrics["early_stop_epoch"] = epoch + 1
        metrics["early_stop_arch_epoch"] = back + 1
        trainer.log.info(
            f"[search] early stop after epoch {epoch + 1}: the averaged hessian eigenvalue grew {ratio:.3g}x "
            f"(> {self.early_stop.factor}) over {self.early_stop.delta} epochs; the search returns the "
            f"architecture of epoch {back + 1}: {trainer.model.derive_arch()}"
        )
        trainer.log.record("early_stop", epoch=epoch + 1, arch_epoch=back + 1, ratio=ratio)

    # ---- checkpointing -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"eigenvalues": list(self.eigenvalues), "snapshots": dict(self.snapshots)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.eigenvalues = [float(v) for v in state["eigenvalues"]]
        self.snapshots = {int(e): list(s) for e, s in state["snapshots"].items()}


# ---- the collapse monitor's keys (defaults in confs/common.yaml, shared by every differentiable search) ----
register_section(
    "nas.search.trainer.collapse",
    {
        "hessian": Bool(),
        "hessian_iters": POSITIVE_INT,
        "hessian_tol": Float(ge=0),
        "hessian_batches": POSITIVE_INT,
        "early_stop": Bool(),
        "window": POSITIVE_INT,
        "delta": POSITIVE_INT,
        "factor": Float(gt=0),
        "start_epoch": COUNT,
    },
)
register_check(
    "nas.search.trainer.collapse",
    lambda conf: ("early_stop", "true needs the eigenvalue it stops on: also set hessian true")
    if conf.get("early_stop") and not conf.get("hessian")
    else None,
)
