"""Objectives: constrained domination, the Pareto front against brute force, hypervolume against a hand
computation (and pymoo against Optuna's), the knee and best rules, the metric registry."""

from __future__ import annotations

import itertools
import math
import random

import numpy as np
import pytest

from archsearch.search.metrics import METRICS, Metric, MetricContext, cheap_metrics, register_metric
from archsearch.search.objectives import (
    Constraint,
    Goals,
    Objective,
    constrained_dominates,
    goals_from_conf,
    hypervolume,
    hypervolume_curve,
    knee,
    pareto_front,
    reference_point,
    select,
    update_front,
)

TWO = Goals((Objective("acc", "max"), Objective("cost", "min")))


def rec(index, **metrics):
    return {"index": index, "metrics": metrics}


def brute_front(records, goals):
    """Every feasible record with finite objectives that no other such record is at least as good as in every
    objective and strictly better in one, written out without the module's helpers."""
    def ok(r):
        m = r["metrics"]
        good = all(isinstance(m.get(o.metric), float) and math.isfinite(m[o.metric]) for o in goals.objectives)
        return good and all(
            (c.max is None or m[c.metric] <= c.max) and (c.min is None or m[c.metric] >= c.min)
            for c in goals.constraints
        )

    def better_or_equal(a, b, o):
        return a >= b if o.goal == "max" else a <= b

    cands = [r for r in records if ok(r)]
    front = []
    for r in cands:
        beaten = False
        for q in cands:
            ge = all(better_or_equal(q["metrics"][o.metric], r["metrics"][o.metric], o) for o in goals.objectives)
            gt = any(q["metrics"][o.metric] != r["metrics"][o.metric] for o in goals.objectives)
            beaten |= ge and gt
        if not beaten:
            front.append(r["index"])
    return front


@pytest.mark.parametrize("seed", range(30))
def test_the_front_equals_a_brute_force_front_on_small_random_sets(seed):
    rng = random.Random(seed)
    n_obj = rng.choice([1, 2, 3])
    goals = Goals(
        tuple(Objective(f"m{i}", rng.choice(["max", "min"])) for i in range(n_obj)),
        (Constraint("c", max=0.7),) if seed % 2 else (),
    )
    records = []
    for i in range(rng.randrange(1, 25)):
        metrics = {f"m{j}": float(rng.randrange(6)) for j in range(n_obj)}  # ties on purpose
        metrics["c"] = rng.random()
        if rng.random() < 0.1:
            metrics["m0"] = math.nan  # a failed trial
        records.append(rec(i, **metrics))
    front = [r["index"] for r in pareto_front(records, goals)]
    assert front == brute_front(records, goals)
    incremental: list = []
    for r in records:
        update_front(incremental, r, goals)
    assert sorted(r["index"] for r in incremental) == front


def test_constrained_domination():
    goals = Goals(TWO.objectives, (Constraint("cost", max=10.0),))
    feasible, worse_feasible = {"acc": 0.5, "cost": 9.0}, {"acc": 0.4, "cost": 9.5}
    slightly_out, far_out = {"acc": 0.99, "cost": 11.0}, {"acc": 0.99, "cost": 30.0}
    assert constrained_dominates(feasible, slightly_out, goals)  # feasible beats infeasible, whatever the accuracy
    assert not constrained_dominates(slightly_out, feasible, goals)
    assert constrained_dominates(slightly_out, far_out, goals)  # the smaller violation wins
    assert constrained_dominates(feasible, worse_feasible, goals)
    assert not constrained_dominates(feasible, feasible, goals)


def test_hypervolume_against_a_hand_computation():
    # maximize acc, minimize cost; reference (acc 0, cost 10); points (0.5, 4), (0.8, 6), (0.3, 2)
    front = [rec(0, acc=0.5, cost=4.0), rec(1, acc=0.8, cost=6.0), rec(2, acc=0.3, cost=2.0)]
    # the union of the boxes [cost, 10] x [0, acc], summed as strips of cost:
    #   cost 2..4: best acc 0.3; 4..6: 0.5; 6..10: 0.8
    hand = 2 * 0.3 + 2 * 0.5 + 4 * 0.8
    assert hypervolume(front, TWO, (0.0, 10.0)) == pytest.approx(hand)
    # a member outside the reference box adds nothing; an empty front has none
    assert hypervolume([*front, rec(3, acc=0.9, cost=12.0)], TWO, (0.0, 10.0)) == pytest.approx(hand)
    assert hypervolume([], TWO, (0.0, 10.0)) == 0.0
    one = Goals((Objective("acc", "max"),))
    assert hypervolume([rec(0, acc=0.7)], one, (0.2,)) == pytest.approx(0.5)


def test_pymoo_hypervolume_agrees_with_optuna_in_three_dimensions():
    optuna_hv = pytest.importorskip("optuna._hypervolume")
    rng = np.random.default_rng(0)
    points = rng.random((12, 3))
    goals = Goals(tuple(Objective(f"m{i}", "min") for i in range(3)))
    front = pareto_front([rec(i, m0=p[0], m1=p[1], m2=p[2]) for i, p in enumerate(points.tolist())], goals)
    ours = hypervolume(front, goals, (1.1, 1.1, 1.1))
    vectors = np.array([goals.vector(m["metrics"]) for m in front])
    assert ours == pytest.approx(optuna_hv.compute_hypervolume(vectors, np.array([1.1, 1.1, 1.1])))


def test_the_reference_point_comes_from_the_config_the_constraints_or_the_worst_feasible_trial():
    goals = Goals(TWO.objectives, (Constraint("cost", max=10.0),))
    records = [rec(0, acc=0.5, cost=4.0), rec(1, acc=0.7, cost=6.0), rec(2, acc=0.1, cost=20.0)]
    assert reference_point(goals, records) == pytest.approx((0.48, 10.0))  # worst feasible 0.5, range 0.2
    fixed = Goals(TWO.objectives, reference_point=(0.0, 100.0))
    assert reference_point(fixed, records) == (0.0, 100.0)
    assert reference_point(TWO, []) is None and hypervolume([], TWO, None) == 0.0


def test_the_hypervolume_curve_uses_one_reference_and_never_falls_where_per_trial_values_do():
    # trial 2 is feasible and far worse: the per-trial reference moves out with it, so the front's volume
    # measured against it jumps; against the final reference, the curve is the front's growth alone
    records = [rec(0, acc=0.5, cost=4.0), rec(1, acc=0.8, cost=6.0), rec(2, acc=0.1, cost=40.0)]
    reference = reference_point(TWO, records)
    curve = hypervolume_curve(records, TWO, reference)
    assert [n for n, _ in curve] == [1, 2, 3]
    expected = [hypervolume(pareto_front(records[:n], TWO), TWO, reference) for n in (1, 2, 3)]
    assert [v for _, v in curve] == pytest.approx(expected)
    assert curve[2][1] == curve[1][1] > curve[0][1] > 0  # the dominated trial adds nothing
    moving = [hypervolume(pareto_front(records[:n], TWO), TWO, reference_point(TWO, records[:n])) for n in (1, 2)]
    assert moving[1] != pytest.approx(curve[1][1])  # the per-trial value is against another reference


def test_best_and_knee_rules():
    front = [rec(0, acc=0.9, cost=10.0), rec(1, acc=0.85, cost=2.0), rec(2, acc=0.5, cost=1.0)]
    assert select(front, TWO)["index"] == 0  # the best primary objective
    knee_goals = Goals(TWO.objectives, rule="knee")
    assert select(front, knee_goals)["index"] == 1 == knee(front, knee_goals)["index"]
    # ties on the primary: the next objective, then the earliest trial
    tied = [rec(4, acc=0.9, cost=3.0), rec(3, acc=0.9, cost=3.0), rec(5, acc=0.9, cost=1.0)]
    assert select(tied, TWO)["index"] == 5
    assert select(tied[:2], TWO)["index"] == 3
    assert select([], TWO) is None


def test_goals_from_the_config():
    legacy = goals_from_conf({"objectives": None, "constraints": {}, "select": "best"}, "val_top1")
    assert legacy.legacy and legacy.primary == Objective("val_top1", "max")
    conf = {
        "objectives": [{"metric": "benchmark_top1"}, {"metric": "params", "goal": "min"}],
        "constraints": {"params": {"max": 4e5}},
        "select": "knee",
        "reference_point": [0.0, 4e5],
    }
    goals = goals_from_conf(conf, "benchmark_top1")
    assert not goals.legacy and goals.objectives[0] == Objective("benchmark_top1", "max")  # the metric's goal
    assert goals.cheap_names() == ["params"] and goals.expensive_names() == ["benchmark_top1"]
    assert goals.constraints == (Constraint("params", None, 4e5),) and goals.rule == "knee"


def test_the_metric_registry_and_cheap_metrics():
    from torch import nn

    assert {"params", "macs", "val_top1", "benchmark_top1", "score", "val_loss"} <= set(METRICS.names())
    assert METRICS.get("params").cheap and not METRICS.get("val_top1").cheap
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Flatten(), nn.Linear(4 * 8 * 8, 10))
    ctx = MetricContext(model, (3, 8, 8), None, None, {})
    values = cheap_metrics(["params", "macs"], ctx)
    assert values == {"params": 3 * 4 * 9 + 4 + 256 * 10 + 10, "macs": 64 * 27 * 4 + 2560}
    with pytest.raises(ValueError, match="not cheap"):
        cheap_metrics(["val_top1"], ctx)
    with pytest.raises(ValueError, match="compute function"):
        Metric("odd", "min", "", True)
    with pytest.raises(ValueError, match="registered twice"):
        register_metric(Metric("params", "max", "", True, lambda c: 0.0))
    assert list(itertools.islice(METRICS, 1))  # iterable by name
