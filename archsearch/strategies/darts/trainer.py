"""BilevelArchTrainer: the shared training loop with DARTS' architecture step in a step hook.

Before every weight step on a batch of the weights split, the architecture takes one step on the next
batch of the arch split (as train_search.py does); the weight step then runs unchanged in the base loop.
Subclasses may take the architecture step after the weight step instead (`arch_step_after_weights`, GDAS'
order in xautodl).

Two switches of the DARTS family live here, so DARTS, PC-DARTS and GDAS share them
(nas.search.trainer.bilevel):
- `arch_start_epoch`: weights-only warm-up epochs before the first architecture step (PC-DARTS: 15 of 50).
- `beta_decay`: beta-DARTS' regularization (Ye et al., CVPR 2022): the architecture objective gains
  lambda(epoch) * mean over edges of logsumexp(alpha_edge), lambda(epoch) = weight * epoch / ramp_epochs
  (the code's `50 * epoch / 100`: weight 50, ramp 100); weight 0 is off. It acts on the op alphas only
  (`op_arch_params()`), not on PC-DARTS' edge betas.

And the expected-cost term of hardware-aware search (nas.search.trainer.cost, cost.py): off while `source` is
null; with a source the trainer reads the supernet's edges at the first batch's image shape, logs E[cost] and the
derived architecture's cost after every epoch (metrics `expected_cost`, `arch_cost`; a `cost` record in log.yaml;
the collapse monitor's line), and with weight > 0 the term joins the architecture objective.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch

from archsearch.common import distributed
from archsearch.config.schema import OPTIMIZER, Bool, Float, Int, Str, register_section
from archsearch.strategies.darts.bilevel import BilevelOptimizer
from archsearch.strategies.darts.collapse import CollapseMonitor
from archsearch.strategies.darts.cost import CostTerm
from archsearch.train.arch_trainer import ArchTrainer

register_section("nas.search.trainer.bilevel", {"arch_start_epoch": Int(ge=0)})
register_section("nas.search.trainer.bilevel.beta_decay", {"weight": Float(ge=0), "ramp_epochs": Int(ge=1)})


def beta_decay_loss(tables: list[torch.Tensor]) -> torch.Tensor:
    """beta-DARTS' beta-decay loss: the mean over every edge (table row) of logsumexp of its alphas."""
    return torch.cat([torch.logsumexp(t.float(), dim=-1).flatten() for t in tables]).mean()


class BilevelArchTrainer(ArchTrainer):
    arch_step_after_weights: ClassVar[bool] = False

    def __init__(self, *args: Any, arch_builder: Callable[[Any], Any] | None = None, **kwargs: Any) -> None:
        # the space's build(arch), from the strategy: the derived architecture's cost is that of the network it builds
        self.arch_builder = arch_builder
        super().__init__(*args, **kwargs)

    def configure(self) -> None:
        # built before any restore, so load_extra_state finds the architecture optimizer in place
        conf_bilevel = self.conf["bilevel"]
        self.bilevel = BilevelOptimizer(
            conf_bilevel["optimizer"],
            self.model.arch_params(),
            self.weight_params(),
            self.optimizer,
            self.model,
            order=conf_bilevel["order"],
            fd_radius=conf_bilevel["fd_radius"],
        )
        self.arch_start_epoch: int = conf_bilevel["arch_start_epoch"]
        self.beta_decay_weight: float = conf_bilevel["beta_decay"]["weight"]
        self.beta_decay_ramp: int = conf_bilevel["beta_decay"]["ramp_epochs"]
        op_params = getattr(self.model, "op_arch_params", self.model.arch_params)
        self.decayed_params: list[torch.Tensor] = op_params()
        self.arch_loss_sum = torch.zeros((), device=self.device)
        self.arch_steps = 0
        self.collapse = CollapseMonitor(self.conf["collapse"])
        # a hand-built trainer section may have no cost keys (Config's `in` raises on a missing key: list them)
        self.cost = CostTerm(self.conf["cost"] if "cost" in list(self.conf) else None)
        self.cost.open()  # a missing latency table is one line now, not after the first epoch

    def loss_fn(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # second order stays in float32: its finite-difference step is below bfloat16's resolution
        with self.autocast() if self.bilevel.order == "first" else torch.autocast(self.device.type, enabled=False):
            return self.loss_of(self.model(self.prepare(x)), y)[0]

    def beta_decay_lambda(self, epoch: int) -> float:
        return self.beta_decay_weight * epoch / self.beta_decay_ramp

    def arch_penalty(self) -> torch.Tensor | None:
        weight = self.beta_decay_lambda(self.epoch)
        return weight * beta_decay_loss(self.decayed_params) if weight > 0 else None

    def arch_step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        if self.epoch < self.arch_start_epoch:  # warm-up: the weights train alone
            return
        x_val, y_val = self.next_arch_batch()
        lr = self.optimizer.param_groups[0]["lr"]
        objective = self.cost.objective if self.cost.active else None
        self.arch_loss_sum += self.bilevel.step(self.loss_fn, x, y, x_val, y_val, lr, self.arch_penalty(), objective)
        self.arch_steps += 1

    def pre_step(self, step: int, x: torch.Tensor, y: torch.Tensor) -> None:
        if self.cost.enabled and self.cost.costs is None:
            self.cost.prepare(self.model, self.prepare(x))  # once (again after a resume): the edges' shapes
        if not self.arch_step_after_weights:
            self.arch_step(x, y)

    def post_step(self, step: int, x: torch.Tensor, y: torch.Tensor, logits: torch.Tensor, loss: torch.Tensor) -> None:
        if self.arch_step_after_weights:
            self.arch_step(x, y)

    def post_epoch(self, epoch: int, metrics: dict[str, Any]) -> None:
        if self.arch_steps:  # none during warm-up epochs
            # over all ranks' arch batches under torchrun (every rank takes the same number of arch steps)
            total = distributed.all_reduce_sum(self.arch_loss_sum.clone())
            metrics["arch_loss"] = (total / (self.arch_steps * distributed.world_size())).item()
        if self.beta_decay_weight > 0:
            metrics["beta_decay_lambda"] = self.beta_decay_lambda(epoch)
        self.arch_loss_sum.zero_()
        self.arch_steps = 0
        super().post_epoch(epoch, metrics)  # alpha softmax tables to log.yaml and TensorBoard
        self.log_architecture(epoch)
        self.log_cost(epoch, metrics)
        self.collapse.after_epoch(self, epoch, metrics)  # parameter-free ops, entropy, eigenvalue; may stop early
        if self.stop_requested and "arch_cost" in metrics:  # early stop went back to an earlier architecture
            metrics["arch_cost"] = self.derived_cost()

    def derived_cost(self) -> float | None:
        builder = self.arch_builder
        return self.cost.derived(None if builder is None else lambda: builder(self.model.derive_arch()))

    def log_cost(self, epoch: int, metrics: dict[str, Any]) -> None:
        """E[cost] under softmax(alpha) and the derived architecture's cost, into the metrics, log.yaml and
        TensorBoard; the collapse monitor's line shows them (`cost_line`)."""
        self.cost_line = ""
        if not self.cost.enabled or self.cost.costs is None:
            return
        with torch.no_grad():
            expected = self.cost.expected(sampled=False).item()
        metrics["expected_cost"] = expected
        event: dict[str, Any] = {"expected": expected}
        self.cost_line = f"expected cost {expected:.4g}"
        arch = self.derived_cost()
        if arch is not None:
            metrics["arch_cost"] = event["arch"] = arch
            self.cost_line += f", derived architecture {arch:.4g}"
        self.cost_line += f" {self.cost.unit} ({self.cost.source})"
        self.log.record("cost", epoch=epoch + 1, source=self.cost.source, unit=self.cost.unit, **event)
        self.log.scalars("cost", event, epoch + 1)

    def log_architecture(self, epoch: int) -> None:
        """The architecture the alphas pick now, in the supernet's own terms (`log_view()`: a DARTS genotype,
        an NB201 cell string, a user model's choices), so this trainer never asks which space it trains."""
        for label, arch in self.model.log_view().items():
            self.log.info(f"[search] epoch {epoch + 1} {label}: {arch}")
            self.log.record(label, epoch=epoch + 1, **{label: arch})

    def arch_column_names(self) -> dict[str, list[str]]:
        return self.model.column_names()

    def extra_state(self) -> dict[str, Any]:
        return {"bilevel": self.bilevel.state_dict(), "collapse": self.collapse.state_dict()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.bilevel.load_state_dict(state["bilevel"])
        self.collapse.load_state_dict(state["collapse"])


# ---- the DARTS keys (defaults in confs/algos/darts.yaml) ----
register_section("nas.search.model_desc", {"fused": Bool()})
register_section("nas.search.trainer.bilevel", {"order": Str("first", "second"), "fd_radius": Float(gt=0)})
register_section("nas.search.trainer.bilevel.optimizer", OPTIMIZER)
