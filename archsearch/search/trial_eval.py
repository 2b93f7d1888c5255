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

Each evaluator is also `Shippable` (archsearch/search/trial_loop.py): its `work()` is the same evaluation as a
picklable object holding the space, the settings and the data (or how to read it), so `--common.executor ray`
runs trials in worker processes. A trial's result is a function of (arch, seed, data) alone, so a worker
gives what this process would. Off-process, a trained trial keeps no mid-trial checkpoint (its worker may be
on another machine): a trial that did not finish is rerun from its start.

`run_trials` is the rest every black-box strategy shares: budget, executor, loop, and the best trial; with
objectives or constraints (nas.search.objectives, constraints) also the cheap metrics of each proposal, the
Pareto front and search/pareto.yaml with every member's architecture file (search/pareto/trial_NNN/);
`TrialStrategy` the Strategy base that gives such strategies their --dry-run sizes (one sampled candidate) and notes.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from archsearch.common.checkpoint import delete_checkpoint
from archsearch.common.devices import select_device
from archsearch.common.errors import ConfigError, TrainingDiverged
from archsearch.common.io import atomic_write_yaml
from archsearch.common.logging import plain
from archsearch.data.loaders import search_loaders
from archsearch.search.benchmark_table import BenchmarkTable, table_from_conf
from archsearch.search.executors import make_executor
from archsearch.search.metrics import MetricContext, cheap_metrics
from archsearch.search.objectives import Goals, closest, goals_from_conf, hypervolume_curve, require_produced
from archsearch.search.space import SearchSpace
from archsearch.search.strategy import STRATEGIES, Strategy
from archsearch.search.trial_loop import Budget, MeasureFn, ProposeFn, Trial, TrialLog, TrialLoop, TrialResults
from archsearch.train.context import RunContext
from archsearch.train.trainer import Trainer


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


class ShippableEvaluator:
    """The Shippable defaults of an evaluator whose trials need nothing beyond (arch, seed) and return
    metrics only."""

    def payload(self, trial: Trial) -> Any:
        return None

    def receive(self, trial: Trial, metrics: dict[str, Any], artifacts: dict[str, Any]) -> dict[str, Any]:
        return metrics

    def forget(self, index: int) -> None:
        pass


def train_trial(
    space: SearchSpace,
    conf_trainer: Mapping,
    loaders: tuple,
    trial: Trial,
    log: Any,
    device: torch.device,
    checkpoint: Path | None = None,
    resume: bool = False,
) -> dict[str, Any]:
    """Train trial's network briefly and score it on the arch split: {"val_top1": ...}."""
    torch.manual_seed(trial.seed)  # the trial's initial weights depend on (run seed, index) alone
    model = space.build(space.from_json(trial.arch, f"trial {trial.index}"))
    trainer = Trainer(conf_trainer, model, log, device, f"trial {trial.index + 1}", checkpoint)
    metrics = trainer.fit(*loaders, resume=resume)
    return {"val_top1": metrics["val_top1"]}


@dataclass
class TrainWork:
    """TrainEvaluator's trials in a worker: the loaders are built there, on the first trial, from the dataset's
    settings (in-memory datasets are made, files read from the dataroot of the worker's machine)."""

    space: SearchSpace
    conf_dataset: Mapping
    conf_search: Mapping
    device: str  # common.device, resolved in the worker: its GPU, if the trial was given one
    seed: int
    _loaders: tuple | None = field(default=None, repr=False)

    def __call__(self, trial: Trial, payload: Any, log: TrialLog) -> tuple[dict[str, Any], dict[str, Any]]:
        device = select_device(self.device)
        if self._loaders is None:
            self._loaders = search_loaders(self.conf_dataset, self.conf_search["loader"], device, self.seed)
        return train_trial(self.space, self.conf_search["trainer"], self._loaders, trial, log, device), {}


class TrainEvaluator(ShippableEvaluator):
    objective = "val_top1"
    produces = ("val_top1",)

    def __init__(self, ctx: RunContext, space: SearchSpace, conf_search: Mapping) -> None:
        self.ctx, self.space, self.conf_search = ctx, space, conf_search
        self._loaders: tuple | None = None  # built on the first trial: a resumed, finished search needs none

    def checkpoint(self, index: int) -> Path:
        return self.ctx.search_dir / f"trial_{index:03d}_checkpoint.pt"

    def __call__(self, trial: Trial) -> dict[str, Any]:
        ctx = self.ctx
        if self._loaders is None:
            self._loaders = search_loaders(ctx.conf["dataset"], self.conf_search["loader"], ctx.device, ctx.seed)
        return train_trial(
            self.space,
            self.conf_search["trainer"],
            self._loaders,
            trial,
            ctx.log,
            ctx.device,
            self.checkpoint(trial.index),
            ctx.resume,
        )

    def work(self) -> TrainWork:
        ctx = self.ctx
        return TrainWork(self.space, ctx.conf["dataset"], self.conf_search, ctx.conf["common"]["device"], ctx.seed)

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


@dataclass
class TableWork:
    """A lookup in the table, which travels to the workers once, in the object store."""

    space: SearchSpace
    table: BenchmarkTable

    def __call__(self, trial: Trial, payload: Any = None, log: Any = None) -> tuple[dict[str, Any], dict[str, Any]]:
        return {"benchmark_top1": self.table.lookup(self.space.benchmark_key(self.space.from_json(trial.arch)))}, {}


class TableEvaluator(ShippableEvaluator):
    objective = "benchmark_top1"
    produces = ("benchmark_top1",)

    def __init__(self, ctx: RunContext, space: SearchSpace, conf_search: Mapping) -> None:
        self._work = TableWork(space, benchmark_table(space, conf_search, "--nas.search.evaluate_by table"))

    def __call__(self, trial: Trial) -> dict[str, Any]:
        return self._work(trial)[0]

    def work(self) -> TableWork:
        return self._work


register_evaluator("train")(TrainEvaluator)
register_evaluator("table")(TableEvaluator)


PARETO_FILE = "pareto.yaml"
PARETO_DIR = "pareto"  # search/pareto/trial_NNN/<the space's final file>: every front member's architecture


def search_goals(ctx: RunContext, objective: str, mode: str = "max") -> Goals:
    """The run's objectives and constraints (nas.search); `objective`/`mode` the evaluator's own metric."""
    return goals_from_conf(ctx.conf["nas"]["search"], objective, mode)


def single_objective(strategy: str, goals: Goals) -> None:
    """One line when a strategy that optimizes one objective is given several."""
    if len(goals.objectives) > 1:
        several = sorted(n for n in STRATEGIES.names() if getattr(STRATEGIES.get(n), "multi_objective", False))
        raise ConfigError(
            f"--algos {strategy} optimizes one objective, and nas.search.objectives names "
            f"{len(goals.objectives)} ({', '.join(o.metric for o in goals.objectives)}); strategies that take "
            f"several: {', '.join(several)}"
        )


def space_measure(space: SearchSpace, conf_search: Mapping, seed: int) -> MeasureFn:
    """The cheap metrics of an architecture (JSON) of `space`: its network built at search size (under a
    forked torch RNG, so no trial's weights change) and measured with nas.search.metrics."""
    ds = space.conf_dataset
    input_shape = (int(ds["channels"]), int(ds["image_size"]), int(ds["image_size"]))
    conf = conf_search["metrics"] if "metrics" in conf_search else {}  # noqa: SIM401 - Config.get raises

    def measure(data: Any, names: list[str]) -> dict[str, float]:
        arch = space.from_json(data, "a proposed architecture")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = space.build(arch)
        return cheap_metrics(names, MetricContext(model, input_shape, space, arch, conf))

    return measure


def write_pareto(ctx: RunContext, space: SearchSpace, results: TrialResults, decode: Callable[[dict], Any]) -> Path:
    """search/pareto.yaml and each front member's architecture file (search/pareto/trial_NNN/)."""
    goals = results.goals
    assert goals is not None
    front = []
    for member in sorted(results.front, key=lambda m: m["index"]):
        folder = ctx.search_dir / PARETO_DIR / f"trial_{member['index']:03d}"
        meta = {"algo": ctx.algo, "space": space.name, "trial": member["index"]}
        path = space.save_arch(decode(member), folder, meta)
        entry = {"index": member["index"], "arch": member["arch"], "metrics": member["metrics"]}
        front.append({**entry, "arch_file": str(Path(path).relative_to(ctx.search_dir.parent))})
    constraints = {c.metric: {k: v for k, v in (("min", c.min), ("max", c.max)) if v is not None}
                   for c in goals.constraints}  # fmt: skip
    document = {
        "objectives": [{"metric": o.metric, "goal": o.goal} for o in goals.objectives],
        "constraints": constraints,
        "reference_point": list(results.reference) if results.reference is not None else None,
        "hypervolume": results.hypervolume,
        # the front's hypervolume after each trial against the final reference point (never decreasing)
        "hypervolume_curve": [list(p) for p in hypervolume_curve(results.records, goals, results.reference)],
        "rejected": results.rejected,
        "front": front,
        "selected": results.best["index"] if results.best is not None else None,
        "rule": goals.rule,
    }
    path = ctx.search_dir / PARETO_FILE
    atomic_write_yaml(path, plain(document))
    return path


def run_trials(
    ctx: RunContext,
    space: SearchSpace,
    propose: ProposeFn,
    budget: Budget,
    evaluator: Evaluator | None = None,
    mode: str = "max",
    best_arch: Callable[[dict[str, Any]], Any] | None = None,
    goals: Goals | None = None,
    measure: MeasureFn | None = None,
    member_arch: Callable[[dict[str, Any]], Any] | None = None,
) -> tuple[Any, dict[str, Any], list[dict[str, Any]]]:
    """Run `propose` through the trial loop under `budget`: (best arch, search metrics, trial records).
    `evaluator` None: the one nas.search.evaluate_by names; `best_arch` turns the best trial's record into the
    architecture (default: the space's decoding of its `arch`). `goals` None: the run's (nas.search), with the
    evaluator's metric as the single default objective; `measure` None: the space's networks measured
    (a strategy whose arch is no JSON of its space passes its own, or none to have the evaluator give them);
    `member_arch` decodes a front member's record for its file (default: as `best_arch`)."""
    evaluator = evaluator or make_evaluator(ctx, space)
    if goals is None:
        goals = search_goals(ctx, evaluator.objective, mode)
        measure = measure or space_measure(space, ctx.conf["nas"]["search"], ctx.seed)
    if not goals.legacy:
        how = f"--nas.search.evaluate_by {ctx.conf['nas']['search']['evaluate_by']}"
        require_produced(goals, getattr(evaluator, "produces", None), how)
        ctx.log.info(f"[search] objectives: {goals.describe()}; final pick from the front: {goals.rule}")
    executor = make_executor(ctx.conf["common"], ctx.log)
    loop = TrialLoop(
        ctx.search_dir,
        ctx.seed,
        budget,
        objective=evaluator.objective,
        mode=mode,
        resume=ctx.resume,
        executor=executor,
        log=ctx.log.info,
        record=ctx.log.record,
        on_recorded=evaluator.forget,
        goals=goals,
        measure=measure if not goals.legacy else None,
    )
    try:
        results = loop.run(propose, evaluator)
    finally:
        executor.close()
    decode = best_arch if best_arch is not None else (lambda r: space.from_json(r["arch"]))
    if not goals.legacy:
        return _pick_from_front(ctx, space, goals, results, decode, member_arch or decode)
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

    multi_objective = False  # True: takes several nas.search.objectives (the front chooses the final one)

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


def _pick_from_front(
    ctx: RunContext,
    space: SearchSpace,
    goals: Goals,
    results: TrialResults,
    decode: Callable[[dict], Any],
    member_arch: Callable[[dict], Any],
) -> tuple[Any, dict[str, Any], list[dict[str, Any]]]:
    """The selected front member, pareto.yaml, and the search metrics of a search with goals."""
    records = results.records
    if results.best is None:
        if not records:
            raise ConfigError("the search budget ran out before a single trial finished; raise it")
        near = closest(records, goals)
        nearest = ""
        if near is not None:
            values = ", ".join(f"{c.metric} {near['metrics'].get(c.metric)}" for c in goals.constraints)
            nearest = f"; the nearest, trial {near['index'] + 1}, has {values}"
        raise TrainingDiverged(
            f"no trial of {len(records)} met the constraints ({goals.describe()}) with finite objectives"
            f"{nearest} (see search/trials.yaml)"
        )
    write_pareto(ctx, space, results, member_arch)
    best = results.best
    primary = goals.primary.metric
    metrics: dict[str, Any] = {f"best_{primary}": best["metrics"][primary], "best_trial": best["index"]}
    metrics["n_trials"] = len(records)
    metrics.update(
        n_rejected=results.rejected,
        n_infeasible=sum(not r["feasible"] for r in records),
        front_size=len(results.front),
        hypervolume=results.hypervolume,
        selected_by=goals.rule,
        selected_metrics=dict(best["metrics"]),
    )
    ctx.log.info(
        f"[search] front of {len(results.front)} feasible trials, hypervolume {results.hypervolume:.6g}; "
        f"{results.rejected} proposals rejected by cheap constraints; selected trial {best['index'] + 1} "
        f"({goals.rule}) -> {ctx.search_dir / PARETO_FILE}"
    )
    return decode(best), metrics, records
