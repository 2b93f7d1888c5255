#!/usr/bin/env python
"""Wall time of DARTS search steps and eval epochs under torchrun, for 1, 2, ... processes.

Each point is a real `torchrun --standalone --nproc_per_node N scripts/main.py --algos darts` run on the
synthetic dataset; the figures are read from its log.yaml (`epoch_time` of every search and eval epoch, the
first of each phase dropped as warm-up). The global batch is `--per-rank-batch` x N (weak scaling: each
rank keeps its batch, as one would add GPUs), or `--global-batch` fixed (strong scaling: the config's batch,
split among more ranks). Efficiency = images/s at N / (N x images/s at 1).

    python scripts/bench_ddp.py --nprocs 1,2                      # CPU, gloo (this machine)
    python scripts/bench_ddp.py --nprocs 1,2,4,8 --device cuda --size paper --steps 50   # a GPU node, NCCL

Print the load (`uptime`) beside any CPU figure: on a shared machine the processes compete for cores.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
SIZES = {  # model sizes: "toy" runs in seconds on a CPU; "paper" is DARTS' CIFAR-10 search and eval network
    "toy": {"search": {"n_cells": 5, "init_channels": 8}, "eval": {"n_cells": 8, "init_channels": 16}},
    "paper": {"search": {"n_cells": 8, "init_channels": 16}, "eval": {"n_cells": 20, "init_channels": 36}},
}


def bench_config(size: str, batch: int, steps: int, epochs: int, order: str, n_images: int) -> dict:
    loader = {"batch_size": batch, "test_batch_size": batch, "limit_batches": steps}
    return {
        "dataset": {"name": "synthetic", "synthetic_train": n_images, "synthetic_test": batch},
        "nas": {
            "search": {
                "model_desc": SIZES[size]["search"],
                "loader": loader,
                "trainer": {"epochs": epochs, "bilevel": {"order": order}},
            },
            "eval": {"model_desc": SIZES[size]["eval"], "loader": loader, "trainer": {"epochs": epochs}},
        },
    }


def run_point(nproc: int, args: argparse.Namespace, workdir: Path) -> dict[str, float]:
    batch = args.global_batch or args.per_rank_batch * nproc
    # enough images that `steps` batches fit in the weights half of the training split
    conf = bench_config(args.size, batch, args.steps, args.epochs, args.order, 2 * batch * args.steps + 2 * batch)
    conf_file = workdir / f"bench_{nproc}.yaml"
    conf_file.write_text(yaml.safe_dump(conf))
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
        str(REPO / "scripts" / "main.py"), "--algos", "darts", "--config", str(conf_file),
        "--common.logdir", str(workdir / f"logdir_{nproc}"), "--common.device", args.device,
        "--common.num_threads", str(args.threads),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
    if proc.returncode != 0:
        sys.exit(f"torchrun with {nproc} processes failed:\n{proc.stderr[-3000:]}")
    [log] = (workdir / f"logdir_{nproc}").glob("*/darts/log.yaml")
    records = yaml.safe_load(log.read_text())
    times = {
        phase: [r["epoch_time"] for r in records if r["event"] == f"{phase}_epoch"][1:] for phase in ("search", "eval")
    }
    out: dict[str, float] = {"nproc": nproc, "global_batch": batch}
    for phase, epoch_times in times.items():
        per_epoch = sum(epoch_times) / len(epoch_times)
        out[f"{phase}_epoch_s"] = per_epoch
        out[f"{phase}_images_s"] = batch * args.steps / per_epoch
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nprocs", default="1,2", help="comma-separated process counts")
    parser.add_argument("--device", default="cpu", help="cpu (gloo) or cuda (NCCL, one GPU per process)")
    parser.add_argument("--size", choices=sorted(SIZES), default="toy")
    parser.add_argument("--steps", type=int, default=8, help="search steps (and eval steps) per epoch")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per phase; the first is warm-up")
    parser.add_argument("--order", choices=["first", "second"], default="first", help="DARTS order")
    parser.add_argument("--per-rank-batch", type=int, default=16)
    parser.add_argument("--global-batch", type=int, default=None, help="fix the global batch (strong scaling)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error("--epochs must be >= 2 (the first epoch is warm-up)")
    with tempfile.TemporaryDirectory() as tmp:
        points = [run_point(int(n), args, Path(tmp)) for n in args.nprocs.split(",")]
    base = points[0]
    print(f"DARTS {args.order} order, {args.size} size, device {args.device}, {args.steps} steps per epoch, "
          f"{args.threads} thread(s) per process")  # fmt: skip
    columns = ["processes", "global batch", "search s/epoch", "search img/s", "search eff.", "eval s/epoch",
               "eval img/s", "eval eff."]  # fmt: skip
    print("| " + " | ".join(columns) + " |")
    print("|---|---|---|---|---|---|---|---|")
    for p in points:
        n = p["nproc"] / base["nproc"]
        eff = {ph: p[f"{ph}_images_s"] / (n * base[f"{ph}_images_s"]) for ph in ("search", "eval")}
        print(
            f"| {p['nproc']} | {p['global_batch']} | {p['search_epoch_s']:.2f} | {p['search_images_s']:.0f} | "
            f"{eff['search']:.0%} | {p['eval_epoch_s']:.2f} | {p['eval_images_s']:.0f} | {eff['eval']:.0%} |"
        )


if __name__ == "__main__":
    main()
