"""DARTS and the methods that fix its collapse on NAS-Bench-201 with real CIFAR-10 images: DARTS (1st order),
DARTS + beta-decay (betadarts), PC-DARTS and GDAS, R seeds each, the same search budget for every method,
then the found cell looked up in the NB201 table (CIFAR-10 test accuracy, 200-epoch training) and its count of
parameter-free ops (skip_connect, avg_pool_3x3, none).

    python scripts/bench_darts_variants.py       # 4 methods x 3 seeds, C=8 N=1, 5 epochs of 32 batches of 64
    python scripts/bench_darts_variants.py --algos gdas --seeds 1 --epochs 2
    python scripts/bench_darts_variants.py --algos darts --prefix bench_darts_latency \
        --cost "{source: latency, table: TABLE_C8.json, weight: 0.5}" --latency-table TABLE_C16.json

`--cost` adds the hardware-aware cost term (`--nas.search.trainer.cost`, archsearch/strategies/darts/cost.py) to
every method's architecture loss, its latency table profiled at the search network's size (`archsearch profile
--space nasbench201 --init-channels 8 --cells 1`); `--latency-table` (profiled at the benchmark's C=16, N=5) adds
each found cell's predicted CPU latency at the benchmark's size, and its measured latency (torch, batch 1, one
thread, median of 50 runs after 5 warm-up runs) to the table.

Every run is the CLI itself (`scripts/main.py --algos <algo> --nas.search.space.name nasbench201 --search-only`
on `--datasets npz` with the subset), run one after another; each method keeps its own confs/algos/<algo>.yaml
recipe (optimizers, PC-DARTS' batch 256 and K=4, GDAS' temperature schedule), and the budget is the same for
all: network (--channels, --cells), data (the subset split 50/50 into weights and arch halves, as the search
loader does), epochs. Schedules defined in epochs are scaled to the budget: PC-DARTS' weights-only warm-up is
the paper's 15/50 of the epochs and GDAS' temperature falls from 10 to 0.1 over the run, as each does over its
paper-length search; beta-decay's lambda follows the code's 50 * epoch / 100 whatever the length
(`--beta-ramp scaled`: 0 -> 50 over the run instead).
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
sys.path.insert(0, str(REPO))  # this checkout's archsearch, as scripts/main.py runs it
DEFAULT_DATA = REPO.parent / "shared" / "data" / "cifar10_subset.npz"
DEFAULT_TABLE = REPO.parent / "shared" / "data" / "nasbench201_info.csv"
ALGOS = ("darts", "betadarts", "pcdarts", "gdas")
LABELS = {
    "darts": "DARTS (1st order)",
    "darts+cost": "DARTS (1st order) + cost term",
    "betadarts": "DARTS + beta-decay",
    "pcdarts": "PC-DARTS",
    "gdas": "GDAS",
}
PARAMETER_FREE = ("none", "skip_connect", "avg_pool_3x3")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algos", default=",".join(ALGOS))
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--channels", type=int, default=8)
    parser.add_argument("--cells", type=int, default=1, help="cells per stage (NB201's N)")
    parser.add_argument("--limit-batches", type=int, default=32, help="batches of 64 per epoch (0: all)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--table", type=Path, default=DEFAULT_TABLE)
    parser.add_argument("--logdir", type=Path, default=Path("~/logdir").expanduser())
    parser.add_argument("--prefix", default="bench_darts_variants")
    parser.add_argument("--json", type=Path, default=None, help="also write the results as JSON")
    parser.add_argument("--cost", default=None, help="--nas.search.trainer.cost for every run, e.g. "
                        "'{source: latency, table: T.json, weight: 0.5}' (default: none, the plain methods)")
    parser.add_argument("--latency-table", type=Path, default=None,
                        help="a C=16 N=5 NB201 latency table: add each cell's predicted and measured latency")
    parser.add_argument(
        "--beta-ramp",
        choices=("scaled", "paper"),
        default="paper",
        help="beta-decay's lambda: scaled (0 -> 50 over this run's epochs) or paper (50 * epoch / 100, as the "
        "code writes it, whatever the run's length)",
    )
    return parser.parse_args(argv)


def budget_overrides(algo: str, epochs: int, beta_ramp: str = "paper") -> list[str]:
    """Each method's epoch-defined schedules, scaled from its paper length to `epochs`; PC-DARTS at the batch of
    the others (64, so every method takes the same number of weight and architecture steps on the same images)
    with its lr scaled linearly with the batch as the paper scaled DARTS' (0.1 at 256 -> 0.025 at 64)."""
    if algo == "pcdarts":
        return [
            "--nas.search.trainer.bilevel.arch_start_epoch", str(round(epochs * 15 / 50)),
            "--nas.search.loader.batch_size", "64", "--nas.search.trainer.optimizer.lr", "0.025",
        ]  # fmt: skip
    if algo == "betadarts" and beta_ramp == "scaled":
        return ["--nas.search.trainer.bilevel.beta_decay.ramp_epochs", str(epochs)]
    return []  # DARTS has no epoch schedule beyond the cosine lr; GDAS anneals tau over the run's epochs


def command(args: argparse.Namespace, algo: str, seed: int) -> list[str]:
    limit = str(args.limit_batches) if args.limit_batches else "null"
    return [
        sys.executable, str(REPO / "scripts" / "main.py"), "--algos", algo, "--full", "--search-only",
        "--nas.search.space.name", "nasbench201",
        "--datasets", "npz", "--dataset.path", str(args.data), "--dataset.channels", "3",
        "--dataset.image_size", "32", "--dataset.n_classes", "10",
        "--nas.search.benchmark", str(args.table),
        "--nas.search.model_desc.init_channels", str(args.channels),
        "--nas.search.model_desc.n_cells_per_stage", str(args.cells),
        "--nas.search.trainer.epochs", str(args.epochs), "--nas.search.loader.limit_batches", limit,
        "--nas.search.trainer.bilevel.order", "first",
        "--common.num_threads", "1", "--common.seed", str(seed),
        "--common.logdir", str(args.logdir), "--exp-prefix", f"{args.prefix}_s{seed}",
        *budget_overrides(algo, args.epochs, args.beta_ramp),
        *(["--nas.search.trainer.cost", args.cost] if args.cost else []),
    ]  # fmt: skip


def run_one(args: argparse.Namespace, algo: str, seed: int) -> dict[str, Any]:
    from archsearch.spaces.nasbench201 import NasBench201Space, arch_to_index, parse_arch

    cmd = command(args, algo, seed)
    start = time.time()
    load = os.getloadavg()[0]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    wall = time.time() - start
    if proc.returncode != 0:
        raise SystemExit(f"error: {algo} seed {seed} failed ({' '.join(cmd)}):\n{proc.stderr[-3000:]}")
    folder = args.logdir / f"{args.prefix}_s{seed}_npz_full" / algo / "search"
    result = yaml.safe_load((folder / "result.yaml").read_text())
    space = NasBench201Space({}, {}, {"channels": 3, "n_classes": 10})
    cell = space.load_arch(folder / "final_model_desc.yaml")
    latency = cell_latency(cell, args.latency_table) if args.latency_table is not None else {}
    return {
        **latency,
        "algo": algo if args.cost is None else f"{algo}+cost",
        "cost": args.cost,
        "seed": seed,
        "cell": cell,
        "uid": arch_to_index(cell),
        "benchmark_top1": result["metrics"]["benchmark_top1"],
        "parameter_free": sum(op in PARAMETER_FREE for op in parse_arch(cell)),
        "wall_s": wall,
        "load_avg_1min": [load, os.getloadavg()[0]],
    }


def cell_latency(cell: str, table_path: Path) -> dict[str, float]:
    """The cell's predicted (the table) and measured (torch, batch 1, one thread) CPU latency at the benchmark's
    size, C=16, N=5, on 32x32 images."""
    from archsearch.model.latency import LatencyTable
    from archsearch.search.hardware_metrics import measure_latency_ms
    from archsearch.spaces.nasbench201 import NasBench201Space

    space = NasBench201Space({}, {"init_channels": 16, "n_cells_per_stage": 5}, {"channels": 3, "n_classes": 10})
    arch = space.from_json(cell)
    predicted = LatencyTable.load(table_path).predict(space.cost_items(arch))
    model = space.build(arch).eval()
    measured = measure_latency_ms(model, (3, 32, 32), 1, 5, 50, "cpu", 1)
    return {"predicted_latency_ms": float(predicted), "latency_ms": float(measured)}


def markdown(results: list[dict[str, Any]]) -> str:
    timed = all("latency_ms" in r for r in results)
    latency_head = " predicted / measured latency (C=16, N=5) |" if timed else ""
    lines = [
        f"| method | seed | found cell | benchmark accuracy | parameter-free ops |{latency_head} wall time |",
        "|---|---:|---|---:|---:|" + ("---:|" if timed else "") + "---:|",
    ]
    for r in results:
        cell = r["cell"].replace("|", "\\|")
        latency = f" {r['predicted_latency_ms']:.2f} / {r['latency_ms']:.2f} ms |" if timed else ""
        lines.append(
            f"| {LABELS.get(r['algo'], r['algo'])} | {r['seed']} | `{cell}` (uid {r['uid']}) "
            f"| {100 * r['benchmark_top1']:.2f} | {r['parameter_free']} of 6 |{latency} {r['wall_s']:.0f} s |"
        )
    lines += ["", "| method | mean accuracy | min - max | mean parameter-free ops |", "|---|---:|---:|---:|"]
    for algo in dict.fromkeys(r["algo"] for r in results):
        accs = [100 * r["benchmark_top1"] for r in results if r["algo"] == algo]
        free = [r["parameter_free"] for r in results if r["algo"] == algo]
        spread = f"{statistics.stdev(accs):.2f}" if len(accs) > 1 else "-"
        lines.append(
            f"| {LABELS.get(algo, algo)} | {statistics.mean(accs):.2f} +- {spread} | {min(accs):.2f} - {max(accs):.2f} "
            f"| {statistics.mean(free):.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    algos = [a for a in args.algos.split(",") if a]
    seeds = [int(s) for s in args.seeds.split(",") if s]
    results = []
    for seed in seeds:  # seed-major: a sweep stopped early still has every method
        for algo in algos:
            r = run_one(args, algo, seed)
            results.append(r)
            print(
                f"{algo} seed {seed}: {r['cell']} {100 * r['benchmark_top1']:.2f}% "
                f"({r['parameter_free']} parameter-free), {r['wall_s']:.0f} s",
                file=sys.stderr,
                flush=True,
            )
            if args.json is not None:  # written after every run: a long sweep that is stopped keeps its rows
                args.json.write_text(json.dumps(results, indent=2))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
