"""GDAS (Dong & Yang, CVPR 2019) as a strategy: the DARTS strategy over a supernet whose MixedOps run one op
per edge, drawn by the Gumbel-max trick from softmax(alpha) at every forward (the same draw for all cells of
a type) as a hard one-hot with the straight-through gradient of softmax((log_softmax(alpha) + g) / tau),
tau annealed linearly from tau_max to tau_min over the epochs (xautodl GDAS.py:
tau = tau_max - (tau_max - tau_min) * epoch / (epochs - 1)). As in xautodl, each batch takes the weight
step first, then the architecture step (first order, on the arch split). The found architecture is
DARTS' derivation from the alphas (argmax per edge on NAS-Bench-201, top-2 genotype on DARTS cells).

Settings (confs/algos/gdas.yaml) are xautodl's NAS-Bench-201 GDAS run. Runs on every space whose supernet
is built from MixedOp edges (capability `mixed_op`: darts, nasbench201).
"""

from __future__ import annotations

from typing import ClassVar

from torch import nn

from archsearch.common.errors import ConfigError
from archsearch.config.schema import Float, register_section
from archsearch.model.mixed_op import MixedOpOptions
from archsearch.search.strategy import register_strategy
from archsearch.strategies.darts.strategy import Darts
from archsearch.strategies.darts.trainer import BilevelArchTrainer

register_section("nas.search.trainer.gumbel", {"tau_max": Float(gt=0), "tau_min": Float(gt=0)})


class GdasTrainer(BilevelArchTrainer):
    arch_step_after_weights: ClassVar[bool] = True  # xautodl: weight step, then architecture step

    def configure(self) -> None:
        super().configure()
        conf = self.conf["gumbel"]
        self.tau_max, self.tau_min = conf["tau_max"], conf["tau_min"]
        if self.tau_min > self.tau_max:
            raise ConfigError(
                f"nas.search.trainer.gumbel.tau_min {self.tau_min:g} is above tau_max {self.tau_max:g}: "
                "the temperature anneals from tau_max down to tau_min"
            )

    def tau(self, epoch: int) -> float:
        if self.epochs <= 1:
            return self.tau_max
        return self.tau_max - (self.tau_max - self.tau_min) * epoch / (self.epochs - 1)

    def pre_epoch(self, epoch: int, train_loader, val_loader) -> None:
        super().pre_epoch(epoch, train_loader, val_loader)
        self.model.set_tau(self.tau(epoch))  # a function of the epoch: a resumed run sets it again

    def post_epoch(self, epoch, metrics) -> None:
        metrics["tau"] = self.tau(epoch)
        super().post_epoch(epoch, metrics)


@register_strategy
class Gdas(Darts):
    name = "gdas"
    summary = "GDAS: one Gumbel-softmax-sampled op per edge (straight-through), temperature annealed 10 -> 0.1"
    requires = frozenset({"mixed_op"})
    trainer_class = GdasTrainer

    def search_model(self) -> nn.Module:
        return self.space.mixed_op_supernet(MixedOpOptions(sampling="gumbel"))

    def dry_run_notes(self) -> list[str]:
        conf = self.conf["trainer"]["gumbel"]
        return [*super().dry_run_notes(), f"Gumbel temperature {conf['tau_max']:g} -> {conf['tau_min']:g}"]
