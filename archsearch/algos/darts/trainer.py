"""BilevelArchTrainer: the shared training loop with DARTS' architecture step in the pre_step hook.

Before every weight step on a batch of the weights split, the architecture takes one step on the next
batch of the arch split (as train_search.py does); the weight step then runs unchanged in the base loop.
"""

from __future__ import annotations

from typing import Any

import torch

from archsearch.algos.darts.bilevel import BilevelOptimizer
from archsearch.algos.darts.collapse import CollapseMonitor
from archsearch.nas.arch_trainer import ArchTrainer


class BilevelArchTrainer(ArchTrainer):
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
        self.arch_loss_sum = torch.zeros((), device=self.device)
        self.arch_steps = 0
        self.collapse = CollapseMonitor(self.conf["collapse"])

    def loss_fn(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # second order stays in float32: its finite-difference step is below bfloat16's resolution
        with self.autocast() if self.bilevel.order == "first" else torch.autocast(self.device.type, enabled=False):
            return self.loss_of(self.model(self.prepare(x)), y)[0]

    def pre_step(self, step: int, x: torch.Tensor, y: torch.Tensor) -> None:
        x_val, y_val = self.next_arch_batch()
        lr = self.optimizer.param_groups[0]["lr"]
        self.arch_loss_sum += self.bilevel.step(self.loss_fn, x, y, x_val, y_val, lr)
        self.arch_steps += 1

    def post_epoch(self, epoch: int, metrics: dict[str, Any]) -> None:
        metrics["arch_loss"] = (self.arch_loss_sum / max(self.arch_steps, 1)).item()
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
