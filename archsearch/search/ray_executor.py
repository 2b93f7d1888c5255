"""`--common.executor ray`: the trial loop's trials as Ray tasks, several at once, on this machine or a cluster.

The driver (this process) keeps everything that must not be lost or duplicated: the strategy, the trial index,
the experiment folder. A worker gets the evaluator's `work()` (archsearch.search.trial_loop.Shippable) once per
search, through the object store (`ray.put`; a worker process deserializes it once and keeps it for every
later trial, so data it carries, like NASWOT's batch or a benchmark table, is neither pickled per trial nor
read twice; training data is read from the dataroot by each worker, once), and per trial the Trial (arch,
seed) and the evaluator's `payload`. It sends back the metrics, the artifacts (a morphism trial's trained
weights) and its log lines; the driver writes them into the experiment folder and the run's log.

Failures: a trial whose task raises, runs out of memory or loses its worker or node is resubmitted up to
`common.ray.max_retries` times (Ray's own retries are off, so every attempt is counted and logged here), then
handed back as failed (`{"error": ..., "attempts": n}`): the loop records it and goes on. A user error raised
in a trial (a config value no trial can work with) is not retried: it ends the search with its one line, as
it would in this process. Ctrl-C cancels (kills) the running tasks; the index keeps every finished trial.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import ray
import torch

from archsearch.common.checkpoint import KILL_AT_ENV, RAISE_AT_ENV, fault_point
from archsearch.common.errors import ConfigError, UserError
from archsearch.search.trial_loop import ERROR_KEY, EvaluateFn, Trial, TrialLog

CONNECT_S = 10.0  # how long a cluster's address may take to accept a connection
POLL_S = 1.0  # ray.wait's timeout: the driver wakes this often, so Ctrl-C is handled at once
FAULT_ENVS = (KILL_AT_ENV, RAISE_AT_ENV)  # test-only fault hooks, forwarded so they fire in workers too

# The worker side: the last shipped work, by object id. A worker process runs one search's trials at a time;
# keeping one entry bounds memory while a later search in the same worker replaces it.
_WORK_CACHE: dict[str, Any] = {}


def _run_trial(
    box: list, trial: Trial, payload: Any, num_threads: int | None, import_paths: list[str]
) -> tuple[dict, dict, list, float]:
    """One trial in a Ray worker: (metrics, artifacts, log calls, seconds). `box` holds the work's ObjectRef
    in a list, so Ray hands the reference over instead of fetching and deserializing it for every task.
    `import_paths` are the driver's: a user's model module found from the driver's folder is found here too
    (on another node, where the folder exists there)."""
    sys.path.extend(p for p in import_paths if p not in sys.path and os.path.isdir(p))
    [ref] = box
    key = ref.hex()
    if key not in _WORK_CACHE:
        _WORK_CACHE.clear()
        _WORK_CACHE[key] = ray.get(ref)
    if num_threads:  # the driver's common.num_threads: the same thread count gives the same float results
        torch.set_num_threads(num_threads)
    log = TrialLog()
    start = time.perf_counter()
    fault_point(f"trial:run:{trial.index}")
    metrics, artifacts = _WORK_CACHE[key](trial, payload, log)
    return metrics, artifacts, log.calls, time.perf_counter() - start


_remote_trial = ray.remote(_run_trial)


@dataclass
class _Running:
    trial: Trial
    evaluate: EvaluateFn
    payload: Any
    attempts: int = 0
    started: float = field(default_factory=time.perf_counter)
    errors: list[str] = field(default_factory=list)


def _error_text(err: BaseException) -> str:
    cause = err.cause if isinstance(err, ray.exceptions.RayTaskError) and err.cause is not None else err
    first = (str(cause).strip().splitlines() or [""])[0]
    return f"{type(cause).__name__}: {first}"[:300]


class RayExecutor:
    """Trials as Ray tasks, at most `max_concurrent` at once (None: as many as the cluster's resources fit)."""

    def __init__(
        self,
        address: str | None = None,
        num_cpus: float = 1,
        num_gpus: float = 0,
        max_concurrent: int | None = None,
        max_retries: int = 3,
        local_cpus: int | None = None,
        local_gpus: int | None = None,
        dashboard: bool = True,
        num_threads: int | None = None,
        log: Any = print,
    ) -> None:
        self.address, self.num_cpus, self.num_gpus = address, num_cpus, num_gpus
        self.max_retries, self.num_threads, self.log = max_retries, num_threads, log
        self._owned = False  # this executor started Ray (and shuts it down)
        self._start(local_cpus, local_gpus, dashboard)
        self.max_concurrent = self._capacity(max_concurrent)
        self._running: dict[ray.ObjectRef, _Running] = {}  # in submission order
        self._shipped: tuple[Any, ray.ObjectRef] | None = None
        # the fault hooks that name a point inside a trial ("trial:run:N", a trial trainer's "trial N:epoch:E")
        self._env = {k: v for k in FAULT_ENVS if (v := os.environ.get(k, "")).startswith(("trial:run:", "trial "))}
        self._info(
            f"[ray] {self.max_concurrent} at once, {num_cpus:g} CPU"
            + (f" + {num_gpus:g} GPU" if num_gpus else "")
            + f" each, up to {max_retries} retries"
        )

    @classmethod
    def from_conf(cls, conf_ray: Mapping[str, Any], num_threads: int | None = None, log: Any = print) -> RayExecutor:
        keys = ("address", "num_cpus", "num_gpus", "max_concurrent", "max_retries", "local_cpus", "local_gpus")
        return cls(**{k: conf_ray[k] for k in keys}, dashboard=conf_ray["dashboard"], num_threads=num_threads, log=log)

    # ---- start-up ----------------------------------------------------------------------------------
    def _info(self, message: str) -> None:
        (self.log.info if hasattr(self.log, "info") else self.log)(message)

    def _warn(self, message: str) -> None:
        if hasattr(self.log, "warning"):
            self.log.warning(message)
        else:
            self.log(f"WARNING: {message}")

    def _start(self, local_cpus: int | None, local_gpus: int | None, dashboard: bool) -> None:
        if ray.is_initialized():  # a caller (a test, a notebook, a sweep) started Ray: use it as it is
            return
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage reports unless the user opts in
        options: dict[str, Any] = {"log_to_driver": False, "configure_logging": False}
        if self.address is None:
            options.update(num_cpus=local_cpus, num_gpus=local_gpus, include_dashboard=None if dashboard else False)
        elif local_cpus is not None or local_gpus is not None:
            self._warn("common.ray.local_cpus/local_gpus are ignored: Ray runs elsewhere (common.ray.address)")
        try:
            self._reachable()
            context = ray.init(address=self.address, **options)
        except (ConnectionError, RuntimeError, ValueError, OSError) as err:
            first = (str(err).strip().splitlines() or [""])[0]
            raise UserError(
                f"common.ray.address {self.address!r}: cannot reach a Ray cluster ({first}); start one with "
                "`ray start --head` or use --common.ray.address null (Ray on this machine)"
            ) from None
        self._owned = True
        where = "started on this machine" if self.address is None else f"joined at {self.address}"
        self._info(f"[ray] {ray.__version__} {where}: {self._resources_text()}")
        url = getattr(context, "dashboard_url", None)
        if url:
            self._info(f"[ray] dashboard: http://{url}")

    def _reachable(self) -> None:
        """A HOST:PORT address must accept a connection within CONNECT_S: Ray itself retries for minutes."""
        if self.address is None or self.address == "auto":
            return
        host, _, port = self.address.removeprefix("ray://").rpartition(":")
        with socket.create_connection((host, int(port)), timeout=CONNECT_S):
            pass

    def _resources_text(self) -> str:
        total = ray.cluster_resources()
        gpus = f", {total.get('GPU', 0):g} GPUs" if total.get("GPU") else ""
        return f"{len(ray.nodes())} node(s), {total.get('CPU', 0):g} CPUs{gpus}"

    def _capacity(self, max_concurrent: int | None) -> int:
        total = ray.cluster_resources()
        cpus, gpus = total.get("CPU", 0.0), total.get("GPU", 0.0)
        if self.num_cpus > cpus:
            raise ConfigError(
                f"common.ray.num_cpus {self.num_cpus:g} per trial, but the Ray cluster has {cpus:g} CPUs; lower it"
            )
        if self.num_gpus > gpus:
            raise ConfigError(
                f"common.ray.num_gpus {self.num_gpus:g} per trial, but the Ray cluster has {gpus:g} GPUs; "
                "lower it (0: CPU trials) or join a cluster with GPUs (--common.ray.address)"
            )
        fit = math.floor(cpus / self.num_cpus + 1e-9)
        if self.num_gpus:
            fit = min(fit, math.floor(gpus / self.num_gpus + 1e-9))
        return max_concurrent or max(fit, 1)

    # ---- the Executor protocol ---------------------------------------------------------------------
    def submit(self, trial: Trial, evaluate: EvaluateFn) -> None:
        for method in ("work", "payload", "receive"):
            if not hasattr(evaluate, method):
                raise ConfigError(
                    f"--common.executor ray cannot run these trials: {type(evaluate).__name__} has no {method}() "
                    "(archsearch.search.trial_loop.Shippable); use --common.executor local"
                )
        self._launch(_Running(trial, evaluate, evaluate.payload(trial)))  # type: ignore[attr-defined]

    def _work_ref(self, evaluate: Any) -> ray.ObjectRef:
        if self._shipped is None or self._shipped[0] is not evaluate:
            self._shipped = (evaluate, ray.put(evaluate.work()))
        return self._shipped[1]

    def _launch(self, running: _Running) -> None:
        options: dict[str, Any] = {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus, "max_retries": 0}
        if self._env:
            options["runtime_env"] = {"env_vars": self._env}
        task = _remote_trial.options(**options)
        box = [self._work_ref(running.evaluate)]
        ref = task.remote(box, running.trial, running.payload, self.num_threads, self._import_paths())
        running.attempts += 1
        self._running[ref] = running

    @staticmethod
    def _import_paths() -> list[str]:
        return [os.getcwd(), *(p for p in sys.path if p and os.path.isdir(p))]

    def next_result(self) -> tuple[Trial, dict[str, Any], float]:
        while True:
            ready, _ = ray.wait(list(self._running), num_returns=1, timeout=POLL_S)
            if not ready:
                continue
            ref = ready[0]
            running = self._running.pop(ref)
            try:
                metrics, artifacts, calls, seconds = ray.get(ref)
            except ray.exceptions.RayTaskError as err:
                if isinstance(err.cause, UserError):  # every trial would hit it: end the search, one line
                    raise err.cause from None
                failed = self._failed(running, err)
            except ray.exceptions.RayError as err:  # the worker or its node died, out of memory, ...
                failed = self._failed(running, err)
            else:
                TrialLog.replay(calls, self.log)
                return running.trial, running.evaluate.receive(running.trial, metrics, artifacts), seconds  # type: ignore[attr-defined]
            if failed is not None:
                return failed

    def _failed(self, running: _Running, err: BaseException) -> tuple[Trial, dict[str, Any], float] | None:
        """Resubmit a failed attempt while retries are left (None), else the trial's failure record."""
        text = _error_text(err)
        running.errors.append(text)
        trial = running.trial
        if running.attempts <= self.max_retries:
            self._warn(
                f"[search] trial {trial.index + 1} attempt {running.attempts} failed ({text}); retrying "
                f"({self.max_retries - running.attempts + 1} retries left)"
            )
            self._launch(running)
            return None
        metrics = {ERROR_KEY: text, "attempts": running.attempts}
        return trial, metrics, time.perf_counter() - running.started

    def pending(self) -> int:
        return len(self._running)

    def cancel(self) -> None:
        for ref in list(self._running):
            with contextlib.suppress(ray.exceptions.RayError):  # already finished or gone
                ray.cancel(ref, force=True)
        self._running.clear()

    def close(self) -> None:
        self.cancel()
        self._shipped = None
        if self._owned and ray.is_initialized():
            ray.shutdown()
            self._owned = False
