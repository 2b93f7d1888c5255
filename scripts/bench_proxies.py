"""Benchmark every zero-cost proxy and proxy ensembles on NAS-Bench-201: Kendall tau and Spearman rho against
the table's CIFAR-10 accuracy over one seeded sample of cells, seconds per cell, beside the published figures;
and the NASWOT score's speed against a plain implementation.

    OMP_NUM_THREADS=1 python scripts/bench_proxies.py --n 1000 --cache /tmp/proxies.jsonl
    OMP_NUM_THREADS=1 python scripts/bench_proxies.py --n 20 --cache /tmp/p20.jsonl --time-cells 5 --speed-cells 3

Every cell's raw scores go to --cache (JSON lines, one per cell, appended as scored): a run that stops is
continued by running the same command, and ensembles are recomputed from the cache without rescoring
(--report-only). One batch of real CIFAR-10 images (--data, normalized as NAS-Bench-201) scores every cell;
each network is initialized from --seed (archsearch.strategies.naswot.sampling.measure_candidates).

All proxies of a cell are computed together (zero_cost.measure: shared forward/backward passes, plus synflow
and jacob_cov); "s / cell" of one proxy alone is timed on the first --time-cells cells.

Ensembles: AZ-NAS (its four proxies, log-rank), and a greedy forward selection of members that maximizes
Kendall tau on the first half of the sample (log-rank), reported on the second half, so the members are not
chosen on the cells they are judged on.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_naswot import DEFAULT_DATA, DEFAULT_TABLE, load_batch  # noqa: E402

from archsearch.search.benchmark_table import load_benchmark_table  # noqa: E402
from archsearch.strategies.naswot.ensemble import AZ_NAS_MEMBERS, aggregate  # noqa: E402
from archsearch.strategies.naswot.proxies import PROXIES, relu_by_class_name  # noqa: E402
from archsearch.strategies.naswot.sampling import (  # noqa: E402
    build_seeded,
    nb201_model_builder,
    sample_nb201,
)
from archsearch.strategies.naswot.strategy import DEFAULT_MEMBERS  # noqa: E402
from archsearch.strategies.naswot.zero_cost import measure, swap_regulariser  # noqa: E402

ALL = ["naswot", "naswot_relu", "synflow", "grad_norm", "snip", "jacob_cov", "zico", "meco", "meco_opt", "swap",
       *AZ_NAS_MEMBERS, "params", "macs"]  # fmt: skip
# Published rank correlations on NB201 CIFAR-10 (tau, rho); None where the source gives none.
PUBLISHED = {
    "naswot": (None, 0.77, "NAS-Bench-Suite-Zero (nwot)"),
    "jacob_cov": (None, 0.75, "NAS-Bench-Suite-Zero (jacov)"),
    "synflow": (None, 0.73, "NAS-Bench-Suite-Zero"),
    "params": (None, 0.72, "NAS-Bench-Suite-Zero"),
    "macs": (None, 0.69, "NAS-Bench-Suite-Zero (flops)"),
    "snip": (None, 0.58, "NAS-Bench-Suite-Zero"),
    "grad_norm": (None, 0.58, "NAS-Bench-Suite-Zero"),
    "zico": (0.589, None, "ZiCo, as tabulated by AZ-NAS"),
    "meco": (None, 0.89, "MeCo (NATS-TSS)"),
    "swap": (None, 0.90, "SWAP, regularised, CIFAR-100"),
    "ensemble AZ-NAS": (0.741, 0.913, "AZ-NAS"),
}


# ---- the plain NASWOT reference (what the speed figure is measured against) ---------------------


def plain_naswot(model: torch.nn.Module, x: torch.Tensor) -> float:
    """The straightforward implementation: a hook on every ReLU-named module, float64 codes, two matmuls per
    layer into a float64 kernel, slogdet."""
    n = x.shape[0]
    kernel = torch.zeros(n, n, dtype=torch.float64)

    def hook(module, inputs, output):
        c = (inputs[0].detach().reshape(n, -1) > 0).to(torch.float64)
        kernel.add_(c @ c.T + (1.0 - c) @ (1.0 - c).T)

    handles = [m.register_forward_hook(hook) for m in model.modules() if relu_by_class_name(m)]
    model.train()
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return float(torch.linalg.slogdet(kernel)[1])


# ---- cache ---------------------------------------------------------------------------------------


def read_cache(path: Path, settings: dict) -> dict[int, dict]:
    if not path.exists():
        return {}
    rows: dict[int, dict] = {}
    with path.open() as f:
        for i, line in enumerate(f):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                if i > 0:
                    continue  # a line cut by a kill: that cell is scored again
                raise
            if i == 0:
                if row.get("settings") != settings:
                    sys.exit(f"{path}: scored with other settings {row.get('settings')}; use another --cache")
                continue
            rows[row["index"]] = row
    return rows


def kendall_spearman(scores, accs) -> tuple[float, float]:
    s = np.asarray(scores, dtype=float)
    a = np.asarray(accs, dtype=float)
    # a failed score (NaN) ranks last, with -inf (ranks only: stats' rank correlations take -inf as lowest)
    s = stats.rankdata(np.where(np.isnan(s), -np.inf, s))
    return float(stats.kendalltau(s, a).statistic), float(stats.spearmanr(s, a).statistic)


def greedy_members(columns: dict[str, list[float]], accs: list[float], idx: np.ndarray, max_members: int) -> list:
    chosen: list[str] = []
    best_tau = -math.inf
    while len(chosen) < max_members:
        trial = {}
        for name in columns:
            if name in chosen:
                continue
            members = chosen + [name]
            agg = aggregate({m: [columns[m][i] for i in idx] for m in members}, "log_rank")
            trial[name] = kendall_spearman(agg, [accs[i] for i in idx])[0]
        if not trial:
            break
        name, tau = max(trial.items(), key=lambda kv: kv[1])
        if tau <= best_tau + 1e-4:
            break
        chosen.append(name)
        best_tau = tau
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="cells to sample and score")
    parser.add_argument("--seed", type=int, default=0, help="seeds the sample, the batch and the initial weights")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--table", type=Path, default=DEFAULT_TABLE)
    parser.add_argument("--cache", type=Path, required=True, help="JSON lines of per-cell raw scores (resumable)")
    parser.add_argument("--proxies", default=",".join(ALL))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--time-cells", type=int, default=0, help="time each proxy alone on this many cells")
    parser.add_argument("--speed-cells", type=int, default=0, help="NASWOT: ours vs the plain one on this many")
    parser.add_argument("--max-members", type=int, default=6)
    parser.add_argument("--report-only", action="store_true", help="no scoring: report what the cache holds")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    proxies = [p.strip() for p in args.proxies.split(",") if p.strip()]
    for name in proxies:
        PROXIES.get(name)
    x, y, data_note = load_batch(args.data, args.batch_size, args.seed)
    table = load_benchmark_table(args.table, ("architecture", "accuracy"))
    candidates = sample_nb201(args.n, np.random.default_rng(args.seed))
    build = nb201_model_builder(C=16, N=5, ch_in=3, n_classes=10)
    settings = {"seed": args.seed, "batch_size": args.batch_size, "data": data_note, "C": 16, "N": 5}
    cache = read_cache(args.cache, settings)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU thread(s); data: {data_note}; seed {args.seed}")
    print(f"{args.n} NAS-Bench-201 cells (C=16, N=5); {len(cache)} already in {args.cache}", flush=True)

    extra: dict = {}
    if args.speed_cells:
        extra["speed"] = speed(candidates[: args.speed_cells], build, x, args.seed)
    if args.time_cells:
        extra["alone"] = time_alone(candidates[: args.time_cells], build, x, y, proxies, args.seed)

    if not args.report_only:
        if not args.cache.exists():
            args.cache.parent.mkdir(parents=True, exist_ok=True)
            args.cache.write_text(json.dumps({"settings": settings}) + "\n")
        t_start = time.perf_counter()
        done = 0
        with args.cache.open("a") as f:
            for c in candidates:
                if c.index in cache:
                    continue
                t0 = time.perf_counter()
                model = build_seeded(build, c, args.seed, torch.device("cpu"))
                t1 = time.perf_counter()
                scores = measure(model, x, y, F.cross_entropy, proxies)
                t2 = time.perf_counter()
                del model
                row = {"index": c.index, "arch": c.name, "scores": scores, "build_s": t1 - t0, "score_s": t2 - t1}
                f.write(json.dumps(row) + "\n")
                f.flush()
                cache[c.index] = row
                done += 1
                if done % 10 == 0:
                    rate = (time.perf_counter() - t_start) / done
                    print(f"  {len(cache)}/{args.n} cells, {rate:.2f} s/cell", file=sys.stderr, flush=True)

    report(candidates, cache, table, proxies, args, extra)
    return 0


def speed(candidates, build, x, seed) -> dict:
    ours_t, plain_t, diffs = [], [], []
    naswot = PROXIES.get("naswot")
    for c in candidates:
        model = build_seeded(build, c, seed, torch.device("cpu"))
        naswot(model, x)  # warm-up
        t0 = time.perf_counter()
        a = naswot(model, x)
        t1 = time.perf_counter()
        b = plain_naswot(model, x)
        t2 = time.perf_counter()
        ours_t.append(t1 - t0)
        plain_t.append(t2 - t1)
        diffs.append(abs(a - b) / max(1.0, abs(b)))
    out = {"cells": len(candidates), "ours_s": float(np.mean(ours_t)), "plain_s": float(np.mean(plain_t)),
           "speedup": float(np.sum(plain_t) / np.sum(ours_t)), "max_rel_diff": float(max(diffs))}  # fmt: skip
    print(f"NASWOT score of one cell at batch {x.shape[0]}: ours {out['ours_s']:.3f} s, plain {out['plain_s']:.3f} s "
          f"({out['speedup']:.1f}x; same score to {out['max_rel_diff']:.1e})", flush=True)  # fmt: skip
    return out


def time_alone(candidates, build, x, y, proxies, seed) -> dict:
    out = {}
    models = [build_seeded(build, c, seed, torch.device("cpu")) for c in candidates]
    measure(models[0], x, y, F.cross_entropy, proxies)  # warm-up
    for name in proxies:
        t0 = time.perf_counter()
        for m in models:
            measure(m, x, y, F.cross_entropy, [name])
        out[name] = (time.perf_counter() - t0) / len(models)
    groups = {"all together": proxies, "AZ-NAS ensemble together": list(AZ_NAS_MEMBERS),
              "default ensemble together": list(DEFAULT_MEMBERS)}  # fmt: skip
    for label, names in groups.items():
        t0 = time.perf_counter()
        for m in models:
            measure(m, x, y, F.cross_entropy, names)
        out[label] = (time.perf_counter() - t0) / len(models)
    return out


def report(candidates, cache, table, proxies, args, extra) -> None:
    rows = [cache[c.index] for c in candidates if c.index in cache]
    accs = [table.get(r["arch"]) for r in rows]
    keep = [i for i, a in enumerate(accs) if a is not None]
    rows, accs = [rows[i] for i in keep], [accs[i] for i in keep]
    n = len(rows)
    if n < 4:
        print("fewer than 4 scored cells: nothing to report")
        return
    columns = {p: [float(r["scores"][p]) for r in rows] for p in proxies if all(p in r["scores"] for r in rows)}
    per_cell = float(np.mean([r["score_s"] for r in rows]))
    build_s = float(np.mean([r["build_s"] for r in rows]))
    alone = extra.get("alone", {})
    if "swap" in columns and "params" in columns:
        # SWAP's regulariser from the cached raw count and parameters (no rescoring); mu and sigma in thousands
        # of parameters as their code. Their per-space values are not in their code: two settings of ours.
        p_k = np.asarray(columns["params"]) / 1e3
        for label, mu, sigma in (("mean", p_k.mean(), p_k.var()), ("max", p_k.max(), p_k.var())):
            factors = [swap_regulariser(p, mu, sigma) for p in columns["params"]]
            columns[f"swap_reg (mu = {label} of P, sigma = var of P)"] = list(np.asarray(columns["swap"]) * factors)
    results = []
    for name, values in columns.items():
        tau, rho = kendall_spearman(values, accs)
        results.append((name, tau, rho, alone.get(name)))
    half = np.arange(n // 2)
    rest = np.arange(n // 2, n)
    ensembles = {"ensemble AZ-NAS": list(AZ_NAS_MEMBERS)}
    base = {k: v for k, v in columns.items() if not k.startswith("swap_reg")}
    chosen = greedy_members(base, accs, half, args.max_members)
    ensembles[f"ensemble selected ({', '.join(chosen)})"] = chosen
    ensembles[f"ensemble default ({', '.join(DEFAULT_MEMBERS)})"] = list(DEFAULT_MEMBERS)
    ensembles["ensemble AZ-NAS + naswot"] = [*AZ_NAS_MEMBERS, "naswot"]
    ensembles["ensemble AZ-NAS + zico + naswot"] = [*AZ_NAS_MEMBERS, "zico", "naswot"]
    ensembles["ensemble AZ-NAS + meco_opt"] = [*AZ_NAS_MEMBERS, "meco_opt"]
    ensembles["ensemble meco_opt, az_trainability, synflow"] = ["meco_opt", "az_trainability", "synflow"]
    ensembles["ensemble meco_opt, swap, az_trainability, synflow"] = ["meco_opt", "swap", "az_trainability", "synflow"]
    ens_rows = []
    for label, members in ensembles.items():
        if not all(m in columns for m in members):
            continue
        for how in ("log_rank", "mean_rank"):
            agg = aggregate({m: columns[m] for m in members}, how)
            tau, rho = kendall_spearman(agg, accs)
            tau_b, rho_b = kendall_spearman(agg[rest], [accs[i] for i in rest])
            ens_rows.append((label, how, tau, rho, tau_b, rho_b))

    def fmt(v, spec=".3f"):
        return "-" if v is None else format(v, spec)

    print(f"\n{n} cells scored; all proxies of a cell together: {per_cell:.2f} s / cell (+ {build_s:.2f} s to build)")
    print("\n| proxy | Kendall tau | Spearman rho | s / cell alone | published tau | published rho | source |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for name, tau, rho, secs in results:
        ptau, prho, src = PUBLISHED.get(name, (None, None, ""))
        print(f"| {name} | {tau:.3f} | {rho:.3f} | {fmt(secs, '.2f')} | {fmt(ptau)} | {fmt(prho)} | {src} |")
    print(f"\n| ensemble | aggregate | tau (all {n}) | rho (all) | tau (2nd half, {len(rest)}) | rho (2nd half) |")
    print("|---|---|---:|---:|---:|---:|")
    for label, how, tau, rho, tau_b, rho_b in ens_rows:
        print(f"| {label} | {how} | {tau:.3f} | {rho:.3f} | {tau_b:.3f} | {rho_b:.3f} |")
    if alone:
        singles = {k: v for k, v in alone.items() if "together" not in k}
        print(f"\nall proxies together (shared passes): {alone['all together']:.2f} s / cell; "
              f"sum of the proxies alone: {sum(singles.values()):.2f} s")  # fmt: skip
        for label, members in (("AZ-NAS ensemble", AZ_NAS_MEMBERS), ("default ensemble", DEFAULT_MEMBERS)):
            top = max(members, key=lambda m: singles.get(m, 0.0))
            print(f"{label} together: {alone[label + ' together']:.2f} s / cell; its most expensive member alone "
                  f"({top}): {singles.get(top, math.nan):.2f} s")  # fmt: skip
    if args.json:
        record = {"n": n, "per_cell_s": per_cell, "build_s": build_s, "proxies": results, "ensembles": ens_rows,
                  "selected": chosen, **extra}  # fmt: skip
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record, indent=2, default=str))


if __name__ == "__main__":
    sys.exit(main())
