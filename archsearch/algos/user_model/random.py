"""Random search on a user model: sample N architectures from its choices, train each briefly as a fixed model
(only the chosen candidates, fresh weights) on the weights split, keep the best by accuracy on the arch split.

Candidate i is drawn from a generator seeded by (seed, i); a draw that repeats an earlier candidate is drawn
again while the space has untried architectures, so a small space is not trained twice. candidates.yaml
records every finished candidate, so a resumed search goes on from the next one.
"""

from __future__ import annotations

import random
from pathlib import Path

import torch
import yaml

from archsearch.algos.user_model.model_ref import UserModelArch, UserModelRef
from archsearch.algos.user_model.runner import UserModelRunner, save_final_arch
from archsearch.common.io import atomic_write_yaml
from archsearch.data.loaders import search_loaders
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
        weights_loader, val_loader = search_loaders(ctx.conf["dataset"], conf_search["loader"], ctx.device, ctx.seed)
        index_file = ctx.search_dir / "candidates.yaml"
        results = _read_results(index_file) if ctx.resume else []
        for i in range(len(results), n_candidates):
            choice_json = sample_new(space, ctx.seed, i, [r["choices"] for r in results])
            torch.manual_seed(ctx.seed * 7919 + i)  # candidate i's initial weights do not depend on resuming
            model = apply_fixed_arch(self.ref.build(), choice_json)
            trainer = Trainer(
                conf_search["trainer"],
                model,
                ctx.log,
                ctx.device,
                f"candidate {i + 1}/{n_candidates}",
                ctx.search_dir / "candidate_checkpoint.pt",
            )
            metrics = trainer.fit(weights_loader, val_loader, resume=ctx.resume)
            results.append({"index": i, "val_top1": metrics["val_top1"], "choices": choice_json})
            atomic_write_yaml(index_file, results)
            trainer.checkpoint_path.unlink(missing_ok=True)
            ctx.log.record("candidate", **results[-1])
        best = max(results, key=lambda r: r["val_top1"])
        ctx.log.info(f"[search] best candidate {best['index'] + 1} of {n_candidates}: val top1 {best['val_top1']:.4f}")
        metrics = {"best_val_top1": best["val_top1"], "best_candidate": best["index"], "n_candidates": n_candidates}
        arch = UserModelArch(self.ref, best["choices"], {"algo": ctx.algo, "candidate": best["index"]})
        return SearchResult(save_final_arch(ctx, arch, metrics), metrics)


def _read_results(path: Path) -> list[dict]:
    return (yaml.safe_load(path.read_text()) or []) if path.exists() else []


@USER_MODEL_RUNNERS.register("random")
class RandomUserModelRunner(UserModelRunner):
    name = "random"
    summary = "random search on a user model: sample N choice sets, train each briefly, keep the best"

    def searcher(self) -> Searcher:
        return RandomUserModelSearcher(self.model_ref())

    def trainer_class(self) -> type[Trainer]:
        return Trainer
