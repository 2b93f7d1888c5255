"""SposTrainer: SPOS' supernet training as hooks on the shared loop, on any space's sampled supernet.

Every step trains one path drawn uniformly: each token of the space's `token_spec()` (an edge's op, a node's
input, a skip bit) takes each of its values with equal probability, independently (SPOS' "uniform path
sampling", Guo et al. 2020, sec. 3.2), and `space.arch_from_tokens` turns the draw into the child the
supernet's `set_arch` runs. The draws come from one `random.Random` seeded from the run seed and stored in
every checkpoint, so a resumed training samples exactly the paths the uninterrupted one does; every torchrun
rank holds the same sampler and so trains the same path.

The epoch's val figure is the supernet's quality, not one child's: each batch of the arch split is scored by a
fresh uniform path with batch statistics (a path's running statistics are stale until it is recalibrated, as
the search does), so val_top1 is the mean accuracy of random paths, the curve the report draws.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import torch

from archsearch.common.errors import ConfigError
from archsearch.model.choice_ops import batch_statistics
from archsearch.model.network import Model
from archsearch.search.space import SearchSpace
from archsearch.train.arch_trainer import ArchTrainer
from archsearch.train.trainer import Metrics

SAMPLER_STRIDE = 104_729  # a prime: the path sampler's seed differs from every other stream of the run seed


def uniform_tokens(spec: Sequence[Any], rng: random.Random) -> list[int]:
    """One path: every token of `spec` uniformly among its `n_choices` values, independently."""
    return [rng.randrange(token.n_choices) for token in spec]


def sampler_seed(run_seed: int) -> int:
    return run_seed * SAMPLER_STRIDE + 1


class SposTrainer(ArchTrainer):
    def __init__(self, *args: Any, space: SearchSpace, seed: int, **kwargs: Any) -> None:
        self.space = space  # before Trainer.__init__, which calls configure()
        self.spec = list(space.token_spec())
        self.sampler = random.Random(sampler_seed(seed))
        self.paths = 0  # paths trained so far (checkpointed: a figure of the curve)
        super().__init__(*args, **kwargs)

    def configure(self) -> None:
        if self.drop_path_prob > 0 and isinstance(self.model, Model):
            # Cell.forward would drop the supernet's identity choices and gates, which no child ever drops
            raise ConfigError(
                f"nas.search.trainer.drop_path_prob={self.drop_path_prob}: SPOS trains its supernet without drop "
                "path (as the paper); set it to 0"
            )

    def sample_path(self) -> Any:
        """Draw a uniform path and make it the supernet's child; returns the architecture."""
        arch = self.space.arch_from_tokens(uniform_tokens(self.spec, self.sampler))
        self.model.set_arch(arch)
        return arch

    def pre_step(self, step: int, x: torch.Tensor, y: torch.Tensor) -> None:
        self.sample_path()
        self.paths += 1

    @torch.no_grad()
    def evaluate(self, loader) -> dict[str, float]:
        self.model.eval()
        metrics = Metrics(self.device)
        with batch_statistics(self.model):
            for x, y in loader:
                self.sample_path()
                with self.autocast():
                    out = self.model(self.prepare(x))
                loss, logits = self.loss_of(out, y)
                metrics.add(loss, logits, y)
        return metrics.read()

    def post_epoch(self, epoch: int, metrics: dict[str, Any]) -> None:
        metrics["paths_trained"] = self.paths
        super().post_epoch(epoch, metrics)

    def extra_state(self) -> dict[str, Any]:
        version, internal, gauss = self.sampler.getstate()
        return {"sampler": {"version": version, "internal": list(internal), "gauss": gauss}, "paths": self.paths}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        s = state["sampler"]
        self.sampler.setstate((s["version"], tuple(s["internal"]), s["gauss"]))
        self.paths = int(state["paths"])
