"""--algos nsga2: Optuna's NSGA-II on the trial loop: generations of population_size, elitism with constrained
domination (a feasible trial beats an infeasible one), exact resume after kill -9 through the CLI (the
issue's command, small), every new config value's bad input one line."""

from __future__ import annotations

import random

import pytest
import yaml

from archsearch.config import load_config
from archsearch.experiment.run import config_files
from archsearch.search.objectives import Constraint, Goals, Objective
from archsearch.search.trial_loop import Budget, TrialLoop
from archsearch.strategies.optuna_search.strategy import AskTell, optuna_module
from tests.conftest import assert_config_error
from tests.strategies.optuna_search.test_optuna import SPACE, TABLE, TWO, kill_and_resume
from tests.strategies.rea.test_rea import nb201_table  # noqa: F401 - the fixture

GOALS = Goals((Objective("acc", "max"), Objective("cost", "min")), (Constraint("cost", max=12),))


def evaluate(trial):
    ops = list(SPACE.choices_of(trial.arch).values())
    acc = sum(o == "nor_conv_3x3" for o in ops) + 0.5 * sum(o == "nor_conv_1x1" for o in ops)
    return {"acc": acc, "cost": float(sum(3 if "conv" in o else 1 for o in ops))}


def nsga2(population: int) -> AskTell:
    def sampler(seed):
        return optuna_module().samplers.NSGAIISampler(seed=seed, population_size=population)

    return AskTell(SPACE, GOALS, sampler, keep_generation=True)


def test_generations_of_population_size_and_parents_from_the_feasible_elite(tmp_path):
    loop = TrialLoop(tmp_path, 3, Budget(40), log=lambda _: None, goals=GOALS)
    records = loop.run(nsga2(8).propose, evaluate).records
    assert [r["generation"] for r in records] == [g for g in range(5) for _ in range(8)]
    first = [r for r in records if r["generation"] == 0]
    last = [r for r in records if r["generation"] == 4]
    feasible = lambda rs: sum(r["feasible"] for r in rs) / len(rs)  # noqa: E731
    # constrained domination: infeasible parents lose to feasible ones, so children are mostly feasible
    assert feasible(last) >= feasible(first) and feasible(last) >= 0.5
    assert max(r["metrics"]["acc"] for r in records if r["feasible"]) > max(
        r["metrics"]["acc"] for r in first if r["feasible"]
    )


def test_replay_of_the_index_proposes_the_same_children(tmp_path):
    loop = TrialLoop(tmp_path, 3, Budget(20), log=lambda _: None, goals=GOALS)
    records = loop.run(nsga2(6).propose, evaluate).records
    for r in records:
        arch, extra = nsga2(6).propose(r["index"], random.Random(r["seed"]), records[: r["index"]])
        assert (arch, extra["generation"]) == (r["arch"], r["generation"])


@pytest.fixture(scope="module")
def files():
    return config_files("nsga2", None, False)


def test_the_defaults_are_the_papers():
    conf = load_config(config_files("nsga2", None, True), [])["nas"]["search"]["nsga2"]
    assert dict(conf) == {"n_trials": 150, "time_budget_s": None, "population_size": 50, "crossover_prob": 0.9,
                          "swapping_prob": 0.5, "mutation_prob": None}  # fmt: skip


@pytest.mark.parametrize(
    "key, value, fragments",
    [
        ("nas.search.nsga2.n_trials", "0", ["is not allowed (an integer >= 1)"]),
        ("nas.search.nsga2.time_budget_s", "-1", ["is not allowed"]),
        ("nas.search.nsga2.population_size", "1", ["is not allowed (an integer >= 2)"]),
        ("nas.search.nsga2.crossover_prob", "1.5", ["is not allowed"]),
        ("nas.search.nsga2.swapping_prob", "-0.1", ["is not allowed"]),
        ("nas.search.nsga2.mutation_prob", "2", ["is not allowed"]),
        ("nas.search.nsga2.mutation_prob", "often", ["'often' is not allowed"]),
    ],
)
def test_every_new_config_value_has_a_one_line_error(files, key, value, fragments):
    assert_config_error(files, key, value, fragments)


def test_the_issue_command_small_writes_trials_and_the_front(cli, nb201_table):  # noqa: F811
    args = ["--algos", "nsga2", "--nas.search.space", "nasbench201", *TABLE, "--nas.search.benchmark",
            str(nb201_table), *TWO, "--nas.search.nsga2.n_trials", "12", "--common.seed", "3"]  # fmt: skip
    proc = cli(*args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    search = cli.logdir / "archsearch_synthetic_toy" / "nsga2" / "search"
    trials = yaml.safe_load((search / "trials.yaml").read_text())
    pareto = yaml.safe_load((search / "pareto.yaml").read_text())
    assert len(trials) == 12 and [t["generation"] for t in trials] == [0] * 4 + [1] * 4 + [2] * 4  # toy: 4
    assert pareto["hypervolume"] == trials[-1]["hypervolume"] > 0 and pareto["front"]


def test_nsga2_killed_after_a_trial_resumes_exactly_through_the_cli(cli, nb201_table):  # noqa: F811
    kill_and_resume(cli, "nsga2", nb201_table, "--nas.search.nsga2.n_trials", "10",
                    "--nas.search.constraints", "{params: {max: 40000}}")  # fmt: skip
