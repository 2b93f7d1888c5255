"""--algos optuna: Optuna's samplers by ask-and-tell, the study rebuilt from the trial index at every proposal,
so a proposal is a function of (trial RNG, history): replay and resume after kill -9 are exact, a rejected
proposal is followed by another, infeasible trials are Optuna's infeasible trials; every new config value's
bad input is one line."""

from __future__ import annotations

import random

import pytest
import yaml

from archsearch.common.checkpoint import KILL_AT_ENV
from archsearch.experiment.run import config_files
from archsearch.search.objectives import Constraint, Goals, Objective
from archsearch.search.trial_loop import Budget, TrialLoop, trial_seed
from archsearch.spaces.nasbench201 import NasBench201Space
from archsearch.strategies.optuna_search.strategy import VIOLATION_KEY, AskTell, make_sampler
from tests.conftest import assert_config_error, assert_user_error
from tests.strategies.rea.test_rea import nb201_table  # noqa: F401 - the fixture

SPACE = NasBench201Space({}, {}, {})
GOALS = Goals((Objective("acc", "max"), Objective("cost", "min")), (Constraint("cost", max=14),))
SETTINGS = {"n_startup_trials": 3, "population_size": 4}


def evaluate(trial):
    """A made-up table: convolutions cost and (3x3 most) help; trial 5 fails."""
    ops = SPACE.choices_of(trial.arch).values()
    acc = sum(o == "nor_conv_3x3" for o in ops) + 0.5 * sum(o == "nor_conv_1x1" for o in ops)
    return {"acc": float("nan") if trial.index == 5 else acc, "cost": float(sum(3 if "conv" in o else 1 for o in ops))}


def engine(sampler: str, goals: Goals = GOALS) -> AskTell:
    return AskTell(SPACE, goals, lambda seed: make_sampler(sampler, SETTINGS, seed), keep_generation=sampler == "nsga2")


def search(sampler, folder, n, resume=False):
    loop = TrialLoop(folder, 7, Budget(n), resume=resume, log=lambda _: None, goals=GOALS)
    return loop.run(engine(sampler).propose, evaluate).records


def same(records):
    return [(r["index"], r["arch"], r.get("generation"), r["metrics"], r["feasible"]) for r in records]


@pytest.mark.parametrize("sampler", ["tpe", "nsga2", "random"])
def test_a_proposal_is_a_function_of_the_rng_and_history_so_resume_is_exact(sampler, tmp_path):
    records = search(sampler, tmp_path / "straight", 14)
    if sampler != "tpe":  # a repeat is asked again (TPE's greedy pick may still repeat after MAX_REDRAWS asks)
        assert len({r["arch"] for r in records}) == 14
    for r in records:  # replay: each proposal again from its seed and the trials before it
        proposal = engine(sampler).propose(r["index"], random.Random(r["seed"]), records[: r["index"]])
        assert (proposal[0] if isinstance(proposal, tuple) else proposal) == r["arch"]
    search(sampler, tmp_path / "killed", 6)  # a search stopped after 6 trials, resumed from its index
    assert same(search(sampler, tmp_path / "killed", 14, resume=True)) == same(records)


def test_a_rejected_proposal_is_followed_by_another_from_the_advanced_rng():
    history = search("tpe", None, 6)
    rng = random.Random(trial_seed(7, 6))
    first = engine("tpe").propose(6, rng, history)
    assert engine("tpe").propose(6, rng, history) != first  # asked again after a cheap rejection


def test_failed_and_infeasible_trials_are_optunas_failed_and_infeasible_trials():
    import optuna

    ask = engine("nsga2")
    ok = {"index": 0, "arch": SPACE.sample(random.Random(0)), "metrics": {"acc": 2.0, "cost": 10.0}, "generation": 0}
    over = {**ok, "index": 1, "metrics": {"acc": 3.0, "cost": 20.0}}
    failed = {**ok, "index": 2, "metrics": {"acc": float("nan"), "cost": 10.0}}
    a, b, c = (ask.frozen(r) for r in (ok, over, failed))
    assert a.state == optuna.trial.TrialState.COMPLETE and a.values == [-2.0, 10.0]  # max goals negated
    assert a.system_attrs[VIOLATION_KEY] == 0 and b.system_attrs[VIOLATION_KEY] == pytest.approx(6 / 14)
    assert b.constraints and c.state == optuna.trial.TrialState.FAIL and c.values is None


def test_every_sampler_proposes_on_darts_cells_and_the_gp_on_nasbench201():
    from archsearch.spaces.darts_cells import DartsCellSpace

    darts = DartsCellSpace({}, {"n_nodes": 2}, {})
    one = Goals((Objective("acc", "max"),))
    history = []
    for i in range(4):
        arch = darts.sample(random.Random(i))
        history.append({"index": i, "arch": arch, "metrics": {"acc": float(i)}})
    for sampler in ("tpe", "nsga2", "random"):
        ask = AskTell(darts, one, lambda seed, s=sampler: make_sampler(s, SETTINGS, seed), sampler == "nsga2")
        proposal = ask.propose(4, random.Random(1), history)
        arch = proposal[0] if isinstance(proposal, tuple) else proposal
        assert darts.from_json(arch) == arch and arch not in [r["arch"] for r in history]
    gp = AskTell(SPACE, one, lambda seed: make_sampler("gp", {"n_startup_trials": 2}, seed), False)
    nb = [{"index": i, "arch": SPACE.sample(random.Random(i)), "metrics": {"acc": float(i)}} for i in range(3)]
    assert gp.propose(3, random.Random(2), nb) == gp.propose(3, random.Random(2), nb)


@pytest.fixture(scope="module")
def files():
    return config_files("optuna", None, False)


@pytest.mark.parametrize(
    "key, value, fragments",
    [
        ("nas.search.optuna.sampler", "cmaes", ["'cmaes' is not one of tpe, nsga2, gp, random"]),
        ("nas.search.optuna.n_trials", "0", ["is not allowed (an integer >= 1)"]),
        ("nas.search.optuna.time_budget_s", "0", ["is not allowed"]),
        ("nas.search.optuna.n_startup_trials", "-1", ["is not allowed (an integer >= 0)"]),
        ("nas.search.optuna.population_size", "1", ["is not allowed (an integer >= 2)"]),
        ("nas.search.optuna.seed", "1", ["seed"]),
    ],
)
def test_every_new_config_value_has_a_one_line_error(files, key, value, fragments):
    assert_config_error(files, key, value, fragments)


TABLE = ["--datasets", "synthetic", "--search-only", "--nas.search.evaluate_by", "table", "--report.auto", "false"]
TWO = ["--nas.search.objectives", "[{metric: benchmark_top1, goal: max}, {metric: params, goal: min}]"]


def kill_and_resume(cli, algo: str, table, *more: str, kill_at: str = "trial:recorded:3") -> None:
    """The search killed (SIGKILL) right after a trial's record, resumed, equals the uninterrupted one."""
    args = ["--algos", algo, *TABLE, "--nas.search.benchmark", str(table), *TWO, *more]
    straight = cli(*args, "--exp-prefix", "straight")
    assert straight.returncode == 0, straight.stderr[-3000:]
    killed = cli(*args, "--exp-prefix", "killed", env={KILL_AT_ENV: kill_at})
    assert killed.returncode == -9, killed.stderr[-3000:]
    resumed = cli(*args, "--exp-prefix", "killed", "--common.resume", "true")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming after 4 finished trials" in resumed.stdout

    def results(prefix):
        search = cli.logdir / f"{prefix}_synthetic_toy" / algo / "search"
        trials = yaml.safe_load((search / "trials.yaml").read_text())
        for t in trials:
            t.pop("time_s")
        return trials, yaml.safe_load((search / "pareto.yaml").read_text())

    assert results("killed") == results("straight")


def test_optuna_killed_after_a_trial_resumes_exactly_through_the_cli(cli, nb201_table):  # noqa: F811
    kill_and_resume(cli, "optuna", nb201_table, "--nas.search.constraints", "{params: {max: 40000}}")


def test_a_space_without_choices_is_one_line(cli_in_process):
    cli = cli_in_process
    assert_user_error(cli("--algos", "optuna", "--nas.search.space", "morphism", "--dry-run"),
                      "--algos optuna needs a search space with choices", "darts", "enas_macro", "nasbench201",
                      "user_model")  # fmt: skip
