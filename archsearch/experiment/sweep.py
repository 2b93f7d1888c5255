"""Sweeps of whole runs: `archsearch --algos a,b [--datasets x,y] --common.seeds [0,1,2]`.

Every (algorithm, dataset, seed) is one run, with `--common.seed` set to that seed and its folder named
`<exp-prefix>_seed<N>_<dataset>_<mode>` (an explicit common.experiment_name gets `_seed<N>`), so seeds never
share a folder. With the local executor the runs go one after another in this process, as `--algos a,b` always
did; with `--common.executor ray` each run is one Ray task on the RayExecutor (common.ray.num_cpus and
num_gpus per run, max_concurrent runs at once, max_retries), whose trials run inside it with the local
executor. A run writes its folder itself, where it runs: on one machine that is the logdir; on a cluster the
logdir must be a shared file system (NFS and the like), which the driver checks it can see once a run ends.

A run that fails is reported on its own and the sweep goes on; the exit status is that of the worst run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from archsearch.common.errors import UserError
from archsearch.config import parse_override_value
from archsearch.config.schema import SEED, SEED_MAX
from archsearch.experiment.run import RunOptions, resolve_config, run_experiment
from archsearch.search.executors import make_executor
from archsearch.search.trial_loop import ERROR_KEY, Trial, TrialLog

SEEDS_OPTION = "common.seeds"
SEED_OPTION = "common.seed"


class SweepFailed(Exception):
    """Some runs of a sweep on Ray failed (each was reported as it ended); the CLI exits with status 1."""


@dataclass(frozen=True)
class Job:
    algo: str
    dataset: str | None
    seed: int | None  # None: the config's common.seed (no --common.seeds)


def split_seeds(overrides: Sequence[tuple[str, str]]) -> tuple[list[int] | None, list[tuple[str, str]]]:
    """`--common.seeds [0,1,2]` out of the overrides: (the seeds or None, the other overrides)."""
    seeds, rest = None, []
    for key, value in overrides:
        if key != SEEDS_OPTION:
            rest.append((key, value))
            continue
        if seeds is not None:
            raise UserError(f"--{SEEDS_OPTION} is given twice; give every seed in one list, e.g. [0,1,2]")
        parsed = parse_override_value(value, key)
        if isinstance(parsed, int) and not isinstance(parsed, bool):
            parsed = [parsed]
        if not (isinstance(parsed, list) and parsed and all(SEED.check(s)[0] for s in parsed)):
            raise UserError(
                f"--{SEEDS_OPTION} {value[:60]!r}: give a list of seeds (integers from 0 to {SEED_MAX}), e.g. [0,1,2]"
            )
        if len(set(parsed)) != len(parsed):
            raise UserError(f"--{SEEDS_OPTION} {value[:60]!r} repeats a seed; each seed is one run")
        seeds = parsed
    if seeds is not None and any(key == SEED_OPTION for key, _ in rest):
        raise UserError(
            f"--{SEEDS_OPTION} and --{SEED_OPTION} conflict: a seeds sweep sets each run's seed; "
            f"drop --{SEED_OPTION}, or put its seed into the --{SEEDS_OPTION} list"
        )
    return seeds, rest


def job_arguments(
    job: Job, options: RunOptions, overrides: Sequence[tuple[str, str]]
) -> tuple[RunOptions, list[tuple[str, str]]]:
    """The run options and overrides of one job of a sweep."""
    if job.seed is None:
        return options, list(overrides)
    suffix = f"_seed{job.seed}"
    named = [(k, v + suffix if k == "common.experiment_name" and v != "null" else v) for k, v in overrides]
    return dataclasses.replace(options, exp_prefix=options.exp_prefix + suffix), [
        *named,
        ("common.seed", str(job.seed)),
    ]


@dataclass
class RunWork:
    """One whole run in a Ray worker; its trials run there with the local executor (no Ray inside Ray)."""

    options: RunOptions
    overrides: list[tuple[str, str]]

    def __call__(self, trial: Trial, payload: Any, log: TrialLog) -> tuple[dict[str, Any], dict[str, Any]]:
        job = Job(**trial.arch)
        options, overrides = job_arguments(job, self.options, self.overrides)
        summary = run_experiment(job.algo, job.dataset, options, [*overrides, ("common.executor", "local")])
        return {"summary": summary}, {}


class SweepRuns:
    """The Shippable evaluator of a sweep's runs (archsearch.search.trial_loop.Shippable)."""

    def __init__(self, options: RunOptions, overrides: Sequence[tuple[str, str]]) -> None:
        self._work = RunWork(options, list(overrides))

    def work(self) -> RunWork:
        return self._work

    def payload(self, trial: Trial) -> None:
        return None

    def receive(self, trial: Trial, metrics: dict[str, Any], artifacts: dict[str, Any]) -> dict[str, Any]:
        out = Path(metrics["summary"]["output_dir"])
        if not (out / "summary.yaml").exists():
            raise UserError(
                f"run {trial.arch} finished, but its folder {out} is not visible here: on a cluster, "
                "--common.logdir must be a file system every node shares"
            )
        return metrics


def run_jobs(
    jobs: Sequence[Job],
    options: RunOptions,
    overrides: Sequence[tuple[str, str]],
    report: Callable[[Job, dict[str, Any] | None, str | None], None],
) -> None:
    """Run every job, calling `report(job, summary, None)` or `report(job, None, error)` as each ends."""
    conf = resolve_config(jobs[0].algo, jobs[0].dataset, options, list(overrides))
    if conf["common"]["executor"] != "ray" or options.dry_run or len(jobs) == 1:
        for job in jobs:  # one after another in this process, each with its own trials' executor
            job_options, job_overrides = job_arguments(job, options, overrides)
            report(job, run_experiment(job.algo, job.dataset, job_options, job_overrides), None)
        return
    log = print
    executor = make_executor(conf["common"], log)
    evaluator = SweepRuns(options, overrides)
    waiting = list(enumerate(jobs))
    try:
        log(f"[sweep] {len(jobs)} runs on Ray, {executor.max_concurrent} at once")
        while waiting or executor.pending():
            while waiting and executor.pending() < executor.max_concurrent:
                index, job = waiting.pop(0)
                executor.submit(Trial(index, dataclasses.asdict(job), job.seed or 0), evaluator)
            trial, metrics, _ = executor.next_result()
            job = jobs[trial.index]
            if ERROR_KEY in metrics:
                report(job, None, f"{metrics[ERROR_KEY]} (after {metrics['attempts']} attempts)")
            else:
                report(job, metrics["summary"], None)
    finally:
        executor.close()
