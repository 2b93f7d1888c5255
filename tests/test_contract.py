"""The contract every plugin meets, tested the day it is registered (as timm tests every registered model):
every strategy x every search space either runs (a dry run at toy scale and a short search) or, when the
space lacks a capability the strategy needs, stops with the one-line error that names the spaces it runs on.
"""

from __future__ import annotations

import itertools
import random
import re

import pytest

import archsearch
import archsearch.plugins  # noqa: F401 - the plugin bootstrap fills both registries
from archsearch.common.errors import ConfigError
from archsearch.experiment.run import RunOptions, override_pairs, resolve_config
from archsearch.search.space import SPACES
from archsearch.search.strategy import STRATEGIES
from tests.conftest import assert_user_error

# the smallest network of each space, and the data it runs on
SPACE_SETTINGS: dict[str, dict] = {
    "darts": {"nas.search.model_desc.n_cells": 3, "nas.search.model_desc.init_channels": 4,
              "nas.search.model_desc.n_nodes": 2},
    "nasbench201": {"nas.search.model_desc.init_channels": 4, "nas.search.model_desc.n_cells_per_stage": 1},
    "enas_micro": {"nas.search.model_desc.n_cells": 3, "nas.search.model_desc.init_channels": 4,
                   "nas.search.model_desc.n_nodes": 2, "nas.search.space.n_nodes": 2},
    "enas_macro": {"nas.search.space.n_layers": 3, "nas.search.model_desc.init_channels": 4},
    "user_model": {"nas.search.space.model": "examples.mnist_space:Net",
                   "nas.search.space.model_kwargs": {"in_channels": 3, "n_classes": 10, "width": 4}},
    "morphism": {"nas.search.morphism.model_width": 8, "nas.search.morphism.model_len": 1},
}  # fmt: skip

# the shortest search of each strategy
STRATEGY_SETTINGS: dict[str, dict] = {
    "darts": {"nas.search.trainer.bilevel.order": "first"},
    "betadarts": {},
    "pcdarts": {"nas.search.trainer.bilevel.arch_start_epoch": 0},  # the one epoch takes architecture steps
    "gdas": {},
    "enas": {"nas.search.trainer.controller.train_steps": 1, "nas.search.trainer.controller.n_samples": 2,
             "nas.search.final.n_samples": 2, "nas.search.final.eval_batches": 1},
    "random": {"nas.search.random.n_candidates": 2},
    "rea": {"nas.search.rea.n_trials": 3, "nas.search.rea.population_size": 2, "nas.search.rea.sample_size": 2},
    "naswot": {"nas.search.naswot.n_samples": 2, "nas.search.naswot.batch_size": 8},
    "bananas": {"nas.search.bananas.n_trials": 3, "nas.search.bananas.num_init": 2, "nas.search.bananas.k": 1},
    "nsga2": {"nas.search.nsga2.n_trials": 3, "nas.search.nsga2.population_size": 2},
    "optuna": {"nas.search.optuna.n_trials": 2, "nas.search.optuna.sampler": "random"},
    "morphism": {"nas.search.morphism.n_trials": 2},
    "manual": {},
    "spos": {"nas.search.rea.n_trials": 3, "nas.search.rea.population_size": 2, "nas.search.rea.sample_size": 2,
             "nas.search.spos.bn_batches": 1},
}  # fmt: skip

COMMON = {
    "common.num_threads": 1,
    "dataset.synthetic_train": 48,
    "dataset.synthetic_test": 16,
    "nas.search.loader.batch_size": 8,
    "nas.search.loader.limit_batches": 1,
    "nas.search.trainer.epochs": 1,
    "report.auto": False,  # the report has its own browser tests (tests/report); here it would only add time
}

PAIRS = list(itertools.product(sorted(STRATEGIES), SPACES.names()))


def fits(strategy: str, space: str) -> bool:
    return STRATEGIES.get(strategy).requires <= SPACES.get(space).capabilities()


def overrides(strategy: str, space: str, logdir) -> dict:
    settings = {
        **COMMON,
        **SPACE_SETTINGS.get(space, {}),
        **STRATEGY_SETTINGS.get(strategy, {}),
        "nas.search.space.name": space,
        "common.logdir": str(logdir),
    }
    if strategy == "manual" and fits(strategy, space):  # manual evaluates a file of the space: one it sampled
        settings.update({"nas.search.manual.genotype": None, "nas.search.manual.desc_file": str(
            sampled_arch_file(space, settings, logdir))})  # fmt: skip
    return settings


def sampled_arch_file(space: str, settings: dict, folder) -> str:
    """A random architecture of `space`, written by the space itself (this also tests its load_arch)."""
    conf = resolve_config("random", "synthetic", RunOptions(), override_pairs(settings))
    search = conf["nas"]["search"]
    built = SPACES.get(space)(search["space"], search["model_desc"], conf["dataset"])
    built.conf_eval = conf["nas"]["eval"]
    return str(built.save_arch(built.sample(random.Random(0)), folder / "sampled", {"example": True}))


def test_every_registered_strategy_and_space_has_contract_settings():
    # a new plugin must add its smallest settings here, and then the contract runs it
    assert set(STRATEGIES) <= set(STRATEGY_SETTINGS), set(STRATEGIES) - set(STRATEGY_SETTINGS)
    assert set(SPACES.names()) <= set(SPACE_SETTINGS), set(SPACES.names()) - set(SPACE_SETTINGS)
    assert any(fits(*pair) for pair in PAIRS) and not all(fits(*pair) for pair in PAIRS)


@pytest.mark.parametrize("strategy, space", [p for p in PAIRS if fits(*p)])
def test_a_valid_pair_dry_runs_and_searches(strategy, space, tmp_path):
    settings = overrides(strategy, space, tmp_path)
    report = archsearch.run(strategy, "synthetic", RunOptions(dry_run=True), settings)
    assert report["eval_model_params"] > 0 and any(space in line for line in report["lines"])
    summary = archsearch.run(strategy, "synthetic", RunOptions(phases="search", exp_prefix=space), settings)
    final = summary["final_arch"]
    assert final.exists() and final.parent.name == "search"
    # the file is tagged with the space it was searched in (YAML meta, or the JSON's space key)
    tag = re.compile(rf"""["']?space["']?:\s*(\{{name:\s*)?["']?{space}\b""")
    assert tag.search(final.read_text()), final.read_text()[:500]


@pytest.mark.parametrize("strategy, space", [p for p in PAIRS if not fits(*p)])
def test_an_impossible_pair_is_one_line_naming_the_spaces_that_work(strategy, space, tmp_path):
    with pytest.raises(ConfigError) as caught:
        archsearch.run(strategy, "synthetic", RunOptions(dry_run=True), overrides(strategy, space, tmp_path))
    message = str(caught.value)
    assert "\n" not in message and f"--algos {strategy}" in message and space in message
    assert any(name in message.split("runs on:")[1] for name in SPACES.names() if fits(strategy, name))


def test_the_impossible_pair_error_through_the_cli(cli_in_process):
    cli = cli_in_process
    strategy, space = next(p for p in PAIRS if not fits(*p))
    proc = cli("--algos", strategy, "--nas.search.space", space, "--dry-run")
    assert_user_error(proc, f"--algos {strategy}", space, "runs on:")
