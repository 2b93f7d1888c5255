"""Tiny real runs of every algorithm (search and eval, in process), whose folders the report tests read.

The sizes come from the contract test's smallest settings per strategy and space, plus an eval of one
short epoch, so every run writes what a real one does (summary.yaml, log.yaml, trials, eval/model.pt) in
about a second or two."""

from __future__ import annotations

from pathlib import Path

import archsearch
from archsearch.experiment.run import RunOptions
from tests.test_contract import COMMON, SPACE_SETTINGS, STRATEGY_SETTINGS

EVAL = {
    "nas.eval.trainer.epochs": 1,
    "nas.eval.loader.batch_size": 8,
    "nas.eval.loader.limit_batches": 2,
    "nas.eval.model_desc.n_cells": 3,
    "nas.eval.model_desc.init_channels": 4,
}

# a multi-objective search (issue 21) over a made-up table of every NB201 cell (written by toy_run): accuracy up,
# parameters down; the toy cells have about 5k-15k parameters, so the params bound rejects proposals before
# evaluation (a cheap constraint) and the accuracy bound leaves some evaluated trials infeasible
MULTI_OBJECTIVE = {
    "nas.search.evaluate_by": "table",
    "nas.search.benchmark": "NB201_TABLE",
    "nas.search.random.n_candidates": 24,
    "nas.search.objectives": [{"metric": "benchmark_top1", "goal": "max"}, {"metric": "params", "goal": "min"}],
    "nas.search.constraints": {"params": {"max": 10000}, "benchmark_top1": {"min": 0.7}},
}

# (name, algorithm, space or None for the algorithm's default, extra settings)
RUNS = [
    ("darts", "darts", "darts", {"nas.search.trainer.epochs": 2}),
    ("darts_nb201", "darts", "nasbench201", {"nas.search.trainer.epochs": 2}),
    ("darts_user", "darts", "user_model", {}),
    ("pcdarts", "pcdarts", "darts", {}),
    ("gdas", "gdas", "darts", {}),
    ("betadarts", "betadarts", "darts", {}),
    ("enas", "enas", "enas_micro", {"nas.search.trainer.epochs": 2}),
    ("enas_macro", "enas", "enas_macro", {}),
    ("random", "random", "darts", {}),
    ("random_pareto", "random", "nasbench201", MULTI_OBJECTIVE),
    ("rea", "rea", "nasbench201", {}),
    ("nsga2", "nsga2", "nasbench201", {**{k: v for k, v in MULTI_OBJECTIVE.items() if "random" not in k},
                                       "nas.search.nsga2.n_trials": 12}),
    ("optuna", "optuna", "nasbench201", {**{k: v for k, v in MULTI_OBJECTIVE.items() if "random" not in k},
                                         "nas.search.optuna.n_trials": 8}),
    # MO-BANANAS over the same table: the predictor models accuracy, params are exact for every candidate
    ("bananas", "bananas", "nasbench201", {**{k: v for k, v in MULTI_OBJECTIVE.items() if "random" not in k},
                                           "nas.search.bananas.n_trials": 8}),
    # scored exhaustively over six cells that a small benchmark table holds (written by toy_run)
    (
        "naswot",
        "naswot",
        "nasbench201",
        {
            "nas.search.naswot.indices": list(range(6)),
            "nas.search.naswot.n_samples": 6,
            "nas.search.benchmark": "TABLE",
        },
    ),
    ("spos", "spos", "nasbench201", {"nas.search.trainer.epochs": 2}),  # the supernet's curve: two epochs
    ("morphism", "morphism", "morphism", {}),
    ("manual", "manual", None, {}),
]


def settings(algo: str, space: str | None, extra: dict, logdir: Path) -> dict:
    # report.auto explicitly: the report written at the end of the run is what the tests open
    found = {**COMMON, **EVAL, **STRATEGY_SETTINGS.get(algo, {}), "common.logdir": str(logdir), "report.auto": True}
    if space is not None:
        found.update(SPACE_SETTINGS.get(space, {}))
        found["nas.search.space.name"] = space
        if space == "nasbench201":  # its eval network is sized by cells per stage, not n_cells
            found.pop("nas.eval.model_desc.n_cells")
            found["nas.eval.model_desc.n_cells_per_stage"] = 1
    return {**found, **extra}


def toy_run(name: str, algo: str, space: str | None, extra: dict, logdir: Path) -> Path:
    """Run one tiny search + eval; return its experiment folder (which holds the report it wrote)."""
    if extra.get("nas.search.benchmark") == "TABLE":
        extra = {**extra, "nas.search.benchmark": str(benchmark_table(logdir / "bench.csv"))}
    if extra.get("nas.search.benchmark") == "NB201_TABLE":
        extra = {**extra, "nas.search.benchmark": str(nb201_table(logdir / "nb201.csv"))}
    summary = archsearch.run(algo, "synthetic", RunOptions(exp_prefix=name), settings(algo, space, extra, logdir))
    return Path(summary["output_dir"])


def benchmark_table(path: Path) -> Path:
    """A NAS-Bench-201-style CSV: the first six cells with made-up accuracies 50..55 (%)."""
    from archsearch.spaces.nasbench201 import index_to_arch

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("uid,architecture,accuracy\n" + "".join(f"{i},{index_to_arch(i)},{50 + i}\n" for i in range(6)))
    return path


def nb201_table(path: Path) -> Path:
    """A made-up table of every NAS-Bench-201 cell, in percent (60.00 to 90.00), as tests/strategies/rea's."""
    from archsearch.spaces.nasbench201 import N_CELLS, index_to_arch

    path.parent.mkdir(parents=True, exist_ok=True)
    rows = "".join(f"{i},{index_to_arch(i)},{60 + (i * 7919 % 3001) / 100:.2f}\n" for i in range(N_CELLS))
    path.write_text("uid,architecture,accuracy\n" + rows)
    return path
