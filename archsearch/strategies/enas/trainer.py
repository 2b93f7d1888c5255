"""EnasTrainer: ENAS' alternating search as hooks on the shared loop, on any space's sampled supernet.

The controller samples token sequences laid out by `space.token_spec()`; `space.arch_from_tokens` turns
one into the architecture the supernet's `set_arch` runs (the arc_seq itself for the ENAS spaces).

- pre_step: every minibatch of shared-weight training runs a fresh child sampled by the controller
  (micro_child / general_child: one arc per step).
- post_epoch: `train_steps` REINFORCE updates of the controller, each over `n_samples` children whose
  reward is their accuracy on one batch of the arch split, with the shared weights (batch statistics,
  no gradients, as the original's reward computation). The epoch's val figure, a sampled child on the
  arch split, also uses batch statistics (`batch_statistics`, in eval mode).
Controller reward, entropy, baseline and skip rate go into the epoch's metrics (log.yaml, TensorBoard).

Under torchrun the child of every step is rank 0's sample, broadcast (`shared_sample`), and a child's reward
is its accuracy over all ranks' shards of the arch batch (summed counts), so the controller learns from the
global batch and stays identical on every rank.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from archsearch.common import distributed
from archsearch.common.errors import ConfigError
from archsearch.config.schema import POSITIVE_INT, Float, register_section
from archsearch.model.choice_ops import batch_statistics
from archsearch.model.network import Model
from archsearch.search.space import SearchSpace
from archsearch.strategies.enas.controller import Controller, ControllerConfig
from archsearch.strategies.enas.reinforce import ReinforceTrainer, shared_sample
from archsearch.train.arch_trainer import ArchTrainer


class EnasTrainer(ArchTrainer):
    def __init__(self, *args: Any, space: SearchSpace, **kwargs: Any) -> None:
        self.space = space  # before Trainer.__init__, whose configure() builds the controller from it
        super().__init__(*args, **kwargs)

    def configure(self) -> None:
        # the controller is built before any restore: its initial weights draw from the RNG, which a
        # restore then sets to the checkpoint's state, so a resumed search samples what the straight one does
        if self.drop_path_prob > 0 and isinstance(self.model, Model):
            # Cell.forward would drop the supernet's identity choices and loose-end gates, which the child
            # it stands for never drops
            raise ConfigError(
                f"nas.search.trainer.drop_path_prob={self.drop_path_prob}: ENAS search takes no drop path "
                "(neither does the original's search child); set it to 0"
            )
        conf = self.conf["controller"]
        spec = self.space.token_spec()
        self.controller = Controller(spec, ControllerConfig.from_conf(conf, ControllerConfig.preset_for(spec)))
        self.reinforce = ReinforceTrainer(
            self.controller,
            lr=conf["lr"],
            baseline_decay=conf["baseline_decay"],
            entropy_weight=conf["entropy_weight"],
            grad_clip=conf["grad_clip"],
            skip_weight=conf["skip_weight"],
        )

    def set_child(self, tokens: Sequence[int]) -> None:
        self.model.set_arch(self.space.arch_from_tokens(tokens))

    def sample_child(self) -> None:
        with torch.no_grad():
            self.set_child(shared_sample(self.controller).arc)

    def pre_step(self, step: int, x: torch.Tensor, y: torch.Tensor) -> None:
        self.sample_child()

    @torch.no_grad()
    def child_accuracy(self, tokens: list[int], batches: int = 1) -> float:
        """A child's accuracy on `batches` batches of the arch split with the shared weights."""
        self.set_child(tokens)
        self.model.train()  # ENAS rewards use batch statistics: candidates' running stats are stale
        correct = total = 0
        for _ in range(batches):
            x, y = self.next_arch_batch()
            with self.autocast():
                logits = self.model(self.prepare(x))
            logits = logits[0] if isinstance(logits, tuple) else logits
            correct += (logits.argmax(1) == y).sum()
            total += y.shape[0]
        if distributed.world_size() > 1:  # the accuracy over every rank's shard of the batch
            counts = torch.stack([torch.as_tensor(correct).float(), torch.tensor(float(total))]).to(y.device)
            correct, total = distributed.all_reduce_sum(counts).tolist()
            return correct / total
        return (correct / total).item()

    def evaluate(self, loader) -> dict[str, float]:
        """The epoch's val figure: a sampled child on batch statistics, as the original validates its search
        child (running statistics of rarely chosen candidates are stale)."""
        self.sample_child()
        with batch_statistics(self.model):
            return super().evaluate(loader)

    def post_epoch(self, epoch: int, metrics: dict[str, Any]) -> None:
        conf = self.conf["controller"]
        stats: list[dict[str, float]] = [
            self.reinforce.step(self.child_accuracy, conf["n_samples"]) for _ in range(conf["train_steps"])
        ]
        for key in ("reward", "entropy", "baseline", "skip_rate", "loss"):
            metrics[f"controller_{key}"] = sum(s[key] for s in stats) / max(len(stats), 1)
        best_arc, best_reward = max(self.reinforce.last_samples, key=lambda s: s[1], default=([], 0.0))
        self.log.record("controller", epoch=epoch + 1, best_arc=best_arc, best_reward=best_reward)
        super().post_epoch(epoch, metrics)

    def rank_checked_state(self) -> dict[str, list[torch.Tensor]]:
        return {**super().rank_checked_state(), "controller": list(self.controller.parameters())}

    def extra_state(self) -> dict[str, Any]:
        return {"reinforce": self.reinforce.state_dict()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.reinforce.load_state_dict(state["reinforce"])


# ---- the ENAS controller and final sampling (defaults in confs/algos/enas.yaml) ----
register_section(
    "nas.search.trainer.controller",
    {
        "lstm_size": POSITIVE_INT,
        "temperature": Float(null=True, gt=0),
        "tanh_constant": Float(null=True, gt=0),
        "op_tanh_reduce": Float(gt=0),
        "op_bias_init": Float(),
        "fixed_op_bias": Float(),
        "skip_target": Float(ge=0, le=1),
        "skip_weight": Float(ge=0),
        "lr": Float(gt=0),
        "entropy_weight": Float(ge=0),
        "baseline_decay": Float(ge=0, le=1),
        "grad_clip": Float(null=True, gt=0),
        "train_steps": POSITIVE_INT,
        "n_samples": POSITIVE_INT,
    },
)
register_section("nas.search.final", {"n_samples": POSITIVE_INT, "eval_batches": POSITIVE_INT})
