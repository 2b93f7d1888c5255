"""Network morphism as a strategy on the one trial loop (archsearch/search/trial_loop.py).

The trial loop owns the index (search/trials.yaml), resume, per-trial seeds, the budget and best-so-far;
this module adds what only morphism needs, under search/trials/::

    trial_003.json   the architecture (NNI JSON, written when proposed, "weighted": false so NNI's own loader
                     takes it); the index's `arch` field refers to it, since documents are kilobytes and the
                     index is rewritten after every trial
    trial_003.pt     the trained weights (a TorchModel state dict); children inherit them

and search/best_model.json/.pt/.txt for the best trial (NNI's best_model.txt line "best model: <id>").

The optimizer's state is rebuilt from the history the loop hands to `propose`: finished trials are
registered in the order they finished (from memory, or from their files after a resume) and each proposal
draws from its trial's own seed, so a resumed search proposes exactly what the uninterrupted one does.

With trials in parallel (`--common.executor ray`) the loop asks for a proposal whenever a trial slot is
free, so the optimizer proposes several children before their results are in (as NNI's tuner does under
trial concurrency: proposals differ from every trial proposed so far) and is updated as each result
arrives. Off-process, a trial is rebuilt from its JSON document and the weights it inherits
(`MorphismWork`, no live graph leaves this process) and sends its trained weights back, which the driver
puts into the queue's graph (for the children) and writes as trial_NNN.pt.

Constraints (nas.search.constraints): a bound on `params` (the graph's size) also caps the optimizer's
children (max_model_size), so no child over it is trained; every constraint is checked on the trial's
metrics after evaluation (infeasible trials never become the final architecture). Morphism optimizes one
objective, its val_top1, and takes no other cheap constraint (its architectures are no JSON of a space to
build before training).
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

from archsearch.common.checkpoint import load_checkpoint, save_checkpoint
from archsearch.common.devices import select_device
from archsearch.common.errors import ArchitectureError, ConfigError
from archsearch.common.io import atomic_write_text
from archsearch.common.readers import read_text
from archsearch.config.schema import POSITIVE_INT, Float, Str, register_section
from archsearch.data.loaders import search_loaders
from archsearch.search.space import SearchSpace
from archsearch.search.strategy import SearchOutcome, Strategy, register_strategy
from archsearch.search.trial_eval import run_trials, search_goals, single_objective
from archsearch.search.trial_loop import Budget, Trial, TrialLog, finite_number
from archsearch.spaces.morphism.graph import Graph
from archsearch.spaces.morphism.ir_json import graph_to_json, json_to_graph
from archsearch.strategies.morphism.optimizer import MorphismSearchStrategy, SearchExhausted
from archsearch.train.context import RunContext
from archsearch.train.trainer import Trainer

TRIALS_DIR = "trials"
MAX_CONSECUTIVE_FAILURES = 3  # a scorer that keeps raising is a bug, not a bad architecture
LOOP_KEYS = ("n_trials", "time_budget_s")  # the budget; every other key of nas.search.morphism is the queue's
# trains the graph's network (children carry their father's weights), puts the trained weights back into
# the graph (graph.set_weights_from_model) and returns the trial's metrics
ScoreFn = Callable[[Graph, Trial], Mapping[str, float]]


def score_graph(score: ScoreFn, graph: Graph, trial: Trial, objective: str, log: Callable[[str], Any]) -> dict:
    """`score`'s metrics, or the failure record of a trial that raised (a bad architecture must not end the
    search; three failures in a row will, see MorphismTrials.propose)."""
    try:
        return dict(score(graph, trial))
    except Exception as err:
        log(f"[search] morphism: trial {trial.index} failed: {type(err).__name__}: {err}")
        graph.clear_weights()  # whatever it holds now is not trained weights: children start afresh
        return {objective: math.nan, "error": f"{type(err).__name__}: {err}"}


class GraphTrainer:
    """The ScoreFn of `--algos morphism`: trains the graph's network (it carries its father's trained weights
    when it has them) with nas.search.trainer and puts the trained weights back into the graph. Picklable:
    the loaders are built on first use, in whichever process trains (`with_log` gives a worker its log)."""

    def __init__(self, conf_search: Mapping, conf_dataset: Mapping, device: str, seed: int, log: Any) -> None:
        self.conf_search, self.conf_dataset, self.device, self.seed, self.log = (
            conf_search, conf_dataset, device, seed, log
        )  # fmt: skip
        self._loaders: tuple | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "log": None, "_loaders": None}  # the driver's log and data stay here

    def with_log(self, log: Any) -> GraphTrainer:
        self.log = log
        return self

    def __call__(self, graph: Graph, trial: Trial) -> dict[str, float]:
        device = select_device(self.device)
        if self._loaders is None:
            self._loaders = search_loaders(self.conf_dataset, self.conf_search["loader"], device, self.seed)
        torch.manual_seed(trial.seed)
        model = graph.produce_torch_model()  # carries the father's trained weights when it has them
        trainer = Trainer(self.conf_search["trainer"], model, self.log, device, f"trial {trial.index}")
        metrics = trainer.fit(*self._loaders)
        graph.set_weights_from_model(model.cpu())  # children inherit these
        return {**metrics, "params": graph.size()}


class MorphismWork:
    """A morphism trial in a worker: the graph from its JSON document and inherited weights (the payload),
    scored as in the driver; the trained weights go back as an artifact."""

    def __init__(self, score: ScoreFn, objective: str) -> None:
        self.score, self.objective = score, objective

    def __call__(self, trial: Trial, payload: Mapping[str, Any], log: TrialLog) -> tuple[dict, dict]:
        graph = json_to_graph(payload["json"])
        if payload["weights"] is not None:
            graph.set_weights_from_state_dict(payload["weights"])
        score = self.score.with_log(log) if hasattr(self.score, "with_log") else self.score
        metrics = score_graph(score, graph, trial, self.objective, log.info)
        return metrics, {"weights": graph.weights_state_dict() if graph.has_weights() else None}


def queue_from_conf(
    conf_morphism: Mapping, space: SearchSpace, max_params: float | None = None
) -> MorphismSearchStrategy:
    """The Bayesian queue of nas.search.morphism, on the space's input shape and classes; `max_params` (a
    constraint on params) caps max_model_size."""
    section = {k: v for k, v in conf_morphism.items() if k not in LOOP_KEYS}
    if max_params is not None:
        section["max_model_size"] = min(int(section["max_model_size"]), max(1, math.floor(max_params)))
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

    def arch_file(self, index: int, arch: Any) -> Path:
        """The graph document of trial `index`, whose index entry `arch` must name exactly that file (an index
        pointing elsewhere, e.g. at ../../x or /etc/passwd, is refused, never read)."""
        path = self.file(index, ".json")
        if arch != str(path.relative_to(self.folder)):
            raise ArchitectureError(
                f"trial index in {self.folder}: trial {index}'s arch {str(arch)[:80]!r} is not its file "
                f"{path.relative_to(self.folder)}; delete the search folder or rerun without --common.resume true"
            )
        return path

    def read_arch(self, index: int, arch: Any) -> str:
        """The text of trial `index`'s graph document, through the guarded reader."""
        return read_text(self.arch_file(index, arch), "morphism trial graph", ArchitectureError)

    def load_arch(self, index: int, arch: Any) -> Graph:
        path = self.arch_file(index, arch)
        try:
            return json_to_graph(self.read_arch(index, arch))
        except ArchitectureError as e:
            raise ArchitectureError(str(e) if str(path) in str(e) else f"{path}: {e}") from None

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
        metrics = score_graph(self.score, graph, trial, self.objective, self.log)
        if graph.has_weights():
            save_checkpoint(graph.weights_state_dict(), self.file(trial.index, ".pt"))
        return metrics

    def adopt(self, trial: Trial) -> None:
        """A trial a killed parallel search left unfinished: its graph from its file, without the weights it
        had inherited (they were not kept), so it trains from its initialization."""
        self.queue.adopt(trial.index, self.load_arch(trial.index, trial.arch), trial.extra.get("father_id"))
        trial.extra["inherited_weights"] = False

    # ---- Shippable: the trial off-process (archsearch/search/trial_loop.py) ------------------------------
    def work(self) -> MorphismWork:
        return MorphismWork(self.score, self.objective)

    def payload(self, trial: Trial) -> dict[str, Any]:
        graph = self.queue.trials[trial.index].graph
        weights = graph.weights_state_dict() if graph.has_weights() else None
        return {"json": self.read_arch(trial.index, trial.arch), "weights": weights}

    def receive(self, trial: Trial, metrics: dict[str, Any], artifacts: dict[str, Any]) -> dict[str, Any]:
        graph, weights = self.queue.trials[trial.index].graph, artifacts["weights"]
        if weights is None:
            graph.clear_weights()
        else:
            graph.set_weights_from_state_dict(weights)
            save_checkpoint(weights, self.file(trial.index, ".pt"))
        return metrics

    def _replay(self, history: list[dict[str, Any]]) -> None:
        """Register the finished trials the queue does not know as finished yet, in index order."""
        for record in history:
            metric = record["metrics"][self.objective]
            metric = metric if finite_number(metric) else None  # a failed trial (NaN, 'nan' in the index)
            known = self.queue.trials.get(record["index"])
            if known is None:  # a resumed search: the trial's graph and trained weights come from its files
                graph = self.load_arch(record["index"], record["arch"])
                weights = self.file(record["index"], ".pt")
                if metric is not None and weights.exists():
                    graph.set_weights_from_state_dict(load_checkpoint(weights, require_checksum=True))
                self.queue.restore(record["index"], graph, record.get("father_id"), metric)
            elif known.status == "pending":
                self.queue.report(record["index"], metric)

    def write_best(self, best: Mapping[str, Any]) -> dict[str, Any]:
        """search/best_model.{json,pt,txt} of the best trial; returns its graph document."""
        graph, text = self.queue.trials[best["index"]].graph, self.read_arch(best["index"], best["arch"])
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
        ctx = self.ctx
        mode = "max" if self.conf_morphism["optimize_mode"] == "maximize" else "min"
        goals = search_goals(ctx, "val_top1", mode)
        single_objective(self.name, goals)
        if goals.primary.metric != "val_top1":
            raise ConfigError(
                f"--algos morphism optimizes val_top1, not {goals.primary.metric} (nas.search.objectives)"
            )
        other = [n for n in goals.cheap_names() if n != "params"]
        if other:
            raise ConfigError(
                f"--algos morphism takes cheap constraints on params only, not {', '.join(other)} "
                "(nas.search.constraints); random, rea and naswot take every cheap metric"
            )
        max_params = next((c.max for c in goals.constraints if c.metric == "params" and c.max is not None), None)
        train = GraphTrainer(self.conf, ctx.conf["dataset"], ctx.conf["common"]["device"], ctx.seed, ctx.log)
        trials = MorphismTrials(
            queue_from_conf(self.conf_morphism, self.space, max_params), ctx.search_dir, train, log=ctx.log.info
        )
        budget = Budget(self.conf_morphism["n_trials"], self.conf_morphism["time_budget_s"])

        def member(record: dict[str, Any]) -> Any:
            return json.loads(trials.read_arch(record["index"], record["arch"]))

        arch, metrics, _ = run_trials(
            ctx, self.space, trials.propose, budget, trials, mode, trials.write_best, goals, None, member
        )
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


# ---- the morphism search's keys (defaults in confs/algos/morphism.yaml) ----
register_section(
    "nas.search.morphism",
    {
        "task": Str("cv", "common"),
        "optimize_mode": Str("maximize", "minimize"),
        "beta": Float(ge=0),
        "t_min": Float(gt=0),
        "t_init": Float(gt=0),
        "cooling": Float(gt=0, lt=1),
        "model_len": POSITIVE_INT,
        "model_width": POSITIVE_INT,
        "max_model_size": POSITIVE_INT,
        "max_layer_width": POSITIVE_INT,
        "max_layers": POSITIVE_INT,
        "n_neighbours": POSITIVE_INT,
        "max_candidates": POSITIVE_INT,
        "kernel_lambda": Float(gt=0),
        "n_trials": POSITIVE_INT,
        "time_budget_s": Float(null=True, gt=0),
    },
)
