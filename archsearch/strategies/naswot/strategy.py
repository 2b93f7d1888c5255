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
from dataclasses import dataclass, field
from typing import Any

import torch

from archsearch.common.devices import select_device
from archsearch.common.errors import ConfigError
from archsearch.common.io import atomic_write_yaml
from archsearch.common.logging import plain
from archsearch.config import choice
from archsearch.config.schema import POSITIVE_INT, Float, Int, List, Str, register_section
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
from archsearch.strategies.naswot.ensemble import AGGREGATES, ENSEMBLE, aggregate, check_members
from archsearch.strategies.naswot.proxies import PROXIES
from archsearch.strategies.naswot.sampling import measure_candidates
from archsearch.strategies.naswot.zero_cost import ProxyOptions
from archsearch.strategies.random.strategy import sample_untried
from archsearch.train.context import RunContext

# The default ensemble, chosen by measurement (docs/naswot.md): greedy forward selection maximizing Kendall tau on
# the first 131 of 262 sampled NAS-Bench-201 cells, log-rank; on the other 131 it ranks at tau 0.837, against 0.739
# for the AZ-NAS four (published 0.741). MeCo and MeCo_opt both: the selection weighs MeCo twice.
DEFAULT_MEMBERS = ("meco_opt", "meco", "az_trainability", "synflow", "jacob_cov", "az_expressivity")
MEMBER_PREFIX = "zc_"  # an ensemble trial's metrics: zc_<member> = that member's raw score


@dataclass
class ProxyWork:
    """Scores a trial wherever it runs: the batch travels to the workers once, in the object store, so every
    trial is scored on the driver's batch; `device` (common.device) is resolved where the trial runs.

    An ensemble trial records every member's raw score (zc_<member>) and a `score` of 0: a rank needs the
    population, so the Naswot strategy aggregates the members' ranks over all trials when they are scored."""

    space: SearchSpace
    batch: tuple[torch.Tensor, torch.Tensor]
    proxy: str
    device: str
    members: tuple[str, ...] = ()
    options: ProxyOptions = field(default_factory=ProxyOptions)

    def __call__(self, trial: Trial, payload: Any = None, log: Any = None) -> tuple[dict[str, Any], dict[str, Any]]:
        def build(t: Trial):
            return self.space.build(self.space.from_json(t.arch, f"trial {t.index}"))

        names = self.members if self.proxy == ENSEMBLE else (self.proxy,)
        device = select_device(self.device)
        [scores] = measure_candidates([trial], build, self.batch, names, device, trial.seed, options=self.options)
        if self.proxy != ENSEMBLE:
            return {"score": scores[self.proxy]}, {}
        return {"score": 0.0, **{MEMBER_PREFIX + name: scores[name] for name in names}}, {}


def proxy_options(conf: Mapping[str, Any]) -> ProxyOptions:
    swap = conf["swap"]
    return ProxyOptions(swap_samples=swap["n_samples"], swap_mu=swap["mu"], swap_sigma=swap["sigma"])


@register_evaluator("proxy")
class ProxyEvaluator(ShippableEvaluator):
    """A trial's score: the proxy of its untrained network (built right after seeding with trial.seed) on
    the first batch of the weights split, the same batch for every trial."""

    objective = "score"
    produces = ("score",)

    def __init__(self, ctx: RunContext, space: SearchSpace, conf_search: Mapping, population: bool = False) -> None:
        conf = conf_search["naswot"]
        proxy = choice(conf, "proxy", [*PROXIES.names(), ENSEMBLE])
        members: tuple[str, ...] = ()
        if proxy == ENSEMBLE:
            if not population:  # random and REA compare each trial's score as it comes; a rank has none yet
                raise ConfigError(
                    "nas.search.naswot.proxy ensemble: the ensemble ranks the whole population, so it chooses with "
                    "--algos naswot only; with --nas.search.evaluate_by proxy use a single proxy (e.g. naswot)"
                )
            members = tuple(check_members(conf["ensemble"]["members"]))
        # unsharded: under torchrun every rank scores the whole batch, so every rank has the same scores
        loader, _ = search_loaders(ctx.conf["dataset"], conf_search["loader"], ctx.device, ctx.seed, shard=False)
        loader.batch_size = conf["batch_size"]  # the proxy's batch, independent of any training batch size
        batch = tuple(t.cpu() for t in next(iter(loader)))  # shipped from the CPU; moved to each trial's device
        self._work = ProxyWork(space, batch, proxy, ctx.conf["common"]["device"], members, proxy_options(conf))
        what = f"an ensemble of {', '.join(members)} ({conf['ensemble']['aggregate']})" if members else proxy
        ctx.log.info(f"[search] scoring with {what} on a batch of {batch[0].shape[0]}")

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
        proxy = conf["proxy"]
        if proxy == ENSEMBLE:
            proxy = f"an ensemble of {', '.join(conf['ensemble']['members'])} ({conf['ensemble']['aggregate']})"
        return [
            f"naswot: {self.budget().n_trials} {self.space.name} architectures scored with {proxy} "
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

        evaluator = ProxyEvaluator(ctx, space, self.conf, population=True)
        members = evaluator.work().members
        if members and self.conf["objectives"] is not None:
            raise ConfigError(
                "nas.search.objectives: the proxy ensemble's score is a rank over the whole population, not a "
                "trial's metric, so it takes no objectives; leave nas.search.objectives null (constraints work)"
            )
        rescore = None
        if members:
            # the aggregate is a function of every trial's raw member scores: a resumed search re-aggregates
            # the same population, whatever order the trials were scored in; the choice (among the trials
            # that meet the constraints) and pareto.yaml see it, trials.yaml keeps each trial's placeholder 0
            def rescore(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
                columns = {m: [r["metrics"][MEMBER_PREFIX + m] for r in records] for m in members}
                return [{"score": float(v)} for v in aggregate(columns, conf["ensemble"]["aggregate"])]

        arch, metrics, records = run_trials(ctx, space, propose, self.budget(), evaluator, rescore=rescore)
        keys = [
            space.benchmark_key(space.from_json(r["arch"])) if table else space.arch_str(r["arch"]) for r in records
        ]
        scores = [r["metrics"]["score"] for r in records]
        rows: list[dict[str, Any]] = [
            {"arch": k, "score": s, **{m: r["metrics"][MEMBER_PREFIX + m] for m in members}}
            for k, s, r in zip(keys, scores, records)
        ]
        atomic_write_yaml(ctx.search_dir / "scores.yaml", plain(rows))
        plot = ctx.search_dir / "correlation.png" if table else None
        proxy = conf["proxy"]
        report = correlation_report(keys, scores, table, plot, title=f"{proxy} vs {self.conf['benchmark_columns'][1]}")
        ctx.log.info(f"[search] {report.summary()}")
        metrics = {"proxy": proxy, "n_scored": len(records), **metrics, "best_arch": space.arch_str(arch)}
        if members:
            metrics.update({"ensemble_members": list(members), "ensemble_aggregate": conf["ensemble"]["aggregate"]})
        metrics.update(report.to_dict())
        [chosen] = [r for r in records if r["index"] == metrics["best_trial"]]  # the primary may be another metric
        return SearchOutcome(arch, metrics, {"proxy": proxy, "score": chosen["metrics"]["score"]})


# ---- NASWOT's keys (defaults in confs/algos/naswot.yaml) ----
register_section(
    "nas.search.naswot",
    {
        "n_samples": POSITIVE_INT,
        "indices": List(Int(ge=0, lt=15625), null=True, min_length=1),
        "proxy": Str(*PROXIES.names(), ENSEMBLE),
        "batch_size": POSITIVE_INT,
    },
)
register_section(
    "nas.search.naswot.ensemble",
    {
        "members": List(Str(*PROXIES.names()), min_length=1, default=list(DEFAULT_MEMBERS)),
        "aggregate": Str(*AGGREGATES, default="log_rank"),
    },
)
register_section(
    "nas.search.naswot.swap",
    {
        "n_samples": Int(ge=1, default=16),  # SWAP's code scores 16 samples; the first n of the batch
        "mu": Float(null=True, default=None),  # the regulariser exp(-(P/1000 - mu)^2 / sigma); null: none
        "sigma": Float(null=True, gt=0, default=None),
    },
)
