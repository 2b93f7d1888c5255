"""DARTS (Liu et al., ICLR 2019): the runner wires the DARTS builder, bilevel trainer and finalizer into the
framework; search, evaluation and outputs are the framework's.

`nas.search.model_desc.fused: true` computes the supernet's cells with FusedDartsCell (same parameters,
same results, a fraction of the time and memory); false keeps the per-edge reference path.
"""

from __future__ import annotations

from archsearch.algos.darts.builder import DartsModelDescBuilder
from archsearch.algos.darts.finalizers import DartsFinalizers
from archsearch.algos.darts.fused import fuse_cells
from archsearch.algos.darts.trainer import BilevelArchTrainer
from archsearch.nas.exp_runner import RUNNERS, ExperimentRunner
from archsearch.nas.finalizers import Finalizers
from archsearch.nas.model import Model
from archsearch.nas.model_desc import ModelDesc
from archsearch.nas.model_desc_builder import ModelDescBuilder
from archsearch.nas.trainer import Trainer


@RUNNERS.register("darts")
class DartsRunner(ExperimentRunner):
    name = "darts"
    summary = "DARTS: MixedOp supernet, bilevel (first/second order) gradient search"

    def model_desc_builder(self, conf_model_desc) -> ModelDescBuilder:
        return DartsModelDescBuilder(conf_model_desc, self.ctx.conf["dataset"])

    @property
    def fused(self) -> bool:
        return bool(self.conf_search["model_desc"]["fused"])

    def trainer_class(self) -> type[Trainer]:
        return BilevelArchTrainer

    def build_search_model(self, desc: ModelDesc) -> Model:
        model = super().build_search_model(desc)
        return fuse_cells(model) if self.fused else model

    def finalizers(self) -> Finalizers:
        return DartsFinalizers()
