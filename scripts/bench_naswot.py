"""Benchmark NASWOT and the other zero-cost proxies on NAS-Bench-201: seconds to score N sampled cells,
and how well each proxy's ranking agrees with the benchmark's trained accuracies.

    python scripts/bench_naswot.py                       # 100 cells, batch 128, CPU
    python scripts/bench_naswot.py --device cuda --n 1000 --proxies naswot

Images: real CIFAR-10 from --data (an .npz with `x` uint8 (N, 32, 32, 3) and `y`), normalized with the
benchmark's CIFAR mean/std; random normal images when the file is absent. Accuracies: --table, a CSV
with the cell string and its accuracy (NAS-Bench-201's `architecture` and `accuracy` columns); without
it only times are reported. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from archsearch.search.benchmark_table import load_benchmark_table
from archsearch.strategies.naswot.correlation import correlation_report
from archsearch.strategies.naswot.proxies import PROXIES
from archsearch.strategies.naswot.sampling import nb201_model_builder, sample_nb201, score_candidates

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10_subset.npz"
DEFAULT_TABLE = DEFAULT_DATA.with_name("nasbench201_info.csv")
# NAS-Bench-201's CIFAR normalization (xautodl get_datasets): mean/std of the training images, 0..255
CIFAR_MEAN = np.array([125.3, 123.0, 113.9]) / 255
CIFAR_STD = np.array([63.0, 62.1, 66.7]) / 255
ALL_PROXIES = ["naswot", "naswot_relu", "synflow", "grad_norm", "snip", "jacob_cov"]


def load_batch(path: Path | None, batch_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, str]:
    rng = np.random.default_rng(seed)
    if path is not None and path.exists():
        with np.load(path) as data:
            x_all, y_all = data["x"], data["y"]
        pick = rng.choice(len(x_all), size=batch_size, replace=False)
        x = (x_all[pick].astype(np.float64) / 255.0 - CIFAR_MEAN) / CIFAR_STD
        x = torch.from_numpy(x.transpose(0, 3, 1, 2).astype(np.float32))
        return x, torch.from_numpy(y_all[pick].astype(np.int64)), f"{path.name} ({batch_size} random images)"
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch_size, 3, 32, 32, generator=g)
    return x, torch.randint(0, 10, (batch_size,), generator=g), "synthetic N(0, 1) images"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100, help="cells to sample and score")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--table", type=Path, default=DEFAULT_TABLE)
    parser.add_argument("--arch-column", default="architecture")
    parser.add_argument("--accuracy-column", default="accuracy")
    parser.add_argument("--proxies", default=",".join(ALL_PROXIES), help="comma-separated proxy names")
    parser.add_argument("--seed", type=int, default=0, help="seeds the sample, the batch and the initial weights")
    parser.add_argument("--init-channels", type=int, default=16)
    parser.add_argument("--cells-per-stage", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--plot-dir", type=Path, default=None, help="write a score-vs-accuracy PNG per proxy")
    parser.add_argument("--json", type=Path, default=None, help="also write the results as JSON")
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    proxies = [p.strip() for p in args.proxies.split(",") if p.strip()]
    for name in proxies:
        PROXIES.get(name)  # fail before the slow part on a typo
    x, y, data_note = load_batch(args.data, args.batch_size, args.seed)
    table = None
    if args.table is not None and args.table.exists():
        table = load_benchmark_table(args.table, (args.arch_column, args.accuracy_column))
    candidates = sample_nb201(args.n, np.random.default_rng(args.seed))
    build = nb201_model_builder(C=args.init_channels, N=args.cells_per_stage, ch_in=3, n_classes=10)
    names = [c.name for c in candidates]

    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"torch {torch.__version__}, device {device} ({device_name}), {torch.get_num_threads()} CPU threads")
    print(f"data: {data_note}; table: {args.table if table else 'none'}; seed {args.seed}")
    print(f"NAS-Bench-201 C={args.init_channels} N={args.cells_per_stage}, {args.n} sampled cells\n")

    # warm-up (allocator, kernels, lazy imports) on one cell, not timed
    score_candidates(candidates[:1], build, (x, y), proxies[0], device, seed=args.seed)
    t0 = time.perf_counter()
    for c in candidates:
        build(c)  # dropped at once
    build_seconds = time.perf_counter() - t0

    results = []
    for name in proxies:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        scores = score_candidates(candidates, build, (x, y), name, device, seed=args.seed)
        seconds = time.perf_counter() - t0
        plot = args.plot_dir / f"{name}_vs_accuracy.png" if args.plot_dir and table else None
        title = f"{name}, {args.n} NAS-Bench-201 cells, batch {args.batch_size}"
        report = correlation_report(names, scores, table, plot_path=plot, title=title)
        results.append({"proxy": name, "seconds": seconds, **report.to_dict()})
        print(f"{name}: {seconds:.1f} s; {report.summary()}", file=sys.stderr, flush=True)

    def fmt(value, spec):
        return "-" if value is None else format(value, spec)

    header = ["proxy", "N", "batch", "device", "seconds (build + score)", "s / cell", "Kendall tau",
              "Spearman rho", "chosen acc", "chosen rank", "best sampled acc"]  # fmt: skip
    print("| " + " | ".join(header) + " |")
    print("|---|" + "---:|" * (len(header) - 1))
    for r in results:
        row = [
            r["proxy"], str(args.n), str(args.batch_size), device.type, f"{r['seconds']:.1f}",
            f"{r['seconds'] / args.n:.3f}", fmt(r["kendall_tau"], ".3f"), fmt(r["spearman_rho"], ".3f"),
            fmt(r["chosen_accuracy"], ".2%"), fmt(r["chosen_rank"], "d"), fmt(r["best_accuracy"], ".2%"),
        ]  # fmt: skip
        print("| " + " | ".join(row) + " |")
    print(f"\nbuilding the {args.n} networks alone: {build_seconds:.1f} s (included above)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        record = {"args": vars(args), "build_seconds": build_seconds, "results": results}
        args.json.write_text(json.dumps(record, default=str, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
