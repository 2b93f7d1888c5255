"""NASWOT as `--algos naswot`: score sampled architectures of any space at initialization on one batch of the
training split, keep the best, evaluate it with the space's evaluation. It is random search whose trials are
scored by a zero-cost proxy (`nas.search.naswot.proxy`) instead of trained, so it runs on the shared trial
loop (index, resume, per-trial seeds) through the `proxy` evaluator registered here.

With a benchmark table (`nas.search.benchmark` on a space with one, e.g. NAS-Bench-201's CSV) it reports
Kendall's tau / Spearman's rho of score vs accuracy, the chosen architecture's rank among the scored ones
and a scatter plot (search/correlation.png).

Objectives and constraints (nas.search.objectives, constraints) are honoured as in random search: a sample
that breaks a cheap constraint (params, latency) is rejected before it is scored; with `indices`, a listed
architecture that breaks one ends the search with the line naming the constraint."""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from archsearch.common.devices import select_device
from archsearch.common.io import atomic_write_yaml
from archsearch.common.logging import plain
from archsearch.config import choice
from archsearch.config.schema import POSITIVE_INT, Int, List, Str, register_section
from archsearch.data.loaders import search_loaders
from archsearch.search.space import SearchSpace
from archsearch.search.strategy import SearchOutcome, register_strategy
from archsearch.search.trial_eval import (
    ShippableEvaluator,
    TrialStrategy,
    benchmark_table,
    register_evaluator,
    run_trials,
)
from archsearch.search.trial_loop import Budget, Trial
from archsearch.strategies.naswot.correlation import correlation_report
from archsearch.strategies.naswot.proxies import PROXIES
from archsearch.strategies.naswot.sampling import score_candidates
from archsearch.strategies.random.strategy import sample_untried
from archsearch.train.context import RunContext


@dataclass
class ProxyWork:
    """Scores a trial wherever it runs: the batch travels to the workers once, in the object store, so every
    trial is scored on the driver's batch; `device` (common.device) is resolved where the trial runs."""

    space: SearchSpace
    batch: tuple[torch.Tensor, torch.Tensor]
    proxy: str
    device: str

    def __call__(self, trial: Trial, payload: Any = None, log: Any = None) -> tuple[dict[str, Any], dict[str, Any]]:
        def build(t: Trial):
            return self.space.build(self.space.from_json(t.arch, f"trial {t.index}"))

        [score] = score_candidates([trial], build, self.batch, self.proxy, select_device(self.device), trial.seed)
        return {"score": score}, {}


@register_evaluator("proxy")
class ProxyEvaluator(ShippableEvaluator):
    """A trial's score: the proxy of its untrained network (built right after seeding with trial.seed) on
    the first batch of the weights split, the same batch for every trial."""

    objective = "score"
    produces = ("score",)

    def __init__(self, ctx: RunContext, space: SearchSpace, conf_search: Mapping) -> None:
        conf = conf_search["naswot"]
        proxy = choice(conf, "proxy", PROXIES.names())
        # unsharded: under torchrun every rank scores the whole batch, so every rank has the same scores
        loader, _ = search_loaders(ctx.conf["dataset"], conf_search["loader"], ctx.device, ctx.seed, shard=False)
        loader.batch_size = conf["batch_size"]  # the proxy's batch, independent of any training batch size
        batch = tuple(t.cpu() for t in next(iter(loader)))  # shipped from the CPU; moved to each trial's device
        self._work = ProxyWork(space, batch, proxy, ctx.conf["common"]["device"])
        ctx.log.info(f"[search] scoring with {proxy} on a batch of {batch[0].shape[0]}")

    def __call__(self, trial: Trial) -> dict[str, Any]:
        return self._work(trial)[0]

    def work(self) -> ProxyWork:
        return self._work


@register_strategy
class Naswot(TrialStrategy):
    name = "naswot"
    summary = "NASWOT: training-free scoring (and synflow, snip, ...) of sampled architectures of any space"
    requires = frozenset({"sample"})
    default_space = "nasbench201"
    multi_objective = True

    def budget(self) -> Budget:
        indices = self.conf["naswot"]["indices"]
        return Budget(len(indices) if indices is not None else self.conf["naswot"]["n_samples"])

    def evaluate_by(self) -> str:
        return "proxy"

    def dry_run_notes(self) -> list[str]:
        conf = self.conf["naswot"]
        return [
            f"naswot: {self.budget().n_trials} {self.space.name} architectures scored with {conf['proxy']} "
            f"at batch {conf['batch_size']}; benchmark table: {self.conf['benchmark']}"
        ]

    def search(self) -> SearchOutcome:
        ctx, space, conf = self.ctx, self.space, self.conf["naswot"]
        indices = conf["indices"]
        # a table is read before any scoring, so a wrong path fails in a second, not after N models
        table = benchmark_table(space, self.conf, "the correlation report") if self.conf["benchmark"] else None

        def propose(index: int, rng: random.Random, history: list[dict[str, Any]]) -> Any:
            if indices is not None:  # exhaustive: the listed architectures (a space's from_json reads an index)
                return space.to_json(space.from_json(indices[index], f"nas.search.naswot.indices[{index}]"))
            return sample_untried(space, rng, history)

        arch, metrics, records = run_trials(ctx, space, propose, self.budget(), ProxyEvaluator(ctx, space, self.conf))
        keys = [
            space.benchmark_key(space.from_json(r["arch"])) if table else space.arch_str(r["arch"]) for r in records
        ]
        scores = [r["metrics"]["score"] for r in records]
        atomic_write_yaml(
            ctx.search_dir / "scores.yaml", plain([{"arch": k, "score": s} for k, s in zip(keys, scores)])
        )
        plot = ctx.search_dir / "correlation.png" if table else None
        proxy = conf["proxy"]
        report = correlation_report(keys, scores, table, plot, title=f"{proxy} vs {self.conf['benchmark_columns'][1]}")
        ctx.log.info(f"[search] {report.summary()}")
        metrics = {"proxy": proxy, "n_scored": len(records), **metrics, "best_arch": space.arch_str(arch)}
        metrics.update(report.to_dict())
        [chosen] = [r for r in records if r["index"] == metrics["best_trial"]]  # the primary may be another metric
        return SearchOutcome(arch, metrics, {"proxy": proxy, "score": chosen["metrics"]["score"]})


# ---- NASWOT's keys (defaults in confs/algos/naswot.yaml) ----
register_section(
    "nas.search.naswot",
    {
        "n_samples": POSITIVE_INT,
        "indices": List(Int(ge=0, lt=15625), null=True, min_length=1),
        "proxy": Str("naswot", "naswot_relu", "synflow", "grad_norm", "snip", "jacob_cov"),
        "batch_size": POSITIVE_INT,
    },
)
