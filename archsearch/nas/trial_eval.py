"""How a black-box strategy's trial is evaluated: `nas.search.evaluate_by` turned into the TrialLoop's EvaluateFn.

- `train`: the trial's network (`space.build(arch)`, initialized right after `torch.manual_seed(trial.seed)`)
  is trained briefly by the shared Trainer on the weights split (nas.search.trainer) and scored on the arch
  split; metric `val_top1`. Each trial has its own checkpoint file, so a kill mid-trial resumes that trial,
  and the file is deleted only once the trial is in the index (a kill in between deletes nothing needed).
- `table`: a lookup of `space.benchmark_key(arch)` in the benchmark table (nas.search.benchmark); metric
  `benchmark_top1`. Needs the space's "benchmark" capability.
- `proxy`: a zero-cost score of the untrained network on one fixed batch; metric `score`. The proxies are
  an algorithm's (NASWOT's), and the framework never imports an algorithm, so that package registers it
  here with `register_evaluator`.

`run_trials` is the rest every black-box strategy shares: budget, loop, and the best trial; `TrialStrategy`
the Strategy base that gives such strategies their --dry-run sizes (one sampled candidate) and notes.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from archsearch.common.checkpoint import delete_checkpoint
from archsearch.common.errors import ConfigError, TrainingDiverged
from archsearch.data.loaders import search_loaders
from archsearch.nas.benchmark_table import BenchmarkTable, table_from_conf
from archsearch.nas.context import RunContext
from archsearch.nas.strategy import Strategy
from archsearch.nas.trainer import Trainer
from archsearch.nas.trial_loop import Budget, ProposeFn, Trial, TrialLoop
from archsearch.spaces.base import SearchSpace


class Evaluator(Protocol):
    objective: str  # the metric the trial loop maximizes

    def __call__(self, trial: Trial) -> dict[str, Any]: ...
    def forget(self, index: int) -> None: ...  # trial `index` is in the index: drop what resuming it needed


EvaluatorFactory = Callable[[RunContext, SearchSpace, Mapping], Evaluator]
EVALUATORS: dict[str, EvaluatorFactory] = {}


def register_evaluator(name: str) -> Callable[[EvaluatorFactory], EvaluatorFactory]:
    def decorator(factory: EvaluatorFactory) -> EvaluatorFactory:
        EVALUATORS[name] = factory
        return factory

    return decorator


def make_evaluator(ctx: RunContext, space: SearchSpace, evaluate_by: str | None = None) -> Evaluator:
    """The evaluator `evaluate_by` names (None: nas.search.evaluate_by)."""
    conf_search = ctx.conf["nas"]["search"]
    name = evaluate_by or conf_search["evaluate_by"]
    if name not in EVALUATORS:
        raise ConfigError(f"nas.search.evaluate_by {name!r} is not one of {', '.join(sorted(EVALUATORS))}")
    return EVALUATORS[name](ctx, space, conf_search)


class TrainEvaluator:
    objective = "val_top1"

    def __init__(self, ctx: RunContext, space: SearchSpace, conf_search: Mapping) -> None:
        self.ctx, self.space, self.conf_search = ctx, space, conf_search
        self._loaders: tuple | None = None  # built on the first trial: a resumed, finished search needs none

    def checkpoint(self, index: int) -> Path:
        return self.ctx.search_dir / f"trial_{index:03d}_checkpoint.pt"

    def __call__(self, trial: Trial) -> dict[str, Any]:
        ctx = self.ctx
        if self._loaders is None:
            self._loaders = search_loaders(ctx.conf["dataset"], self.conf_search["loader"], ctx.device, ctx.seed)
        torch.manual_seed(trial.seed)  # the trial's initial weights depend on (run seed, index) alone
        model = self.space.build(self.space.from_json(trial.arch, f"trial {trial.index}"))
        trainer = Trainer(
            self.conf_search["trainer"],
            model,
            ctx.log,
            ctx.device,
            f"trial {trial.index + 1}",
            self.checkpoint(trial.index),
        )
        metrics = trainer.fit(*self._loaders, resume=ctx.resume)
        return {"val_top1": metrics["val_top1"]}

    def forget(self, index: int) -> None:
        delete_checkpoint(self.checkpoint(index))


def benchmark_table(space: SearchSpace, conf_search: Mapping, why: str) -> BenchmarkTable:
    """The table of nas.search.benchmark, checked to fit `space`; `why` names what needs it."""
    if "benchmark" not in space.capabilities():
        raise ConfigError(f"{why} needs a search space with a benchmark table; {space.name} has none")
    table = table_from_conf(conf_search)
    if table is None:
        raise ConfigError(f"{why} needs the table: --nas.search.benchmark PATH (a CSV of keys and accuracies)")
    return table


class TableEvaluator:
    objective = "benchmark_top1"

    def __init__(self, ctx: RunContext, space: SearchSpace, conf_search: Mapping) -> None:
        self.space = space
        self.table = benchmark_table(space, conf_search, "--nas.search.evaluate_by table")

    def __call__(self, trial: Trial) -> dict[str, Any]:
        return {"benchmark_top1": self.table.lookup(self.space.benchmark_key(self.space.from_json(trial.arch)))}

    def forget(self, index: int) -> None:
        pass


register_evaluator("train")(TrainEvaluator)
register_evaluator("table")(TableEvaluator)


def run_trials(
    ctx: RunContext,
    space: SearchSpace,
    propose: ProposeFn,
    budget: Budget,
    evaluator: Evaluator | None = None,
    mode: str = "max",
    best_arch: Callable[[dict[str, Any]], Any] | None = None,
) -> tuple[Any, dict[str, Any], list[dict[str, Any]]]:
    """Run `propose` through the trial loop under `budget`: (best arch, search metrics, trial records).
    `evaluator` None: the one nas.search.evaluate_by names; `best_arch` turns the best trial's record into the
    architecture (default: the space's decoding of its `arch`)."""
    evaluator = evaluator or make_evaluator(ctx, space)
    loop = TrialLoop(
        ctx.search_dir,
        ctx.seed,
        budget,
        objective=evaluator.objective,
        mode=mode,
        resume=ctx.resume,
        log=ctx.log.info,
        record=ctx.log.record,
        on_recorded=evaluator.forget,
    )
    results = loop.run(propose, evaluator)
    best = results.best
    if best is None and results.records:
        raise TrainingDiverged(
            f"no trial of {len(results.records)} gave a finite {evaluator.objective} (see search/trials.yaml); "
            "with a proxy, check the network has what it scores (naswot: nn.ReLU modules)"
        )
    if best is None:
        raise ConfigError("the search budget ran out before a single trial finished; raise it")
    metrics = {f"best_{evaluator.objective}": best["metrics"][evaluator.objective], "best_trial": best["index"]}
    metrics["n_trials"] = len(results.records)
    arch = best_arch(best) if best_arch is not None else space.from_json(best["arch"])
    return arch, metrics, results.records


class TrialStrategy(Strategy):
    """A strategy that evaluates candidates one by one on the trial loop (random, REA, NASWOT)."""

    def budget(self) -> Budget:
        raise NotImplementedError

    def evaluate_by(self) -> str:
        return self.conf["evaluate_by"]

    def search_model(self) -> nn.Module:
        """One candidate (a sample of the run seed): the size of what each trial builds."""
        return self.space.build(self.space.sample(random.Random(self.ctx.seed)))

    def dry_run_notes(self) -> list[str]:
        budget = self.budget()
        limits = [f"{budget.n_trials} trials" if budget.n_trials else "", f"{budget.time_s} s" if budget.time_s else ""]
        return [f"{self.name}: {' or '.join(x for x in limits if x)}, evaluated by {self.evaluate_by()}"]
