#!/usr/bin/env python
"""ENAS speed: one shared-weight training step on a freshly sampled child (controller sample + set_arc +
forward/backward/SGD) and one REINFORCE controller update, on the paper-size micro supernet.

    python scripts/bench_enas.py                       # ENAS micro search size: 8 cells, 20 ch, 5 nodes, batch 160
    python scripts/bench_enas.py --batch 32 --steps 5  # a smaller CPU setting
    python scripts/bench_enas.py --device cuda         # on a GPU (bf16 autocast + channels_last as in the trainer)
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from archsearch.spaces.enas_spaces import MicroSpace
from archsearch.spaces.enas_supernet import build_supernet
from archsearch.strategies.enas.controller import Controller, ControllerConfig
from archsearch.strategies.enas.reinforce import ReinforceTrainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=160)
    parser.add_argument("--cells", type=int, default=8)
    parser.add_argument("--channels", type=int, default=20)
    parser.add_argument("--nodes", type=int, default=5)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--channels-last", action="store_true", help="channels_last on CPU too (always on CUDA)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    torch.manual_seed(0)
    space = MicroSpace(n_nodes=args.nodes)
    conf = dict(
        n_cells=args.cells,
        init_channels=args.channels,
        n_nodes=args.nodes,
        stem_multiplier=3,
        n_reductions=2,
        aux_weight=0.0,
        affine=True,
    )
    model = build_supernet(space, conf, dict(channels=3, n_classes=10)).to(device)
    channels_last = cuda or args.channels_last
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    controller = Controller(space.token_spec(), ControllerConfig.enas("micro"))
    reinforce = ReinforceTrainer(controller)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-4)
    x = torch.randn(args.batch, 3, args.image_size, args.image_size, device=device)
    y = torch.randint(0, 10, (args.batch,), device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    def shared_step() -> None:
        model.set_arc(controller.sample_arc())
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
            loss = F.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()

    @torch.no_grad()
    def reward(arc: list[int]) -> float:
        model.set_arc(arc)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
            return (model(x).argmax(1) == y).float().mean().item()

    def timed(fn, n: int) -> list[float]:
        times = []
        for _ in range(n):
            sync()
            t = time.perf_counter()
            fn()
            sync()
            times.append(time.perf_counter() - t)
        return times

    timed(shared_step, args.warmup)
    step_times = timed(shared_step, args.steps)
    ctrl_times = timed(lambda: reinforce.step(reward, 10), max(1, args.steps // 2))
    sample_times = timed(controller.sample_arc, 20)
    med = statistics.median(step_times)
    print(
        "| device | batch | cells/channels/nodes | shared-weight step (s) | images/s "
        "| controller update, 10 children (s) | sample arc (ms) |"
    )
    print("|---|---:|---|---:|---:|---:|---:|")
    print(
        f"| {args.device} | {args.batch} | {args.cells}/{args.channels}/{args.nodes} | {med:.3f} "
        f"| {args.batch / med:.0f} "
        f"| {statistics.median(ctrl_times):.3f} | {1000 * statistics.median(sample_times):.1f} |"
    )


if __name__ == "__main__":
    main()
