"""REINFORCE for the ENAS controller, as melodyguan/enas `Controller.build_trainer`.

Per sampled arc: reward R = reward_fn(arc) + entropy_weight * entropy; the baseline moves first,
b <- b - (1 - decay) * (b - R) (the original updates it before computing the loss); the loss is
-log_prob * (R - b) + skip_weight * skip_penalty. One `step` averages the loss over `n_samples` arcs
(the original aggregates 10 micro / 20 macro replicas per update) and takes one Adam step (ENAS's Adam:
beta1 = 0, eps = 1e-3), clipping the gradient norm when `grad_clip` is set (the original does not clip).

Under torchrun every rank holds the same controller: rank 0's sample is broadcast (`shared_sample`), the
reward function reduces over all ranks' validation shards, and the controller's gradients are averaged
before its step, so the controller stays identical on every rank.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from archsearch.common import distributed
from archsearch.strategies.enas.controller import Controller, ControllerSample


def shared_sample(controller: Controller) -> ControllerSample:
    """A controller sample that is rank 0's on every torchrun rank. Every rank samples, so all draw the same
    numbers from the (identically seeded) global RNG and stay in step for exact resume; rank 0's arc is
    broadcast, and a rank whose own draw differs (it should not: same weights, same RNG) scores rank 0's."""
    sample = controller.sample()
    arc = distributed.broadcast_ints(sample.arc)
    return sample if arc == sample.arc else controller.sample(forced_arc=arc)


class ReinforceTrainer:
    def __init__(
        self,
        controller: Controller,
        lr: float | None = None,
        baseline_decay: float = 0.99,
        entropy_weight: float = 1e-4,
        grad_clip: float | None = None,
        skip_weight: float | None = None,
        adam_betas: tuple[float, float] = (0.0, 0.999),
        adam_eps: float = 1e-3,
    ) -> None:
        """lr and skip_weight default to the controller's config (its ENAS preset)."""
        if not 0.0 <= baseline_decay < 1.0:
            raise ValueError(f"baseline_decay must be in [0, 1), got {baseline_decay}")
        self.controller = controller
        self.lr = controller.config.lr if lr is None else lr
        self.baseline_decay = baseline_decay
        self.entropy_weight = entropy_weight
        self.grad_clip = grad_clip
        self.skip_weight = controller.config.skip_weight if skip_weight is None else skip_weight
        self.optimizer = torch.optim.Adam(controller.parameters(), lr=self.lr, betas=adam_betas, eps=adam_eps)
        self.baseline = 0.0  # the original starts at 0
        self.steps = 0
        self.last_samples: list[tuple[list[int], float]] = []  # (arc, reward) of the latest step, for logs

    def step(self, reward_fn: Callable[[list[int]], float], n_samples: int = 1) -> dict[str, float]:
        """Sample `n_samples` arcs, score them with `reward_fn` (e.g. a child's validation accuracy on one
        batch) and update the controller once. Returns the means over the samples."""
        if n_samples < 1:
            raise ValueError(f"n_samples must be >= 1, got {n_samples}")
        self.controller.train()
        self.optimizer.zero_grad(set_to_none=True)
        totals = {"reward": 0.0, "entropy": 0.0, "loss": 0.0, "skip_rate": 0.0}
        self.last_samples = []
        for _ in range(n_samples):
            sample = shared_sample(self.controller)
            reward = float(reward_fn(sample.arc))
            entropy = float(sample.entropy)
            total_reward = reward + self.entropy_weight * entropy
            self.baseline -= (1.0 - self.baseline_decay) * (self.baseline - total_reward)
            loss = -sample.log_prob * (total_reward - self.baseline) + self.skip_weight * sample.skip_penalty
            # backward per sample frees each sample's graph; the mean matches the aggregated gradient
            (loss / n_samples).backward()
            self.last_samples.append((sample.arc, reward))
            totals["reward"] += reward
            totals["entropy"] += entropy
            totals["loss"] += float(loss.detach())
            totals["skip_rate"] += sample.skip_rate
        distributed.average_gradients([p.grad for p in self.controller.parameters()])  # torchrun: stay identical
        grad_norm = self._grad_norm()
        self.optimizer.step()
        self.steps += 1
        stats = {k: v / n_samples for k, v in totals.items()}
        stats.update(baseline=self.baseline, grad_norm=grad_norm)
        return stats

    def _grad_norm(self) -> float:
        params = [p for p in self.controller.parameters() if p.grad is not None]
        if self.grad_clip is not None:
            return float(torch.nn.utils.clip_grad_norm_(params, self.grad_clip))
        if not params:
            return 0.0
        return float(torch.linalg.vector_norm(torch.stack([p.grad.detach().norm() for p in params])))

    @torch.no_grad()
    def best_of(self, n_samples: int, reward_fn: Callable[[list[int]], float]) -> tuple[list[int], float]:
        """Sample n arcs and return the one `reward_fn` rates highest (how ENAS picks its final arc)."""
        self.controller.eval()
        scored: list[tuple[list[int], float]] = [
            (arc, float(reward_fn(arc))) for arc in (shared_sample(self.controller).arc for _ in range(n_samples))
        ]
        return max(scored, key=lambda item: item[1])

    # ---- checkpointing -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "controller": self.controller.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "baseline": self.baseline,
            "steps": self.steps,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.controller.load_state_dict(state["controller"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.baseline = float(state["baseline"])
        self.steps = int(state["steps"])


__all__ = ["ReinforceTrainer"]
