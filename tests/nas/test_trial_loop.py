"""The one trial loop: index, resume without rerunning finished trials, budgets, best-so-far, seeds."""

from __future__ import annotations

import random

import pytest
import yaml

from archsearch.common.errors import ConfigError
from archsearch.nas.trial_loop import BEST_FILE, TRIALS_FILE, Budget, TrialLoop, trial_seed


def propose(index, rng, history):
    return {"draw": rng.random(), "after": len(history)}


def scored(calls):
    def evaluate(trial):
        calls.append(trial.index)
        return {"val_top1": trial.arch["draw"]}

    return evaluate


def loop(folder, n=None, time_s=None, resume=False, **kw):
    return TrialLoop(folder, seed=3, budget=Budget(n, time_s), resume=resume, log=lambda _: None, **kw)


def test_index_records_every_trial_with_its_seed_and_the_best_so_far(tmp_path):
    calls, recorded = [], []
    results = loop(tmp_path, 5, on_recorded=recorded.append).run(propose, scored(calls))
    records = yaml.safe_load((tmp_path / TRIALS_FILE).read_text())
    assert records == results.records and [r["index"] for r in records] == calls == recorded == list(range(5))
    for r in records:  # the proposal depends on (run seed, index) alone
        assert r["seed"] == trial_seed(3, r["index"]) and r["arch"]["draw"] == random.Random(r["seed"]).random()
        assert r["best_so_far"] == max(q["metrics"]["val_top1"] for q in records[: r["index"] + 1])
    assert results.best == max(records, key=lambda r: r["metrics"]["val_top1"])
    assert yaml.safe_load((tmp_path / BEST_FILE).read_text()) == results.best


def test_resume_runs_only_the_trials_not_in_the_index(tmp_path):
    loop(tmp_path, 3).run(propose, scored([]))
    calls, recorded = [], []
    resumed = loop(tmp_path, 5, resume=True, on_recorded=recorded.append).run(propose, scored(calls))
    straight = loop(tmp_path / "straight", 5).run(propose, scored([]))
    assert calls == [3, 4] and recorded == [0, 1, 2, 3, 4]  # finished trials are handed back for clean-up
    strip = [{k: v for k, v in r.items() if k != "time_s"} for r in resumed.records]
    assert strip == [{k: v for k, v in r.items() if k != "time_s"} for r in straight.records]
    assert loop(tmp_path, 3).read_index() == []  # without resume the index is not read


def test_budget_in_seconds_counts_the_time_of_finished_trials(tmp_path, monkeypatch):
    clock = iter(range(0, 1000, 2))  # every evaluation takes exactly 2 s
    monkeypatch.setattr("archsearch.nas.trial_loop.time.perf_counter", lambda: next(clock))
    assert len(loop(tmp_path, time_s=5).run(propose, scored([])).records) == 3  # 2, 4, 6 >= 5
    assert len(loop(tmp_path, 10, time_s=7, resume=True).run(propose, scored([])).records) == 4
    with pytest.raises(ConfigError, match="budget"):
        Budget(None, None)


def test_minimizing_and_an_in_memory_index(tmp_path):
    results = TrialLoop(None, 1, Budget(4), mode="min", log=lambda _: None).run(propose, scored([]))
    assert results.best["metrics"]["val_top1"] == min(r["metrics"]["val_top1"] for r in results.records)
    with pytest.raises(KeyError, match="no 'accuracy'"):
        loop(tmp_path, 1, objective="accuracy").run(propose, scored([]))
