"""Black-box search strategies on NAS-Bench-201 in tabular mode: R seeds each, Q queries each; mean +- std of
the best-found cell's benchmark accuracy against the number of queries (markdown table and PNG curve).

    python scripts/bench_search.py                                  # 100 seeds x 150 queries, random and rea
    python scripts/bench_search.py --strategies random,rea,naswot-random,naswot-rea --naswot-seeds 20

A query is one table lookup (`evaluate_by table`), run through the library's own pieces: the TrialLoop (with
an in-memory index), the `table` evaluator, random search's and REA's `propose`, per-trial seeds from the
run seed, exactly as `--algos random|rea --nas.search.evaluate_by table` runs them.

`naswot-random` is random search whose first proposals are pre-screened by NASWOT: per seed it draws a
pool of --pool distinct cells, scores each at initialization on one batch of real CIFAR-10 images (--data;
a screened cell costs no query), queries them in decreasing score order, then goes on with random draws.
`naswot-rea` is REA whose initial population is the best P cells of that pool by score, queried in score
order (the pool must hold at least P cells).
`bananas` is BANANAS with the shipped settings (confs/algos/bananas.yaml: 10 random, then batches of 10 from 100
mutation candidates ranked by Thompson sampling from 5 MLPs on the path encoding); `bananas-naswot` adds each
cell's NASWOT score (the screen's, free: no query) to the predictor's inputs (`proxy_features: [naswot]`);
`bananas-adjacency` uses the adjacency encoding instead of the path encoding; `-kN` evaluates N trials per fit
instead of 10, `-mean` ranks by the ensemble's mean instead of Thompson sampling (e.g. `bananas-naswot-k5`).
`ensemble-random`, `ensemble-rea` and `ensemble-bananas` are proxy-ensemble-first search: per seed a pool of
--pool cells is drawn from the cells scored by scripts/bench_proxies.py (--proxy-cache: every proxy at the
paper's size, C=16, N=5, on one batch of 128 real CIFAR-10 images; no query spent), ranked by the shipped
ensemble (nas.search.naswot.ensemble: its default members, log-rank aggregation over the pool), and queried
best first: all of it (`ensemble-random`, then random draws), REA's initial population (`ensemble-rea`), or
BANANAS' num_init first cells instead of random ones (`ensemble-bananas`: `nas.search.bananas.screen_pool`,
the library's Planner with this cache as its screen; then BANANAS as shipped). The
pools come from the cache's cells (a seeded uniform sample of the table), not from all 15,625, so pools of
different seeds overlap.
Scoring is the slow part on a CPU, so it uses a small network (--score-channels, --score-cells: C=8, N=1 by
default, not the paper's C=16, N=5) and fewer seeds (--naswot-seeds); the score of a cell is computed once
and reused by every seed (its initial weights are seeded by the cell's benchmark index).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import stats

from archsearch.search.benchmark_table import load_benchmark_table
from archsearch.search.objectives import Goals, Objective
from archsearch.search.trial_eval import TableEvaluator
from archsearch.search.trial_loop import Budget, TrialLoop
from archsearch.spaces.nasbench201 import NasBench201Space, arch_to_index
from archsearch.strategies.bananas.strategy import Planner, Settings
from archsearch.strategies.naswot.ensemble import aggregate
from archsearch.strategies.naswot.sampling import score_candidates
from archsearch.strategies.naswot.strategy import DEFAULT_MEMBERS
from archsearch.strategies.random.strategy import sample_untried
from archsearch.strategies.rea.strategy import evolve

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_naswot import DEFAULT_DATA, DEFAULT_TABLE, load_batch  # noqa: E402

OBJECTIVE = "benchmark_top1"
DOCS = Path(__file__).resolve().parents[1] / "docs"


def nb201_space(channels: int, cells: int) -> NasBench201Space:
    model_desc = {"init_channels": channels, "n_cells_per_stage": cells, "affine": True}
    return NasBench201Space({}, model_desc, {"channels": 3, "n_classes": 10})


class NaswotScreen:
    """NASWOT scores of cells, computed on first use and kept for every later seed."""

    def __init__(self, space: NasBench201Space, batch: tuple[torch.Tensor, torch.Tensor]) -> None:
        self.space, self.batch, self.scores = space, batch, {}

    def score(self, arch: str) -> float:
        if arch not in self.scores:
            seed = arch_to_index(arch)  # the same initial weights whichever search asks
            [self.scores[arch]] = score_candidates([arch], self.space.build, self.batch, "naswot", "cpu", seed)
        return self.scores[arch]


class EnsembleScreen:
    """Raw proxy scores of the cells in a bench_proxies.py cache; a pool's ensemble ranking over that pool."""

    def __init__(self, path: Path, members: tuple[str, ...] = tuple(DEFAULT_MEMBERS)) -> None:
        lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        self.settings = next((r["settings"] for r in lines if "settings" in r), {})
        self.scores = {r["arch"]: r["scores"] for r in lines if "arch" in r}
        self.members = members
        if not self.scores:
            raise SystemExit(f"error: {path} holds no scored cell (run scripts/bench_proxies.py --cache {path})")

    def ranked_pool(self, rng: random.Random, size: int) -> list[str]:
        cells = sorted(self.scores)
        pool = rng.sample(cells, min(size, len(cells)))
        score = aggregate({m: [self.scores[a][m] for a in pool] for m in self.members})
        return [pool[i] for i in sorted(range(len(pool)), key=lambda i: (-score[i], i))]


def proposer(strategy: str, space: NasBench201Space, run_seed: int, args, screen: NaswotScreen | None,
             ensemble: EnsembleScreen | None = None):  # fmt: skip
    if strategy == "random":
        return lambda index, rng, history: sample_untried(space, rng, history)
    if strategy == "rea":
        return lambda index, rng, history: evolve(space, rng, history, OBJECTIVE, args.population, args.sample)
    if strategy.startswith("ensemble-"):
        assert ensemble is not None
        if strategy == "ensemble-bananas":  # the library's own screened start (nas.search.bananas.screen_pool)
            goals = Goals((Objective(OBJECTIVE, "max"),), legacy=True)
            settings = Settings(screen_pool=args.pool)
            pool = args.pool
            return Planner(space, goals, settings, run_seed, screen=lambda rng: ensemble.ranked_pool(rng, pool)).propose
        ranked = ensemble.ranked_pool(random.Random(run_seed), args.pool)
        first = args.population if strategy == "ensemble-rea" else len(ranked)
        follow = proposer("rea" if strategy == "ensemble-rea" else "random", space, run_seed, args, screen)
        first = min(first, len(ranked))
        return lambda index, rng, history: ranked[index] if index < first else follow(index, rng, history)
    if strategy.startswith("bananas"):
        goals = Goals((Objective(OBJECTIVE, "max"),), legacy=True)
        variant = strategy.split("-")[1:]  # e.g. bananas-naswot-k5: NASWOT features, 5 trials per fit
        k = next((int(v[1:]) for v in variant if v[:1] == "k" and v[1:].isdigit()), Settings.k)
        settings = Settings(
            k=k,
            encoding="adjacency" if "adjacency" in variant else "path",
            acquisition="mean" if "mean" in variant else "its",
            proxy_features=("naswot",) if "naswot" in variant else (),
        )
        features = (lambda arch, names: {"naswot": screen.score(arch)}) if "naswot" in variant else None
        return Planner(space, goals, settings, run_seed, features=features).propose
    # naswot-*: the pool is drawn from the run seed alone, ranked by score, queried best first
    pool: list[str] = []
    pool_rng = random.Random(run_seed)
    while len(pool) < args.pool:
        pool.append(sample_untried(space, pool_rng, [{"arch": a} for a in pool]))
    ranked = sorted(pool, key=lambda a: -screen.score(a))

    def propose(index: int, rng: random.Random, history: list[dict[str, Any]]) -> Any:
        if strategy == "naswot-rea":  # REA whose initial population is the pool's best P by score
            if index < args.population:
                return ranked[index]
            return evolve(space, rng, history, OBJECTIVE, args.population, args.sample)
        return ranked[index] if index < len(ranked) else sample_untried(space, rng, history)

    return propose


def run(strategy: str, seeds: int, args, table_conf, space, screen, ensemble=None) -> np.ndarray:
    """(seeds, queries): the best benchmark accuracy found after each query, per seed."""
    evaluate = TableEvaluator(None, space, table_conf)
    curves = []
    for seed in range(seeds):
        loop = TrialLoop(None, seed, Budget(args.queries), objective=OBJECTIVE, log=lambda _: None)
        results = loop.run(proposer(strategy, space, seed, args, screen, ensemble), evaluate)
        curves.append([r["best_so_far"] for r in results.records])
    return 100 * np.array(curves)


def plot(curves: dict[str, np.ndarray], best: float, path: Path, title: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for i, (name, c) in enumerate(curves.items()):
        q = np.arange(1, c.shape[1] + 1)
        mean, std = c.mean(0), c.std(0)
        # dashed every other line: REA shares random search's first P queries (same seeds), so they overlap
        ax.plot(q, mean, ls="--" if i % 2 else "-", label=f"{name} ({c.shape[0]} seeds)")
        ax.fill_between(q, mean - std, mean + std, alpha=0.2)
    ax.axhline(best, color="gray", ls="--", lw=1, label=f"best in table ({best:.2f})")
    ax.set_xlabel("queries (table lookups)")
    ax.set_ylabel("best-found test accuracy (%)")
    ax.set_ylim(max(85.0, min(c.mean(0)[4] for c in curves.values()) - 1), best + 0.5)
    ax.set_title(title, fontsize=9)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", type=Path, default=DEFAULT_TABLE)
    parser.add_argument("--strategies", default="random,rea")
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--queries", type=int, default=150)
    parser.add_argument("--population", type=int, default=50, help="REA population P")
    parser.add_argument("--sample", type=int, default=10, help="REA tournament size S")
    parser.add_argument("--naswot-seeds", type=int, default=20)
    parser.add_argument("--pool", type=int, default=100, help="naswot-*: cells screened per seed (>= P)")
    parser.add_argument("--proxy-cache", type=Path, default=None, help="ensemble-*: a bench_proxies.py --cache file")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--score-channels", type=int, default=8)
    parser.add_argument("--score-cells", type=int, default=1)
    parser.add_argument("--at", default="1,10,25,50,100,150", help="query counts reported in the table")
    parser.add_argument("--png", type=Path, default=DOCS / "search_benchmark.png")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.pool < args.population:
        parser.error(f"--pool {args.pool} must hold REA's initial population ({args.population})")

    torch.set_num_threads(1)
    table_conf = {"benchmark": str(args.table), "benchmark_columns": ["architecture", "accuracy"]}
    table = load_benchmark_table(args.table)
    best = 100 * table.best()[1]
    space = nb201_space(args.score_channels, args.score_cells)
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    screen = None
    if any(s.startswith("naswot-") or "-naswot" in s for s in strategies):
        x, y, note = load_batch(args.data, args.batch_size, seed=0)
        screen = NaswotScreen(space, (x, y))
        print(f"naswot screen: {note}, NAS-Bench-201 C={args.score_channels} N={args.score_cells}", file=sys.stderr)
    ensemble = None
    if any(s.startswith("ensemble-") for s in strategies):
        if args.proxy_cache is None:
            parser.error("ensemble-* strategies need --proxy-cache FILE (from scripts/bench_proxies.py --cache FILE)")
        ensemble = EnsembleScreen(args.proxy_cache)
        if len(ensemble.scores) < args.pool:
            parser.error(f"--pool {args.pool} is more than the {len(ensemble.scores)} cells in {args.proxy_cache}")
        print(f"ensemble screen: {len(ensemble.scores)} cells, {ensemble.settings}, members {ensemble.members}",
              file=sys.stderr)  # fmt: skip
    curves, seconds = {}, {}
    for name in strategies:
        t0 = time.perf_counter()
        n_seeds = args.naswot_seeds if "naswot" in name else args.seeds
        curves[name] = run(name, n_seeds, args, table_conf, space, screen, ensemble)
        seconds[name] = time.perf_counter() - t0
        print(f"{name}: {seconds[name]:.1f} s", file=sys.stderr, flush=True)

    at = [q for q in map(int, args.at.split(",")) if q <= args.queries]
    print(f"NAS-Bench-201 ({args.table.name}, {len(table):,} cells, best {best:.2f}); mean +- std over seeds of the")
    print("best-found cell's test accuracy (%) after N queries\n")
    print("| strategy | seeds | " + " | ".join(f"{q} queries" for q in at) + " | seconds |")
    print("|---|---:|" + "---:|" * (len(at) + 1))
    for name, c in curves.items():
        cells = [f"{c[:, q - 1].mean():.2f} +- {c[:, q - 1].std():.2f}" for q in at]
        print(f"| {name} | {c.shape[0]} | " + " | ".join(cells) + f" | {seconds[name]:.1f} |")
    print("\n(seconds include NASWOT scoring where a cell is scored first; the variants share one score cache)")
    if screen is not None:
        scored = list(screen.scores)
        tau = stats.kendalltau([screen.scores[a] for a in scored], [table.get(a) for a in scored])
        print(f"\nnaswot screen: {len(scored)} cells scored; Kendall tau vs accuracy {tau.statistic:.3f}")
    title = f"NAS-Bench-201 tabular, {args.queries} queries; REA P={args.population} S={args.sample}"
    plot(curves, best, args.png, title)
    print(f"\ncurve: {args.png}")
    if args.json:
        out = {"args": vars(args), "seconds": seconds, "curves": {k: v.tolist() for k, v in curves.items()}}
        args.json.write_text(json.dumps(out, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
