"""Random search over the DARTS cell space: sample N cells, train each briefly, keep the best.

The DARTS paper's random baseline samples 24 cells and trains each at search size; the cell with the
best accuracy on the held-out (arch) split of the training set is evaluated. Candidate i's cell and
initial weights come from (seed, i) alone, so a resumed search samples the same candidates.
"""

from __future__ import annotations

import random
from pathlib import Path

import torch

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


class RandomSearcher(Searcher):
    def search(self, ctx: RunContext, setup: SearchSetup) -> SearchResult:
        conf_search = setup.conf
        builder = setup.builder
        conf_random = conf_search["random"]
        n_candidates: int = conf_random["n_candidates"]
        primitives: list[str] = conf_random["primitives"]
        n_nodes: int = conf_search["model_desc"]["n_nodes"]
        weights_loader, val_loader = search_loaders(ctx.conf["dataset"], conf_search["loader"], ctx.device, ctx.seed)
        index_file = ctx.search_dir / "candidates.yaml"
        results = _read_results(index_file) if ctx.resume else []
        for i in range(len(results), n_candidates):
            desc = builder.with_templates(sample_cells(ctx.seed, i, n_nodes, primitives)).build(meta={"algo": ctx.algo})
            torch.manual_seed(ctx.seed * 7919 + i)
            trainer = Trainer(
                conf_search["trainer"],
                Model(desc),
                ctx.log,
                ctx.device,
                f"candidate {i + 1}/{n_candidates}",
                ctx.search_dir / "candidate_checkpoint.pt",
            )
            metrics = trainer.fit(weights_loader, val_loader, resume=ctx.resume)
            genotype = str(templates_to_genotype(sample_cells(ctx.seed, i, n_nodes, primitives)))
            results.append({"index": i, "val_top1": metrics["val_top1"], "genotype": genotype})
            atomic_write_yaml(index_file, results)
            trainer.checkpoint_path.unlink(missing_ok=True)
            ctx.log.record("candidate", **results[-1])
        best = max(results, key=lambda r: r["val_top1"])
        ctx.log.info(f"[search] best candidate {best['index'] + 1} of {n_candidates}: val top1 {best['val_top1']:.4f}")
        final = builder.with_templates(sample_cells(ctx.seed, best["index"], n_nodes, primitives)).build(
            meta={"algo": ctx.algo, "candidate": best["index"]}
        )
        metrics = {"best_val_top1": best["val_top1"], "best_candidate": best["index"], "n_candidates": n_candidates}
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
