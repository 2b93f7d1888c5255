"""Network morphism search wired into the framework: every trial is trained by the shared Trainer on the
weights split and scored on the arch split; the Bayesian optimizer picks the next father and child.
The best trial's graph (search/best_model.json, NNI's JSON) is evaluated from scratch or fine-tuned."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from archsearch.algos.morphism.graph import Graph
from archsearch.algos.morphism.ir_json import graph_to_json, json_to_graph, load_graph_file
from archsearch.algos.morphism.search import run_morphism_search
from archsearch.algos.morphism.strategy import MorphismSearchStrategy
from archsearch.common.checkpoint import load_checkpoint
from archsearch.common.errors import ArchitectureError
from archsearch.config import choice
from archsearch.data.loaders import search_loaders
from archsearch.nas.context import RunContext
from archsearch.nas.evaluater import BuiltModel
from archsearch.nas.exp_runner import RUNNERS, ExperimentRunner
from archsearch.nas.load import ARCH_FORMATS
from archsearch.nas.searcher import Searcher, SearchResult, SearchSetup, record_search_result
from archsearch.nas.trainer import Trainer

ARCH_FORMAT = "morphism_graph_json"
STRATEGY_KEYS = (
    "task",
    "optimize_mode",
    "beta",
    "t_min",
    "t_init",
    "cooling",
    "model_len",
    "model_width",
    "max_model_size",
    "max_layer_width",
    "max_layers",
    "n_neighbours",
    "max_candidates",
    "kernel_lambda",
)


def strategy_from_conf(conf_morphism, conf_dataset, seed: int) -> MorphismSearchStrategy:
    """The data's shape and classes come from the dataset section, everything else from nas.search.morphism."""
    shape = [conf_dataset["image_size"], conf_dataset["image_size"], conf_dataset["channels"]]  # NNI: channels last
    section = {k: conf_morphism[k] for k in STRATEGY_KEYS}
    return MorphismSearchStrategy.from_config(
        section, n_output_node=conf_dataset["n_classes"], input_shape=shape, seed=seed
    )


class MorphismSearcher(Searcher):
    def search(self, ctx: RunContext, setup: SearchSetup) -> SearchResult:
        conf_search = setup.conf
        trainer_class = setup.trainer_class
        conf_morphism = conf_search["morphism"]
        strategy = strategy_from_conf(conf_morphism, ctx.conf["dataset"], ctx.seed)
        weights_loader, arch_loader = search_loaders(ctx.conf["dataset"], conf_search["loader"], ctx.device, ctx.seed)

        def train_and_score(graph: Graph, trial_id: int) -> float:
            torch.manual_seed(ctx.seed * 7919 + trial_id)
            model = graph.produce_torch_model()  # carries the father's trained weights when it has them
            trainer = trainer_class(conf_search["trainer"], model, ctx.log, ctx.device, f"trial {trial_id}")
            metrics = trainer.fit(weights_loader, arch_loader)
            graph.set_weights_from_model(model.cpu())  # children inherit these
            ctx.log.record("trial", trial_id=trial_id, params=graph.size(), **metrics)
            return metrics["val_top1"]

        result = run_morphism_search(
            strategy,
            train_and_score,
            conf_morphism["n_trials"],
            conf_morphism["time_budget_s"],
            ctx.search_dir,
            ctx.log.info,
        )
        if result.best_trial_id is None:
            raise ArchitectureError("no morphism trial finished; see log.log for the trials' errors")
        metrics: dict[str, Any] = {
            "best_val_top1": result.best_metric,
            "best_trial": result.best_trial_id,
            "n_trials": result.n_finished,
        }
        return SearchResult(record_search_result(ctx, ctx.search_dir / "best_model.json", metrics), metrics)


@RUNNERS.register("morphism")
class MorphismRunner(ExperimentRunner):
    name = "morphism"
    summary = "network morphism: NNI graph IR, Bayesian optimizer with edit-distance GP"

    def searcher(self) -> Searcher:
        return MorphismSearcher()

    def trainer_class(self) -> type[Trainer]:
        return Trainer

    def search_model(self) -> torch.nn.Module:
        return self._strategy().seed_graph().produce_torch_model()

    def _strategy(self) -> MorphismSearchStrategy:
        return strategy_from_conf(self.conf_search["morphism"], self.ctx.conf["dataset"], self.ctx.seed)

    def example_final_arch(self, folder: Path) -> Path:
        path = folder / "seed_model.json"
        graph_to_json(self._strategy().seed_graph(), path, include_weights=False)
        return path

    def build_eval_model(self, final_arch: Path, eval_dir: Path | None) -> BuiltModel:
        graph = load_graph_file(final_arch)
        init = choice(self.conf_eval["morphism"], "init", ["scratch", "finetune"])
        weights = Path(final_arch).with_suffix(".pt")
        if init == "finetune":
            if not weights.exists():
                raise ArchitectureError(f"init finetune needs the trained weights {weights}; use init scratch")
            graph.set_weights_from_state_dict(load_checkpoint(weights))  # verified when its sha256 is beside it
        else:
            graph.clear_weights()
        text = graph_to_json(graph, eval_dir / "model.json" if eval_dir is not None else None, include_weights=False)
        return BuiltModel(graph.produce_torch_model(), ARCH_FORMAT, text)

    def dry_run(self) -> dict[str, Any]:
        report = {**super().dry_run(), "cell_based": False}
        ds, conf = self.ctx.conf["dataset"], self.conf_search["morphism"]
        report["notes"] = [
            f"morphism: task {conf['task']}, input_width {ds['image_size']}, input_channel {ds['channels']}, "
            f"n_output_node {ds['n_classes']}; seed network model_len {conf['model_len']}, "
            f"model_width {conf['model_width']}; {conf['n_trials']} trials of "
            f"{self.conf_search['trainer']['epochs']} epochs"
        ]
        return report


# a graph names no code (layer types come from an allow-list), so what the caller allowed does not matter
ARCH_FORMATS.add(ARCH_FORMAT, lambda text, where, allowed: json_to_graph(text).produce_torch_model())
