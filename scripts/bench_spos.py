"""Benchmark SPOS on NAS-Bench-201 with real CIFAR-10 images: how well a supernet trained on this machine
ranks cells, what SPOS+REA finds, random search at the same CPU time, and the time to search a saved
supernet again under a new constraint.

    OMP_NUM_THREADS=1 python scripts/bench_spos.py                       # 3 seeds, C=8, N=1, 10 epochs
    OMP_NUM_THREADS=1 python scripts/bench_spos.py --seeds 0 --epochs 5 --cells 50   # a quick look

Data: ../shared/data/cifar10_subset.npz (10,000 CIFAR-10 test images) as an npz dataset, 20% held out as the
test split (never used by search) and the remaining 8,000 split by train_portion 0.5 into the supernet's
weights split and the arch split the candidates are scored on. Accuracies: ../shared/data/nasbench201_info.csv
(CIFAR-10 test accuracy of each cell trained 200 epochs at C=16, N=5).

Per seed (all through archsearch.run, as the CLI runs them):
1. `--algos spos`: supernet training, then REA over `--rea-trials` candidates scored with inherited weights;
   the found cell's table accuracy.
2. `--algos random --nas.search.evaluate_by supernet --nas.search.supernet PATH`: `--cells` distinct random
   cells scored with inherited weights; Kendall tau / Spearman rho of that score against the table.
3. `--algos random --nas.search.evaluate_by train` with time_budget_s = step 1's wall seconds (the trial loop's
   budget counts wall seconds of evaluation; under the same load that is about step 1's CPU time, and both CPU
   times are reported): cells trained from scratch for `--random-epochs` epochs each; the found cell's table
   accuracy.
4. `--algos spos --nas.search.supernet PATH` with a params constraint (`--max-params`), or with
   `--latency-table FILE` (an NB201 table profiled at the supernet's size) a predicted-latency bound, the 25th
   percentile of every cell's predicted latency: seconds to search the saved supernet again (no retraining).

    archsearch profile --space nasbench201 --init-channels 8 --cells 1 --repeats 20 --out C8.json
    OMP_NUM_THREADS=1 python scripts/bench_spos.py --seeds 0 --latency-table C8.json
CPU seconds are this process's (time.process_time); the machine is shared, so wall seconds are also given.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from scipy import stats

import archsearch
import archsearch.plugins  # noqa: F401 - every strategy and space
from archsearch.experiment.run import RunOptions
from archsearch.model.latency import LatencyTable
from archsearch.search.benchmark_table import load_benchmark_table
from archsearch.spaces.nasbench201 import NasBench201Space, all_archs

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def run(algo: str, prefix: str, settings: dict[str, Any]) -> tuple[dict[str, Any], float, float, Path]:
    wall, cpu = time.perf_counter(), time.process_time()
    summary = archsearch.run(algo, "npz", RunOptions(phases="search", exp_prefix=prefix), settings)
    out = Path(settings["common.logdir"]) / f"{prefix}_npz_toy" / algo
    return summary["search"], time.process_time() - cpu, time.perf_counter() - wall, out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--data", type=Path, default=SHARED / "cifar10_subset.npz")
    parser.add_argument("--table", type=Path, default=SHARED / "nasbench201_info.csv")
    parser.add_argument("--logdir", type=Path, default=Path("/tmp/bench_spos"))
    parser.add_argument("--channels", type=int, default=8, help="supernet C (the benchmark's: 16)")
    parser.add_argument("--cells-per-stage", type=int, default=1, help="supernet N (the benchmark's: 5)")
    parser.add_argument("--epochs", type=int, default=10, help="supernet training epochs")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--bn-batches", type=int, default=4)
    parser.add_argument("--eval-batches", type=int, default=16, help="arch-split batches each candidate is scored on")
    parser.add_argument("--cells", type=int, default=200, help="random cells for Kendall tau")
    parser.add_argument("--rea-trials", type=int, default=100)
    parser.add_argument("--random-epochs", type=int, default=2, help="training epochs of a random-search trial")
    parser.add_argument("--max-params", type=int, default=60000, help="the constraint of the search again")
    parser.add_argument("--latency-table", type=Path, default=None, help="search again under a latency bound instead")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    table = load_benchmark_table(args.table, ("architecture", "accuracy"))
    base = {
        "common.logdir": str(args.logdir),
        "common.num_threads": 1,
        "report.auto": False,
        "dataset.path": str(args.data),
        "dataset.channels": 3,
        "dataset.image_size": 32,
        "dataset.n_classes": 10,
        "dataset.test_fraction": 0.2,
        "dataset.crop_padding": 4,
        "dataset.hflip": True,
        "nas.search.space.name": "nasbench201",
        "nas.search.benchmark": str(args.table),
        "nas.search.model_desc.init_channels": args.channels,
        "nas.search.model_desc.n_cells_per_stage": args.cells_per_stage,
        "nas.search.loader.batch_size": args.batch_size,
        "nas.search.loader.limit_batches": None,
        "nas.search.loader.train_portion": 0.5,
        "nas.search.model_desc.affine": False,  # one value for every run (random.yaml's is true): the supernet's
    }
    again_constraint = {"params": {"max": args.max_params}}
    if args.latency_table is not None:
        base["nas.search.metrics.latency_table"] = str(args.latency_table)
        model_desc = {"init_channels": args.channels, "n_cells_per_stage": args.cells_per_stage}
        space = NasBench201Space({}, model_desc, {"channels": 3, "n_classes": 10})
        latency = LatencyTable.load(str(args.latency_table))
        predicted = np.array([latency.predict(space.cost_items(a)) for a in all_archs()])
        bound = float(np.percentile(predicted, 25))
        again_constraint = {"predicted_latency_ms": {"max": bound}}
        print(f"predicted latency over all cells: min {predicted.min():.3f}, median {np.median(predicted):.3f}, "
              f"max {predicted.max():.3f} ms; the search again keeps <= {bound:.3f} ms (25th percentile)")
    rows = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        common = {**base, "common.seed": seed}
        spos = {**common, "nas.search.trainer.epochs": args.epochs, "nas.search.trainer.optimizer.lr": args.lr,
                "nas.search.spos.bn_batches": args.bn_batches, "nas.search.spos.eval_batches": args.eval_batches,
                "nas.search.rea.n_trials": args.rea_trials, "nas.search.rea.population_size": 20,
                "nas.search.rea.sample_size": 5}  # fmt: skip
        found, spos_cpu, spos_wall, out = run("spos", f"spos{seed}", spos)
        rea_trials = yaml.safe_load((out / "search" / "trials.yaml").read_text())
        found_cell = next(t["arch"] for t in rea_trials if t["index"] == found["best_trial"])
        supernet = out / "search" / "supernet.pt"
        history = yaml.safe_load((out / "log.yaml").read_text())
        curve = [e for e in history if e.get("event") == "search_epoch"]
        train_s = sum(e["epoch_time"] for e in curve)
        # Kendall tau of inherited-weight accuracy vs the table over random cells
        rank = {**common, "nas.search.evaluate_by": "supernet", "nas.search.supernet": str(supernet),
                "nas.search.spos.bn_batches": args.bn_batches, "nas.search.spos.eval_batches": args.eval_batches,
                "nas.search.random.n_candidates": args.cells}  # fmt: skip
        _, rank_cpu, _, rank_out = run("random", f"rank{seed}", rank)
        trials = yaml.safe_load((rank_out / "search" / "trials.yaml").read_text())
        scores = [t["metrics"]["supernet_top1"] for t in trials]
        accs = [table.lookup(t["arch"]) for t in trials]
        tau = float(stats.kendalltau(scores, accs).statistic)
        rho = float(stats.spearmanr(scores, accs).statistic)
        # random search, cells trained from scratch, at SPOS' CPU time
        rnd = {**common, "nas.search.evaluate_by": "train", "nas.search.random.n_candidates": 10000,
               "nas.search.random.time_budget_s": spos_wall, "nas.search.trainer.epochs": args.random_epochs,
               "nas.search.trainer.optimizer.lr": args.lr}  # fmt: skip
        rfound, rnd_cpu, rnd_wall, _ = run("random", f"random{seed}", rnd)
        # the saved supernet searched again under a params or latency constraint
        again = {**spos, "nas.search.supernet": str(supernet), "nas.search.constraints": again_constraint}
        afound, again_cpu, again_wall, _ = run("spos", f"again{seed}", again)
        row = {
            "seed": seed,
            "supernet_epochs": len(curve),
            "supernet_train_s": round(train_s, 1),
            "supernet_final_val_top1": curve[-1]["val_top1"] if curve else None,
            "spos_cpu_s": round(spos_cpu, 1),
            "spos_wall_s": round(spos_wall, 1),
            "spos_rea_cell": found_cell,
            "spos_rea_table_top1": found["benchmark_top1"],
            "kendall_tau": round(tau, 3),
            "spearman_rho": round(rho, 3),
            "cells_ranked": len(trials),
            "rank_cpu_s": round(rank_cpu, 1),
            "random_trials": rfound["n_trials"],
            "random_cpu_s": round(rnd_cpu, 1),
            "random_table_top1": rfound["benchmark_top1"],
            "again_cpu_s": round(again_cpu, 1),
            "again_wall_s": round(again_wall, 1),
            "again_table_top1": afound["benchmark_top1"],
            **{f"again_{metric}": afound.get("selected_metrics", {}).get(metric) for metric in again_constraint},
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    load = Path("/proc/loadavg").read_text().split()[:3]
    print(f"\nload {load}, {os.cpu_count()} CPUs, torch {torch.__version__}")
    keys = ["kendall_tau", "spos_rea_table_top1", "random_table_top1", "spos_cpu_s", "random_trials", "again_wall_s"]
    print("| seed | " + " | ".join(keys) + " |\n|" + "---|" * (len(keys) + 1))
    for r in rows:
        print(f"| {r['seed']} | " + " | ".join(str(r[k]) for k in keys) + " |")
    if len(rows) > 1:
        means = [statistics.mean(r[k] for r in rows) if all(isinstance(r[k], (int, float)) for r in rows) else math.nan
                 for k in keys]  # fmt: skip
        print("| mean | " + " | ".join(f"{m:.3f}" for m in means) + " |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
