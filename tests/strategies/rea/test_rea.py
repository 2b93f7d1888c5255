"""Regularized evolution: initial population by sampling, tournament of S from the last P, the best is
mutated, the oldest dies; through the CLI in tabular mode on NAS-Bench-201 with a table the test writes."""

from __future__ import annotations

import random

import pytest
import yaml

from archsearch.search.trial_loop import Budget, TrialLoop
from archsearch.strategies.rea.strategy import evolve


class Line:
    """A fake space: the integers 0..99; a mutation moves one step."""

    def sample(self, rng):
        return rng.randrange(100)

    def to_json(self, arch):
        return arch

    def from_json(self, data, where="architecture"):
        return data

    def mutate(self, arch, rng):
        return arch + 1 if arch < 99 else arch - 1


def history(accuracies):
    return [{"index": i, "arch": i, "metrics": {"acc": a}} for i, a in enumerate(accuracies)]


def test_the_first_population_is_sampled_then_the_tournament_winner_is_mutated():
    rng = random.Random(0)
    assert evolve(Line(), random.Random(5), history([0.5] * 3), "acc", 4, 2) == random.Random(5).randrange(100)
    # a tournament of the whole population always picks its best member: trial 3
    child, extra = evolve(Line(), rng, history([0.1, 0.2, 0.1, 0.9]), "acc", 4, 4)
    assert (child, extra) == (4, {"parent": 3})


def test_the_oldest_die_and_a_failed_evaluation_never_wins():
    # trial 0 is the best ever seen but has aged out of the population of the last 3
    accuracies = [0.99, float("nan"), 0.3, 0.2]
    for seed in range(20):
        _, extra = evolve(Line(), random.Random(seed), history(accuracies), "acc", 3, 3)
        assert extra == {"parent": 2}
    # a tournament of 2 from 3 draws each member in some seeds: parents are only members of the sample
    parents = {
        evolve(Line(), random.Random(s), history([0.5, 0.1, 0.2, 0.3, 0.4]), "acc", 3, 2)[1]["parent"]
        for s in range(40)
    }
    assert parents == {3, 4}  # trial 2 (0.2) loses every tournament it is in


def test_evolution_on_the_trial_loop_beats_its_initial_population(tmp_path):
    space = Line()

    def propose(index, rng, hist):
        return evolve(space, rng, hist, "acc", 10, 3)

    def search(folder, n, resume=False):
        loop = TrialLoop(folder, 0, Budget(n), objective="acc", resume=resume, log=lambda _: None)
        return loop.run(propose, lambda t: {"acc": t.arch / 100}).records

    records = search(tmp_path / "straight", 60)
    initial = max(r["metrics"]["acc"] for r in records[:10])
    assert max(r["metrics"]["acc"] for r in records) > initial and all("parent" in r for r in records[10:])
    search(tmp_path / "killed", 25)  # the population is rebuilt from the index: resume is exact
    resumed = search(tmp_path / "killed", 60, resume=True)
    assert [(r["arch"], r.get("parent")) for r in resumed] == [(r["arch"], r.get("parent")) for r in records]


@pytest.fixture
def nb201_table(tmp_path):
    """A made-up table of every NAS-Bench-201 cell, in percent as the real one (best: 90.00)."""
    from archsearch.spaces.nasbench201 import N_CELLS, index_to_arch

    path = tmp_path / "nb201.csv"
    rows = "".join(f"{i},{index_to_arch(i)},{60 + (i * 7919 % 3001) / 100:.2f}\n" for i in range(N_CELLS))
    path.write_text("uid,architecture,accuracy\n" + rows)
    return path


def test_rea_in_tabular_mode_through_the_cli(cli, nb201_table):
    args = ["--algos", "rea", "--datasets", "synthetic", "--search-only", "--nas.search.benchmark", str(nb201_table)]
    proc = cli(*args, "--nas.search.evaluate_by", "table", "--nas.search.rea.n_trials", "12")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = cli.logdir / "archsearch_synthetic_toy" / "rea"
    summary = yaml.safe_load((out / "summary.yaml").read_text())["search"]
    trials = yaml.safe_load((out / "search" / "trials.yaml").read_text())
    assert len(trials) == 12 and all("parent" in t for t in trials[4:])  # toy population 4
    assert (
        summary["benchmark_top1"]
        == summary["best_benchmark_top1"]
        == max(t["metrics"]["benchmark_top1"] for t in trials)
    )
    assert summary["benchmark_best_top1"] == pytest.approx(0.9)
    assert f"benchmark accuracy {summary['benchmark_top1']:.2%}" in proc.stdout
