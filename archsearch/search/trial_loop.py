"""The one trial loop: every strategy that evaluates candidates one by one (random, REA, NASWOT, morphism).

The loop owns what every such search needs and none should write again:

- the trial index `search/trials.yaml`: one record per finished trial, written atomically after each, in the
  order trials finished; a resumed search reads it back and never reruns a finished trial;
- the per-trial seed (`trial_seed`): trial i's proposal RNG and its evaluation's torch seed come from
  (run seed, i) alone, so a resumed or re-ordered search draws the same numbers;
- the budget: a number of trials and/or seconds of evaluation (the sum of finished trials' times, so a
  resumed search counts what the killed one spent);
- the best-so-far record, in every trial record (`best_so_far`) and in `search/best_trial.yaml`.

A strategy proposes through `propose(index, rng, history)`: the architecture (a JSON value) of trial
`index`, given the finished trials in `history`; it may return `(arch, extra)` to store YAML-safe fields
beside it (a morphism father id), or None when it has nothing left to propose (the loop then finishes the
trials in flight and stops). Proposals depend only on (rng, history), so replaying the index rebuilds
a strategy's state exactly: no strategy RNG needs checkpointing. An `Executor` evaluates the proposed
trials: `LocalExecutor` one at a time in this process, `RayExecutor` (archsearch/search/ray_executor.py,
`--common.executor ray`) several at once as Ray tasks, on this machine or a cluster.

An evaluator that can run off-process is `Shippable`: `work()` is the picklable part a worker runs (shipped
once per search), `payload(trial)` what one trial needs beyond its arch and seed (morphism: the graph's JSON
and inherited weights), `receive(...)` the driver's part (writing a trial's weights into the experiment
folder). A trial the executor gave up on (it raised or lost its worker `max_retries` + 1 times) comes back
as metrics `{"error": ..., "attempts": n}`: the loop records it with a NaN objective, warns and goes on.

Objectives and constraints (`goals`, archsearch/search/objectives.py): with several objectives or any
constraint, the loop computes the cheap metrics the goals name (`measure(arch, names)`, on the driver, before
the trial is submitted), rejects a proposal that breaks a cheap constraint and asks `propose` again with the
same trial RNG (at most `max_rejects` times, then one line naming the constraint), so no evaluation is spent
on it; rejections are not trials, but each record counts those before it (`rejected`). Every record then
also has `feasible` (all constraints, the expensive ones checked after evaluation) and the `hypervolume` of
the front of the feasible trials so far, which the loop keeps (`TrialResults.front`); the best trial is the
front member the goals' rule selects. With one objective, the evaluator's, and no constraints (`legacy`),
none of this is computed and the records are what they always were.

Multi-fidelity trials (`fidelity`, archsearch/search/fidelity.py: successive halving, Hyperband, ASHA): a
trial is one candidate trained to one rung's resource, and its record says which (`candidate`, the index of
the candidate's first trial, `bracket`, `rung`, `resource`). The scheduler picks each next trial from the
index and the trials in flight, a promotion (the candidate's arch and seed, continuing from its checkpoint)
or a new candidate from `propose`, which then sees only the candidates' records at the minimum resource.
The budget's number of trials counts candidates; the best trial (and the front) is taken among the records
at the highest resource reached. `on_recorded(candidate)` is called once a candidate can no longer be
promoted (its checkpoint may go), and for every candidate when the search ends. Null (None) fidelity runs
the loop exactly as before.
"""

from __future__ import annotations

import math
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from archsearch.common import distributed
from archsearch.common.checkpoint import fault_point
from archsearch.common.errors import ConfigError
from archsearch.common.io import atomic_write_yaml
from archsearch.common.logging import plain
from archsearch.common.readers import read_yaml
from archsearch.search.fidelity import FIELDS, Fidelity, Scheduler, history_for_proposals, level_records
from archsearch.search.objectives import (
    Goals,
    Objective,
    hypervolume,
    on_front,
    pareto_front,
    reference_point,
    select,
    update_front,
)

TRIALS_FILE = "trials.yaml"
BEST_FILE = "best_trial.yaml"
PENDING_FILE = "trials_pending.yaml"  # the trials in flight of a parallel search
SEED_STRIDE = 7919  # a prime: trial seeds of neighbouring run seeds do not overlap for < 7919 trials
MAX_REJECTS = 200  # proposals in a row that break a cheap constraint before the search gives up


def trial_seed(run_seed: int, index: int) -> int:
    """The seed of trial `index` of a run seeded `run_seed` (proposal RNG and evaluation torch seed)."""
    return run_seed * SEED_STRIDE + index


def finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


REPAIR = "delete it, or rerun without --common.resume true to start over (the earlier run is moved aside)"


def read_trials(path: Path, what: str) -> list[dict[str, Any]]:
    """The trial records of `path` (the index, or the trials in flight), each a mapping with an integer
    `index` >= 0 and a `seed`; a broken or planted file is one line naming it."""
    records = read_yaml(path, what, ConfigError, expect=list, empty=[])
    seen: set[int] = set()
    for n, r in enumerate(records):
        index = r.get("index") if isinstance(r, dict) else None
        if not isinstance(index, int) or isinstance(index, bool) or index < 0:
            raise ConfigError(f"{what} {path}: entry {n + 1} is not a trial record with an index >= 0; {REPAIR}")
        if index in seen:
            raise ConfigError(f"{what} {path}: trial {index} appears twice; {REPAIR}")
        seen.add(index)
        if "arch" not in r or not isinstance(r.get("seed"), int) or isinstance(r.get("seed"), bool):
            raise ConfigError(f"{what} {path}: trial {index} lacks its arch or an integer seed; {REPAIR}")
    return records


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if finite_number(value) else str(value)


@dataclass(frozen=True)
class Trial:
    index: int
    arch: Any  # the space's JSON encoding
    seed: int
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Budget:
    """Stop after `n_trials` finished trials and/or `time_s` seconds of evaluation (None: no limit)."""

    n_trials: int | None = None
    time_s: float | None = None

    def __post_init__(self) -> None:
        if self.n_trials is None and self.time_s is None:
            raise ConfigError("a search budget needs a number of trials or a time limit (both are null)")

    def exhausted(self, n_done: int, seconds: float) -> bool:
        return (self.n_trials is not None and n_done >= self.n_trials) or (
            self.time_s is not None and seconds >= self.time_s
        )


Proposal = Any  # an arch, or (arch, extra fields)
ProposeFn = Callable[[int, random.Random, list[dict[str, Any]]], Proposal]
EvaluateFn = Callable[[Trial], dict[str, Any]]
ERROR_KEY = "error"  # metrics of a trial the executor gave up on: {"error": "...", "attempts": n}
MeasureFn = Callable[[Any, list[str]], dict[str, float]]  # (arch JSON, cheap metric names) -> their values


class TrialLog:
    """A RunLog stand-in for a trial run off-process: it keeps the calls (info, warning, record, scalars) so
    the driver replays them into the run's log.log, log.yaml and TensorBoard as if the trial ran there."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple, dict]] = []

    def info(self, message: str) -> None:
        self.calls.append(("info", (message,), {}))

    def warning(self, message: str) -> None:
        self.calls.append(("warning", (message,), {}))

    def record(self, event: str, **fields: Any) -> None:
        self.calls.append(("record", (event,), plain(fields)))

    def scalars(self, prefix: str, values: Any, step: int) -> None:
        self.calls.append(("scalars", (prefix, plain(dict(values)), step), {}))

    @staticmethod
    def replay(calls: list[tuple[str, tuple, dict]], log: Any) -> None:
        for method, args, kwargs in calls:
            if hasattr(log, method):  # a plain print-like log takes only the lines
                getattr(log, method)(*args, **kwargs)
            elif method in ("info", "warning") and callable(log):
                log(*args)


# What a worker runs for one trial: (trial, payload, log) -> (metrics, artifacts for the driver)
TrialWork = Callable[[Trial, Any, TrialLog], tuple[dict[str, Any], dict[str, Any]]]


class Shippable(Protocol):
    """An EvaluateFn that can also run in another process, maybe on another machine."""

    def work(self) -> TrialWork: ...  # picklable; no live driver objects (logs, open files, the trial queue)
    def payload(self, trial: Trial) -> Any: ...  # built on the driver at submission
    def receive(self, trial: Trial, metrics: dict[str, Any], artifacts: dict[str, Any]) -> dict[str, Any]: ...


class Executor(Protocol):
    """Evaluates trials. `submit` hands one over; `next_result` blocks until some submitted trial finished.
    `cancel` stops the trials in flight (Ctrl-C, an error in the driver); `close` releases what the
    executor started. Neither touches the index: it holds finished trials only, so it stays resumable."""

    max_concurrent: int

    def submit(self, trial: Trial, evaluate: EvaluateFn) -> None: ...
    def next_result(self) -> tuple[Trial, dict[str, Any], float]: ...  # (trial, metrics, seconds)
    def pending(self) -> int: ...
    def cancel(self) -> None: ...
    def close(self) -> None: ...


class LocalExecutor:
    """In this process, one trial at a time, in proposal order (exactly reproducible)."""

    max_concurrent = 1

    def __init__(self) -> None:
        self._queue: list[tuple[Trial, EvaluateFn]] = []

    def submit(self, trial: Trial, evaluate: EvaluateFn) -> None:
        self._queue.append((trial, evaluate))

    def next_result(self) -> tuple[Trial, dict[str, Any], float]:
        trial, evaluate = self._queue.pop(0)
        start = time.perf_counter()
        fault_point(f"trial:run:{trial.index}")
        metrics = evaluate(trial)
        # torchrun: all ranks evaluated this trial together; rank 0's figures and time (which the budget counts)
        # go to every rank, so every rank's index, best trial and budget stay the same
        metrics, seconds = distributed.broadcast_object((metrics, time.perf_counter() - start))
        return trial, metrics, seconds

    def pending(self) -> int:
        return len(self._queue)

    def cancel(self) -> None:
        self._queue.clear()

    def close(self) -> None:
        pass


@dataclass
class TrialResults:
    records: list[dict[str, Any]]
    best: dict[str, Any] | None  # with goals: the front member the rule selects
    objective: str
    goals: Goals | None = None
    front: list[dict[str, Any]] = field(default_factory=list)  # the feasible non-dominated records (goals only)
    rejected: int = 0  # proposals refused by a cheap constraint, never evaluated
    reference: tuple[float, ...] | None = None
    hypervolume: float = 0.0


class TrialLoop:
    """Runs proposals through an executor until the budget is spent, recording every finished trial.

    `objective` names the metric to maximize (`mode="min"` to minimize) among those `evaluate` returns.
    `folder` None keeps the index in memory only (tabular benchmarks that run thousands of searches);
    `on_recorded(index)` is called once trial `index` is safely in the index, also for the trials a resumed
    search reads back, so an evaluator can delete what only an unfinished trial needs (its checkpoint).
    `goals` (objectives and constraints) replace `objective`/`mode` when given; `measure` computes cheap metrics
    of a proposed arch (None: the evaluator returns them too, and cheap constraints are checked after it).
    """

    def __init__(
        self,
        folder: Path | None,
        seed: int,
        budget: Budget,
        objective: str = "val_top1",
        mode: str = "max",
        resume: bool = False,
        executor: Executor | None = None,
        log: Callable[[str], None] = print,
        record: Callable[..., None] | None = None,
        on_recorded: Callable[[int], None] | None = None,
        goals: Goals | None = None,
        measure: MeasureFn | None = None,
        max_rejects: int = MAX_REJECTS,
        fidelity: Fidelity | None = None,
    ) -> None:
        if goals is not None:
            objective, mode = goals.primary.metric, goals.primary.goal
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be max or min, got {mode!r}")
        self.folder = Path(folder) if folder is not None else None
        self.seed, self.budget = seed, budget
        self.objective, self.mode, self.resume = objective, mode, resume
        self.executor = executor or LocalExecutor()
        self.log, self.record_event, self.on_recorded = log, record, on_recorded
        self.index_file = self.folder / TRIALS_FILE if self.folder is not None else None
        self.n_failed = 0  # trials the executor gave up on, for the progress line
        self.goals = goals if goals is not None else Goals((Objective(objective, mode),), legacy=True)
        self.measure, self.max_rejects = measure, max_rejects
        self.front: list[dict[str, Any]] = []
        self.rejected = 0
        self._cheap: dict[int, dict[str, float]] = {}  # cheap metrics of the trials in flight
        self._rejected: dict[int, int] = {}  # proposals rejected before each trial in flight
        self.fidelity = fidelity
        self._retired: set[int] = set()  # candidates whose clean-up was asked for (fidelity)

    # ---- the index -------------------------------------------------------------------------------
    def read_index(self) -> list[dict[str, Any]]:
        if not (self.resume and self.index_file is not None and self.index_file.exists()):
            return []
        records = read_trials(self.index_file, "trial index")
        for r in records:
            if not isinstance(r.get("metrics"), dict) or self.objective not in r["metrics"]:
                raise ConfigError(
                    f"trial index {self.index_file}: trial {r['index']} has no metrics.{self.objective}; "
                    f"{REPAIR}"
                )
            if not finite_number(r.get("time_s")) or r["time_s"] < 0:
                raise ConfigError(f"trial index {self.index_file}: trial {r['index']} has no time_s >= 0; {REPAIR}")
        return records

    def better(self, a: float, b: float | None) -> bool:
        """A failed trial's objective (NaN, which the index stores as the string 'nan') is never better."""
        if not finite_number(a):
            return False
        if not finite_number(b):
            return True
        return a > b if self.mode == "max" else a < b

    def best_of(self, records: list[dict[str, Any]]) -> dict[str, Any] | None:
        if not self.goals.legacy:
            return select(pareto_front(records, self.goals), self.goals)  # type: ignore[return-value]
        best = None
        for r in records:
            if self.better(r["metrics"][self.objective], self._value(best)):
                best = r
        return best

    def _value(self, record: dict[str, Any] | None) -> float | None:
        return record["metrics"][self.objective] if record is not None else None

    # ---- the loop --------------------------------------------------------------------------------
    def run(self, propose: ProposeFn, evaluate: EvaluateFn) -> TrialResults:
        try:
            return self._run(propose, evaluate)
        except BaseException:  # Ctrl-C or an error: stop the trials in flight; the index holds finished ones
            self.executor.cancel()
            raise

    def _run(self, propose: ProposeFn, evaluate: EvaluateFn) -> TrialResults:
        if self.fidelity is not None:
            return self._run_fidelity(propose, evaluate, self.fidelity)
        records = self.read_index()
        if records:
            self.log(f"[search] resuming after {len(records)} finished trials ({self.index_file})")
        for r in records:  # a kill between a trial's record and its clean-up left its leftovers
            self._recorded(r["index"])
        best = self.best_of(records)
        if not self.goals.legacy:
            self.front = pareto_front(records, self.goals)  # type: ignore[assignment]
            self.rejected = sum(r.get("rejected", 0) for r in records)
        next_index = max((r["index"] for r in records), default=-1) + 1
        spent = sum(r["time_s"] for r in records)
        self.n_failed = sum(ERROR_KEY in r["metrics"] for r in records)
        # trials a killed parallel search left running below its last index: rerun as they were proposed
        unfinished = self._unfinished(records, next_index)
        adopt = getattr(evaluate, "adopt", None)  # an evaluator keeping per-trial state learns of them
        in_flight: dict[int, Trial] = {}
        proposing = True
        while True:
            while (
                (unfinished or proposing)
                and len(in_flight) < self.executor.max_concurrent
                and not self.budget.exhausted(len(records) + len(in_flight), spent)
            ):
                if unfinished:
                    trial = unfinished.pop(0)
                    if adopt is not None:
                        adopt(trial)
                    self._measure(trial)
                else:
                    trial = self._propose(propose, next_index, records)
                    if trial is None:  # the strategy's space is exhausted
                        proposing = False
                        break
                    next_index += 1
                self.executor.submit(trial, evaluate)
                in_flight[trial.index] = trial
            if not in_flight:
                break
            self._write_pending(in_flight)
            trial, metrics, seconds = self.executor.next_result()
            in_flight.pop(trial.index)
            spent += seconds
            record = self._record(trial, metrics, seconds)
            if self.goals.legacy:
                if self.better(record["metrics"][self.objective], self._value(best)):
                    best = record
            else:
                best = self._update_front(record, records)
            record["best_so_far"] = self._value(best)  # None while no trial has a finite objective
            records.append(record)
            if self.folder is not None:
                atomic_write_yaml(self.index_file, records)
                if best is not None:
                    atomic_write_yaml(self.folder / BEST_FILE, best)
            fault_point(f"trial:recorded:{trial.index}")
            self._recorded(trial.index)
            if self.record_event is not None:
                self.record_event("trial", **{k: v for k, v in record.items() if k != "arch"}, arch=trial.arch)
            self._progress(record, best, len(records))
        if self.goals.legacy:
            return TrialResults(records, best, self.objective)
        reference = reference_point(self.goals, records)
        return TrialResults(
            records,
            best,
            self.objective,
            self.goals,
            self.front,
            self.rejected,
            reference,
            hypervolume(self.front, self.goals, reference),
        )

    def _record(self, trial: Trial, metrics: dict[str, Any], seconds: float) -> dict[str, Any]:
        """A finished trial's record: the evaluator's metrics with the goals' cheap ones; a trial the executor
        gave up on gets a NaN objective, is counted and warned about."""
        if ERROR_KEY in metrics and self.objective not in metrics:  # the executor gave up on it
            self.n_failed += 1
            metrics = {self.objective: math.nan, **metrics}
            self.log(f"[search] WARNING: trial {trial.index + 1} skipped: {metrics[ERROR_KEY]}")
        metrics = self._with_goals(trial, metrics)
        if self.objective not in metrics:
            raise KeyError(f"trial {trial.index} returned no {self.objective!r} metric: {sorted(metrics)}")
        return {
            "index": trial.index,
            "arch": trial.arch,
            "seed": trial.seed,
            "metrics": plain(metrics),
            "time_s": round(seconds, 4),
            **plain(trial.extra),
        }

    # ---- objectives and constraints ----------------------------------------------------------------
    def _measure(self, trial: Trial) -> dict[str, float]:
        """The cheap metrics the goals name, of `trial`'s arch (kept until its result arrives)."""
        names = self.goals.cheap_names() if not self.goals.legacy and self.measure is not None else []
        self._cheap[trial.index] = self.measure(trial.arch, names) if names else {}  # type: ignore[misc]
        return self._cheap[trial.index]

    def _with_goals(self, trial: Trial, metrics: dict[str, Any]) -> dict[str, Any]:
        """The evaluator's metrics with the trial's cheap ones (goals only); a trial the executor gave up on
        gets NaN for every expensive metric the goals name."""
        cheap = self._cheap.pop(trial.index, {})
        if self.goals.legacy:
            return metrics
        if ERROR_KEY in metrics:
            metrics = {**{n: math.nan for n in self.goals.names() if n not in cheap}, **metrics}
        missing = [n for n in self.goals.names() if n not in metrics and n not in cheap]
        if missing:
            raise KeyError(f"trial {trial.index} returned no {missing[0]!r} metric: {sorted(metrics)}")
        return {**cheap, **metrics}

    def _update_front(self, record: dict[str, Any], records: list[dict[str, Any]]) -> dict[str, Any] | None:
        """Add the goals' fields to `record` (records: the trials before it); the selected front member."""
        goals = self.goals
        record["feasible"] = goals.feasible(record["metrics"])
        record["rejected"] = self._rejected.pop(record["index"], 0)
        update_front(self.front, record, goals)
        reference = reference_point(goals, [*records, record])
        record["hypervolume"] = hypervolume(self.front, goals, reference)
        return select(self.front, goals)  # type: ignore[return-value]

    def _write_pending(self, in_flight: dict[int, Trial]) -> None:
        """The trials in flight, beside the index: a parallel search finishes trials out of order, so a
        killed one can leave unfinished trials below its last finished one. (One at a time, the unfinished
        trial is always the next index, which a resumed search proposes again identically: no file.)"""
        if self.folder is None or self.executor.max_concurrent == 1:
            return
        pending = [{"index": i, "arch": t.arch, "seed": t.seed, "extra": plain(t.extra)} for i, t in in_flight.items()]
        atomic_write_yaml(self.folder / PENDING_FILE, sorted(pending, key=lambda t: t["index"]))

    def _unfinished(self, records: list[dict[str, Any]], next_index: int) -> list[Trial]:
        path = self.folder / PENDING_FILE if self.folder is not None else None
        if not (self.resume and path is not None and path.exists()):
            return []
        done = {r["index"] for r in records}
        pending = read_trials(path, "list of unfinished trials")
        for t in pending:
            if not isinstance(t.get("extra", {}), dict):
                raise ConfigError(
                    f"list of unfinished trials {path}: trial {t['index']}'s extra is not a mapping; {REPAIR}"
                )
        # those at or above next_index were never finished before a later one either: they are proposed anew
        unfinished = [Trial(t["index"], t["arch"], t["seed"], t.get("extra", {})) for t in pending
                      if t["index"] not in done and t["index"] < next_index]  # fmt: skip
        if unfinished:
            self.log(f"[search] rerunning {len(unfinished)} trials the interrupted search left unfinished: "
                     f"{', '.join(str(t.index + 1) for t in unfinished)}")  # fmt: skip
        return unfinished

    def _recorded(self, index: int) -> None:
        if self.on_recorded is not None:
            self.on_recorded(index)

    def _propose(self, propose: ProposeFn, index: int, history: list[dict[str, Any]]) -> Trial | None:
        """Trial `index`'s proposal; one that breaks a cheap constraint is rejected and `propose` asked again
        with the same RNG (so a resumed search rejects and draws exactly the same)."""
        seed = trial_seed(self.seed, index)
        rng = random.Random(seed)
        constraints = self.goals.cheap_constraints() if self.measure is not None else ()
        broken: Counter[str] = Counter()
        nearest: dict[str, float] = {}
        for _ in range(self.max_rejects + 1):
            proposal = propose(index, rng, list(history))
            if proposal is None:
                return None
            arch, extra = proposal if isinstance(proposal, tuple) else (proposal, {})
            trial = Trial(index, arch, seed, dict(extra))
            cheap = self._measure(trial)
            bad = [c for c in constraints if c.violation(cheap.get(c.metric)) > 0]
            if not bad:
                if broken:
                    n = sum(broken.values())
                    self._rejected[index] = n
                    self.rejected += n
                    why = "; ".join(f"{k}: {v}" for k, v in broken.items())
                    self.log(f"[search] trial {index + 1}: {n} proposals rejected before it ({why}); "
                             f"{self.rejected} in all")  # fmt: skip
                return trial
            for c in bad:
                broken[c.text()] += 1
                value = cheap[c.metric]
                if c.metric not in nearest or c.violation(value) < c.violation(nearest[c.metric]):
                    nearest[c.metric] = value
        self._cheap.pop(index, None)
        worst, times = broken.most_common(1)[0]
        metric = worst.split(" ")[0]
        raise ConfigError(
            f"no proposal for trial {index + 1} met the constraint {worst} in {self.max_rejects + 1} tries "
            f"({times} broke it; the nearest {metric} was {nearest[metric]:g}); loosen --nas.search.constraints "
            "or choose a space that can meet it"
        )

    def _progress(self, record: dict[str, Any], best: dict[str, Any] | None, n_done: int) -> None:
        n = self.budget.n_trials
        of = f"/{n}" if n is not None else ""
        so_far = (
            f"best so far {_fmt(self._value(best))} (trial {best['index'] + 1})" if best else "no finite result yet"
        )
        # with trials in parallel, the line also says where the whole search stands
        counts = (
            f"; {n_done} done, {self.executor.pending()} running, {self.n_failed} failed"
            if self.executor.max_concurrent > 1 or self.n_failed
            else ""
        )
        goals = ""
        if not self.goals.legacy:
            others = "".join(f", {o.metric} {_fmt(record['metrics'].get(o.metric))}" for o in self.goals.objectives[1:])
            feasible = "" if record["feasible"] else " (infeasible)"
            goals = f"{others}{feasible}; front {len(self.front)}, hypervolume {record['hypervolume']:.6g}"
        self.log(
            f"[search] trial {record['index'] + 1}{of}: {self.objective} "
            f"{_fmt(record['metrics'][self.objective])}{goals}; {so_far}{counts}"
        )

    # ---- multi-fidelity: successive halving, Hyperband, ASHA ---------------------------------------
    def _rank(self, rung: list[dict[str, Any]]) -> list[tuple | None]:
        """The sort keys of one rung's records (smaller is better), compared within the rung only: feasible
        first, then, with several objectives, the non-dominated layer (Archai's SuccessiveHalvingSearch and
        MO-ASHA, Schmucker et al. 2021, promote by non-dominated sorting), then the primary objective; None for
        a failed trial, never promoted."""
        layer: dict[int, int] = {}
        if len(self.goals.objectives) > 1:
            left = [r for r in rung if on_front(r, self.goals)]
            depth = 0
            while left:
                front = pareto_front(left, self.goals)
                layer.update((id(r), depth) for r in front)
                left = [r for r in left if id(r) not in layer]
                depth += 1
        keys: list[tuple | None] = []
        for r in rung:
            value = r["metrics"].get(self.objective)
            if not finite_number(value):
                keys.append(None)
                continue
            last = len(rung)  # feasible but off every front (an objective not finite): after the layers
            keys.append((r.get("feasible") is False, layer.get(id(r), last), -value if self.mode == "max" else value))
        return keys

    def _check_fields(self, records: list[dict[str, Any]]) -> None:
        for r in records:
            bad = [k for k in FIELDS if not isinstance(r.get(k), int) or isinstance(r.get(k), bool) or r[k] < 0]
            if bad:
                raise ConfigError(
                    f"trial index {self.index_file}: trial {r['index']} has no {bad[0]} (a record of a search "
                    f"without nas.search.fidelity?); {REPAIR}"
                )

    def _fidelity_best(self, records: list[dict[str, Any]]) -> dict[str, Any] | None:
        """The best record at the highest resource reached (with goals: the rule's pick of that level's
        front, which is kept in self.front)."""
        level = level_records(records, lambda r: finite_number(r["metrics"].get(self.objective)))
        if self.goals.legacy:
            return self.best_of(level)  # type: ignore[arg-type]
        self.front = pareto_front(level, self.goals)  # type: ignore[assignment]
        return select(self.front, self.goals)  # type: ignore[return-value]

    def _retire(self, scheduler: Scheduler, records: list[dict[str, Any]], running: list[dict[str, Any]]) -> None:
        for candidate in sorted(scheduler.retired(records, running) - self._retired):
            self._retired.add(candidate)
            self._recorded(candidate)

    def _run_fidelity(self, propose: ProposeFn, evaluate: EvaluateFn, fidelity: Fidelity) -> TrialResults:
        asynchronous = fidelity.asynchronous
        if asynchronous is None:  # ASHA when trials run side by side: no worker waits for a rung to finish
            asynchronous = self.executor.max_concurrent > 1
        if asynchronous and fidelity.hyperband:
            raise ConfigError(
                "nas.search.fidelity: hyperband runs its brackets synchronously; with trials in parallel set "
                "asynchronous: false, or hyperband: false for ASHA"
            )
        scheduler = Scheduler(fidelity, self._rank, asynchronous)
        records = self.read_index()
        self._check_fields(records)
        how = "ASHA (asynchronous)" if asynchronous else "synchronous"
        s0 = fidelity.bracket_s(0)
        rungs = [fidelity.resource_of(s0, i) for i in range(s0 + 1)]
        self.log(f"[search] {fidelity.describe()}, {how}; rungs of the first bracket: {rungs}")
        if records:
            self.log(f"[search] resuming after {len(records)} finished trials ({self.index_file})")
        if not self.goals.legacy:
            self.rejected = sum(r.get("rejected", 0) for r in records)
        best = self._fidelity_best(records)
        next_index = max((r["index"] for r in records), default=-1) + 1
        spent = sum(r["time_s"] for r in records)
        self.n_failed = sum(ERROR_KEY in r["metrics"] for r in records)
        unfinished = self._unfinished(records, next_index)
        self._retire(scheduler, records, [t.extra for t in unfinished])  # what a killed search left to delete
        first = {r["candidate"]: r for r in records if r["rung"] == 0}
        adopt = getattr(evaluate, "adopt", None)
        in_flight: dict[int, Trial] = {}
        proposing = True
        n_max = self.budget.n_trials

        def history() -> list[dict[str, Any]]:
            return history_for_proposals(records, fidelity)

        while True:
            # the time budget stops every new trial (promotions too); the trials budget counts candidates
            while len(in_flight) < self.executor.max_concurrent and not self.budget.exhausted(0, spent):
                if unfinished:
                    trial = unfinished.pop(0)
                    if adopt is not None:
                        adopt(trial)
                    self._measure(trial)
                else:
                    n_candidates = len(first) + sum(t.extra["rung"] == 0 for t in in_flight.values())
                    can_add = proposing and (n_max is None or n_candidates < n_max)
                    job = scheduler.next_job(records, [t.extra for t in in_flight.values()], can_add)
                    if job is None:
                        break
                    if job.candidate is None:
                        proposed = self._propose(propose, next_index, history())
                        if proposed is None:  # the strategy's space is exhausted: promotions go on
                            proposing = False
                            continue
                        trial = Trial(next_index, proposed.arch, proposed.seed,
                                      {**proposed.extra, **job.fields(next_index)})  # fmt: skip
                    else:  # a promotion: the candidate's arch and seed; its checkpoint holds the rest
                        base = first[job.candidate]
                        trial = Trial(next_index, base["arch"], base["seed"], job.fields(next_index))
                        self._measure(trial)
                    next_index += 1
                self.executor.submit(trial, evaluate)
                in_flight[trial.index] = trial
            if not in_flight:
                break
            self._write_pending(in_flight)
            trial, metrics, seconds = self.executor.next_result()
            in_flight.pop(trial.index)
            spent += seconds
            record = self._record(trial, metrics, seconds)
            if not self.goals.legacy:
                record["feasible"] = self.goals.feasible(record["metrics"])
                record["rejected"] = self._rejected.pop(record["index"], 0)
            records.append(record)
            if record["rung"] == 0:
                first[record["candidate"]] = record
            best = self._fidelity_best(records)
            if not self.goals.legacy:
                level = level_records(records, lambda r: finite_number(r["metrics"].get(self.objective)))
                record["hypervolume"] = hypervolume(self.front, self.goals, reference_point(self.goals, level))
            record["best_so_far"] = self._value(best)
            if self.folder is not None:
                atomic_write_yaml(self.index_file, records)
                if best is not None:
                    atomic_write_yaml(self.folder / BEST_FILE, best)
            fault_point(f"trial:recorded:{trial.index}")
            self._retire(scheduler, records, [t.extra for t in in_flight.values()])
            if self.record_event is not None:
                self.record_event("trial", **{k: v for k, v in record.items() if k != "arch"}, arch=trial.arch)
            self._progress_fidelity(record, best, len(first))
        for candidate in sorted(set(first) - self._retired):  # over: no candidate will be promoted again
            self._retired.add(candidate)
            self._recorded(candidate)
        if self.goals.legacy:
            return TrialResults(records, best, self.objective)
        level = level_records(records, lambda r: finite_number(r["metrics"].get(self.objective)))
        reference = reference_point(self.goals, level)
        return TrialResults(records, best, self.objective, self.goals, self.front, self.rejected, reference,
                            hypervolume(self.front, self.goals, reference))  # fmt: skip

    def _progress_fidelity(self, record: dict[str, Any], best: dict[str, Any] | None, n_candidates: int) -> None:
        n = self.budget.n_trials
        of = f"/{n}" if n is not None else ""
        so_far = (
            f"best so far {_fmt(self._value(best))} (trial {best['index'] + 1}, {best['resource']} "
            f"{self.fidelity.resource if self.fidelity else ''})"
            if best
            else "no finite result yet"
        )
        parallel = self.executor.max_concurrent > 1
        counts = f"; {self.executor.pending()} running, {self.n_failed} failed" if parallel else ""
        self.log(
            f"[search] trial {record['index'] + 1}: candidate {record['candidate'] + 1}{of} rung {record['rung']} "
            f"({record['resource']} {self.fidelity.resource if self.fidelity else ''}): {self.objective} "
            f"{_fmt(record['metrics'][self.objective])}; {so_far}{counts}"
        )
