"""Regularized evolution (REA; Real et al., "Regularized Evolution for Image Classifier Architecture Search",
AAAI 2019, Algorithm 1) on any space that can sample and mutate.

The population is the P most recently evaluated architectures (the first P are sampled at random); each
later trial draws S of them uniformly without replacement (the tournament), mutates the best of those
(one edit, `space.mutate`) and the child joins the population while its oldest member dies (aging, the
"regularization": an architecture survives by having good descendants, not by one lucky evaluation).
Paper defaults (its NAS-Bench-201 runs, Dong & Yang 2020, use the same): P = 50, S = 10.

The population is a function of the trial history alone (the last P finished trials), so a resumed search
rebuilds it exactly from the trial index; no state of its own is checkpointed.

Constraints (nas.search.constraints) are honoured: a child that breaks a cheap one is rejected by the trial
loop before evaluation and the tournament drawn again from the same trial RNG; a trial that breaks an
expensive one is infeasible and never wins a tournament. REA optimizes one objective: several are refused.
"""

from __future__ import annotations

import math
import random
from typing import Any

from archsearch.config.schema import Float, Int, register_section
from archsearch.search.space import SearchSpace
from archsearch.search.strategy import SearchOutcome, register_strategy
from archsearch.search.trial_eval import TrialStrategy, make_evaluator, run_trials, search_goals, single_objective
from archsearch.search.trial_loop import Budget, finite_number

register_section(
    "nas.search.rea",
    {
        "population_size": Int(ge=2),
        "sample_size": Int(ge=1),
        "n_trials": Int(ge=1),
        "time_budget_s": Float(null=True, gt=0),
    },
)


def evolve(
    space: SearchSpace,
    rng: random.Random,
    history: list[dict[str, Any]],
    objective: str,
    population_size: int,
    sample_size: int,
    mode: str = "max",
) -> Any:
    """The next trial's architecture (JSON, or (arch, {"parent": index})) given the finished trials
    (`mode` min: the objective is minimized; a record with `feasible: false` never wins)."""
    if len(history) < population_size:
        return space.to_json(space.sample(rng))
    population = history[-population_size:]
    tournament = rng.sample(population, sample_size)

    def fitness(record: dict[str, Any]) -> float:
        value = record["metrics"].get(objective)  # NaN, stored in the index as 'nan', never wins a tournament
        if not finite_number(value) or record.get("feasible") is False:
            return -math.inf
        return value if mode == "max" else -value

    parent = max(tournament, key=fitness)  # ties: the first drawn, as Python's max keeps it
    child = space.mutate(space.from_json(parent["arch"]), rng)
    return space.to_json(child), {"parent": parent["index"]}


@register_strategy
class RegularizedEvolution(TrialStrategy):
    name = "rea"
    summary = "regularized evolution (Real et al. 2019): tournament of S from the last P, mutate the best, oldest dies"
    requires = frozenset({"sample", "mutate"})
    default_space = "nasbench201"

    def budget(self) -> Budget:
        return Budget(self.conf["rea"]["n_trials"], self.conf["rea"]["time_budget_s"])

    def search(self) -> SearchOutcome:
        conf = self.conf["rea"]
        population, sample = conf["population_size"], conf["sample_size"]
        if sample > population:
            raise conf.error("sample_size", f"{sample} is larger than population_size {population}")
        evaluator = make_evaluator(self.ctx, self.space)
        goals = search_goals(self.ctx, evaluator.objective)
        single_objective(self.name, goals)
        objective, mode = goals.primary.metric, goals.primary.goal

        def propose(index: int, rng: random.Random, history: list[dict[str, Any]]) -> Any:
            return evolve(self.space, rng, history, objective, population, sample, mode)

        arch, metrics, _ = run_trials(self.ctx, self.space, propose, self.budget(), evaluator)
        return SearchOutcome(arch, metrics, {"trial": metrics["best_trial"]})
