"""The one trial loop: index, resume without rerunning finished trials, budgets, best-so-far, seeds."""

from __future__ import annotations

import itertools
import random
from types import SimpleNamespace

import pytest
import yaml

from archsearch.common.errors import ConfigError
from archsearch.search import trial_loop
from archsearch.search.trial_loop import BEST_FILE, PENDING_FILE, TRIALS_FILE, Budget, TrialLoop, trial_seed


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
    clock = itertools.count(0, 2)  # every evaluation takes exactly 2 s
    # the trial loop's own clock only: patching time.perf_counter itself would let any other caller in this
    # process (a thread, a library) advance the fake clock and change the count
    monkeypatch.setattr(trial_loop, "time", SimpleNamespace(perf_counter=lambda: next(clock)))
    assert len(loop(tmp_path, time_s=5).run(propose, scored([])).records) == 3  # 2, 4, 6 >= 5
    assert len(loop(tmp_path, 10, time_s=7, resume=True).run(propose, scored([])).records) == 4
    with pytest.raises(ConfigError, match="budget"):
        Budget(None, None)


def test_minimizing_and_an_in_memory_index(tmp_path):
    results = TrialLoop(None, 1, Budget(4), mode="min", log=lambda _: None).run(propose, scored([]))
    assert results.best["metrics"]["val_top1"] == min(r["metrics"]["val_top1"] for r in results.records)
    with pytest.raises(KeyError, match="no 'accuracy'"):
        loop(tmp_path, 1, objective="accuracy").run(propose, scored([]))


class Shuffled:
    """A parallel executor's behaviour without one: up to 3 trials in flight, the newest finishes first."""

    max_concurrent = 3

    def __init__(self, fail=()):
        self.queue, self.fail = [], set(fail)

    def submit(self, trial, evaluate):
        self.queue.append((trial, evaluate))

    def next_result(self):
        trial, evaluate = self.queue.pop()
        if trial.index in self.fail:  # what RayExecutor hands back once a trial's retries are spent
            return trial, {"error": "RuntimeError: boom", "attempts": 2}, 1.0
        return trial, evaluate(trial), 1.0

    def pending(self):
        return len(self.queue)

    def cancel(self):
        self.queue.clear()

    def close(self):
        pass


def test_a_killed_parallel_search_reruns_exactly_the_trials_it_left_unfinished(tmp_path):
    class Killed(Exception):
        pass

    def evaluate_until(n_recorded):
        def evaluate(trial):
            if len(yaml.safe_load((tmp_path / TRIALS_FILE).read_text() if (tmp_path / TRIALS_FILE).exists() else "[]")
                   or []) >= n_recorded:  # fmt: skip
                raise Killed  # the driver dies with trials in flight
            return {"val_top1": trial.arch["draw"]}

        return evaluate

    with pytest.raises(Killed):
        loop(tmp_path, 8, executor=Shuffled()).run(propose, evaluate_until(3))
    killed = yaml.safe_load((tmp_path / TRIALS_FILE).read_text())
    pending = yaml.safe_load((tmp_path / PENDING_FILE).read_text())
    done = {r["index"] for r in killed}
    left = sorted(t["index"] for t in pending if t["index"] not in done and t["index"] < max(done))
    assert left, "the scenario must leave a trial unfinished below the last finished one"
    calls = []
    resumed = loop(tmp_path, 8, resume=True, executor=Shuffled()).run(propose, scored(calls))
    assert sorted(r["index"] for r in resumed.records) == list(range(8)) and not set(calls) & done
    assert sorted(calls)[: len(left)] == left  # rerun as proposed then: same arch and seed
    proposed = {t["index"]: t["arch"] for t in pending}
    assert all(r["arch"] == proposed[r["index"]] for r in resumed.records if r["index"] in left)


def test_a_trial_the_executor_gave_up_on_is_recorded_and_never_best(tmp_path):
    lines = []
    results = TrialLoop(tmp_path, 3, Budget(5), executor=Shuffled(fail={1}), log=lines.append).run(propose, scored([]))
    failed = next(r for r in results.records if r["index"] == 1)
    assert failed["metrics"]["error"] == "RuntimeError: boom" and failed["metrics"]["attempts"] == 2
    assert failed["metrics"]["val_top1"] == "nan" and results.best["index"] != 1 and len(results.records) == 5
    assert any("trial 2 skipped: RuntimeError: boom" in line for line in lines)
    assert any("1 failed" in line for line in lines)


def test_ray_executor_under_torchrun_is_one_config_error(monkeypatch):
    from archsearch.search.executors import make_executor

    torchrun_env = {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1"}
    for key, value in torchrun_env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError, match="cannot run under torchrun \\(2 processes\\)"):
        make_executor({"executor": "ray", "ray": {}, "num_threads": 1})
