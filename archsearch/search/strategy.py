"""Strategies: search algorithms that run on every search space providing what they need.

A strategy subclasses `Strategy`, names the capabilities it needs from a space (`requires`, see
archsearch.search.space.CAPABILITIES) and its default space, implements `search()` and registers with
`@register_strategy`. Registration makes it an `--algos` choice: the run's phases
(archsearch.experiment.phases: fingerprinted resume, search/result.yaml, evaluation of the space's final
file) take any registered strategy, so a strategy is one module plus its config.

The space is `nas.search.space.name`; null means the strategy's `default_space`, or `user_model` when
`nas.search.space.model` names a model. A strategy/space pair whose needs are not met is one line naming
what is missing and which spaces would do.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from torch import nn

from archsearch.common.errors import ConfigError
from archsearch.common.registry import Registry
from archsearch.data.loaders import search_loaders
from archsearch.search.space import SPACES, Arch, SearchSpace
from archsearch.train.context import RunContext
from archsearch.train.trainer import Trainer

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


STRATEGIES: Registry[type[Strategy]] = Registry("algorithm")  # --algos: the one registry of strategies


def space_name(conf_space: Mapping, strategy: type[Strategy]) -> str:
    """The space a run uses: `nas.search.space.name`, else user_model when a model is named, else the
    strategy's default. `conf_space` may be partial (read before the whole config exists)."""
    if isinstance(conf_space.get("name"), str) and conf_space["name"]:
        return conf_space["name"]
    return USER_MODEL_SPACE if conf_space.get("model") else strategy.default_space


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
    """The space the run's config names for `strategy`, checked to provide what the strategy needs."""
    conf_search = ctx.conf["nas"]["search"]
    space_class = SPACES.get(space_name(conf_search["space"], strategy))
    check_pair(strategy, space_class)
    space = space_class(conf_search["space"], conf_search["model_desc"], ctx.conf["dataset"])
    space.conf_eval = ctx.conf["nas"]["eval"]
    return space


def register_strategy(strategy: type[Strategy]) -> type[Strategy]:
    """Class decorator: make `strategy` an --algos choice."""
    STRATEGIES.add(strategy.name, strategy)
    return strategy


def fit_supernet(ctx: RunContext, supernet: nn.Module, trainer_class: type[Trainer]) -> tuple[Trainer, dict[str, Any]]:
    """Train a one-shot strategy's supernet with `trainer_class` on the weights/arch split of the training set
    (nas.search.loader, nas.search.trainer), checkpointing to search/checkpoint.pt so a killed search resumes."""
    conf_search = ctx.conf["nas"]["search"]
    weights_loader, arch_loader = search_loaders(ctx.conf["dataset"], conf_search["loader"], ctx.device, ctx.seed)
    trainer = trainer_class(
        conf_search["trainer"], supernet, ctx.log, ctx.device, "search", ctx.search_dir / "checkpoint.pt"
    )
    trainer.epoch_images = ctx.epoch_images
    return trainer, trainer.fit(weights_loader, arch_loader, resume=ctx.resume)
