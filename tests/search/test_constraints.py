"""Constraints: a cheap one is checked before evaluation (no evaluation is spent on an infeasible candidate,
the rejections are deterministic, so resume replays them), an expensive one marks the trial infeasible, an
impossible one is one line; every new config value's bad input is one line naming the key."""

from __future__ import annotations

import pytest
import yaml

from archsearch.common.errors import ConfigError
from archsearch.config import load_config
from archsearch.experiment.run import config_files
from archsearch.search.objectives import Constraint, Goals, Objective
from archsearch.search.trial_loop import TRIALS_FILE, Budget, TrialLoop
from tests.conftest import assert_user_error
from tests.strategies.rea.test_rea import nb201_table  # noqa: F401 - the fixture

GOALS = Goals(
    (Objective("val_top1", "max"), Objective("params", "min")),
    (Constraint("params", max=40.0), Constraint("val_top1", min=0.2)),
)


def propose(index, rng, history):
    return rng.randrange(100)


def measure(calls):
    def run(arch, names):
        calls.append(arch)
        return {n: float(arch) for n in names}

    return run


def run(folder, n, evaluated, measured=None, resume=False, goals=GOALS, **kw):
    loop = TrialLoop(folder, 1, Budget(n), resume=resume, log=lambda _: None, goals=goals,
                     measure=measure(measured if measured is not None else []), **kw)  # fmt: skip

    def evaluate(trial):
        evaluated.append(trial.arch)
        return {"val_top1": (trial.arch % 10) / 10}

    return loop.run(propose, evaluate)


def test_a_cheap_constraint_spends_no_evaluation_on_an_infeasible_candidate(tmp_path):
    evaluated, measured = [], []
    results = run(tmp_path / "a", 20, evaluated, measured)
    assert len(evaluated) == 20 and all(arch <= 40 for arch in evaluated)
    rejected = [a for a in measured if a > 40]
    assert rejected and results.rejected == len(rejected) == sum(r["rejected"] for r in results.records)
    for r in results.records:
        assert r["metrics"]["params"] == r["arch"]  # the cheap metric is recorded with the evaluator's
        assert r["feasible"] == (r["metrics"]["val_top1"] >= 0.2)  # the expensive constraint, after evaluation
        assert r["hypervolume"] >= 0
    assert results.best["feasible"] and results.best in results.front
    assert all(m["feasible"] for m in results.front)
    written = yaml.safe_load((tmp_path / "a" / TRIALS_FILE).read_text())
    assert [r["arch"] for r in written] == evaluated  # rejected proposals are no trials


def test_rejections_are_deterministic_so_a_resumed_search_replays_them(tmp_path):
    straight = run(tmp_path / "straight", 15, [])
    run(tmp_path / "killed", 6, [])
    evaluated = []
    resumed = run(tmp_path / "killed", 15, evaluated, resume=True)
    keys = ("arch", "seed", "rejected", "feasible", "hypervolume", "best_so_far")
    assert [{k: r[k] for k in keys} for r in resumed.records] == [{k: r[k] for k in keys} for r in straight.records]
    assert len(evaluated) == 9 and resumed.rejected == straight.rejected
    assert [m["index"] for m in resumed.front] == [m["index"] for m in straight.front]


def test_an_impossible_cheap_constraint_is_one_line_naming_it(tmp_path):
    goals = Goals((Objective("val_top1", "max"),), (Constraint("params", max=-1.0),))
    evaluated = []
    with pytest.raises(ConfigError) as err:
        run(tmp_path, 5, evaluated, goals=goals, max_rejects=20)
    message = str(err.value)
    assert "params <= -1" in message and "21 tries" in message and "\n" not in message
    assert evaluated == []


def test_one_objective_and_no_constraints_keep_todays_records(tmp_path):
    evaluated = []
    legacy = Goals((Objective("val_top1", "max"),), legacy=True)
    results = run(tmp_path, 5, evaluated, goals=legacy)
    assert all(set(r) == {"index", "arch", "seed", "metrics", "time_s", "best_so_far"} for r in results.records)
    assert all(set(r["metrics"]) == {"val_top1"} for r in results.records) and results.front == []


@pytest.fixture(scope="module")
def files():
    return config_files("random", None, False)


@pytest.mark.parametrize(
    "key, value, fragments",
    [
        ("nas.search.objectives", "val_top1", ["'val_top1' is not allowed (a list of 1+ values"]),
        ("nas.search.objectives", "[]", ["is not allowed (a list of 1+ values"]),
        ("nas.search.objectives", "[val_top1]", ["is not allowed (a list of 1+ values, each a mapping {metric: NAME"]),
        ("nas.search.objectives", "[{goal: max}]", ["entry 1 {'goal': 'max'} is not allowed", "{metric: NAME"]),
        ("nas.search.objectives", "[{metric: accuracy}]", ["entry 1: unknown metric 'accuracy'", "valid:"]),
        ("nas.search.objectives", "[{metric: params, goal: smallest}]", ["goal 'smallest' is not allowed"]),
        ("nas.search.objectives", "[{metric: params, goals: min}]", ["entry 1", "is not allowed"]),
        ("nas.search.objectives", "[{metric: params}, {metric: params}]", ["entry 2: metric params is already"]),
        ("nas.search.constraints", "[1]", ["is not allowed (a mapping {METRIC: {min: X, max: Y}})"]),
        ("nas.search.constraints", "{latency: {max: 1}}", ["unknown metric 'latency'"]),
        ("nas.search.constraints", "{params: 5}", ["params: 5 is not allowed (a mapping with min and/or max"]),
        ("nas.search.constraints", "{params: {}}", ["params: {} is not allowed"]),
        ("nas.search.constraints", "{params: {most: 5}}", ["is not allowed (a mapping with min and/or max"]),
        ("nas.search.constraints", "{params: {max: big}}", ["params.max: 'big' is not allowed (a finite number)"]),
        ("nas.search.constraints", "{params: {max: .nan}}", ["params.max: nan is not allowed (a finite number)"]),
        ("nas.search.constraints", "{params: {min: 5, max: 1}}", ["params: min 5 is above max 1"]),
        ("nas.search.select", "pareto", ["'pareto' is not one of best, knee"]),
        ("nas.search.reference_point", "[0, 1]", ["has 2 values for 1 objectives"]),
        ("nas.search.reference_point", "[x]", ["is not allowed (a list of 1+ values, each a number"]),
        ("nas.search.metrics.batch_size", "0", ["is not allowed (an integer >= 1)"]),
        ("nas.search.metrics.threads", "0", ["is not allowed (an integer >= 1)"]),
        ("nas.search.metrics.warmup", "-1", ["is not allowed (an integer >= 0)"]),
        ("nas.search.metrics.repeats", "0", ["is not allowed (an integer >= 1)"]),
        ("nas.search.metrics.device", "tpu", ["'tpu' is not allowed (cpu, cuda or cuda:N)"]),
        ("nas.search.metrics.latency_table", "''", ["is not allowed (a latency table file or null)"]),
    ],
)
def test_every_new_config_value_has_a_one_line_error(files, key, value, fragments):
    with pytest.raises(ConfigError) as err:
        load_config(files, [(key, value)])
    message = str(err.value)
    assert "\n" not in message and key in message, message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_the_defaults_are_todays_search(files):
    conf = load_config(files, [])["nas"]["search"]
    assert conf["objectives"] is None and dict(conf["constraints"]) == {} and conf["select"] == "best"
    assert conf["reference_point"] is None
    assert dict(conf["metrics"]) == {"batch_size": 1, "threads": 1, "warmup": 3, "repeats": 10, "device": "cpu",
                                     "latency_table": None}  # fmt: skip


TABLE = ["--datasets", "synthetic", "--search-only", "--nas.search.evaluate_by", "table", "--report.auto", "false"]
TWO_OBJECTIVES = ["--nas.search.objectives", "[{metric: benchmark_top1, goal: max}, {metric: params, goal: min}]"]


def test_random_with_two_objectives_and_a_params_limit_through_the_cli(cli, nb201_table):  # noqa: F811
    args = ["--algos", "random", "--nas.search.space", "nasbench201", *TABLE, "--nas.search.benchmark",
            str(nb201_table), "--nas.search.random.n_candidates", "12", *TWO_OBJECTIVES,
            "--nas.search.constraints", "{params: {max: 31000}}"]  # fmt: skip
    proc = cli(*args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = cli.logdir / "archsearch_synthetic_toy" / "random"
    trials = yaml.safe_load((out / "search" / "trials.yaml").read_text())
    pareto = yaml.safe_load((out / "search" / "pareto.yaml").read_text())
    summary = yaml.safe_load((out / "summary.yaml").read_text())["search"]
    assert len(trials) == 12 and all(t["metrics"]["params"] <= 31000 and t["feasible"] for t in trials)
    assert pareto["rejected"] == summary["n_rejected"] == sum(t["rejected"] for t in trials) > 0
    assert pareto["objectives"] == [{"metric": "benchmark_top1", "goal": "max"}, {"metric": "params", "goal": "min"}]
    assert pareto["constraints"] == {"params": {"max": 31000.0}} and pareto["rule"] == "best"
    assert pareto["hypervolume"] == trials[-1]["hypervolume"] > 0
    members = {m["index"] for m in pareto["front"]}
    assert pareto["selected"] in members and summary["best_trial"] == pareto["selected"]
    for m in pareto["front"]:
        assert (out / m["arch_file"]).exists() and m["metrics"] == trials[m["index"]]["metrics"]
    best_acc = max(t["metrics"]["benchmark_top1"] for t in trials)
    assert trials[pareto["selected"]]["metrics"]["benchmark_top1"] == best_acc


def test_strategy_and_evaluator_refusals_are_one_line(cli_in_process, nb201_table):  # noqa: F811
    cli = cli_in_process
    table = [*TABLE, "--nas.search.benchmark", str(nb201_table)]
    assert_user_error(cli("--algos", "rea", *table, *TWO_OBJECTIVES), "--algos rea optimizes one objective",
                      "strategies that take several: ", "random")  # fmt: skip
    wrong = ["--nas.search.objectives", "[{metric: val_top1}]"]
    assert_user_error(cli("--algos", "rea", *table, *wrong), "name val_top1", "evaluate_by table does not give")
