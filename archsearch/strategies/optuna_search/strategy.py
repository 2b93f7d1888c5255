"""Optuna's samplers on the trial loop (`--algos optuna`, `--nas.search.optuna.sampler tpe|nsga2|gp|random`),
through Optuna's ask-and-tell interface, on every space that describes itself as named categorical decisions
(capability `choices`).

The trial loop replays its index into `propose(index, rng, history)`, so a proposal must be a function of the
trial RNG and the finished trials alone. Each proposal therefore rebuilds an in-memory study from the history
(`optuna.trial.create_trial`: the space's decisions as `CategoricalDistribution`s, the params of each trial's
architecture, its objective values) and asks it once, with a sampler seeded from the trial RNG; nothing of
Optuna's lives between proposals, and a resumed search (after kill -9) or a replay asks exactly the same
question and gets the same answer.

- Objectives (nas.search.objectives) go to Optuna in minimization form (max goals negated), one direction
  per objective; a trial without finite objectives (failed, NaN) is a FAIL trial.
- Constraints (nas.search.constraints): every trial carries its total violation (Deb's, as
  archsearch/search/objectives.py computes it) as Optuna's constraint value `constraints:violation` (<= 0:
  feasible), which NSGA-II (constrained domination), TPE (c-TPE) and GP read from the trials themselves. A
  proposal that breaks a cheap constraint is rejected by the trial loop before evaluation and asked again:
  the RNG has advanced, so the sampler's seed and the answer differ.
- NSGA-II keeps its generation bookkeeping in a trial system attribute (`NSGAIISampler:generation`, which
  Optuna assigns when the trial is asked, from the trials finished then); the record keeps it
  (`generation`), so the rebuilt study holds the same generations, also when Ray finished trials out of order.
- A proposal that repeats an evaluated architecture is asked again (a new seed from the same RNG), at most
  MAX_REDRAWS times, while the space has untried ones, as random search does and as pymoo's NSGA-II does by
  default (`eliminate_duplicates`); Optuna's own NSGA-II would evaluate the duplicate.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from archsearch.config.schema import Float, Int, Str, register_section
from archsearch.search.objectives import Goals
from archsearch.search.space import SearchSpace
from archsearch.search.strategy import SearchOutcome, register_strategy
from archsearch.search.trial_eval import TrialStrategy, make_evaluator, run_trials, search_goals
from archsearch.search.trial_loop import Budget

SAMPLERS = ("tpe", "nsga2", "gp", "random")
MAX_REDRAWS = 100
VIOLATION_KEY = "constraints:violation"  # optuna.study._constrained_optimization: "constraints:<name>"
NO_VALUE_VIOLATION = 1e30  # a constraint metric missing or NaN: infinitely far out (Optuna refuses NaN)

register_section(
    "nas.search.optuna",
    {
        "sampler": Str(*SAMPLERS),
        "n_trials": Int(ge=1),
        "time_budget_s": Float(null=True, gt=0),
        "n_startup_trials": Int(ge=0),  # tpe, gp: random trials before the model is used (Optuna: 10)
        "population_size": Int(ge=2),  # nsga2 (Optuna: 50)
    },
)

SamplerFactory = Callable[[int], Any]  # seed -> an Optuna sampler


def optuna_module() -> Any:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def generation_key() -> str:
    """The system attribute where Optuna's NSGA-II keeps a trial's generation."""
    return optuna_module().samplers.NSGAIISampler._get_generation_key()


class AskTell:
    """Proposals of an Optuna sampler over `space.choices()`, rebuilt from the history each time."""

    def __init__(self, space: SearchSpace, goals: Goals, make_sampler: SamplerFactory, keep_generation: bool) -> None:
        optuna = optuna_module()
        self.space, self.goals, self.make_sampler = space, goals, make_sampler
        self.keep_generation = keep_generation  # NSGA-II: record the generation Optuna gave the trial
        self.distributions = {
            name: optuna.distributions.CategoricalDistribution(options) for name, options in space.choices()
        }

    def frozen(self, record: dict[str, Any]) -> Any:
        """The finished trial `record` as an Optuna FrozenTrial (COMPLETE, or FAIL without finite objectives)."""
        optuna = optuna_module()
        params = self.space.choices_of(self.space.from_json(record["arch"], f"trial {record['index']}"))
        values = self.goals.vector(record["metrics"])
        attrs: dict[str, Any] = {}
        if self.goals.constraints:
            attrs[VIOLATION_KEY] = min(self.goals.violation(record["metrics"]), NO_VALUE_VIOLATION)
        if self.keep_generation and isinstance(record.get("generation"), int):
            attrs[generation_key()] = record["generation"]
        state = optuna.trial.TrialState.COMPLETE if values is not None else optuna.trial.TrialState.FAIL
        return optuna.trial.create_trial(
            state=state,
            values=list(values) if values is not None else None,
            params=params,
            distributions=self.distributions,
            system_attrs=attrs,
        )

    def ask(self, rng: random.Random, trials: list[Any]) -> tuple[Any, dict[str, Any]]:
        """One architecture (JSON) and the fields its record keeps, from a study of `trials`."""
        optuna = optuna_module()
        sampler = self.make_sampler(rng.getrandbits(32))
        study = optuna.create_study(directions=["minimize"] * len(self.goals.objectives), sampler=sampler)
        study.add_trials(trials)
        trial = study.ask(self.distributions)
        arch = self.space.to_json(self.space.arch_from_choices(trial.params))
        extra: dict[str, Any] = {}
        if self.keep_generation:
            generation = study._storage.get_trial_system_attrs(trial._trial_id).get(generation_key())
            extra["generation"] = generation if isinstance(generation, int) else 0
        return arch, extra

    def propose(self, index: int, rng: random.Random, history: list[dict[str, Any]]) -> Any:
        records = sorted(history, key=lambda r: r["index"])
        trials = [self.frozen(r) for r in records]
        tried = {_key(r["arch"]) for r in records}
        size = self.space.size()
        arch, extra = self.ask(rng, trials)
        for _ in range(MAX_REDRAWS):
            if _key(arch) not in tried or (size is not None and len(tried) >= size):
                break
            arch, extra = self.ask(rng, trials)
        return (arch, extra) if extra else arch


def _key(arch: Any) -> str:
    return arch if isinstance(arch, str) else repr(arch)


def make_sampler(name: str, conf: Any, seed: int) -> Any:
    """Optuna's sampler `name` (tpe | nsga2 | gp | random) seeded `seed`, with the settings of `conf`."""
    samplers = optuna_module().samplers
    if name == "tpe":
        return samplers.TPESampler(seed=seed, n_startup_trials=conf["n_startup_trials"])
    if name == "nsga2":
        return samplers.NSGAIISampler(seed=seed, population_size=conf["population_size"])
    if name == "gp":
        return samplers.GPSampler(seed=seed, n_startup_trials=conf["n_startup_trials"])
    return samplers.RandomSampler(seed=seed)


class AskTellStrategy(TrialStrategy):
    """A trial-loop strategy whose proposals come from an Optuna sampler (`AskTell`)."""

    requires = frozenset({"choices"})
    default_space = "nasbench201"
    multi_objective = True
    section = ""  # the config section under nas.search

    def sampler_name(self) -> str:
        raise NotImplementedError

    def sampler(self, seed: int) -> Any:
        raise NotImplementedError

    def budget(self) -> Budget:
        conf = self.conf[self.section]
        return Budget(conf["n_trials"], conf["time_budget_s"])

    def search(self) -> SearchOutcome:
        evaluator = make_evaluator(self.ctx, self.space)
        goals = search_goals(self.ctx, evaluator.objective)
        engine = AskTell(self.space, goals, self.sampler, keep_generation=self.sampler_name() == "nsga2")
        self.ctx.log.info(f"[search] {self.name}: Optuna {optuna_module().__version__}, sampler {self.sampler_name()}")
        arch, metrics, _ = run_trials(self.ctx, self.space, engine.propose, self.budget(), evaluator)
        return SearchOutcome(arch, metrics, {"trial": metrics["best_trial"]})


@register_strategy
class OptunaSearch(AskTellStrategy):
    name = "optuna"
    summary = "Optuna's samplers (tpe | nsga2 | gp | random) by ask-and-tell, one or several objectives"
    section = "optuna"

    def sampler_name(self) -> str:
        return self.conf["optuna"]["sampler"]

    def sampler(self, seed: int) -> Any:
        return make_sampler(self.sampler_name(), self.conf["optuna"], seed)

    def dry_run_notes(self) -> list[str]:
        return [*super().dry_run_notes(), f"optuna: sampler {self.sampler_name()}"]
