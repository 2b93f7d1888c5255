"""Successive halving against full-budget random search at equal CPU time, NAS-Bench-201 cells trained for real
on the CIFAR-10 subset, scored by the table accuracy (NAS-Bench-201's 200-epoch CIFAR-10 accuracy) of the found cell.

    OMP_NUM_THREADS=1 python scripts/bench_fidelity.py                  # 3 seeds, 150 CPU-seconds of training each
    OMP_NUM_THREADS=1 python scripts/bench_fidelity.py --seeds 0 1 2 --time-s 1200 --limit-batches 40

Both methods are `--algos random` through the CLI on the same data and network: `--datasets npz` with
../shared/data/cifar10_subset.npz (10,000 CIFAR-10 test images; 20% held out as the test split, the rest
halved into the weights split, which trains, and the arch split, which scores: nas.search.loader.train_portion
0.5), NB201 cells at a CPU size (--channels 8, --cells 1 per stage, --limit-batches batches of 64 per epoch),
one thread each, one run at a time. The budget is the same number of seconds of trial training for both
(nas.search.random.time_budget_s: the trial loop sums the time of finished trials), counted in CPU time:
each run is `run_experiment` (what the CLI calls) in a fresh process whose trial-loop clock is the process's
CPU time (`time.process_time`, one thread), because on a machine other sessions share, the wall time a trial
takes varies with their load (2-3x in a first, wall-clock attempt), which an equal-time comparison must not see.

- `random`: every candidate trained --max-epochs epochs (cosine schedule over them), the best arch-split
  accuracy wins;
- `sh`: nas.search.fidelity {resource: epochs, min: --min-epochs, max: --max-epochs, eta: --eta}: brackets of
  successive halving until the time is spent; the schedule is the same cosine over --max-epochs, of which
  rung i trains the first r_i epochs; the best candidate at the highest resource reached wins.

Each row: the table accuracy of the found cell, the best table accuracy among the candidates the run trained
(how good a cell it saw, against how well it ranked them), candidates, epochs trained, wall time and load.
Writes --out (JSON) and prints the markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--methods", nargs="+", default=["random", "sh"], choices=["random", "sh"])
    p.add_argument("--time-s", type=float, default=150.0, help="CPU-seconds of trial training per run")
    p.add_argument("--min-epochs", type=int, default=1)
    p.add_argument("--max-epochs", type=int, default=9)
    p.add_argument("--eta", type=int, default=3)
    p.add_argument("--channels", type=int, default=8)
    p.add_argument("--cells", type=int, default=1)
    p.add_argument("--limit-batches", type=int, default=10, help="batches per epoch (0: the whole split)")
    p.add_argument("--data", type=Path, default=DATA / "cifar10_subset.npz")
    p.add_argument("--table", type=Path, default=DATA / "nasbench201_info.csv")
    p.add_argument("--logdir", type=Path, default=Path("/tmp/bench_fidelity"))
    p.add_argument("--out", type=Path, default=Path("/tmp/bench_fidelity.json"))
    p.add_argument("--tables-only", action="store_true", help="print the tables of --out's runs, run nothing")
    p.add_argument("--one", nargs=2, metavar=("METHOD", "SEED"), help=argparse.SUPPRESS)  # a run, in this process
    return p.parse_args(argv)


def run_in_process(args: argparse.Namespace, method: str, seed: int) -> None:
    """One run through run_experiment with the CLI's arguments, the trial loop timed in CPU seconds."""
    import types

    from archsearch.cli import main as cli_main
    from archsearch.search import trial_loop

    trial_loop.time = types.SimpleNamespace(perf_counter=time.process_time)  # the budget's clock: CPU time
    sys.exit(cli_main(command(args, method, seed)[2:]))


def command(args: argparse.Namespace, method: str, seed: int) -> list[str]:
    """The CLI command of the run (what `--one` runs in-process, with the CPU clock)."""
    cmd = [
        sys.executable, str(REPO / "scripts" / "main.py"), "--algos", "random", "--full", "--search-only",
        "--nas.search.space.name", "nasbench201",
        "--datasets", "npz", "--dataset.path", str(args.data), "--dataset.channels", "3",
        "--dataset.image_size", "32", "--dataset.n_classes", "10",
        "--nas.search.benchmark", str(args.table),
        "--nas.search.model_desc.init_channels", str(args.channels),
        "--nas.search.model_desc.n_cells_per_stage", str(args.cells),
        "--nas.search.loader.limit_batches", str(args.limit_batches) if args.limit_batches else "null",
        "--nas.search.trainer.epochs", str(args.max_epochs),
        "--nas.search.random.n_candidates", "100000", "--nas.search.random.time_budget_s", str(args.time_s),
        "--common.num_threads", "1", "--common.seed", str(seed),
        "--common.logdir", str(args.logdir), "--exp-prefix", f"{method}_s{seed}",
    ]  # fmt: skip
    if method == "sh":
        fidelity = f"{{resource: epochs, min: {args.min_epochs}, max: {args.max_epochs}, eta: {args.eta}}}"
        cmd += ["--nas.search.fidelity", fidelity]
    return cmd


def run_one(args: argparse.Namespace, method: str, seed: int) -> dict[str, Any]:
    from archsearch.search.benchmark_table import load_benchmark_table

    cmd = command(args, method, seed)
    load = os.getloadavg()[0]
    start = time.time()
    one = [sys.executable, str(Path(__file__).resolve()), *sys.argv[1:], "--one", method, str(seed)]
    proc = subprocess.run(one, capture_output=True, text=True, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"})
    wall = time.time() - start
    if proc.returncode != 0:
        raise SystemExit(f"error: {method} seed {seed} failed ({' '.join(cmd)}):\n{proc.stderr[-3000:]}")
    folder = args.logdir / f"{method}_s{seed}_npz_full" / "random" / "search"
    metrics = yaml.safe_load((folder / "result.yaml").read_text())["metrics"]
    trials = yaml.safe_load((folder / "trials.yaml").read_text())
    table = load_benchmark_table(args.table)
    seen = max(table.lookup(t["arch"]) for t in trials)
    epochs = metrics.get("epochs_trained", args.max_epochs * len(trials))
    return {
        "method": method,
        "seed": seed,
        "found_table_top1": metrics["benchmark_top1"],
        "best_seen_table_top1": seen,
        "table_best_top1": metrics["benchmark_best_top1"],
        "candidates": metrics.get("n_candidates", len(trials)),
        "trials": len(trials),
        "epochs_trained": epochs,
        "best_val_top1": metrics["best_val_top1"],
        "wall_s": round(wall, 1),
        "cpu_s_trials": round(sum(t["time_s"] for t in trials), 1),
        "load_avg_1min": [load, os.getloadavg()[0]],
        "command": " ".join(cmd[1:]),
    }


def rank_agreement(args: argparse.Namespace, method: str, seed: int) -> dict[int, tuple[float, int]]:
    """Per resource: Kendall's tau between the trials' arch-split accuracy and their cells' table accuracy
    (how well that rung ranks cells), and the number of trials at it."""
    from scipy import stats

    from archsearch.search.benchmark_table import load_benchmark_table

    table = load_benchmark_table(args.table)
    folder = args.logdir / f"{method}_s{seed}_npz_full" / "random" / "search"
    trials = yaml.safe_load((folder / "trials.yaml").read_text())
    out = {}
    for resource in sorted({t.get("resource", args.max_epochs) for t in trials}):
        at = [t for t in trials if t.get("resource", args.max_epochs) == resource]
        if len(at) >= 3:
            tau = stats.kendalltau([t["metrics"]["val_top1"] for t in at], [table.lookup(t["arch"]) for t in at])[0]
            out[resource] = (float(tau), len(at))
    return out


def markdown(results: list[dict[str, Any]]) -> str:
    lines = [
        "| method | seed | found cell's table accuracy | best table accuracy among its candidates | candidates "
        "| epochs trained | CPU s of trials | wall time | load (1 min, before/after) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['method']} | {r['seed']} | {100 * r['found_table_top1']:.2f}% | "
            f"{100 * r['best_seen_table_top1']:.2f}% | {r['candidates']} | {r['epochs_trained']} | "
            f"{r['cpu_s_trials']:.0f} | {r['wall_s']:.0f} s | "
            f"{r['load_avg_1min'][0]:.1f} / {r['load_avg_1min'][1]:.1f} |"
        )
    for method in dict.fromkeys(r["method"] for r in results):
        found = [100 * r["found_table_top1"] for r in results if r["method"] == method]
        spread = f" ± {statistics.stdev(found):.2f}" if len(found) > 1 else ""
        lines.append(f"| **{method} mean** | | **{statistics.mean(found):.2f}%{spread}** | | | | | | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    if args.one:
        run_in_process(args, args.one[0], int(args.one[1]))
    results = json.loads(args.out.read_text()) if args.out.exists() else []
    done = {(r["method"], r["seed"]) for r in results}
    # seeds outermost: both methods of a seed run under a similar machine load
    for seed in [] if args.tables_only else args.seeds:
        for method in args.methods:
            if (method, seed) in done:
                continue
            r = run_one(args, method, seed)
            results.append(r)
            args.out.write_text(json.dumps(results, indent=1))  # a killed benchmark keeps finished runs
            print(f"{method} seed {seed}: found {100 * r['found_table_top1']:.2f}% ({r['candidates']} candidates, "
                  f"{r['epochs_trained']} epochs, {r['wall_s']:.0f} s)", flush=True)  # fmt: skip
    print(markdown(results))
    print("\n| method | seed | Kendall tau (arch-split accuracy vs table), per epochs: tau (trials) |\n|---|---:|---|")
    for r in results:
        taus = rank_agreement(args, r["method"], r["seed"])
        cells = ", ".join(f"{e}: {t:.2f} ({n})" for e, (t, n) in taus.items())
        print(f"| {r['method']} | {r['seed']} | {cells} |")


if __name__ == "__main__":
    main()
