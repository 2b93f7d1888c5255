"""DARTS (Liu et al., ICLR 2019) as a strategy: train the space's differentiable supernet with the bilevel
trainer (first or second order) and return the architecture its alphas pick (`supernet.derive_arch()`:
the top-2 genotype on DARTS cells, the argmax op per edge on NAS-Bench-201, the argmax choices of a user
model). Runs on every space with a differentiable supernet.

`nas.search.model_desc.fused: true` computes MixedOp cells with FusedDartsCell (same parameters, same
results, a fraction of the time and memory); cells it does not implement (NAS-Bench-201's ops) stay on
the per-edge reference path.
"""

from __future__ import annotations

import functools
from typing import ClassVar

from torch import nn

from archsearch.model.network import Model, count_params
from archsearch.search.strategy import SearchOutcome, Strategy, fit_supernet, register_strategy
from archsearch.strategies.darts.fused import fuse_cells
from archsearch.strategies.darts.trainer import BilevelArchTrainer


@register_strategy
class Darts(Strategy):
    name = "darts"
    summary = "DARTS: MixedOp supernet, bilevel (first/second order) gradient search"
    requires = frozenset({"differentiable"})
    default_space = "darts"
    trainer_class: ClassVar[type[BilevelArchTrainer]] = BilevelArchTrainer

    def search_model(self) -> nn.Module:
        supernet = self.space.differentiable_supernet()
        if self.conf["model_desc"]["fused"] and isinstance(supernet, Model):
            fuse_cells(supernet)
        return supernet

    def search(self) -> SearchOutcome:
        supernet = self.search_model()
        self.ctx.log.info(
            f"[search] supernet: {count_params(supernet):,} weights, "
            f"{sum(p.numel() for p in supernet.arch_params()):,} architecture parameters"
        )
        trainer_class = self.trainer_class
        if self.cost_conf().get("source") is not None:  # the derived architecture's cost: the network it builds
            trainer_class = functools.partial(trainer_class, arch_builder=self.space.build)  # type: ignore[assignment]
        _, metrics = fit_supernet(self.ctx, supernet, trainer_class)
        return SearchOutcome(supernet.derive_arch(), metrics)

    def cost_conf(self) -> dict:
        conf = self.conf["trainer"]
        return dict(conf["cost"]) if "cost" in list(conf) else {}

    def dry_run_notes(self) -> list[str]:
        conf_bilevel = self.conf["trainer"]["bilevel"]
        notes = [f"bilevel order: {conf_bilevel['order']}"]
        if conf_bilevel["arch_start_epoch"]:
            notes.append(f"architecture steps from epoch {conf_bilevel['arch_start_epoch'] + 1}")
        if conf_bilevel["beta_decay"]["weight"] > 0:
            decay = conf_bilevel["beta_decay"]
            notes.append(f"beta-decay: lambda = {decay['weight']:g} * epoch / {decay['ramp_epochs']}")
        cost = self.cost_conf()
        if cost.get("source") is not None:
            target = "" if cost.get("target") is None else f", target {cost['target']:g}"
            steer = f"form {cost['form']}, weight {cost['weight']:g}{target}" if cost.get("weight") else "logged only"
            notes.append(f"cost term: {cost['source']}, {steer}")
        return notes


@register_strategy
class BetaDarts(Darts):
    """DARTS with beta-DARTS' beta-decay regularization on (confs/algos/betadarts.yaml); the same switch,
    nas.search.trainer.bilevel.beta_decay, works for darts, pcdarts and gdas."""

    name = "betadarts"
    summary = "beta-DARTS: DARTS with the beta-decay regularization of the architecture parameters"
