"""Multi-fidelity trials (nas.search.fidelity): Hyperband's table, the promotion rules of synchronous successive
halving, Hyperband's brackets and ASHA on a fake evaluator (each hand-traced), checkpoint clean-up, resume,
the best trial compared within one resource, and one-line errors."""

from __future__ import annotations

import pytest
import yaml

from archsearch.experiment.run import config_files
from archsearch.search.fidelity import Fidelity, history_for_proposals
from archsearch.search.trial_loop import TRIALS_FILE, Budget, TrialLoop
from tests.conftest import assert_config_error

# the quality of the candidates in proposal order (a candidate's metric is q * its resource)
Q = [0.5, 0.9, 0.1, 0.3, 0.95, 0.2, 0.8, 0.85, 0.05, 0.4, 0.6, 0.7, 0.15, 0.25, 0.35, 0.45, 0.55, 0.65]


def propose(index, rng, history):
    return {"q": Q[len(history)]}  # one at a time, the history holds every earlier candidate at min


def fake(calls):
    def evaluate(trial):
        calls.append((trial.index, trial.extra["candidate"], trial.extra["rung"], trial.extra["resource"]))
        return {"val_top1": trial.arch["q"] * trial.extra["resource"]}

    return evaluate


def run(folder, fidelity, n, calls, resume=False, **kw):
    loop = TrialLoop(folder, seed=1, budget=Budget(n), resume=resume, log=lambda _: None, fidelity=fidelity, **kw)
    return loop.run(propose, fake(calls))


def test_hyperband_table_is_li_et_al_table_1():
    # Li et al., JMLR 2018, Table 1: R = 81, eta = 3; (n_i, r_i) of each bracket s = 4..0
    assert Fidelity("epochs", 1, 81, 3, hyperband=True).table() == [
        [(81, 1), (27, 3), (9, 9), (3, 27), (1, 81)],
        [(34, 3), (11, 9), (3, 27), (1, 81)],
        [(15, 9), (5, 27), (1, 81)],
        [(8, 27), (2, 81)],
        [(5, 81)],
    ]
    f = Fidelity("epochs", 2, 10, 3)  # max / min not a power of eta: s_max = 1, whole epochs, top rung = max
    assert f.s_max == 1 and [f.resource_of(1, i) for i in range(2)] == [3, 10]
    assert Fidelity("epochs", 1, 27, 3).s_max == 3 and Fidelity("epochs", 3, 3, 3).s_max == 0


def test_synchronous_successive_halving_promotes_the_top_third_of_each_finished_rung(tmp_path):
    calls, retired = [], []
    results = run(tmp_path, Fidelity("epochs", 1, 9, 3), 9, calls, on_recorded=retired.append)
    # 9 candidates at 1 epoch; their best 3 (q .95, .9, .85: candidates 4, 1, 7) at 3; the best of those at 9
    assert calls == [(i, i, 0, 1) for i in range(9)] + [(9, 4, 1, 3), (10, 1, 1, 3), (11, 7, 1, 3), (12, 4, 2, 9)]
    # a candidate's checkpoint goes once it can no longer be promoted: the six left out when rung 1 began,
    # then the rest when the top rung holds its one
    assert retired == [0, 2, 3, 5, 6, 8, 1, 4, 7]
    records = yaml.safe_load((tmp_path / TRIALS_FILE).read_text())
    assert records == results.records
    assert [(r["bracket"], r["rung"], r["resource"]) for r in records][9:] == [(0, 1, 3)] * 3 + [(0, 2, 9)]
    assert all(r["arch"] == records[r["candidate"]]["arch"] and r["seed"] == records[r["candidate"]]["seed"]
               for r in records)  # fmt: skip
    # the best is compared within the highest resource reached: 0.95 * 9, not a lower rung's figure
    assert results.best["index"] == 12 and records[-1]["best_so_far"] == pytest.approx(0.95 * 9)
    assert records[9]["best_so_far"] == pytest.approx(0.95 * 3)  # the first record at 3 epochs is the best so far


def test_a_bracket_the_budget_cuts_short_still_brings_one_candidate_to_max(tmp_path):
    calls = []
    run(tmp_path, Fidelity("epochs", 1, 9, 3), 10, calls)
    assert calls[13:] == [(13, 13, 0, 1), (14, 13, 1, 3), (15, 13, 2, 9)]


def test_hyperband_runs_its_brackets_in_turn(tmp_path):
    calls = []
    run(tmp_path, Fidelity("epochs", 1, 9, 3, hyperband=True), 17, calls)
    records = yaml.safe_load((tmp_path / TRIALS_FILE).read_text())
    shape = {}
    for r in records:
        shape.setdefault(r["bracket"], []).append((r["rung"], r["resource"]))
    # s = 2: 9 at 1, 3 at 3, 1 at 9; s = 1: ceil(3 * 3 / 2) = 5 at 3, 1 at 9; s = 0: 3 at 9
    assert shape == {
        0: [(0, 1)] * 9 + [(1, 3)] * 3 + [(2, 9)],
        1: [(0, 3)] * 5 + [(1, 9)],
        2: [(0, 9)] * 3,
    }
    # a strategy's proposals see only the candidates at the minimum resource
    assert len(history_for_proposals(records, Fidelity("epochs", 1, 9, 3, hyperband=True))) == 9


def test_asha_promotes_as_soon_as_a_candidate_is_in_the_top_third_of_its_rung(tmp_path):
    calls = []
    run(tmp_path, Fidelity("epochs", 1, 9, 3, asynchronous=True), 9, calls)
    # hand trace of Li et al. 2020, Algorithm 2 (one worker): rung 0 of 3 -> its best (q .9) goes up at once;
    # q .95 arrives 5th (top 1 of 5) and goes up; at 9 members the top 3 includes q .85, promoted; then rung 1
    # holds 3 and its best (q .95) reaches the top rung
    assert [(c, rung) for _, c, rung, _ in calls] == [
        (0, 0), (1, 0), (2, 0), (1, 1), (4, 0), (5, 0), (5, 1), (7, 0), (8, 0), (9, 0), (10, 0), (9, 1), (5, 2),
    ]  # fmt: skip


def test_resume_replays_the_schedule_without_rerunning_a_finished_trial(tmp_path):
    straight = run(tmp_path / "straight", Fidelity("epochs", 1, 9, 3), 10, [])
    fidelity = Fidelity("epochs", 1, 9, 3)
    for stop in (5, 11, 14):  # in rung 0, in rung 1, in the cut-short bracket
        calls = []

        def failing(trial, calls=calls, stop=stop):
            if trial.index == stop:
                raise KeyboardInterrupt
            return fake(calls)(trial)

        loop = TrialLoop(tmp_path, seed=1, budget=Budget(10), resume=True, log=lambda _: None, fidelity=fidelity)
        with pytest.raises(KeyboardInterrupt):
            loop.run(propose, failing)
        assert calls and calls[0][0] == (0 if stop == 5 else {11: 5, 14: 11}[stop])  # finished trials never rerun
    resumed = run(tmp_path, fidelity, 10, [], resume=True)
    strip = [{k: v for k, v in r.items() if k != "time_s"} for r in resumed.records]
    assert strip == [{k: v for k, v in r.items() if k != "time_s"} for r in straight.records]


def test_without_a_fidelity_the_records_are_unchanged(tmp_path):
    records = TrialLoop(tmp_path, seed=1, budget=Budget(3), log=lambda _: None).run(propose, lambda t: {"val_top1": 1})
    assert all(set(r) == {"index", "arch", "seed", "metrics", "time_s", "best_so_far"} for r in records.records)


@pytest.fixture
def files():
    return config_files("random", None, False)


@pytest.mark.parametrize(
    "value, fragments",
    [
        ("{resource: epochs, min: 3, max: 1, eta: 3}", ["min 3 is above max 1"]),
        ("{resource: epochs, min: 1, max: 9, eta: 1}", ["eta 1 is not allowed", "integer >= 2"]),
        ("{resource: steps, min: 1, max: 9, eta: 3}", ["resource 'steps' is not one of epochs"]),
        ("{resource: epochs, min: 0, max: 9, eta: 3}", ["min 0 is not allowed"]),
        ("{resource: epochs, max: 9, eta: 3}", ["min is missing"]),
        ("{resource: epochs, min: 1, max: 9, eta: 3, rungs: 4}", ["'rungs' is not a fidelity setting"]),
        ("{resource: epochs, min: 1, max: 9, eta: 3, hyperband: true, asynchronous: true}", ["synchronously"]),
        ("[1, 9]", ["is not allowed"]),
    ],
)
def test_bad_fidelity_is_one_line(files, value, fragments):
    assert_config_error(files, "nas.search.fidelity", value, fragments)


def test_fidelity_needs_trained_trials(files):
    from archsearch.common.errors import ConfigError
    from archsearch.config import load_config

    with pytest.raises(ConfigError, match="needs --nas.search.evaluate_by train"):
        load_config(files, [("nas.search.evaluate_by", "table"),
                            ("nas.search.fidelity", "{resource: epochs, min: 1, max: 9, eta: 3}")])  # fmt: skip


def test_with_several_objectives_a_rung_promotes_by_non_dominated_layer_then_the_primary(tmp_path):
    from archsearch.search.objectives import Goals, Objective

    goals = Goals((Objective("acc", "max"), Objective("cost", "min")))
    # six candidates, (acc, cost): the top 2 of the rung by accuracy alone would be 0 and 2; 2 is dominated
    # by 0, and 1 (cheap) is on the first front with 0
    points = [(0.9, 10.0), (0.8, 1.0), (0.85, 11.0), (0.1, 5.0), (0.2, 6.0), (0.3, 7.0)]
    calls = []

    def evaluate(trial):
        calls.append((trial.extra["candidate"], trial.extra["rung"]))
        acc, cost = trial.arch["p"]
        return {"acc": acc * trial.extra["resource"], "cost": cost}

    loop = TrialLoop(tmp_path, seed=1, budget=Budget(6), log=lambda _: None, goals=goals,
                     fidelity=Fidelity("epochs", 1, 9, 3))  # fmt: skip
    results = loop.run(lambda index, rng, history: {"p": list(points[len(history)])}, evaluate)
    # a rung of 6 promotes 2 (first layer: 0 and 1); of those 2, one (same layer: the better accuracy) goes on
    assert calls[6:] == [(0, 1), (1, 1), (0, 2)]
    assert [m["candidate"] for m in results.front] == [0] and results.front[0]["resource"] == 9
    # pareto.yaml's curve: the front of the highest resource so far, started again at each higher resource
    from archsearch.search.objectives import hypervolume, pareto_front
    from archsearch.search.trial_eval import front_curve

    curve = front_curve(results, Fidelity("epochs", 1, 9, 3))
    assert [n for n, _ in curve] == list(range(1, 10))
    records = results.records
    for n in (6, 7, 9):  # the last at 1 epoch, the first at 3, the one at 9
        level = [r for r in records[:n] if r["resource"] == records[n - 1]["resource"]]
        assert curve[n - 1][1] == pytest.approx(hypervolume(pareto_front(level, goals), goals, results.reference))
