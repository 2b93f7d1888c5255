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
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from archsearch.common import distributed
from archsearch.config.schema import OPTIMIZER, Bool, Float, Int, Str, register_section
from archsearch.strategies.darts.bilevel import BilevelOptimizer
from archsearch.strategies.darts.collapse import CollapseMonitor
from archsearch.train.arch_trainer import ArchTrainer

register_section("nas.search.trainer.bilevel", {"arch_start_epoch": Int(ge=0)})
register_section("nas.search.trainer.bilevel.beta_decay", {"weight": Float(ge=0), "ramp_epochs": Int(ge=1)})


def beta_decay_loss(tables: list[torch.Tensor]) -> torch.Tensor:
    """beta-DARTS' beta-decay loss: the mean over every edge (table row) of logsumexp of its alphas."""
    return torch.cat([torch.logsumexp(t.float(), dim=-1).flatten() for t in tables]).mean()


class BilevelArchTrainer(ArchTrainer):
    arch_step_after_weights: ClassVar[bool] = False

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
        self.arch_loss_sum += self.bilevel.step(self.loss_fn, x, y, x_val, y_val, lr, self.arch_penalty())
        self.arch_steps += 1

    def pre_step(self, step: int, x: torch.Tensor, y: torch.Tensor) -> None:
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
        self.collapse.after_epoch(self, epoch, metrics)  # parameter-free ops, entropy, eigenvalue; may stop early

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
