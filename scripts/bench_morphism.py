"""Benchmark: how long the network-morphism optimizer takes to propose the next child.

For each size N it registers N finished trials (real graphs: NNI's default seed CNN and a random tree of
its morphism children, with a synthetic accuracy-like metric), then times ``strategy.propose()`` (Bayesian
annealing over morphism children + replaying the winner on its father) a few times and prints a markdown
table of the median. NNI's tuner takes 20-90 s per proposal on a 2-core machine.

    python scripts/bench_morphism.py --sizes 10 50 200 --repeats 5
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import time

import numpy as np
import torch

from archsearch.strategies.morphism import Graph, MorphismSearchStrategy, transform


def synthetic_metric(graph: Graph, rng: np.random.Generator) -> float:
    """Accuracy-like: grows with log(params) and depth, saturates, plus noise; only its shape matters."""
    depth = len(graph.get_main_chain())
    value = 0.35 + 0.04 * math.log(graph.size()) + 0.004 * depth + rng.normal(0.0, 0.01)
    return float(min(max(value, 0.0), 0.99))


def observed_trials(strategy: MorphismSearchStrategy, n: int, rng: np.random.Generator) -> list[tuple[Graph, int]]:
    """A random tree of distinct morphism children rooted at the seed network."""
    trials = [(strategy.seed_graph(), -1)]
    seen = {trials[0][0].extract_descriptor().key}
    while len(trials) < n:
        father = int(rng.integers(len(trials)))
        for child in transform(trials[father][0], strategy.limits, rng):
            key = child.extract_descriptor().key
            if key not in seen:
                seen.add(key)
                trials.append((child, father))
                break
    return trials


def bench_size(n: int, repeats: int, seed: int, model_width: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    strategy = MorphismSearchStrategy(n_output_node=10, input_shape=(32, 32, 3), model_width=model_width, seed=seed)
    began = time.perf_counter()
    for trial_id, (graph, father_id) in enumerate(observed_trials(strategy, n, rng)):
        strategy.restore(trial_id, graph, father_id, synthetic_metric(graph, rng))
    setup_s = time.perf_counter() - began
    times, scored = [], []
    for _ in range(repeats):
        began = time.perf_counter()
        trial_id, graph, _ = strategy.propose()
        times.append(time.perf_counter() - began)
        scored.append(strategy.optimizer.last_n_scored)
        # Report it, so the next repeat sees the usual state (n grows by one per repeat).
        strategy.report(trial_id, synthetic_metric(graph, rng))
    return {
        "median": statistics.median(times),
        "min": min(times),
        "max": max(times),
        "scored": statistics.median(scored),
        "setup": setup_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 50, 200], help="observed trials")
    parser.add_argument("--repeats", type=int, default=5, help="proposals timed per size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model-width", type=int, default=64, help="seed CNN width (NNI default 64)")
    args = parser.parse_args()
    torch.set_num_threads(1)  # the optimizer is numpy/scipy; keep timings comparable across machines
    print(
        f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}, "
        f"numpy {np.__version__}"
    )
    print()
    print("| observed trials | propose median (s) | min (s) | max (s) | children scored | setup (s) |")
    print("|---:|---:|---:|---:|---:|---:|")
    for n in args.sizes:
        r = bench_size(n, args.repeats, args.seed, args.model_width)
        print(
            f"| {n} | {r['median']:.3f} | {r['min']:.3f} | {r['max']:.3f} | {r['scored']:.0f} | {r['setup']:.1f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
