"""Benchmark the collapse monitor's Hessian eigenvalue against a DARTS search step.

Builds the search supernet of confs/algos/darts.yaml (--full sizes: 8 cells, 16 channels, 4 nodes,
fused cells) on random data of CIFAR shape and times, with the trainer the search uses (BilevelArchTrainer):

- `step`: one search step (first-order architecture step + weight step), the unit of an epoch;
- `eigenvalue`: one `CollapseMonitor.eigenvalue` on one arch batch with the shipped settings
  (nas.search.trainer.collapse: at most 50 Hessian-vector products per power iteration, relative tolerance
  1e-3; a second run when the largest-magnitude eigenvalue is negative), and the cost of Hessian-vector
  products alone (a fixed 10 of them, tolerance 0).

Peak RSS (CPU) after the steps and after the eigenvalue shows what the double-backward graph adds: it holds
the forward graph and the gradient's graph at once.

The monitor runs once per epoch, so its share of an epoch is eigenvalue / (steps per epoch x step), with
25,000 / batch steps per epoch (DARTS' CIFAR-10 weight split: 391 at batch 64).

    python scripts/bench_collapse.py --threads 1 --batch 16 --steps 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import time

import torch

from archsearch.common.logging import RunLog
from archsearch.config import load_config
from archsearch.experiment.run import confs_dir
from archsearch.spaces.darts_cells import DartsCellSpace
from archsearch.strategies.darts.collapse import CollapseMonitor
from archsearch.strategies.darts.fused import fuse_cells
from archsearch.strategies.darts.trainer import BilevelArchTrainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=3, help="timed search steps (after one warm-up step)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    conf = load_config([confs_dir() / "algos" / "darts.yaml"], [("nas.search.trainer.bilevel.order", "first")])
    search = conf["nas"]["search"]
    space = DartsCellSpace(search["space"], search["model_desc"], conf["dataset"])
    torch.manual_seed(0)
    supernet = space.differentiable_supernet()
    fuse_cells(supernet)
    trainer = BilevelArchTrainer(search["trainer"], supernet, RunLog(None, verbose=False), device, "search")
    g = torch.Generator().manual_seed(0)

    def batch() -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.randn(args.batch, 3, 32, 32, generator=g).to(device)
        return x, torch.randint(0, 10, (args.batch,), generator=g).to(device)

    trainer.arch_loader = [batch() for _ in range(4)]
    trainer._arch_iter = None
    trainer.model.train()

    def step() -> float:
        x, y = batch()
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        trainer.pre_step(0, x, y)
        trainer.train_step(x, y)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    step()  # warm-up
    step_times = [step() for _ in range(args.steps)]
    peak_steps_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    monitor = CollapseMonitor(search["trainer"]["collapse"])
    start = time.perf_counter()
    eigenvalue = monitor.eigenvalue(trainer, epoch=0)
    eigen_time = time.perf_counter() - start
    peak_eigen_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    x, y = trainer.arch_loader[0]
    alphas = supernet.arch_params()
    grads = torch.autograd.grad(trainer.loss_of(supernet(x), y)[0], alphas, create_graph=True)
    start = time.perf_counter()
    for _ in range(10):  # what each power-iteration step costs: one backward through the gradient's graph
        torch.autograd.grad(grads, alphas, grad_outputs=[torch.ones_like(a) for a in alphas], retain_graph=True)
    ten_hvp = time.perf_counter() - start

    step_s = statistics.median(step_times)
    steps_per_epoch = -(-25_000 // args.batch)  # DARTS' CIFAR-10 weight split at this batch size
    print(
        json.dumps(
            {
                "device": str(device),
                "threads": torch.get_num_threads(),
                "batch": args.batch,
                "step_s": round(step_s, 3),
                "eigenvalue_s": round(eigen_time, 2),
                "eigenvalue": eigenvalue,
                "ten_hvp_s": round(ten_hvp, 2),
                "epoch_share": round(eigen_time / (steps_per_epoch * step_s), 4),
                "peak_rss_mb_steps": round(peak_steps_mb),
                "peak_rss_mb_eigenvalue": round(peak_eigen_mb),
                "machine": platform.processor() or platform.machine(),
                "load": os.getloadavg()[0],
            }
        )
    )


if __name__ == "__main__":
    main()
