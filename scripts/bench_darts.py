"""Benchmark a DARTS search step: the naive supernet (Cell + MixedOp) against the fused one (FusedDartsCell).

A full search step is what BilevelArchTrainer runs per batch: the architecture step (`pre_step`, i.e.
BilevelOptimizer.step, first or second order) and the weight step (`train_step`: forward, backward, grad
clip 5, SGD momentum 0.9, weight decay 3e-4), on random data of CIFAR shape, with the settings of
confs/algos/darts.yaml (AMP and channels_last apply on CUDA only, as in the trainer). `weight` runs weight
steps alone, comparable with figures quoted per weight step.

Every configuration runs in a fresh subprocess, so its peak memory is its own: peak RSS (ru_maxrss) on
CPU, torch.cuda.max_memory_allocated on CUDA; `before` is the memory just before the first step (model,
optimizer state, data), so `peak - before` is what the steps add.

On a CPU that other jobs share, use --threads 1: OpenMP threads that wait for a descheduled sibling at
every parallel region can slow a step down several times over, in either implementation.

    python scripts/bench_darts.py --threads 1                     # paper size, batch 16 and 64, CPU
    python scripts/bench_darts.py --batch 8 --order first --impl fused --steps 5
    python scripts/bench_darts.py --device cuda --batch 64 --warmup 3 --steps 20
    python scripts/bench_darts.py --threads 1 --order first --impl naive,fused,pcdarts --batch 64,256  # PC-DARTS
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
ORDERS = ("weight", "first", "second")
IMPLS = ("naive", "fused", "pcdarts")  # DARTS per edge, DARTS fused, PC-DARTS (K=4, edge normalization; per edge)
# The figures for the original DARTS code (quark0/darts) on the 2-core CPU machine, batch 64,
# paper size: median seconds per weight step and peak RSS.
ORIGINAL_DARTS = {"weight_step_s": 18.6, "peak_rss_gb": 9.8, "batch": 64}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", default="16,64", help="comma-separated batch sizes")
    parser.add_argument(
        "--order",
        default="weight,first,second",
        help="comma-separated: weight (weight step only), first, second, or both (= first,second)",
    )
    parser.add_argument("--impl", default="naive,fused", help="comma-separated: naive, fused, pcdarts")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per configuration (the median is reported)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--init-channels", type=int, default=16)
    parser.add_argument("--cells", type=int, default=8)
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="also write the results as JSON")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)  # one configuration, run in a subprocess
    return parser.parse_args(argv)


def split_list(text: str, valid: tuple[str, ...] | None = None) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if valid is not None:
        items = [i for t in items for i in (("first", "second") if t == "both" else (t,))]
        bad = [t for t in items if t not in valid]
        if bad:
            raise SystemExit(f"error: unknown value(s) {bad}; use {', '.join(valid)}")
    return items


# ---- one configuration (in the child process) ------------------------------------------------------
def build_trainer(setup: dict[str, Any]):
    """The supernet and BilevelArchTrainer exactly as a DARTS search builds them (full-size config)."""
    from archsearch.common.logging import RunLog
    from archsearch.config import load_config
    from archsearch.model.mixed_op import MixedOpOptions
    from archsearch.spaces.darts_cells import DartsCellSpace
    from archsearch.strategies.darts import BilevelArchTrainer
    from archsearch.strategies.darts.fused import fuse_cells

    order = "first" if setup["order"] == "weight" else setup["order"]
    pcdarts = setup["impl"] == "pcdarts"
    conf = load_config(
        [REPO / "confs" / "algos" / ("pcdarts.yaml" if pcdarts else "darts.yaml")],
        [
            ("nas.search.model_desc.n_cells", str(setup["cells"])),
            ("nas.search.model_desc.init_channels", str(setup["init_channels"])),
            ("nas.search.model_desc.n_nodes", str(setup["nodes"])),
            ("nas.search.trainer.bilevel.order", order),
            ("nas.search.trainer.bilevel.arch_start_epoch", "0"),  # every timed step takes its architecture step
        ],
    )
    torch.manual_seed(setup["seed"])
    conf_model_desc = conf["nas"]["search"]["model_desc"]
    space = DartsCellSpace({}, conf_model_desc, conf["dataset"])
    if pcdarts:  # PC-DARTS' supernet: K=4 partial channels and edge normalization (confs/algos/pcdarts.yaml)
        options = MixedOpOptions(conf_model_desc["partial_channels"], conf_model_desc["edge_normalization"])
        model = space.mixed_op_supernet(options)
    else:
        model = space.differentiable_supernet()
    if setup["impl"] == "fused":
        fuse_cells(model)
    device = torch.device(setup["device"])
    trainer = BilevelArchTrainer(conf["nas"]["search"]["trainer"], model, RunLog(None, verbose=False), device, "search")
    return trainer, conf["dataset"]["n_classes"]


def run_child(setup: dict[str, Any]) -> dict[str, Any]:
    if setup["threads"]:
        torch.set_num_threads(setup["threads"])
    trainer, n_classes = build_trainer(setup)
    device, batch, size = trainer.device, setup["batch"], setup["image_size"]
    g = torch.Generator().manual_seed(setup["seed"])
    n_batches = 4  # a few distinct batches, cycled: the arch step draws from its own split
    data = [
        (torch.randn(batch, 3, size, size, generator=g), torch.randint(0, n_classes, (batch,), generator=g))
        for _ in range(2 * n_batches)
    ]
    data = [(x.to(device), y.to(device)) for x, y in data]
    train, arch = data[:n_batches], data[n_batches:]
    trainer.model.train()
    trainer.pre_epoch(0, None, arch)
    cuda = device.type == "cuda"

    def now() -> float:
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    if cuda:
        torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated() if cuda else rss_bytes()
    arch_times, weight_times = [], []
    load = [os.getloadavg()[0]]
    for step in range(setup["warmup"] + setup["steps"]):
        x, y = train[step % n_batches]
        start = now()
        if setup["order"] != "weight":
            trainer.pre_step(step, x, y)  # BilevelOptimizer.step on the next arch batch
        middle = now()
        trainer.train_step(x, y)
        end = now()
        if step >= setup["warmup"]:
            arch_times.append(middle - start)
            weight_times.append(end - middle)
    load.append(os.getloadavg()[0])
    peak = torch.cuda.max_memory_allocated() if cuda else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    steps = [a + w for a, w in zip(arch_times, weight_times)]
    return {
        **{k: setup[k] for k in ("impl", "order", "batch", "device")},
        "threads": torch.get_num_threads(),
        "step_s": statistics.median(steps),
        "arch_step_s": statistics.median(arch_times),
        "weight_step_s": statistics.median(weight_times),
        "images_per_s": batch / statistics.median(steps),
        "steps_s": steps,
        "memory_before_gb": before / 1e9,
        "memory_peak_gb": peak / 1e9,
        "memory_kind": "cuda max_memory_allocated" if cuda else "peak RSS",
        "load_avg_1min": load,
    }


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# ---- the sweep (in the parent) ----------------------------------------------------------------------
def run_config(setup: dict[str, Any]) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(setup)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        raise SystemExit(f"error: configuration {setup} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def markdown_table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| impl | order | batch | step s (median) | arch step s | weight step s | images/s | memory before GB "
        "| peak GB | load (1 min) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        load = "-".join(f"{v:.1f}" for v in r["load_avg_1min"])
        lines.append(
            f"| {r['impl']} | {r['order']} | {r['batch']} | {r['step_s']:.3f} | {r['arch_step_s']:.3f} "
            f"| {r['weight_step_s']:.3f} | {r['images_per_s']:.1f} | {r['memory_before_gb']:.2f} "
            f"| {r['memory_peak_gb']:.2f} | {load} |"
        )
    return "\n".join(lines)


def comparisons(results: list[dict[str, Any]]) -> list[str]:
    """fused vs naive for every configuration both ran, and vs the original DARTS figures (CPU, batch 64)."""
    lines = []
    by_key = {(r["impl"], r["order"], r["batch"]): r for r in results}
    for (impl, order, batch), fused in by_key.items():
        naive = by_key.get(("naive", order, batch))
        if impl != "fused" or naive is None:
            continue
        lines.append(
            f"- {order}, batch {batch}: fused step {naive['step_s'] / fused['step_s']:.2f}x faster than naive, "
            f"peak memory {fused['memory_peak_gb']:.2f} vs {naive['memory_peak_gb']:.2f} GB "
            f"({fused['memory_peak_gb'] / naive['memory_peak_gb']:.0%})"
        )
    for (impl, order, batch), pc in by_key.items():
        darts = by_key.get(("naive", order, 64)) or by_key.get(("fused", order, 64))
        if impl != "pcdarts" or darts is None:
            continue
        lines.append(
            f"- PC-DARTS {order}, batch {batch}: peak {pc['memory_peak_gb']:.2f} GB vs DARTS ({darts['impl']}) at "
            f"batch 64 {darts['memory_peak_gb']:.2f} GB ({pc['memory_peak_gb'] / darts['memory_peak_gb']:.0%}); "
            f"step {pc['step_s']:.2f} s vs {darts['step_s']:.2f} s"
        )
    original = ORIGINAL_DARTS
    for r in results:
        if r["order"] == "weight" and r["batch"] == original["batch"] and r["device"] == "cpu":
            lines.append(
                f"- {r['impl']} weight step at batch 64: {r['weight_step_s']:.2f} s and {r['memory_peak_gb']:.2f} GB "
                f"peak RSS vs the original DARTS code's {original['weight_step_s']} s and {original['peak_rss_gb']} GB "
                f"(issue figures, same machine): {r['weight_step_s'] / original['weight_step_s']:.0%} of its time, "
                f"{r['memory_peak_gb'] / original['peak_rss_gb']:.0%} of its memory"
            )
    return lines


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child is not None:
        print(json.dumps(run_child(json.loads(args.child))))
        return 0
    base = {
        "device": args.device,
        "threads": args.threads,
        "init_channels": args.init_channels,
        "cells": args.cells,
        "nodes": args.nodes,
        "image_size": args.image_size,
        "seed": args.seed,
        "steps": args.steps,
        "warmup": args.warmup,
    }
    results = []
    for batch in [int(b) for b in split_list(args.batch)]:
        for order in split_list(args.order, ORDERS):
            for impl in split_list(args.impl, IMPLS):
                setup = {**base, "impl": impl, "order": order, "batch": batch}
                result = run_config(setup)
                results.append(result)
                print(
                    f"{impl:5s} {order:6s} batch {batch:3d}: step {result['step_s']:.3f} s, "
                    f"peak {result['memory_peak_gb']:.2f} GB",
                    file=sys.stderr,
                    flush=True,
                )
    threads = results[0]["threads"] if results else args.threads
    header = (
        f"DARTS search step, {args.cells} cells, {args.init_channels} channels, {args.nodes} nodes, "
        f"{args.image_size}x{args.image_size}x3 input, device {args.device}, {threads} threads, "
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; "
        f"median of {args.steps} steps after {args.warmup} warmup"
    )
    print(header + "\n")
    print(markdown_table(results))
    lines = comparisons(results)
    if lines:
        print("\n" + "\n".join(lines))
    if args.json is not None:
        args.json.write_text(json.dumps({"header": header, "results": results, "comparisons": lines}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
