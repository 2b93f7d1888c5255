"""Random search over the DARTS cell space: sample N cells, train each briefly, keep the best.

The DARTS paper's random baseline samples 24 cells and trains each at search size; the cell with the
best accuracy on the held-out (arch) split of the training set is evaluated. Candidate i's cell and
initial weights come from (seed, i) alone, so a resumed search samples the same candidates.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from archsearch.common.checkpoint import delete_checkpoint, fault_point
from archsearch.common.io import atomic_write_yaml
from archsearch.data.loaders import search_loaders
from archsearch.nas.context import RunContext
from archsearch.nas.exp_runner import RUNNERS, ExperimentRunner
from archsearch.nas.genotype import CellTemplate, random_templates, templates_to_genotype
from archsearch.nas.model import Model
from archsearch.nas.searcher import Searcher, SearchResult, SearchSetup, save_final_desc
from archsearch.nas.trainer import Trainer


def sample_cells(seed: int, index: int, n_nodes: int, primitives: list[str]) -> dict[str, CellTemplate]:
    rng = random.Random(seed * 7919 + index)
    return random_templates(rng, n_nodes, primitives)


def candidate_checkpoint(ctx: RunContext, index: int) -> Path:
    # one file per candidate: a kill after candidate i is indexed but before its checkpoint is deleted
    # leaves a file no later candidate would mistake for its own
    return ctx.search_dir / f"candidate_{index:03d}_checkpoint.pt"


def train_candidates(
    ctx: RunContext,
    conf_search,
    n_candidates: int,
    choose: Callable[[int, list[dict[str, Any]]], dict[str, Any]],
    build: Callable[[int, dict[str, Any]], nn.Module],
) -> list[dict[str, Any]]:
    """Train candidates one by one, each briefly on the weights split, scored on the arch split.

    `choose(i, results)` names candidate i (YAML-safe fields, e.g. its genotype) from the seed alone;
    `build(i, fields)` makes its model right after the torch seed for (seed, i) is set, so its initial weights
    do not depend on resuming. search/candidates.yaml records every finished candidate: a resumed search
    goes on from the next one, and an unfinished one continues from its own checkpoint.
    """
    weights_loader, val_loader = search_loaders(ctx.conf["dataset"], conf_search["loader"], ctx.device, ctx.seed)
    index_file = ctx.search_dir / "candidates.yaml"
    results = _read_results(index_file) if ctx.resume else []
    for done in range(len(results)):  # left behind by a kill between the index write and the delete
        delete_checkpoint(candidate_checkpoint(ctx, done))
    for i in range(len(results), n_candidates):
        fields = choose(i, results)
        torch.manual_seed(ctx.seed * 7919 + i)
        trainer = Trainer(
            conf_search["trainer"],
            build(i, fields),
            ctx.log,
            ctx.device,
            f"candidate {i + 1}/{n_candidates}",
            candidate_checkpoint(ctx, i),
        )
        metrics = trainer.fit(weights_loader, val_loader, resume=ctx.resume)
        results.append({"index": i, "val_top1": metrics["val_top1"], **fields})
        atomic_write_yaml(index_file, results)
        fault_point(f"random:indexed:{i}")
        delete_checkpoint(candidate_checkpoint(ctx, i))
        ctx.log.record("candidate", **results[-1])
    return results


def best_of(ctx: RunContext, results: list[dict[str, Any]], n_candidates: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The best candidate's record and the search metrics."""
    best = max(results, key=lambda r: r["val_top1"])
    ctx.log.info(f"[search] best candidate {best['index'] + 1} of {n_candidates}: val top1 {best['val_top1']:.4f}")
    return best, {"best_val_top1": best["val_top1"], "best_candidate": best["index"], "n_candidates": n_candidates}


class RandomSearcher(Searcher):
    def search(self, ctx: RunContext, setup: SearchSetup) -> SearchResult:
        conf_search = setup.conf
        builder = setup.builder
        conf_random = conf_search["random"]
        n_candidates: int = conf_random["n_candidates"]
        primitives: list[str] = conf_random["primitives"]
        n_nodes: int = conf_search["model_desc"]["n_nodes"]

        def cells(index: int) -> dict[str, CellTemplate]:
            return sample_cells(ctx.seed, index, n_nodes, primitives)

        def build(index: int, _fields: dict[str, Any]) -> nn.Module:
            return Model(builder.with_templates(cells(index)).build(meta={"algo": ctx.algo}))

        def choose(index: int, _results: list[dict[str, Any]]) -> dict[str, Any]:
            return {"genotype": str(templates_to_genotype(cells(index)))}

        results = train_candidates(ctx, conf_search, n_candidates, choose, build)
        best, metrics = best_of(ctx, results, n_candidates)
        final = builder.with_templates(cells(best["index"])).build(meta={"algo": ctx.algo, "candidate": best["index"]})
        return SearchResult(save_final_desc(ctx, final, metrics), metrics)


def _read_results(path: Path) -> list[dict]:
    import yaml

    return yaml.safe_load(path.read_text()) or [] if path.exists() else []


@RUNNERS.register("random")
class RandomRunner(ExperimentRunner):
    name = "random"
    summary = "random search: sample N DARTS cells, train each briefly, evaluate the best"

    def searcher(self) -> Searcher:
        return RandomSearcher()

    def search_model(self) -> Model:
        conf = self.conf_search
        cells = sample_cells(self.ctx.seed, 0, conf["model_desc"]["n_nodes"], conf["random"]["primitives"])
        return Model(self.model_desc_builder(conf["model_desc"]).with_templates(cells).build())
