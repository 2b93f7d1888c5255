"""Random search on a user model: sample N architectures from its choices, train each briefly as a fixed model
(only the chosen candidates, fresh weights) on the weights split, keep the best by accuracy on the arch split.

Candidate i is drawn from a generator seeded by (seed, i); a draw that repeats an earlier candidate is drawn
again while the space has untried architectures, so a small space is not trained twice. candidates.yaml
records every finished candidate, so a resumed search goes on from the next one.
"""

from __future__ import annotations

import random
from typing import Any

from torch import nn

from archsearch.algos.random.runner import best_of, train_candidates
from archsearch.algos.user_model.model_ref import UserModelArch, UserModelRef
from archsearch.algos.user_model.runner import UserModelRunner, save_final_arch
from archsearch.nas.context import RunContext
from archsearch.nas.exp_runner import USER_MODEL_RUNNERS
from archsearch.nas.searcher import Searcher, SearchResult, SearchSetup
from archsearch.nas.trainer import Trainer
from archsearch.spaces.mutables import MutableSpace, apply_fixed_arch

MAX_REDRAWS = 100


def sample_new(space: MutableSpace, seed: int, index: int, tried: list[dict]) -> dict:
    """Candidate `index`'s choice JSON: a seeded draw, redrawn while it repeats one in `tried` (if it can)."""
    rng = random.Random(seed * 7919 + index)
    untried_left = len(tried) < space.size()
    choice_json = space.to_json(space.random_choices(rng))
    for _ in range(MAX_REDRAWS):
        if not untried_left or choice_json not in tried:
            break
        choice_json = space.to_json(space.random_choices(rng))
    return choice_json


class RandomUserModelSearcher(Searcher):
    def __init__(self, ref: UserModelRef) -> None:
        self.ref = ref

    def search(self, ctx: RunContext, setup: SearchSetup) -> SearchResult:
        conf_search = setup.conf
        n_candidates: int = conf_search["random"]["n_candidates"]
        if n_candidates < 1:
            raise conf_search["random"].error("n_candidates", f"must be at least 1, got {n_candidates}")
        _, space = self.ref.build_space()
        ctx.log.info(f"[search] {self.ref.path}: {space.describe()}; {n_candidates} random candidates")

        def choose(index: int, results: list[dict[str, Any]]) -> dict[str, Any]:
            return {"choices": sample_new(space, ctx.seed, index, [r["choices"] for r in results])}

        def build(_index: int, fields: dict[str, Any]) -> nn.Module:
            return apply_fixed_arch(self.ref.build(), fields["choices"])

        results = train_candidates(ctx, conf_search, n_candidates, choose, build)
        best, metrics = best_of(ctx, results, n_candidates)
        arch = UserModelArch(self.ref, best["choices"], {"algo": ctx.algo, "candidate": best["index"]})
        return SearchResult(save_final_arch(ctx, arch, metrics), metrics)


@USER_MODEL_RUNNERS.register("random")
class RandomUserModelRunner(UserModelRunner):
    name = "random"
    summary = "random search on a user model: sample N choice sets, train each briefly, keep the best"

    def searcher(self) -> Searcher:
        return RandomUserModelSearcher(self.model_ref())

    def trainer_class(self) -> type[Trainer]:
        return Trainer
