"""Parallel trials on Ray vs the local executor (docs/benchmarks.md, "Parallel trials on Ray").

1. The toy random search (`archsearch --algos random`, digits, 4 candidates, search only), once with the
   local executor and once with `--common.executor ray` (2 trials at once on a Ray started for the run):
   the CLI's wall time (process start, Ray start, workers' imports included) and the search's own time
   (summary.yaml wall_time_s).
2. The executor's overhead per trial, with trivial trials (a lookup returning at once) through the real
   TrialLoop: local vs Ray at 1 and 2 trials at once, and the cost of sending an artifact back (a trial
   returning 1 MiB of weights). Ray is started once for part 2 and its start-up is reported on its own.

    .venv/bin/python scripts/bench_ray.py [--trivial 400] [--skip-cli]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from archsearch.search.trial_loop import Budget, LocalExecutor, Trial, TrialLoop  # noqa: E402


@dataclass
class TrivialWork:
    """A trial that costs nothing (what is measured is the executor), returning `artifact_bytes` of weights."""

    artifact_bytes: int = 0

    def __call__(self, trial: Trial, payload: Any = None, log: Any = None) -> tuple[dict[str, Any], dict[str, Any]]:
        weights = torch.zeros(self.artifact_bytes // 4) if self.artifact_bytes else None
        return {"score": float(trial.arch)}, {"weights": weights}


class Trivial:
    """Its Shippable evaluator."""

    objective = "score"

    def __init__(self, artifact_bytes: int = 0) -> None:
        self._work = TrivialWork(artifact_bytes)

    def __call__(self, trial: Trial) -> dict[str, Any]:
        return self._work(trial)[0]

    def work(self) -> TrivialWork:
        return self._work

    def payload(self, trial: Trial) -> None:
        return None

    def receive(self, trial: Trial, metrics: dict[str, Any], artifacts: dict[str, Any]) -> dict[str, Any]:
        return metrics


def time_loop(executor: Any, n: int, artifact_bytes: int = 0) -> float:
    """Seconds per trial of n trivial trials through the TrialLoop (in-memory index)."""
    loop = TrialLoop(None, 0, Budget(n), objective="score", executor=executor, log=lambda _: None)
    start = time.perf_counter()
    results = loop.run(lambda i, rng, history: i, Trivial(artifact_bytes))
    assert len(results.records) == n
    return (time.perf_counter() - start) / n


def cli_run(executor: str, logdir: Path) -> dict[str, float]:
    args = ["--algos", "random", "--search-only", "--nas.search.random.n_candidates", "4"]
    args += ["--common.logdir", str(logdir)]
    args += ["--exp-prefix", f"bench_{executor}", "--common.num_threads", "1", "--common.executor", executor]
    if executor == "ray":
        args += ["--common.ray.local_cpus", "2", "--common.ray.dashboard", "false"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "main.py"), *args], capture_output=True, text=True,
                          env=env, cwd=REPO)  # fmt: skip
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{executor} run failed:\n{proc.stderr[-3000:]}")
    summary = yaml.safe_load((logdir / f"bench_{executor}_digits_toy" / "random" / "summary.yaml").read_text())
    trials = yaml.safe_load((logdir / f"bench_{executor}_digits_toy" / "random" / "search" / "trials.yaml").read_text())
    return {"cli_wall_s": wall, "run_wall_s": summary["wall_time_s"], "trial_s": sum(t["time_s"] for t in trials),
            "best": summary["search"]["best_val_top1"]}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trivial", type=int, default=400, help="trivial trials per measurement")
    parser.add_argument("--skip-cli", action="store_true", help="only the per-trial overhead")
    args = parser.parse_args()
    print(f"load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}, {os.cpu_count()} CPUs")

    if not args.skip_cli:
        with tempfile.TemporaryDirectory() as tmp:
            for executor in ("local", "ray"):
                r = cli_run(executor, Path(tmp))
                print(
                    f"toy random search, 4 candidates, {executor:5s}: CLI {r['cli_wall_s']:.1f} s, run (summary) "
                    f"{r['run_wall_s']:.1f} s, sum of trial times {r['trial_s']:.1f} s, best {r['best']:.4f}"
                )

    import ray

    from archsearch.search.ray_executor import RayExecutor

    n = args.trivial
    local = time_loop(LocalExecutor(), n)
    print(f"trivial trials, local executor: {local * 1e6:.0f} us per trial")
    start = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    print(f"ray.init (2 CPUs, no dashboard): {time.perf_counter() - start:.1f} s")
    try:
        for concurrent in (1, 2):
            executor = RayExecutor(max_concurrent=concurrent, log=lambda _: None)
            time_loop(executor, 8)  # warm: workers started and the work shipped
            per_trial = time_loop(executor, n)
            print(f"trivial trials, ray, {concurrent} at once: {per_trial * 1e3:.2f} ms per trial")
        executor = RayExecutor(max_concurrent=2, log=lambda _: None)
        time_loop(executor, 8, 1 << 20)
        with_artifact = time_loop(executor, n // 4, 1 << 20)
        print(f"trivial trials returning 1 MiB of weights, ray, 2 at once: {with_artifact * 1e3:.2f} ms per trial")
    finally:
        ray.shutdown()
    print(f"load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
