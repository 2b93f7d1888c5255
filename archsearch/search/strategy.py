"""Strategies: search algorithms that run on every search space providing what they need.

A strategy subclasses `Strategy`, names the capabilities it needs from a space (`requires`, see
archsearch.search.space.CAPABILITIES) and its default space, implements `search()` and registers with
`@register_strategy`. Registration makes it an `--algos` choice: the runner below wires it into the
framework's phases (fingerprinted resume, search/result.yaml, evaluation of the space's final file), so a
strategy is one small package plus its config.

The space is `nas.search.space.name`; null means the strategy's `default_space`, or `user_model` when
`nas.search.space.model` names a model. A strategy/space pair whose needs are not met is one line naming
what is missing and which spaces would do.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from torch import nn

from archsearch.common.errors import ConfigError
from archsearch.data.loaders import search_loaders
from archsearch.search.benchmark_table import table_from_conf
from archsearch.train.context import RunContext
from archsearch.train.final import BuiltModel
from archsearch.experiment.phases import RUNNERS, ExperimentRunner
from archsearch.search.outcome import SearchResult, record_search_result
from archsearch.train.trainer import Trainer
from archsearch.search.space import SPACES, Arch, SearchSpace

USER_MODEL_SPACE = "user_model"


@dataclass
class SearchOutcome:
    """What a strategy found: the architecture (the space's encoding) and metrics about the search."""

    arch: Arch
    metrics: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)  # stored in the final architecture file


class Strategy:
    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    requires: ClassVar[frozenset[str]] = frozenset({"sample"})
    default_space: ClassVar[str] = "darts"

    def __init__(self, ctx: RunContext, space: SearchSpace) -> None:
        self.ctx = ctx
        self.space = space
        self.conf = ctx.conf["nas"]["search"]

    def search(self) -> SearchOutcome:
        raise NotImplementedError

    def search_model(self) -> nn.Module | None:
        """The supernet search trains, for --dry-run sizes; None for strategies that train no supernet."""
        return None

    def dry_run_notes(self) -> list[str]:
        return []

    def example_arch(self) -> Arch:
        """An architecture of the kind search returns, for --dry-run's eval model: a seeded sample of the space
        (a strategy that is given its architecture, like manual, returns that one)."""
        return self.space.sample(random.Random(self.ctx.seed))


STRATEGIES: dict[str, type[Strategy]] = {}


def space_name(conf_search: Mapping, strategy: type[Strategy]) -> str:
    conf_space = conf_search["space"]
    if conf_space["name"]:
        return conf_space["name"]
    return USER_MODEL_SPACE if conf_space["model"] else strategy.default_space


def check_pair(strategy: type[Strategy], space: type[SearchSpace]) -> None:
    """One line when `space` lacks a capability `strategy` needs, naming the spaces that have them all."""
    missing = sorted(strategy.requires - space.capabilities())
    if missing:
        fitting = [n for n in SPACES.names() if strategy.requires <= SPACES.get(n).capabilities()]
        raise ConfigError(
            f"--algos {strategy.name} needs a search space with {', '.join(missing)}, which {space.name} does not "
            f"provide; spaces {strategy.name} runs on: {', '.join(fitting) or 'none'} (--nas.search.space.name)"
        )


def make_space(ctx: RunContext, strategy: type[Strategy]) -> SearchSpace:
    conf_search = ctx.conf["nas"]["search"]
    space_class = SPACES.get(space_name(conf_search, strategy))
    check_pair(strategy, space_class)
    space = space_class(conf_search["space"], conf_search["model_desc"], ctx.conf["dataset"])
    space.conf_eval = ctx.conf["nas"]["eval"]
    return space


class StrategyRunner(ExperimentRunner):
    """The runner of every registered strategy: the strategy searches, the space evaluates."""

    strategy_class: ClassVar[type[Strategy]]

    def __init__(self, ctx: RunContext) -> None:
        super().__init__(ctx)
        self.strategy = self.strategy_class(ctx, make_space(ctx, self.strategy_class))
        self.space = self.strategy.space

    def search(self) -> SearchResult:
        ctx, space, conf_search = self.ctx, self.space, self.conf_search
        ctx.log.info(f"[search] {self.strategy.name} on {space.describe()}")
        # read before searching, so a wrong path fails at once rather than after the search
        table = table_from_conf(conf_search) if "benchmark" in space.capabilities() else None
        if conf_search["benchmark"] and table is None:
            ctx.log.info(f"[search] nas.search.benchmark is not used: space {space.name} has no benchmark key")
        outcome = self.strategy.search()
        meta = {"algo": ctx.algo, "space": space.name, **outcome.meta}
        path = space.save_arch(outcome.arch, ctx.search_dir, meta)
        found = f"[search] found {space.arch_str(outcome.arch)}"
        if table is not None:  # ground truth for every strategy, one-shot ones included
            accuracy = table.get(space.benchmark_key(outcome.arch))
            _, best = table.best()
            outcome.metrics.update(benchmark_top1=accuracy, benchmark_best_top1=best)
            found += f"; benchmark accuracy {'not in the table' if accuracy is None else f'{accuracy:.2%}'}"
            found += f" (the table's best: {best:.2%}, {len(table):,} architectures)"
        ctx.log.info(found)
        return SearchResult(record_search_result(ctx, path, outcome.metrics), outcome.metrics)

    def search_model(self) -> nn.Module | None:
        return self.strategy.search_model()

    def build_eval_model(self, final_arch: Path, eval_dir: Path | None) -> BuiltModel:
        return self.space.eval_model(final_arch, self.conf_eval["model_desc"], eval_dir)

    def example_final_arch(self, folder: Path) -> Path:
        return self.space.save_arch(self.strategy.example_arch(), folder, {"example": True})

    def dry_run(self) -> dict[str, Any]:
        report = super().dry_run()
        report["notes"] = [f"space: {self.space.describe()}", *self.strategy.dry_run_notes()]
        report["cell_based"] = self.space.cell_based
        return report


def register_strategy(strategy: type[Strategy]) -> type[Strategy]:
    """Class decorator: make `strategy` an --algos choice."""
    STRATEGIES[strategy.name] = strategy
    runner = type(f"{strategy.__name__}Runner", (StrategyRunner,), {"strategy_class": strategy})
    runner.name, runner.summary = strategy.name, strategy.summary
    RUNNERS.add(strategy.name, runner)
    return strategy


def fit_supernet(ctx: RunContext, supernet: nn.Module, trainer_class: type[Trainer]) -> tuple[Trainer, dict[str, Any]]:
    """Train a one-shot strategy's supernet with `trainer_class` on the weights/arch split of the training set
    (nas.search.loader, nas.search.trainer), checkpointing to search/checkpoint.pt so a killed search resumes."""
    conf_search = ctx.conf["nas"]["search"]
    weights_loader, arch_loader = search_loaders(ctx.conf["dataset"], conf_search["loader"], ctx.device, ctx.seed)
    trainer = trainer_class(
        conf_search["trainer"], supernet, ctx.log, ctx.device, "search", ctx.search_dir / "checkpoint.pt"
    )
    return trainer, trainer.fit(weights_loader, arch_loader, resume=ctx.resume)
