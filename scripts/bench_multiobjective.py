"""Multi-objective search on NAS-Bench-201 in tabular mode: how close each strategy's front gets to the true one.

For the objectives (benchmark_top1 max, COST min), COST = params (the network at the benchmark's size, C=16 N=5)
or predicted_latency_ms (this CPU's latency table, `archsearch profile --space nasbench201` at that size), the
true front is enumerated over all 15,625 cells of the benchmark's table. Each strategy then runs through the real
CLI path (archsearch.run, --search-only, --nas.search.evaluate_by table) for each seed, and the hypervolume of its
front after q queries is divided by the true front's, with one fixed reference point (written below the table):
the worst accuracy and the largest cost over all 15,625 cells.

    PYTHONPATH=. python scripts/bench_multiobjective.py --table ../shared/data/nasbench201_info.csv \\
        --cost params --seeds 50 --queries 150 \\
        --strategies random,nsga2,optuna:tpe,optuna:nsga2,bananas,bananas:hypervolume

A strategy's cheap metric is looked up in a table computed once here instead of building the network for
every proposal (the numbers are the same: the params decomposition is checked against built networks, and the
predicted latency is the same table lookup the metric makes); everything else is the strategy as shipped.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import archsearch  # noqa: E402
import archsearch.plugins  # noqa: E402, F401 - every strategy registered
from archsearch.experiment.run import RunOptions  # noqa: E402
from archsearch.search import trial_eval  # noqa: E402
from archsearch.search.benchmark_table import table_from_conf  # noqa: E402
from archsearch.search.objectives import Goals, Objective, hypervolume, pareto_front  # noqa: E402
from archsearch.spaces.nasbench201 import EDGES, NB201_OPS, all_archs, format_arch  # noqa: E402

# each strategy's query budget key (rea takes one objective, so it is not among them)
BUDGET_KEY = {"random": "random.n_candidates", "nsga2": "nsga2.n_trials", "optuna": "optuna.n_trials",
              "bananas": "bananas.n_trials"}  # fmt: skip
# what follows the colon in --strategies: optuna's sampler, bananas' mo_acquisition (pareto_rank | hypervolume)
VARIANT_KEY = {"optuna": "optuna.sampler", "bananas": "bananas.mo_acquisition"}
CHECKPOINTS = (25, 50, 100, 150)


def nb201_space():
    """The nasbench201 space at the benchmark's size (C=16, N=5), built the way a --full run builds it."""
    from archsearch.config import confs_dir, load_config
    from archsearch.search.space import SPACES

    files = [confs_dir() / "algos" / "random.yaml", confs_dir() / "spaces" / "nasbench201.yaml"]
    conf = load_config(files, [("nas.search.space.name", "nasbench201")])
    search = conf["nas"]["search"]
    return SPACES.get("nasbench201")(search["space"], search["model_desc"], conf["dataset"])


def params_of_every_cell(space) -> dict[str, float]:
    """Parameters of all 15,625 cells, from the additive decomposition over edges (each edge's op owns its weights),
    checked against built networks on 30 random cells."""
    from archsearch.model.network import count_params

    empty = ["none"] * len(EDGES)
    base = count_params(space.build(space.from_json(format_arch(empty))))
    extra = {}
    for e in range(len(EDGES)):
        for op in NB201_OPS:
            cell = list(empty)
            cell[e] = op
            extra[e, op] = count_params(space.build(space.from_json(format_arch(cell)))) - base
    params = {}
    for arch in all_archs():
        ops = [part.split("~")[0] for node in arch.strip("|").split("|+|") for part in node.split("|")]
        params[arch] = float(base + sum(extra[e, op] for e, op in enumerate(ops)))
    for arch in random.Random(0).sample(sorted(params), 30):
        assert count_params(space.build(space.from_json(arch))) == params[arch], arch
    return params


def latency_of_every_cell(space, table_path: str | None) -> dict[str, float]:
    from archsearch.model.latency import load_table_for

    table = load_table_for("nasbench201", table_path)
    return {arch: float(table.predict(space.cost_items(space.from_json(arch)))) for arch in all_archs()}


def run_strategy(algo: str, sampler: str | None, seed: int, queries: int, table: str, cost: str, costs, logdir):
    """One search through archsearch.run; the trial records in order."""
    metric = {"params": "params", "latency": "predicted_latency_ms"}[cost]
    overrides = {
        "nas.search.space.name": "nasbench201",
        "nas.search.evaluate_by": "table",
        "nas.search.benchmark": table,
        "nas.search.objectives": [{"metric": "benchmark_top1", "goal": "max"}, {"metric": metric, "goal": "min"}],
        f"nas.search.{BUDGET_KEY[algo]}": queries,
        "common.seed": seed,
        "common.logdir": str(logdir),
        "common.experiment_name": f"{algo}{'-' + sampler if sampler else ''}-{seed}",
        "report.auto": False,
    }
    if sampler:
        overrides[f"nas.search.{VARIANT_KEY[algo]}"] = sampler
    original = trial_eval.space_measure

    def looked_up(space, conf_search, seed):  # the same numbers as building each network, without building it
        return lambda data, names: {n: costs[data] for n in names}

    trial_eval.space_measure = looked_up
    try:
        summary = archsearch.run(algo, None, RunOptions(full=True, phases="search"), overrides)
    finally:
        trial_eval.space_measure = original
    return yaml.safe_load((Path(summary["output_dir"]) / "search" / "trials.yaml").read_text())


def front_2d(records, metric: str) -> list[dict]:
    """The Pareto front of (benchmark_top1 max, `metric` min) by one sort (pareto_front is quadratic: fine for a
    search's 150 trials, slow for 15,625 cells): best accuracy first, kept while the cost keeps falling."""
    ordered = sorted(records, key=lambda r: (-r["metrics"]["benchmark_top1"], r["metrics"][metric]))
    front, cheapest = [], float("inf")
    for r in ordered:
        if r["metrics"][metric] < cheapest:
            front.append(r)
            cheapest = r["metrics"][metric]
    return front


def front_hv(records, goals: Goals, reference) -> float:
    return hypervolume(pareto_front(records, goals), goals, reference)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", default="../shared/data/nasbench201_info.csv")
    parser.add_argument("--cost", choices=("params", "latency"), default="params")
    parser.add_argument("--latency-table", default=None, help="for --cost latency (default: this device's)")
    parser.add_argument("--seeds", type=int, default=50)
    parser.add_argument("--queries", type=int, default=150)
    parser.add_argument("--strategies", default="random,nsga2,optuna:tpe,optuna:nsga2")
    parser.add_argument(
        "--reference-accuracy", type=float, default=None,
        help="the reference point's accuracy (default: the median over all cells, so the hypervolume measures the "
        "front among the better half, not the area down to the broken cells at 10%%)",
    )  # fmt: skip
    args = parser.parse_args()

    start = time.time()
    space = nb201_space()
    costs = params_of_every_cell(space) if args.cost == "params" else latency_of_every_cell(space, args.latency_table)
    accuracy = table_from_conf({"benchmark": args.table, "benchmark_columns": ["architecture", "accuracy"]})
    metric = {"params": "params", "latency": "predicted_latency_ms"}[args.cost]
    goals = Goals((Objective("benchmark_top1", "max"), Objective(metric, "min")), ())
    every = [{"index": i, "arch": a, "metrics": {"benchmark_top1": accuracy.get(a), metric: costs[a]},
              "feasible": True} for i, a in enumerate(all_archs())]  # fmt: skip
    accuracies = [r["metrics"]["benchmark_top1"] for r in every]
    median = statistics.median(accuracies)
    reference = (median if args.reference_accuracy is None else args.reference_accuracy, max(costs.values()))
    true_front = front_2d(every, metric)
    true_hv = hypervolume(true_front, goals, reference)
    print(f"true front: {len(true_front)} of {len(every):,} cells, hypervolume {true_hv:.6g}, reference point "
          f"(benchmark_top1 {reference[0]:.4f}, {metric} {reference[1]:.6g}); set up in {time.time() - start:.0f} s")

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.strategies.split(","):
            algo, _, sampler = name.partition(":")
            fractions = {q: [] for q in CHECKPOINTS if q <= args.queries}
            t0 = time.time()
            for seed in range(args.seeds):
                records = run_strategy(algo, sampler or None, seed, args.queries, args.table, args.cost, costs,
                                       Path(tmp) / name.replace(":", "-"))  # fmt: skip
                for q in fractions:
                    fractions[q].append(front_hv(records[:q], goals, reference) / true_hv)
            cells = [f"{100 * statistics.mean(v):.1f}% ± {100 * statistics.stdev(v) if len(v) > 1 else 0:.1f}"
                     for v in fractions.values()]  # fmt: skip
            rows.append((name, cells, (time.time() - t0) / args.seeds))
            print(f"{name}: {' | '.join(cells)} ({rows[-1][2]:.1f} s per search)", flush=True)
    print()
    print(f"| strategy | {' | '.join(f'HV after {q}' for q in CHECKPOINTS if q <= args.queries)} | s per search |")
    print("|---|" + "---|" * (len([q for q in CHECKPOINTS if q <= args.queries]) + 1))
    for name, cells, seconds in rows:
        print(f"| {name} | {' | '.join(cells)} | {seconds:.1f} |")
    print(f"\n{args.seeds} seeds, mean ± std of hypervolume / true front's; objectives (benchmark_top1 max, "
          f"{metric} min); reference point ({reference[0]:.4f}, {reference[1]:.6g}); {np.__name__} "
          f"{np.__version__}")


if __name__ == "__main__":
    main()
