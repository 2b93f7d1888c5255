"""Network morphism as a strategy on the one trial loop (archsearch/nas/trial_loop.py).

The trial loop owns the index (search/trials.yaml), resume, per-trial seeds, the budget and best-so-far;
this module adds what only morphism needs, under search/trials/::

    trial_003.json   the architecture (NNI JSON, written when proposed, "weighted": false so NNI's own loader
                     takes it); the index's `arch` field refers to it, since documents are kilobytes and the
                     index is rewritten after every trial
    trial_003.pt     the trained weights (a TorchModel state dict); children inherit them

and search/best_model.json/.pt/.txt for the best trial (NNI's best_model.txt line "best model: <id>").

The optimizer's state is rebuilt from the history the loop hands to `propose`: finished trials are
registered in index order (from memory, or from their files after a resume) and each proposal draws from
its trial's own seed, so a resumed search proposes exactly what the uninterrupted one does.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from archsearch.algos.morphism.graph import Graph
from archsearch.algos.morphism.ir_json import graph_to_json, load_graph_file
from archsearch.algos.morphism.strategy import MorphismSearchStrategy, SearchExhausted
from archsearch.common.checkpoint import load_checkpoint, save_checkpoint
from archsearch.common.io import atomic_write_text
from archsearch.data.loaders import search_loaders
from archsearch.nas.context import RunContext
from archsearch.nas.strategy import SearchOutcome, Strategy, register_strategy
from archsearch.nas.trainer import Trainer
from archsearch.nas.trial_eval import run_trials
from archsearch.nas.trial_loop import Budget, Trial, finite_number
from archsearch.spaces.base import SearchSpace

TRIALS_DIR = "trials"
MAX_CONSECUTIVE_FAILURES = 3  # a scorer that keeps raising is a bug, not a bad architecture
LOOP_KEYS = ("n_trials", "time_budget_s")  # the budget; every other key of nas.search.morphism is the queue's
# trains the graph's network (children carry their father's weights), puts the trained weights back into
# the graph (graph.set_weights_from_model) and returns the trial's metrics
ScoreFn = Callable[[Graph, Trial], Mapping[str, float]]


def queue_from_conf(conf_morphism: Mapping, space: SearchSpace) -> MorphismSearchStrategy:
    """The Bayesian queue of nas.search.morphism, on the space's input shape and classes."""
    section = {k: v for k, v in conf_morphism.items() if k not in LOOP_KEYS}
    return MorphismSearchStrategy.from_config(section, n_output_node=space.n_classes, input_shape=space.input_shape)


class MorphismTrials:
    """`propose` and `evaluate` for a TrialLoop over `queue`; trial files under `folder`/trials/."""

    def __init__(
        self,
        queue: MorphismSearchStrategy,
        folder: Path,
        score: ScoreFn,
        objective: str = "val_top1",
        log: Callable[[str], Any] = print,
    ) -> None:
        self.queue, self.folder, self.score, self.objective, self.log = queue, Path(folder), score, objective, log
        (self.folder / TRIALS_DIR).mkdir(parents=True, exist_ok=True)

    def file(self, index: int, suffix: str) -> Path:
        return self.folder / TRIALS_DIR / f"trial_{index:03d}{suffix}"

    def propose(self, index: int, rng: random.Random, history: list[dict[str, Any]]) -> Any:
        self._replay(history)
        last = history[-MAX_CONSECUTIVE_FAILURES:]
        if len(last) == MAX_CONSECUTIVE_FAILURES and all("error" in r["metrics"] for r in last):
            raise RuntimeError(
                f"{MAX_CONSECUTIVE_FAILURES} morphism trials in a row failed, the last with "
                f"{last[-1]['metrics']['error']}; see log.log"
            )
        # this proposal's randomness comes from its trial seed alone (the optimizer shares the generator)
        self.queue.set_rng_state(np.random.default_rng(rng.getrandbits(64)).bit_generator.state)
        try:
            trial_id, graph, father_id = self.queue.propose()
        except SearchExhausted as err:
            self.log(f"[search] morphism: stopping: {err}")
            return None
        assert trial_id == index, f"the queue numbers trials {trial_id}, the loop {index}"
        path = self.file(index, ".json")
        graph_to_json(graph, path, include_weights=False)
        extra = {"father_id": father_id, "n_params": graph.size(), "inherited_weights": graph.has_weights()}
        return str(path.relative_to(self.folder)), extra

    def forget(self, index: int) -> None:
        """Nothing to drop once a trial is indexed: its graph and weights files are what children inherit."""

    def __call__(self, trial: Trial) -> dict[str, Any]:
        return self.evaluate(trial)

    def evaluate(self, trial: Trial) -> dict[str, Any]:
        graph = self.queue.trials[trial.index].graph
        try:
            metrics = dict(self.score(graph, trial))
        except Exception as err:  # a bad architecture must not end the search; three in a row will
            self.log(f"[search] morphism: trial {trial.index} failed: {type(err).__name__}: {err}")
            graph.clear_weights()  # whatever it holds now is not trained weights: children start afresh
            return {self.objective: math.nan, "error": f"{type(err).__name__}: {err}"}
        if graph.has_weights():
            save_checkpoint(graph.weights_state_dict(), self.file(trial.index, ".pt"))
        return metrics

    def _replay(self, history: list[dict[str, Any]]) -> None:
        """Register the finished trials the queue does not know as finished yet, in index order."""
        for record in history:
            metric = record["metrics"][self.objective]
            metric = metric if finite_number(metric) else None  # a failed trial (NaN, 'nan' in the index)
            known = self.queue.trials.get(record["index"])
            if known is None:  # a resumed search: the trial's graph and trained weights come from its files
                graph = load_graph_file(self.folder / record["arch"])
                weights = self.file(record["index"], ".pt")
                if metric is not None and weights.exists():
                    graph.set_weights_from_state_dict(load_checkpoint(weights, require_checksum=True))
                self.queue.restore(record["index"], graph, record["father_id"], metric)
            elif known.status == "pending":
                self.queue.report(record["index"], metric)

    def write_best(self, best: Mapping[str, Any]) -> dict[str, Any]:
        """search/best_model.{json,pt,txt} of the best trial; returns its graph document."""
        graph, text = self.queue.trials[best["index"]].graph, (self.folder / best["arch"]).read_text()
        lines = [f"best model: {best['index']}", f"metric: {best['metrics'][self.objective]}", f"json: {best['arch']}"]
        atomic_write_text(self.folder / "best_model.json", text)
        if graph.has_weights():
            save_checkpoint(graph.weights_state_dict(), self.folder / "best_model.pt")
            lines.append(f"weights: {self.file(best['index'], '.pt').relative_to(self.folder)}")
        atomic_write_text(self.folder / "best_model.txt", "\n".join(lines) + "\n")
        return json.loads(text)


@register_strategy
class Morphism(Strategy):
    name = "morphism"
    summary = "network morphism: NNI graph IR, Bayesian optimizer with edit-distance GP"
    requires = frozenset({"morphism"})
    default_space = "morphism"

    def __init__(self, ctx: RunContext, space: SearchSpace) -> None:
        super().__init__(ctx, space)
        self.conf_morphism = self.conf["morphism"]
        space.configure_morphism(self.conf_morphism)  # type: ignore[attr-defined]  # the morphism capability

    def search(self) -> SearchOutcome:
        ctx, conf = self.ctx, self.conf
        weights_loader, arch_loader = search_loaders(ctx.conf["dataset"], conf["loader"], ctx.device, ctx.seed)

        def train(graph: Graph, trial: Trial) -> dict[str, float]:
            torch.manual_seed(trial.seed)
            model = graph.produce_torch_model()  # carries the father's trained weights when it has them
            metrics = Trainer(conf["trainer"], model, ctx.log, ctx.device, f"trial {trial.index}").fit(
                weights_loader, arch_loader
            )
            graph.set_weights_from_model(model.cpu())  # children inherit these
            return {**metrics, "params": graph.size()}

        trials = MorphismTrials(
            queue_from_conf(self.conf_morphism, self.space), ctx.search_dir, train, log=ctx.log.info
        )
        budget = Budget(self.conf_morphism["n_trials"], self.conf_morphism["time_budget_s"])
        mode = "max" if self.conf_morphism["optimize_mode"] == "maximize" else "min"
        arch, metrics, _ = run_trials(ctx, self.space, trials.propose, budget, trials, mode, trials.write_best)
        return SearchOutcome(arch, metrics, {"best_trial": metrics["best_trial"]})

    def search_model(self) -> torch.nn.Module:
        return self.space.build(self.space.sample(random.Random(self.ctx.seed)))

    def dry_run_notes(self) -> list[str]:
        ds, conf = self.ctx.conf["dataset"], self.conf_morphism
        return [
            f"morphism: task {conf['task']}, input_width {ds['image_size']}, input_channel {ds['channels']}, "
            f"n_output_node {ds['n_classes']}; seed network model_len {conf['model_len']}, "
            f"model_width {conf['model_width']}; {conf['n_trials']} trials of {self.conf['trainer']['epochs']} epochs"
        ]
