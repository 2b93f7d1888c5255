"""ENAS (Pham et al., 2018) as a strategy: on any space with a sampled supernet (ENAS micro and macro, a user
model, DARTS cells, NAS-Bench-201), an LSTM controller samples children over the space's token layout; the
supernet's shared weights train one child per step and the controller learns by REINFORCE on the children's
accuracy on the arch split. The best of `final.n_samples` children (by that accuracy, shared weights)
becomes the final architecture, evaluated from scratch like any other."""

from __future__ import annotations

import functools

from torch import nn

from archsearch.search.strategy import SearchOutcome, Strategy, fit_supernet, register_strategy
from archsearch.strategies.enas.trainer import EnasTrainer


@register_strategy
class Enas(Strategy):
    name = "enas"
    summary = "ENAS: LSTM controller + REINFORCE over token sequences, weight-sharing supernet"
    requires = frozenset({"sampled"})
    default_space = "enas_micro"

    def search_model(self) -> nn.Module:
        return self.space.sampled_supernet()

    def search(self) -> SearchOutcome:
        ctx, conf = self.ctx, self.conf
        supernet = self.space.sampled_supernet()
        shared = sum(p.numel() for p in supernet.parameters())
        ctx.log.info(f"[search] ENAS {self.space.describe()}; shared weights: {shared:,}")
        trainer, metrics = fit_supernet(ctx, supernet, functools.partial(EnasTrainer, space=self.space))
        conf_final = conf["final"]
        tokens, reward = trainer.reinforce.best_of(
            conf_final["n_samples"], lambda t: trainer.child_accuracy(t, conf_final["eval_batches"])
        )
        ctx.log.info(
            f"[search] best of {conf_final['n_samples']} sampled children: arc_seq {tokens}, accuracy {reward:.4f}"
        )
        metrics.update(final_child_val_top1=reward, final_arc_seq=tokens)
        return SearchOutcome(self.space.arch_from_tokens(tokens), metrics)
