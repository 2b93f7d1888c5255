"""How a black-box strategy's trial is evaluated: `nas.search.evaluate_by` turned into the TrialLoop's EvaluateFn.

- `train`: the trial's network (`space.build(arch)`, initialized right after `torch.manual_seed(trial.seed)`)
  is trained briefly by the shared Trainer on the weights split (nas.search.trainer) and scored on the arch
  split; metric `val_top1`. Each trial has its own checkpoint file, so a kill mid-trial resumes that trial,
  and the file is deleted only once the trial is in the index (a kill in between deletes nothing needed).
  With nas.search.fidelity (successive halving, Hyperband, ASHA; archsearch/search/fidelity.py) a trial
  trains its candidate to the rung's resource (`resource` epochs) of a learning-rate schedule defined over
  the maximum resource (fidelity.max epochs replaces nas.search.trainer.epochs), and a promoted candidate
  continues from the checkpoint its last rung left (one file per candidate, kept until it can no longer be
  promoted): training to r_1 and then on to r_2 is the same computation as training straight to r_2.
  Off-process (Ray), the checkpoint travels with the trial (payload) and back (artifacts).
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

import hashlib
import random
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from archsearch.common.checkpoint import checksum_path, delete_checkpoint
from archsearch.common.devices import select_device
from archsearch.common.errors import ConfigError, TrainingDiverged
from archsearch.common.io import atomic_write_bytes, atomic_write_text, atomic_write_yaml
from archsearch.common.logging import plain
from archsearch.config import Config
from archsearch.data.loaders import search_loaders
from archsearch.search.benchmark_table import BenchmarkTable, table_from_conf
from archsearch.search.executors import make_executor
from archsearch.search.fidelity import Fidelity, fidelity_from_conf
from archsearch.search.metrics import MetricContext, cheap_metrics
from archsearch.search.objectives import (
    Goals,
    closest,
    goals_from_conf,
    hypervolume,
    hypervolume_curve,
    pareto_front,
    reference_point,
    require_produced,
    select,
    update_front,
)
from archsearch.search.space import SearchSpace
from archsearch.search.strategy import STRATEGIES, Strategy
from archsearch.search.trial_loop import (
    BEST_FILE,
    Budget,
    MeasureFn,
    ProposeFn,
    Trial,
    TrialLog,
    TrialLoop,
    TrialResults,
    finite_number,
)
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


class RungTrainer(Trainer):
    """A Trainer that stops after `stop_at` epochs of its schedule (which spans conf epochs, the maximum
    resource): the rung's part of a candidate's training; restored from a lower rung's checkpoint, it goes on."""

    def __init__(self, *args: Any, stop_at: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stop_at = stop_at
        self.stop_requested = self.epoch >= stop_at

    def post_epoch(self, epoch: int, metrics: dict[str, Any]) -> None:
        if epoch + 1 >= self.stop_at:
            self.stop_requested = True

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.stop_requested = self.epoch >= self.stop_at  # a lower rung's checkpoint said stop: go on to this one


def train_trial(
    space: SearchSpace,
    conf_trainer: Mapping,
    loaders: tuple,
    trial: Trial,
    log: Any,
    device: torch.device,
    checkpoint: Path | None = None,
    resume: bool = False,
    stop_at: int | None = None,
) -> dict[str, Any]:
    """Train trial's network briefly and score it on the arch split: {"val_top1": ...}. `stop_at`: stop after
    that many epochs of the schedule (a fidelity rung), continuing from `checkpoint` when `resume` finds it."""
    torch.manual_seed(trial.seed)  # the trial's initial weights depend on (run seed, index) alone
    model = space.build(space.from_json(trial.arch, f"trial {trial.index}"))
    phase = f"trial {trial.index + 1}"
    if stop_at is None:
        trainer = Trainer(conf_trainer, model, log, device, phase, checkpoint)
    else:
        trainer = RungTrainer(conf_trainer, model, log, device, phase, checkpoint, stop_at=stop_at)
    metrics = trainer.fit(*loaders, resume=resume)
    return {"val_top1": metrics["val_top1"]}


def fidelity_trainer(conf_trainer: Mapping, fidelity: Fidelity | None) -> Mapping:
    """nas.search.trainer with fidelity.max epochs: the schedule every rung's training is a part of."""
    if fidelity is None:
        return conf_trainer
    data = conf_trainer.to_dict() if isinstance(conf_trainer, Config) else dict(conf_trainer)
    data["epochs"] = fidelity.max
    return Config(data, getattr(conf_trainer, "path", "nas.search.trainer"))


def write_checkpoint_bytes(path: Path, data: bytes) -> None:
    """A checkpoint's bytes (as save_checkpoint wrote them elsewhere) and its sha256 beside them."""
    atomic_write_bytes(path, data)
    atomic_write_text(checksum_path(path), hashlib.sha256(data).hexdigest() + "\n")


@dataclass
class TrainWork:
    """TrainEvaluator's trials in a worker: the loaders are built there, on the first trial, from the dataset's
    settings (in-memory datasets are made, files read from the dataroot of the worker's machine). With a
    fidelity, the candidate's checkpoint comes as the payload (bytes, None at its first rung) and goes back
    as the artifact `checkpoint`."""

    space: SearchSpace
    conf_dataset: Mapping
    conf_search: Mapping
    device: str  # common.device, resolved in the worker: its GPU, if the trial was given one
    seed: int
    fidelity: Fidelity | None = None
    _loaders: tuple | None = field(default=None, repr=False)

    def __call__(self, trial: Trial, payload: Any, log: TrialLog) -> tuple[dict[str, Any], dict[str, Any]]:
        device = select_device(self.device)
        if self._loaders is None:
            self._loaders = search_loaders(self.conf_dataset, self.conf_search["loader"], device, self.seed)
        if self.fidelity is None:
            return train_trial(self.space, self.conf_search["trainer"], self._loaders, trial, log, device), {}
        conf_trainer = fidelity_trainer(self.conf_search["trainer"], self.fidelity)
        with tempfile.TemporaryDirectory(prefix="archsearch_trial_") as folder:
            path = Path(folder) / "checkpoint.pt"
            if payload is not None:
                write_checkpoint_bytes(path, payload)
            metrics = train_trial(self.space, conf_trainer, self._loaders, trial, log, device, path, True,
                                  trial.extra["resource"])  # fmt: skip
            return metrics, {"checkpoint": path.read_bytes()}


class TrainEvaluator(ShippableEvaluator):
    objective = "val_top1"
    produces = ("val_top1",)
    multi_fidelity = True  # trains to a rung's resource and continues a candidate (nas.search.fidelity)

    def __init__(self, ctx: RunContext, space: SearchSpace, conf_search: Mapping) -> None:
        self.ctx, self.space, self.conf_search = ctx, space, conf_search
        self.fidelity = fidelity_from_conf(conf_search)
        self.conf_trainer = fidelity_trainer(conf_search["trainer"], self.fidelity)
        self._loaders: tuple | None = None  # built on the first trial: a resumed, finished search needs none

    def checkpoint(self, index: int) -> Path:
        """The checkpoint of the candidate first tried as trial `index` (one file for all its rungs)."""
        return self.ctx.search_dir / f"trial_{index:03d}_checkpoint.pt"

    def __call__(self, trial: Trial) -> dict[str, Any]:
        ctx = self.ctx
        if self._loaders is None:
            self._loaders = search_loaders(ctx.conf["dataset"], self.conf_search["loader"], ctx.device, ctx.seed)
        if self.fidelity is None:
            return train_trial(self.space, self.conf_trainer, self._loaders, trial, ctx.log, ctx.device,
                               self.checkpoint(trial.index), ctx.resume)  # fmt: skip
        # a promoted candidate continues from its checkpoint (resume: true whatever the run's resume says;
        # a fresh run has moved any earlier experiment aside, so the file is this candidate's)
        path = self.checkpoint(trial.extra["candidate"])
        if trial.extra["rung"] > 0 and not path.exists():
            ctx.log.warning(f"[search] trial {trial.index + 1}: candidate {trial.extra['candidate'] + 1}'s "
                            f"checkpoint {path} is gone; training it again from its first epoch")  # fmt: skip
        return train_trial(self.space, self.conf_trainer, self._loaders, trial, ctx.log, ctx.device, path,
                           ctx.resume or trial.extra["rung"] > 0, trial.extra["resource"])  # fmt: skip

    def work(self) -> TrainWork:
        ctx = self.ctx
        device = ctx.conf["common"]["device"]
        return TrainWork(self.space, ctx.conf["dataset"], self.conf_search, device, ctx.seed, self.fidelity)

    def payload(self, trial: Trial) -> Any:
        if self.fidelity is None or trial.extra["rung"] == 0:
            return None
        path = self.checkpoint(trial.extra["candidate"])
        return path.read_bytes() if path.exists() else None

    def receive(self, trial: Trial, metrics: dict[str, Any], artifacts: dict[str, Any]) -> dict[str, Any]:
        if self.fidelity is not None and "checkpoint" in artifacts:
            write_checkpoint_bytes(self.checkpoint(trial.extra["candidate"]), artifacts["checkpoint"])
        return metrics

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


def front_curve(results: TrialResults, fidelity: Fidelity | None) -> list[tuple[int, float]]:
    """(trials finished, hypervolume of the front so far) after each trial, against the final reference. With
    a fidelity the front is that of the highest resource reached so far (never across resources): it starts
    again, from that resource's first trial, each time a trial reaches a higher one."""
    goals = results.goals
    assert goals is not None
    if fidelity is None:
        return hypervolume_curve(results.records, goals, results.reference)
    front: list[dict[str, Any]] = []
    level, volume, curve = None, 0.0, []
    for finished, record in enumerate(results.records, 1):
        finite = finite_number(record["metrics"].get(goals.primary.metric))
        if finite and (level is None or record["resource"] > level):
            level, front, volume = record["resource"], [], 0.0
        if record["resource"] == level and update_front(front, record, goals):
            volume = hypervolume(front, goals, results.reference)
        curve.append((finished, volume))
    return curve


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
        "hypervolume_curve": [list(p) for p in front_curve(results, fidelity_from_conf(ctx.conf["nas"]["search"]))],
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
    rescore: RescoreFn | None = None,
) -> tuple[Any, dict[str, Any], list[dict[str, Any]]]:
    """Run `propose` through the trial loop under `budget`: (best arch, search metrics, trial records).
    `evaluator` None: the one nas.search.evaluate_by names; `best_arch` turns the best trial's record into the
    architecture (default: the space's decoding of its `arch`). `goals` None: the run's (nas.search), with the
    evaluator's metric as the single default objective; `measure` None: the space's networks measured
    (a strategy whose arch is no JSON of its space passes its own, or none to have the evaluator give them);
    `member_arch` decodes a front member's record for its file (default: as `best_arch`); `rescore` gives the
    finished trials metrics only their whole population has (see `rescored`)."""
    evaluator = evaluator or make_evaluator(ctx, space)
    if goals is None:
        goals = search_goals(ctx, evaluator.objective, mode)
        measure = measure or space_measure(space, ctx.conf["nas"]["search"], ctx.seed)
    if not goals.legacy:
        how = f"--nas.search.evaluate_by {ctx.conf['nas']['search']['evaluate_by']}"
        require_produced(goals, getattr(evaluator, "produces", None), how)
        ctx.log.info(f"[search] objectives: {goals.describe()}; final pick from the front: {goals.rule}")
    fidelity = fidelity_from_conf(ctx.conf["nas"]["search"])
    if fidelity is not None and not getattr(evaluator, "multi_fidelity", False):
        raise ConfigError(
            f"nas.search.fidelity needs trials trained for a resource (--nas.search.evaluate_by train); "
            f"--algos {ctx.algo} evaluates with {type(evaluator).__name__}, which has one fidelity: set "
            "--nas.search.fidelity null"
        )
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
        fidelity=fidelity,
    )
    try:
        results = loop.run(propose, evaluator)
    finally:
        executor.close()
    if rescore is not None:
        results = rescored(ctx, loop, results, rescore)
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
    metrics.update(fidelity_metrics(results.records, fidelity))
    arch = best_arch(best) if best_arch is not None else space.from_json(best["arch"])
    return arch, metrics, results.records


# the finished trials' records -> per record, metrics that replace its own (in the same order)
RescoreFn = Callable[[list[dict[str, Any]]], list[dict[str, Any]]]


def rescored(ctx: RunContext, loop: TrialLoop, results: TrialResults, rescore: RescoreFn) -> TrialResults:
    """`results` with each record's metrics updated by `rescore`, for a score that only the whole population
    gives (the proxy ensemble's ranks): the best trial, the front and its hypervolume are recomputed from them,
    and best_trial.yaml is rewritten; trials.yaml keeps what each trial returned. A resumed search rescores
    the same population to the same values, whatever order its trials finished in."""
    updates = rescore(results.records)
    if len(updates) != len(results.records):
        raise ValueError(f"rescore gave {len(updates)} rows for {len(results.records)} trials")
    records = [{**r, "metrics": {**r["metrics"], **u}} for r, u in zip(results.records, updates)]
    goals = results.goals
    if goals is None or goals.legacy:
        results = replace(results, records=records, best=loop.best_of(records))
    else:
        front = pareto_front(records, goals)
        reference = reference_point(goals, records)
        volume = hypervolume(front, goals, reference)
        results = replace(results, records=records, best=select(front, goals), front=front, reference=reference,
                          hypervolume=volume)  # fmt: skip
    if results.best is not None:
        atomic_write_yaml(ctx.search_dir / BEST_FILE, plain(results.best))
    return results


def fidelity_metrics(records: list[dict[str, Any]], fidelity: Fidelity | None) -> dict[str, Any]:
    """A fidelity search's counts: candidates, trials per resource, and the resource spent (none without)."""
    if fidelity is None:
        return {}
    per: dict[int, int] = {}
    for r in records:
        per[r["resource"]] = per.get(r["resource"], 0) + 1
    spent, reached = 0, {}
    for r in records:  # a promotion trains only the epochs beyond the candidate's previous rung
        spent += r["resource"] - reached.get(r["candidate"], 0)
        reached[r["candidate"]] = r["resource"]
    return {"n_candidates": len(reached), "trials_per_resource": dict(sorted(per.items())),
            f"{fidelity.resource}_trained": spent}  # fmt: skip


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
        notes = [f"{self.name}: {' or '.join(x for x in limits if x)}, evaluated by {self.evaluate_by()}"]
        fidelity = fidelity_from_conf(self.conf)
        if fidelity is not None:
            s = fidelity.bracket_s(0)
            rungs = ", ".join(f"{n} x {r}" for n, r in fidelity.table()[fidelity.s_max - s])
            notes.append(f"fidelity: {fidelity.describe()}; first bracket (candidates x {fidelity.resource}): {rungs}; "
                         "the trials budget counts candidates")  # fmt: skip
        return notes


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
    metrics.update(fidelity_metrics(records, fidelity_from_conf(ctx.conf["nas"]["search"])))
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
