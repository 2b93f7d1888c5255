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
trials: `LocalExecutor` one at a time in this process (the seam a parallel executor plugs into).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

from archsearch.common import distributed
from archsearch.common.checkpoint import fault_point
from archsearch.common.errors import ConfigError
from archsearch.common.io import atomic_write_yaml
from archsearch.common.logging import plain

TRIALS_FILE = "trials.yaml"
BEST_FILE = "best_trial.yaml"
SEED_STRIDE = 7919  # a prime: trial seeds of neighbouring run seeds do not overlap for < 7919 trials


def trial_seed(run_seed: int, index: int) -> int:
    """The seed of trial `index` of a run seeded `run_seed` (proposal RNG and evaluation torch seed)."""
    return run_seed * SEED_STRIDE + index


def finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


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


class Executor(Protocol):
    """Evaluates trials. `submit` hands one over; `next_result` blocks until some submitted trial finished."""

    max_concurrent: int

    def submit(self, trial: Trial, evaluate: EvaluateFn) -> None: ...
    def next_result(self) -> tuple[Trial, dict[str, Any], float]: ...  # (trial, metrics, seconds)
    def pending(self) -> int: ...


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
        metrics = evaluate(trial)
        # torchrun: all ranks evaluated this trial together; rank 0's figures and time (which the budget counts)
        # go to every rank, so every rank's index, best trial and budget stay the same
        metrics, seconds = distributed.broadcast_object((metrics, time.perf_counter() - start))
        return trial, metrics, seconds

    def pending(self) -> int:
        return len(self._queue)


@dataclass
class TrialResults:
    records: list[dict[str, Any]]
    best: dict[str, Any] | None
    objective: str


class TrialLoop:
    """Runs proposals through an executor until the budget is spent, recording every finished trial.

    `objective` names the metric to maximize (`mode="min"` to minimize) among those `evaluate` returns.
    `folder` None keeps the index in memory only (tabular benchmarks that run thousands of searches);
    `on_recorded(index)` is called once trial `index` is safely in the index, also for the trials a resumed
    search reads back, so an evaluator can delete what only an unfinished trial needs (its checkpoint).
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
    ) -> None:
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be max or min, got {mode!r}")
        self.folder = Path(folder) if folder is not None else None
        self.seed, self.budget = seed, budget
        self.objective, self.mode, self.resume = objective, mode, resume
        self.executor = executor or LocalExecutor()
        self.log, self.record_event, self.on_recorded = log, record, on_recorded
        self.index_file = self.folder / TRIALS_FILE if self.folder is not None else None

    # ---- the index -------------------------------------------------------------------------------
    def read_index(self) -> list[dict[str, Any]]:
        if not (self.resume and self.index_file is not None and self.index_file.exists()):
            return []
        records = yaml.safe_load(self.index_file.read_text(encoding="utf-8")) or []
        if not isinstance(records, list):
            raise ConfigError(f"{self.index_file} is not a trial index; delete it or rerun without resume")
        return records

    def better(self, a: float, b: float | None) -> bool:
        """A failed trial's objective (NaN, which the index stores as the string 'nan') is never better."""
        if not finite_number(a):
            return False
        if not finite_number(b):
            return True
        return a > b if self.mode == "max" else a < b

    def best_of(self, records: list[dict[str, Any]]) -> dict[str, Any] | None:
        best = None
        for r in records:
            if self.better(r["metrics"][self.objective], self._value(best)):
                best = r
        return best

    def _value(self, record: dict[str, Any] | None) -> float | None:
        return record["metrics"][self.objective] if record is not None else None

    # ---- the loop --------------------------------------------------------------------------------
    def run(self, propose: ProposeFn, evaluate: EvaluateFn) -> TrialResults:
        records = self.read_index()
        if records:
            self.log(f"[search] resuming after {len(records)} finished trials ({self.index_file})")
        for r in records:  # a kill between a trial's record and its clean-up left its leftovers
            self._recorded(r["index"])
        best = self.best_of(records)
        next_index = max((r["index"] for r in records), default=-1) + 1
        spent = sum(r["time_s"] for r in records)
        proposing = True
        while True:
            in_flight = self.executor.pending()
            while (
                proposing
                and in_flight < self.executor.max_concurrent
                and not self.budget.exhausted(len(records) + in_flight, spent)
            ):
                trial = self._propose(propose, next_index, records)
                if trial is None:  # the strategy's space is exhausted
                    proposing = False
                    break
                self.executor.submit(trial, evaluate)
                next_index += 1
                in_flight += 1
            if in_flight == 0:
                break
            trial, metrics, seconds = self.executor.next_result()
            if self.objective not in metrics:
                raise KeyError(f"trial {trial.index} returned no {self.objective!r} metric: {sorted(metrics)}")
            spent += seconds
            record = {
                "index": trial.index,
                "arch": trial.arch,
                "seed": trial.seed,
                "metrics": plain(metrics),
                "time_s": round(seconds, 4),
                **plain(trial.extra),
            }
            if self.better(record["metrics"][self.objective], self._value(best)):
                best = record
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
            self._progress(record, best)
        return TrialResults(records, best, self.objective)

    def _recorded(self, index: int) -> None:
        if self.on_recorded is not None:
            self.on_recorded(index)

    def _propose(self, propose: ProposeFn, index: int, history: list[dict[str, Any]]) -> Trial | None:
        seed = trial_seed(self.seed, index)
        proposal = propose(index, random.Random(seed), list(history))
        if proposal is None:
            return None
        arch, extra = proposal if isinstance(proposal, tuple) else (proposal, {})
        return Trial(index, arch, seed, dict(extra))

    def _progress(self, record: dict[str, Any], best: dict[str, Any] | None) -> None:
        n = self.budget.n_trials
        of = f"/{n}" if n is not None else ""
        so_far = (
            f"best so far {_fmt(self._value(best))} (trial {best['index'] + 1})" if best else "no finite result yet"
        )
        self.log(
            f"[search] trial {record['index'] + 1}{of}: {self.objective} "
            f"{_fmt(record['metrics'][self.objective])}; {so_far}"
        )
