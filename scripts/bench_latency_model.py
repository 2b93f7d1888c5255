"""How good is the latency model? Profile NAS-Bench-201 (C=16, N=5, 32x32) and DARTS (8 cells, 16 channels,
32x32) on this machine, then compare the predicted latency (sum of the table's ops + its calibrated
overhead) with the measured one on random architectures: 200 NB201 cells and 50 DARTS genotypes by default.

    PYTHONPATH=. python scripts/bench_latency_model.py [--nb201 200] [--darts 50] [--runtime torch|onnxruntime]

Single process, batch 1, 1 thread. The calibration networks (seed 0) are not among the evaluated ones
(seed 1). Prints a markdown table: Spearman rho, Kendall tau, mean absolute % error of the calibrated
prediction and of the raw sum of the table's ops.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from scipy.stats import kendalltau, spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from archsearch.model.latency import device_name, measure_ms  # noqa: E402
from archsearch.report.profile import make_space, profile_space  # noqa: E402


def bench(name: str, n_archs: int, args: argparse.Namespace, **sizes: int) -> dict:
    space = make_space(name, **sizes)
    settings = {"runtime": args.runtime, "threads": 1, "warmup": args.warmup, "repeats": args.repeats}
    started = time.perf_counter()
    table = profile_space(space, calibrate=args.calibrate, seed=0, **settings)
    profile_s = time.perf_counter() - started
    rng = random.Random(1)
    shape = (3, *space.image_hw())
    measured, predicted, sums = [], [], []
    for _ in range(n_archs):
        arch = space.sample(rng)
        measured.append(measure_ms(space.build(arch), shape, **settings))
        predicted.append(table.predict(space.cost_items(arch)))
        sums.append(table.sum_ms(space.cost_items(arch)))

    def mape(pred: list[float]) -> float:
        return 100 * statistics.mean(abs(p - m) / m for p, m in zip(pred, measured))

    return {
        "space": name,
        "n": n_archs,
        "entries": len(table.entries),
        "profile_s": profile_s,
        "measured": (min(measured), statistics.median(measured), max(measured)),
        "rho": spearmanr(predicted, measured).statistic,
        "tau": kendalltau(predicted, measured).statistic,
        "mape": mape(predicted),
        "mape_raw": mape(sums),
        "overhead": table.overhead_ms,
        "scale": table.scale,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nb201", type=int, default=200)
    parser.add_argument("--darts", type=int, default=50)
    parser.add_argument("--runtime", default="torch", choices=["torch", "onnxruntime"])
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--calibrate", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(1)
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    rows = []
    if args.nb201:
        rows.append(bench("nasbench201", args.nb201, args, init_channels=16, cells=5, image_size=32))
    if args.darts:
        rows.append(bench("darts", args.darts, args, init_channels=16, cells=8, image_size=32))
    print(
        f"{device_name('cpu')}, {os.cpu_count()} cores, torch {torch.__version__}, python {platform.python_version()}"
    )
    print(f"runtime {args.runtime}, batch 1, 1 thread, warmup {args.warmup}, median of {args.repeats}")
    print(f"load before: {load}")
    print(f"load after:  {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}\n")
    print(
        "| space | archs | table entries | profile s | measured ms (min / median / max) | Spearman rho | Kendall tau "
        "| MAPE | MAPE of the raw sum | scale | overhead ms |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        lo, mid, hi = r["measured"]
        print(
            f"| {r['space']} | {r['n']} | {r['entries']} | {r['profile_s']:.0f} | {lo:.2f} / {mid:.2f} / {hi:.2f} "
            f"| {r['rho']:.3f} | {r['tau']:.3f} | {r['mape']:.1f}% | {r['mape_raw']:.1f}% "
            f"| {r['scale']:.2f} | {r['overhead']:.2f} |"
        )


if __name__ == "__main__":
    main()
