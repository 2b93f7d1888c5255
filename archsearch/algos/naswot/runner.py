"""NASWOT as `--algos naswot`: score N sampled architectures at initialization on one batch of the training
split, keep the best, evaluate it with the standard Evaluater. With a benchmark table of trained accuracies
(`nas.search.naswot.benchmark_csv`, e.g. NAS-Bench-201's), report Kendall's tau / Spearman's rho of score vs
accuracy, the chosen architecture's rank among the sampled ones, and a scatter plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from archsearch.algos.naswot.correlation import correlation_report, load_benchmark_table
from archsearch.algos.naswot.proxies import PROXIES
from archsearch.algos.naswot.sampling import (
    Candidate,
    best_candidate,
    darts_model_builder,
    nb201_candidates,
    nb201_model_builder,
    sample_darts,
    sample_nb201,
    score_candidates,
)
from archsearch.common.checkpoint import fault_point
from archsearch.common.errors import ConfigError
from archsearch.common.io import atomic_write_yaml
from archsearch.common.logging import plain
from archsearch.config import choice
from archsearch.data.loaders import search_loaders
from archsearch.nas.context import RunContext
from archsearch.nas.exp_runner import RUNNERS, ExperimentRunner
from archsearch.nas.model_desc import ModelDesc
from archsearch.nas.model_desc_builder import ModelDescBuilder
from archsearch.nas.searcher import Searcher, SearchResult, SearchSetup, save_final_desc
from archsearch.spaces.nasbench201 import NB201DescBuilder

SPACES = ("nasbench201", "darts")


def candidates_from_conf(conf_naswot, seed: int) -> list[Candidate]:
    space = choice(conf_naswot, "space", SPACES)
    rng = np.random.default_rng(seed)
    if space == "nasbench201":
        indices = conf_naswot["indices"]
        return nb201_candidates(indices) if indices is not None else sample_nb201(conf_naswot["n_samples"], rng)
    if conf_naswot["indices"] is not None:
        raise ConfigError("nas.search.naswot.indices only applies to space nasbench201")
    return sample_darts(conf_naswot["n_samples"], rng, n_nodes=conf_naswot["darts_nodes"])


class NaswotSearcher(Searcher):
    def search(self, ctx: RunContext, setup: SearchSetup) -> SearchResult:
        conf_search = setup.conf
        conf = conf_search["naswot"]
        proxy = choice(conf, "proxy", PROXIES.names())
        candidates = candidates_from_conf(conf, ctx.seed)
        # a table given by path is read before any scoring, so a wrong path fails in a second, not after N models
        table = None
        if conf["benchmark_csv"]:
            table = load_benchmark_table(conf["benchmark_csv"], conf["arch_column"], conf["accuracy_column"])
        loader, _ = search_loaders(ctx.conf["dataset"], conf_search["loader"], ctx.device, ctx.seed)
        loader.batch_size = conf["batch_size"]  # the proxy's batch, independent of any training batch size
        batch = next(iter(loader))
        build = self.model_builder(conf["space"], conf_search["model_desc"], ctx.conf["dataset"])
        ctx.log.info(
            f"[search] scoring {len(candidates)} {conf['space']} architectures with {proxy} "
            f"on a batch of {batch[0].shape[0]}"
        )

        def report_progress(i: int, candidate: Candidate, score: float) -> None:
            ctx.log.record("score", index=i, arch=candidate.name, score=score)
            fault_point(f"naswot:scored:{i}")  # scoring restarts from the seed on resume; tests kill here
            if (i + 1) % max(1, len(candidates) // 10) == 0:
                ctx.log.info(f"[search] scored {i + 1}/{len(candidates)}")

        scores = score_candidates(candidates, build, batch, proxy, ctx.device, ctx.seed, on_score=report_progress)
        names = [c.name for c in candidates]
        atomic_write_yaml(
            ctx.search_dir / "scores.yaml", plain([{"arch": n, "score": s} for n, s in zip(names, scores)])
        )
        report = correlation_report(
            names,
            scores,
            table,
            ctx.search_dir / "correlation.png" if table else None,
            title=f"{proxy} vs {conf['accuracy_column']}",
        )
        ctx.log.info(f"[search] {report.summary()}")
        index, best = best_candidate(candidates, scores)
        desc = self.final_desc(best, conf_search["model_desc"], ctx.conf["dataset"])
        desc.meta.update(algo=ctx.algo, proxy=proxy, score=scores[index])
        metrics: dict[str, Any] = {
            "proxy": proxy,
            "n_scored": len(candidates),
            "best_score": scores[index],
            "best_arch": best.name,
            **report.to_dict(),
        }
        return SearchResult(save_final_desc(ctx, desc, metrics), metrics)

    @staticmethod
    def model_builder(space: str, conf_model_desc, conf_dataset):
        if space == "nasbench201":
            return nb201_model_builder(
                conf_model_desc["init_channels"],
                conf_model_desc["n_cells_per_stage"],
                conf_dataset["channels"],
                conf_dataset["n_classes"],
            )
        return darts_model_builder(conf_model_desc, conf_dataset)

    @staticmethod
    def final_desc(candidate: Candidate, conf_model_desc, conf_dataset) -> ModelDesc:
        if candidate.templates is None:  # NAS-Bench-201
            return NB201DescBuilder(conf_model_desc, conf_dataset, candidate.name).build()
        return ModelDescBuilder(conf_model_desc, conf_dataset, candidate.templates).build(
            meta={"genotype": candidate.name}
        )


@RUNNERS.register("naswot")
class NaswotRunner(ExperimentRunner):
    name = "naswot"
    summary = "NASWOT: training-free scoring (and synflow, snip, ...) on NAS-Bench-201 or DARTS cells"

    @property
    def space(self) -> str:
        return choice(self.conf_search["naswot"], "space", SPACES)

    def model_desc_builder(self, conf_model_desc) -> ModelDescBuilder:
        if self.space == "nasbench201":
            return NB201DescBuilder(conf_model_desc, self.ctx.conf["dataset"])  # its scale() rebuilds the cell
        return super().model_desc_builder(conf_model_desc)

    def searcher(self) -> Searcher:
        return NaswotSearcher()

    def search_model(self) -> None:
        return None  # nothing is trained in search

    def example_final_arch(self, folder: Path) -> Path:
        candidate = candidates_from_conf(self.conf_search["naswot"], self.ctx.seed)[0]
        desc = NaswotSearcher.final_desc(candidate, self.conf_search["model_desc"], self.ctx.conf["dataset"])
        return desc.save(folder / "example_final_model_desc.yaml")

    def dry_run(self) -> dict[str, Any]:
        report = super().dry_run()
        conf = self.conf_search["naswot"]
        report["cell_based"] = False
        report["notes"] = [
            f"naswot: {conf['n_samples']} {conf['space']} architectures scored with {conf['proxy']} "
            f"at batch {conf['batch_size']}; benchmark table: {conf['benchmark_csv']}"
        ]
        return report
