"""ENAS (Pham et al., 2018) over AMBER-style token sequences: a controller samples children of a
weight-sharing supernet (micro cells or a macro chain), trained with REINFORCE on validation accuracy.
The best of `final_samples` children (by accuracy on the arch split, shared weights) becomes the final
architecture, evaluated from scratch like any other."""

from __future__ import annotations

from pathlib import Path

from archsearch.algos.enas.supernet import build_supernet
from archsearch.algos.enas.trainer import EnasTrainer
from archsearch.data.loaders import search_loaders
from archsearch.nas.context import RunContext
from archsearch.nas.evaluater import BuiltModel
from archsearch.nas.exp_runner import RUNNERS, ExperimentRunner
from archsearch.nas.model import Model
from archsearch.nas.model_desc import ModelDesc
from archsearch.nas.searcher import Searcher, SearchResult, SearchSetup, save_final_desc
from archsearch.nas.trainer import Trainer
from archsearch.spaces.enas_spaces import MacroSpace, space_from_conf


class EnasSearcher(Searcher):
    def search(self, ctx: RunContext, setup: SearchSetup) -> SearchResult:
        conf_search = setup.conf
        trainer_class = setup.trainer_class
        space = space_from_conf(conf_search["space"])
        supernet = build_supernet(space, conf_search["model_desc"], ctx.conf["dataset"])
        ctx.log.info(
            f"[search] ENAS {space.describe()}; shared weights: {sum(p.numel() for p in supernet.parameters()):,}"
        )
        weights_loader, arch_loader = search_loaders(ctx.conf["dataset"], conf_search["loader"], ctx.device, ctx.seed)
        trainer = trainer_class(
            conf_search["trainer"], supernet, ctx.log, ctx.device, "search", ctx.search_dir / "checkpoint.pt"
        )
        metrics = trainer.fit(weights_loader, arch_loader, resume=ctx.resume)
        conf_final = conf_search["final"]
        arc, reward = trainer.reinforce.best_of(
            conf_final["n_samples"], lambda a: trainer.child_accuracy(a, conf_final["eval_batches"])
        )
        ctx.log.info(
            f"[search] best of {conf_final['n_samples']} sampled children: arc_seq {arc}, accuracy {reward:.4f}"
        )
        desc = space.to_desc(arc, conf_search["model_desc"], ctx.conf["dataset"])
        desc.meta.update(algo=ctx.algo, arc_seq=list(arc), space=conf_search["space"].to_dict())
        metrics.update(final_child_val_top1=reward)
        return SearchResult(save_final_desc(ctx, desc, metrics), metrics)


@RUNNERS.register("enas")
class EnasRunner(ExperimentRunner):
    name = "enas"
    summary = "ENAS: LSTM controller + REINFORCE over token sequences, weight-sharing supernet"

    def trainer_class(self) -> type[Trainer]:
        return EnasTrainer

    def searcher(self) -> Searcher:
        return EnasSearcher()

    def search_model(self) -> Model:
        space = space_from_conf(self.conf_search["space"])
        return build_supernet(space, self.conf_search["model_desc"], self.ctx.conf["dataset"])

    def example_final_arch(self, folder: Path) -> Path:
        space = space_from_conf(self.conf_search["space"])
        arc = space.random_arc()
        desc = space.to_desc(arc, self.conf_search["model_desc"], self.ctx.conf["dataset"])
        desc.meta.update(arc_seq=arc, space=self.conf_search["space"].to_dict())
        return desc.save(folder / "example_final_model_desc.yaml")

    def build_eval_model(self, final_arch: Path, eval_dir: Path | None) -> BuiltModel:
        found = ModelDesc.load(final_arch)
        space_conf = found.meta.get("space", {})
        if space_conf.get("type") != "macro":  # micro cells scale like any cell-based desc
            return super().build_eval_model(final_arch, eval_dir)
        # a macro chain is not a stack of repeated cells: rebuild it from its arc at the eval size
        space = space_from_conf({**space_conf, **self.conf_eval["macro_space"].to_dict()})
        assert isinstance(space, MacroSpace)
        desc = space.to_desc(found.meta["arc_seq"], self.conf_eval["model_desc"], self.ctx.conf["dataset"])
        desc.meta = {**found.meta, **desc.meta}
        if eval_dir is not None:
            desc.save(eval_dir / "model_desc.yaml")
        return BuiltModel(Model(desc), "model_desc", desc.to_yaml())
