"""BANANAS: the encodings on hand-worked cells, the predictor actually learning, the acquisition ranking what it
should on a tiny space, MO-BANANAS' fronts and cheap constraints, same seed same trials, exact resume after
kill -9, and the one-line errors of bad settings."""

from __future__ import annotations

import random
import signal

import numpy as np
import pytest
import yaml

import archsearch
import archsearch.plugins  # noqa: F401 - every strategy and space registered
from archsearch.common.checkpoint import KILL_AT_ENV
from archsearch.common.errors import ConfigError
from archsearch.config import confs_dir
from archsearch.experiment.run import RunOptions
from archsearch.search.objectives import Constraint, Goals, Objective
from archsearch.search.space import SPACES, path_encoding
from archsearch.search.trial_loop import Budget, TrialLoop, trial_seed
from archsearch.spaces.nasbench201 import N_CELLS, NB201_OPS, format_arch, index_to_arch, parse_arch
from archsearch.strategies.bananas.predictor import MLPEnsemble, PredictorSettings
from archsearch.strategies.bananas.strategy import SCREEN_SALT, Planner, Settings, nondominated_fronts
from tests.conftest import assert_config_error

SMALL = PredictorSettings(members=3, layers=2, width=16, lr=0.01, epochs=60, batch_size=32)


def nb201():
    return SPACES.get("nasbench201")({}, {"init_channels": 4, "n_cells_per_stage": 1, "affine": True},
                                     {"channels": 3, "n_classes": 10})  # fmt: skip


# ---- encodings -------------------------------------------------------------------------------------------


def test_the_path_encoding_of_known_nasbench201_cells():
    space = nb201()
    # all skip: the 4 paths are [skip], [skip, skip] (twice: one bit) and [skip, skip, skip]; skip is op 1 of 5;
    # bits: one-op paths 0-4, two-op 5-29, three-op 30-154, first op least significant
    bits = space.encode(format_arch(["skip_connect"] * 6), "path")
    assert len(bits) == 155 and [i for i, b in enumerate(bits) if b] == [1, 5 + 1 + 1 * 5, 30 + 1 + 1 * 5 + 1 * 25]
    # edges (1<-0) conv3 (3), (2<-0) none (0), (2<-1) skip (1), (3<-0) avg (4), (3<-1) conv1 (2), (3<-2) skip
    cell = ["nor_conv_3x3", "none", "skip_connect", "avg_pool_3x3", "nor_conv_1x1", "skip_connect"]
    bits = space.encode(format_arch(cell), "path")
    expected = {4, 5 + 3 + 2 * 5, 5 + 0 + 1 * 5, 30 + 3 + 1 * 5 + 1 * 25}  # [avg], [conv3, conv1], [none, skip], ...
    assert {i for i, b in enumerate(bits) if b} == expected
    adjacency = space.encode(format_arch(cell), "adjacency")
    assert len(adjacency) == 30 and [i % 5 for i, b in enumerate(adjacency) if b] == [
        NB201_OPS.index(op) for op in cell
    ]


def test_the_darts_path_encoding_counts_every_path_from_each_cell_input_shortest_first():
    conf = {"n_nodes": 2, "n_cells": 3, "init_channels": 4}
    space = SPACES.get("darts")({}, conf, {"channels": 3, "n_classes": 10})
    ops = space.ops
    n = len(ops)
    cell = "[('sep_conv_3x3', 0), ('skip_connect', 1), ('max_pool_3x3', 2), ('skip_connect', 0)]"
    arch = f"Genotype(normal={cell}, normal_concat=[2, 3], reduce={cell}, reduce_concat=[2, 3])"
    bits = space.encode(space.from_json(arch), "path")
    assert len(bits) == 4 * (n + n**2)
    sep, skip, pool = ops.index("sep_conv_3x3"), ops.index("skip_connect"), ops.index("max_pool_3x3")
    # per cell (normal 0, reduce 1) and input: node 0 reads [sep] from input 0, [skip] from input 1; node 1
    # reads [skip] from input 0, and node 0 through max_pool: [sep, pool] from 0, [skip, pool] from 1
    paths = [(2 * c + s, seq) for c in (0, 1) for s, seq in [(0, [sep]), (1, [skip]), (0, [skip]),
                                                           (0, [sep, pool]), (1, [skip, pool])]]  # fmt: skip
    assert bits == path_encoding(paths, 4, n, 2)
    first = [i for i, b in enumerate(bits) if b]
    assert sum(bits) == 10 and sum(1 for i in first if i < 4 * n) == 6  # one-op paths come first, every block
    assert len(space.encode(space.from_json(arch), "adjacency")) == 2 * (2 + 3) * n
    # ENAS micro cells encode the same way; the output joins the loose ends: here node 1 only (node 0 is read)
    micro = SPACES.get("enas_micro")({"n_nodes": 2}, {}, {"channels": 3, "n_classes": 10})
    m = len(micro.geometry.ops)
    arc = [0, 0, 1, 0, 2, 0, 0, 0] * 2  # node 0: op 0 on inputs 0 and 1; node 1: op 0 on node 0 and input 0
    bits = micro.encode(arc, "path")
    assert len(bits) == 4 * (m + m**2)
    assert bits == path_encoding([(2 * c + s, q) for c in (0, 1) for s, q in [(0, [0, 0]), (1, [0, 0]), (0, [0])]],
                                 4, m, 2)  # fmt: skip


# ---- the predictor ---------------------------------------------------------------------------------------


def test_the_ensemble_learns_a_function_of_the_encoding():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 2, (120, 20)).astype(np.float32)
    y = 50 + 3 * x[:, :4].sum(axis=1) - 2 * x[:, 4]  # a few bits decide, as ops on a path do
    x_test = rng.integers(0, 2, (200, 20)).astype(np.float32)
    y_test = 50 + 3 * x_test[:, :4].sum(axis=1) - 2 * x_test[:, 4]
    ensemble = MLPEnsemble(SMALL, seed=1)
    ensemble.fit(x, y)
    predictions = ensemble.predict(x_test)
    assert predictions.shape == (3, 200, 1)
    error = np.abs(predictions.mean(axis=0)[:, 0] - y_test).mean()
    assert error < 0.35 * np.abs(y_test - y.mean()).mean()  # far better than predicting the mean
    assert predictions.std(axis=0).mean() > 0  # members differ: the spread Thompson sampling draws from
    again = MLPEnsemble(SMALL, seed=1)
    again.fit(x, y)
    assert np.array_equal(again.predict(x_test), predictions)  # one seed, one fit


# ---- acquisition on a tiny space ---------------------------------------------------------------------------


class Bits:
    """A tiny space: 8-bit strings; a mutation flips one bit; encoded as its bits."""

    name = "bits"

    def sample(self, rng):
        return "".join(rng.choice("01") for _ in range(8))

    def size(self):
        return 256

    def to_json(self, arch):
        return arch

    def from_json(self, data, where="architecture"):
        return data

    def mutate(self, arch, rng):
        i = rng.randrange(8)
        return arch[:i] + ("1" if arch[i] == "0" else "0") + arch[i + 1 :]

    def encode(self, arch, kind="path"):
        return [float(c) for c in arch]


def ones(arch: str) -> float:
    return float(arch.count("1") + 0.5 * (arch[0] == "1"))


def records(archs):
    return [{"index": i, "arch": a, "metrics": {"acc": ones(a)}} for i, a in enumerate(archs)]


def settings(**changes) -> Settings:
    values = {"num_init": 10, "k": 3, "num_candidates": 20, "predictor": SMALL, **changes}
    return Settings(**values)


def test_thompson_sampling_ranks_the_candidates_the_predictor_favours():
    rng = random.Random(3)
    history = records([Bits().sample(rng) for _ in range(30)])
    goals = Goals((Objective("acc", "max"),), legacy=True)
    ranking = Planner(Bits(), goals, settings(), run_seed=0).rank(30, history)
    evaluated = {r["arch"] for r in history}
    assert ranking and not evaluated & set(ranking) and len(set(ranking)) == len(ranking)
    # candidates are one flip from the best two trials; the ones ranked first have more ones than the rest
    top = [ones(a) for a in ranking[:3]]
    assert min(top) >= np.mean([ones(a) for a in ranking]) and max(top) == max(ones(a) for a in ranking)
    # the ensemble mean (no exploration) puts the true best first
    exploit = Planner(Bits(), goals, settings(acquisition="mean"), run_seed=0).rank(30, history)
    assert ones(exploit[0]) == max(ones(a) for a in exploit)


def run_loop(planner_settings: Settings, n: int, folder=None, resume=False, seed=0):
    goals = Goals((Objective("acc", "max"),), legacy=True)
    planner = Planner(Bits(), goals, planner_settings, run_seed=seed)
    loop = TrialLoop(folder, seed, Budget(n), objective="acc", resume=resume, log=lambda _: None)
    return loop.run(planner.propose, lambda t: {"acc": ones(t.arch)}).records


def untimed(trials):
    return [{k: v for k, v in r.items() if k != "time_s"} for r in trials]


def test_the_search_beats_its_random_start_and_resumes_exactly_from_its_index(tmp_path):
    s = settings(num_init=6, k=4)
    straight = run_loop(s, 30, tmp_path / "straight")
    assert max(r["metrics"]["acc"] for r in straight) > max(r["metrics"]["acc"] for r in straight[:6])
    assert [r["batch_start"] for r in straight[6:14]] == [6] * 4 + [10] * 4  # one fit per batch of k
    assert untimed(straight) == untimed(run_loop(s, 30))  # same seed, same trials
    run_loop(s, 13, tmp_path / "killed")  # stopped inside a batch: the resumed one refits it identically
    resumed = run_loop(s, 30, tmp_path / "killed", resume=True)
    assert untimed(resumed) == untimed(straight)


def oracle_screen(size: int, calls: list):
    """A screen that draws `size` distinct cells and ranks them by their true objective (a perfect proxy)."""

    def screen(rng):
        calls.append(1)
        pool = []
        while len(pool) < size:
            arch = Bits().sample(rng)
            if arch not in pool:
                pool.append(arch)
        return sorted(pool, key=lambda a: (-ones(a), a))

    return screen


def test_a_screened_start_queries_the_pools_best_first_and_resumes_to_the_same_trials(tmp_path):
    s = settings(num_init=5, k=4, screen_pool=40)
    goals = Goals((Objective("acc", "max"),), legacy=True)

    def loop(n, folder=None, resume=False):
        calls = []
        planner = Planner(Bits(), goals, s, run_seed=0, screen=oracle_screen(40, calls))
        trial_loop = TrialLoop(folder, 0, Budget(n), objective="acc", resume=resume, log=lambda _: None)
        return trial_loop.run(planner.propose, lambda t: {"acc": ones(t.arch)}).records, calls

    straight, calls = loop(20, tmp_path / "straight")
    assert len(calls) == 1  # the pool is screened once, not once per trial
    pool = oracle_screen(40, [])(random.Random(trial_seed(0, 0) ^ SCREEN_SALT))
    assert [r["arch"] for r in straight[:5]] == pool[:5] and [r["screen_rank"] for r in straight[:5]] == [1, 2, 3, 4, 5]
    assert "screen_rank" not in straight[5] and straight[5]["batch_start"] == 5
    loop(3, tmp_path / "killed")  # stopped inside the screened start: the resumed run screens the same pool
    resumed, _ = loop(20, tmp_path / "killed", resume=True)
    assert untimed(resumed) == untimed(straight)
    with pytest.raises(ValueError, match="screen function"):
        Planner(Bits(), goals, s, run_seed=0)


def test_a_screened_start_skips_what_a_parallel_search_already_proposed():
    goals = Goals((Objective("acc", "max"),), legacy=True)
    planner = Planner(Bits(), goals, settings(num_init=3, screen_pool=10), run_seed=0, screen=oracle_screen(10, []))
    # trials 0-2 asked for before any finished (three workers): each gets its own place in the ranking
    first = [planner.propose(i, random.Random(i), []) for i in range(3)]
    assert [info["screen_rank"] for _, info in first] == [1, 2, 3]
    # trial 1 is asked again (its first proposal was rejected): the pool's next beyond num_init
    again, info = planner.propose(1, random.Random(1), [])
    assert info["screen_rank"] == 4 and again not in [a for a, _ in first]


# ---- several objectives --------------------------------------------------------------------------------------


def test_nondominated_fronts():
    vectors = np.array([[1, 5], [2, 2], [3, 3], [5, 1], [4, 4], [2, 6]], dtype=float)
    assert nondominated_fronts(vectors) == [[0, 1, 3], [2, 5], [4]]


def zeros(arch: str) -> float:
    return float(arch.count("0"))


@pytest.mark.parametrize("acquisition", ["pareto_rank", "hypervolume"])
def test_mo_bananas_predicts_the_expensive_objective_and_never_proposes_what_breaks_a_cheap_constraint(acquisition):
    from archsearch.search.metrics import METRICS

    cheap = next(n for n in METRICS.names() if METRICS.get(n).cheap and METRICS.get(n).goal == "min")
    goals = Goals((Objective("acc", "max"), Objective(cheap, "min")), (Constraint(cheap, max=5.0),))
    measured = []

    def measure(arch, names):  # the cheap metric: the number of zeros (so accuracy and cost conflict)
        measured.append(arch)
        return {name: zeros(arch) for name in names}

    rng = random.Random(1)
    history = [{**r, "metrics": {**r["metrics"], cheap: zeros(r["arch"])}, "feasible": zeros(r["arch"]) <= 5}
               for r in records([Bits().sample(rng) for _ in range(20)])]  # fmt: skip
    planner = Planner(Bits(), goals, settings(mo_acquisition=acquisition), 0, measure=measure)
    ranking = planner.rank(20, history)
    assert ranking and all(zeros(a) <= 5 for a in ranking)  # filtered exactly, before any query
    assert set(ranking) <= set(measured)
    # what is picked first is not dominated by another candidate in truth (more ones, fewer zeros)
    first = ranking[0]
    assert not any(ones(a) > ones(first) and zeros(a) < zeros(first) for a in ranking)


# ---- through the CLI ------------------------------------------------------------------------------------------


@pytest.fixture
def learnable_table(tmp_path):
    """Every NAS-Bench-201 cell, accuracy (percent) rising with its convolutions, as the real table's does."""
    path = tmp_path / "nb201.csv"
    rows = []
    for i in range(N_CELLS):
        cell = parse_arch(index_to_arch(i))
        acc = 60 + 5 * cell.count("nor_conv_3x3") + 2 * cell.count("nor_conv_1x1") - 4 * cell.count("none")
        rows.append(f"{i},{index_to_arch(i)},{acc + (i * 7919 % 101) / 100:.2f}\n")
    path.write_text("uid,architecture,accuracy\n" + "".join(rows))
    return path


def tabular(table, logdir) -> dict:
    return {"nas.search.space.name": "nasbench201", "nas.search.evaluate_by": "table",
            "nas.search.benchmark": str(table), "nas.search.bananas.n_trials": 12, "nas.search.bananas.num_init": 4,
            "nas.search.bananas.k": 3, "common.logdir": str(logdir), "report.auto": False}  # fmt: skip


def test_resume_after_kill_minus_9_equals_the_uninterrupted_search(cli, learnable_table, tmp_path):
    settings = tabular(learnable_table, cli.logdir)
    args = ["--algos", "bananas", "--datasets", "synthetic", "--search-only"]
    for key, value in settings.items():
        args += [f"--{key}", str(value)]
    # killed inside the second batch (trials 7-9 of batch 7-9; trial 8 recorded, trial 9 not)
    assert cli(*args, env={KILL_AT_ENV: "trial:recorded:7"}).returncode == -signal.SIGKILL
    out = cli.logdir / "archsearch_synthetic_toy" / "bananas" / "search"
    assert len(yaml.safe_load((out / "trials.yaml").read_text())) == 8
    archsearch.run("bananas", "synthetic", RunOptions(phases="search"), {**settings, "common.resume": True})
    resumed = yaml.safe_load((out / "trials.yaml").read_text())
    straight_dir = tmp_path / "straight"
    archsearch.run("bananas", "synthetic", RunOptions(phases="search"), tabular(learnable_table, straight_dir))
    straight = yaml.safe_load(next(straight_dir.glob("*/bananas/search/trials.yaml")).read_text())
    assert untimed(resumed) == untimed(straight)
    assert len({r["arch"] for r in straight}) == 12


def test_a_screened_start_through_the_run_scores_a_pool_and_queries_its_best(learnable_table, tmp_path):
    screened = {**tabular(learnable_table, tmp_path), "nas.search.bananas.screen_pool": 12,
                "nas.search.bananas.screen_proxy": "ensemble", "nas.search.naswot.ensemble.members": "[meco, synflow]",
                "nas.search.bananas.proxy_batch_size": 8, "nas.search.bananas.n_trials": 5}  # fmt: skip
    archsearch.run("bananas", "synthetic", RunOptions(phases="search"), screened)
    out = next(tmp_path.glob("*/bananas/search"))
    trials = yaml.safe_load((out / "trials.yaml").read_text())
    assert [t["screen_rank"] for t in trials[:4]] == [1, 2, 3, 4] and "screen_rank" not in trials[4]
    log = next(tmp_path.glob("*/bananas/log.log")).read_text()
    assert "screening 12 random architectures by the ensemble of meco, synflow (log_rank) (no query)" in log
    assert "screened 12/12" in log


def test_bad_settings_are_one_line(learnable_table, tmp_path):
    files = [confs_dir() / "common.yaml", confs_dir() / "algos" / "bananas.yaml"]
    assert_config_error(files, "nas.search.bananas.encoding", "paths", ["path, adjacency"])
    assert_config_error(files, "nas.search.bananas.k", "0", [">= 1"])
    assert_config_error(files, "nas.search.bananas.proxy_features", "[naswot, zico_typo]", ["zico_typo", "synflow"])
    assert_config_error(files, "nas.search.bananas.predictor.members", "0", [">= 1"])
    assert_config_error(files, "nas.search.bananas.screen_proxy", "mecoo", ["mecoo", "ensemble"])
    assert_config_error(files, "nas.search.bananas.screen_pool", "-1", [">= 0"])
    with pytest.raises(ConfigError) as err:
        settings = {**tabular(learnable_table, tmp_path), "nas.search.bananas.path_cutoff": 500}
        archsearch.run("bananas", "synthetic", RunOptions(phases="search"), settings)
    assert "\n" not in str(err.value) and "path_cutoff" in str(err.value) and "155" in str(err.value)
    with pytest.raises(ConfigError) as err:  # a space that cannot encode its architectures
        archsearch.run("bananas", "synthetic", RunOptions(dry_run=True), {"nas.search.space.name": "enas_macro"})
    assert "\n" not in str(err.value) and "encode" in str(err.value) and "nasbench201" in str(err.value)
