"""NSGA-II (Deb, Pratap, Agarwal, Meyarivan, "A fast and elitist multiobjective genetic algorithm: NSGA-II",
IEEE TEC 2002; NSGA-Net, Lu et al., GECCO 2019, applied it to NAS): multi-objective evolution with
non-dominated sorting, crowding distance and constrained domination, on any space with named categorical
decisions (capability `choices`).

This is Optuna's NSGAIISampler, run through the same ask-and-tell engine as `--algos optuna --nas.search.optuna
.sampler nsga2` (archsearch/strategies/optuna_search/strategy.py), with NSGA-II's own settings under
nas.search.nsga2. Optuna's implementation keeps our guarantees once its state is rebuilt from the trial
index at every proposal: the population of each generation and the parents (elite selection over the last
generation and its parents by rank and crowding, with Deb's constrained domination when the trials carry
a constraint violation) are recomputed from the finished trials, the sampler is seeded from the trial RNG,
and the generation Optuna gives each trial is kept in its record (`generation`), so resume after kill -9 is
replay, trial numbers stay the loop's, and Ray's out-of-order results change nothing that is recorded.

Deviations from the papers (written down in confs/algos/nsga2.yaml): one child per trial (Optuna's
NSGA-II generates offspring one at a time, by binary tournaments on the parent population, uniform crossover
and per-decision mutation, which resamples the decision uniformly); a child that repeats an evaluated
architecture is asked again (pymoo's default, `eliminate_duplicates`), which Deb's algorithm does not do.
"""

from __future__ import annotations

from typing import Any

from archsearch.config.schema import Float, Int, register_section
from archsearch.search.strategy import register_strategy
from archsearch.strategies.optuna_search.strategy import AskTellStrategy, optuna_module

register_section(
    "nas.search.nsga2",
    {
        "n_trials": Int(ge=1),
        "time_budget_s": Float(null=True, gt=0),
        "population_size": Int(ge=2),
        "crossover_prob": Float(ge=0, le=1),
        "swapping_prob": Float(ge=0, le=1),
        "mutation_prob": Float(null=True, ge=0, le=1),  # null: 1 / the number of decisions (Deb's 1/n)
    },
)


@register_strategy
class Nsga2(AskTellStrategy):
    name = "nsga2"
    summary = "NSGA-II (Deb et al. 2002): non-dominated sorting, crowding, constrained domination (Optuna's)"
    section = "nsga2"

    def sampler_name(self) -> str:
        return "nsga2"

    def sampler(self, seed: int) -> Any:
        conf = self.conf["nsga2"]
        return optuna_module().samplers.NSGAIISampler(
            seed=seed,
            population_size=conf["population_size"],
            crossover_prob=conf["crossover_prob"],
            swapping_prob=conf["swapping_prob"],
            mutation_prob=conf["mutation_prob"],
        )

    def dry_run_notes(self) -> list[str]:
        conf = self.conf["nsga2"]
        return [*super().dry_run_notes(), f"nsga2: population {conf['population_size']}"]
