"""Random search on any space: sample N architectures, evaluate each, keep the best.

The DARTS paper's random baseline (Liu et al., 2019, sec. 3.3) samples 24 cells and trains each at search
size, ranked by accuracy on the held-out (arch) split; here the space is any that can sample, and a
trial is trained, looked up in a benchmark table or scored by a proxy (nas.search.evaluate_by). Trial i's
draw comes from the trial loop's seed for (run seed, i); a draw that repeats an earlier trial is drawn
again while the space has untried architectures, so a small space is not evaluated twice.

It takes several objectives (nas.search.objectives) and constraints: a draw that breaks a cheap constraint is
rejected by the trial loop before evaluation and drawn again from the same trial RNG; the final architecture
comes from the Pareto front of the feasible trials (nas.search.select).
"""

from __future__ import annotations

import random
from typing import Any

from archsearch.config.schema import Float, Int, register_rename, register_section
from archsearch.search.space import SearchSpace
from archsearch.search.strategy import SearchOutcome, register_strategy
from archsearch.search.trial_eval import TrialStrategy, run_trials
from archsearch.search.trial_loop import Budget

MAX_REDRAWS = 100

register_section("nas.search.random", {"time_budget_s": Float(null=True, gt=0)})
# the space samples from its own ops now (the darts space: model_desc.primitives, `none` excluded)
register_rename("nas.search.random.primitives", "--nas.search.model_desc.primitives (the space's ops)")


def sample_untried(space: SearchSpace, rng: random.Random, history: list[dict[str, Any]]) -> Any:
    """A sampled architecture (JSON) not in `history`'s trials, while the space has untried ones left."""
    tried = [r["arch"] for r in history]
    size = space.size()
    arch = space.to_json(space.sample(rng))
    for _ in range(MAX_REDRAWS):
        if (size is not None and len(tried) >= size) or arch not in tried:
            break
        arch = space.to_json(space.sample(rng))
    return arch


@register_strategy
class RandomSearch(TrialStrategy):
    name = "random"
    summary = "random search: sample N architectures, evaluate each (train | table | proxy), keep the best"
    requires = frozenset({"sample"})
    default_space = "darts"
    multi_objective = True

    def propose(self, index: int, rng: random.Random, history: list[dict[str, Any]]) -> Any:
        return sample_untried(self.space, rng, history)

    def budget(self) -> Budget:
        return Budget(self.conf["random"]["n_candidates"], self.conf["random"]["time_budget_s"])

    def search(self) -> SearchOutcome:
        arch, metrics, _ = run_trials(self.ctx, self.space, self.propose, self.budget())
        return SearchOutcome(arch, metrics, {"trial": metrics["best_trial"]})


register_section("nas.search.random", {"n_candidates": Int(ge=1)})
