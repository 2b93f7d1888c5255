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

Nothing of a Ray started here outlives its driver. Ray ties its GCS and raylet to the driver, but the raylet's
agents (DashboardAgent, RuntimeEnvAgent) survive a driver killed with SIGKILL and ignore SIGTERM. So a Ray
started here gets a watchdog: a small stdlib-only process in its own session that holds the read end of a pipe
only the driver writes to and follows the driver's Ray processes (its children started from Ray, and all their
descendants) in /proc, recording each (pid, start time) in `archsearch_ray_pids.json` in Ray's session folder.
When the pipe closes (the driver exited, however) it SIGKILLs what is left of them, each pid checked against its
recorded start time so a reused pid is never hit. Should the watchdog be killed too, the next Ray started here
reaps what a dead driver's file lists, by the same check (`reap_orphans`).
"""

from __future__ import annotations

import contextlib
import glob
import math
import os
import socket
import subprocess
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


# ---- nothing of a local Ray outlives its driver ------------------------------------------------------------

PIDS_FILE = "archsearch_ray_pids.json"  # in Ray's session folder: {"driver": [pid, start], "pids": [[pid, start]]}

# The watchdog and the reaper share this stdlib-only code: the watchdog runs it with `python -I -c` (importing
# this module would import torch and Ray, seconds and hundreds of MB), the driver execs it for `reap_orphans`.
_PROC_CODE = r"""
import json, os, select, signal, sys, time


def start_time(pid):
    # the start time of `pid` in clock ticks since boot (None when it is gone or a zombie): a pid plus its
    # start time names one process, where a pid alone may have been reused
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return None if fields[0] in ("Z", "X") else int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def alive(pid, start):
    return start is not None and start_time(pid) == start


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def children(pid):
    kids = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                kids.extend(int(k) for k in f.read().split())
    except OSError:
        pass
    return kids


def kill_all(tracked):
    # SIGKILL every tracked process still alive (checked by its start time), then wait until they are gone
    for pid, start in list(tracked.items()):
        if alive(pid, start):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(alive(p, s) for p, s in tracked.items()):
        time.sleep(0.05)


def reap_file(path):
    # kill what a pids file lists when its driver is gone, then remove the file; True when it reaped
    try:
        with open(path) as f:
            data = json.load(f)
        driver = tuple(data["driver"])
        tracked = {int(p): int(s) for p, s in data["pids"]}
    except (OSError, ValueError, KeyError, TypeError):
        return False
    if alive(*driver):
        return False
    kill_all(tracked)
    try:
        os.unlink(path)
    except OSError:
        pass
    return True


def watch(driver, driver_start, session, ray_dir, pids_file, fd, poll):
    tracked = {}

    def write():
        tmp = pids_file + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"driver": [driver, driver_start], "pids": sorted(tracked.items())}, f)
        os.replace(tmp, pids_file)

    def refresh(include_driver):
        before = dict(tracked)
        roots = [k for k in children(driver) if session in cmdline(k) or ray_dir in cmdline(k)]
        todo = (roots if include_driver else []) + [p for p, s in tracked.items() if alive(p, s)]
        seen = set()
        while todo:
            pid = todo.pop()
            start = start_time(pid)
            if start is None or pid == os.getpid() or pid in seen:
                continue
            seen.add(pid)
            tracked[pid] = start
            todo.extend(children(pid))
        if tracked != before:
            write()

    refresh(True)
    while alive(driver, driver_start):
        ready, _, _ = select.select([fd], [], [], poll)
        if ready and not os.read(fd, 1):
            break  # the driver closed its end, or exited however it exited
        refresh(True)
    refresh(False)  # what the last poll did not see yet, below what it did
    kill_all(tracked)
    try:
        os.unlink(pids_file)
    except OSError:
        pass


if __name__ == "__main__":
    d, ds, sess, rdir, pf, fd_, pl = sys.argv[1:8]
    watch(int(d), int(ds), sess, rdir, pf, int(fd_), float(pl))
"""
_PROC: dict[str, Any] = {"__name__": "archsearch_ray_proc"}
exec(compile(_PROC_CODE, "<archsearch ray watchdog>", "exec"), _PROC)
WATCH_POLL_S = 0.5


def ray_temp_dir() -> str:
    """Where a Ray started on this machine keeps its session folders (/tmp/ray unless RAY_TMPDIR says)."""
    try:
        from ray._common.utils import get_default_ray_temp_dir

        return get_default_ray_temp_dir()
    except ImportError:  # another Ray version: its documented default
        return os.path.join(os.environ.get("RAY_TMPDIR", "/tmp"), "ray")


def reap_orphans(temp_dir: str | None = None) -> int:
    """SIGKILL the Ray processes that drivers killed before their watchdog could act left behind, as listed in
    the pids files of Ray's session folders whose driver is gone (each pid checked by its start time).
    Returns how many files were reaped."""
    if not sys.platform.startswith("linux"):
        return 0
    files = glob.glob(os.path.join(temp_dir or ray_temp_dir(), "session_*", PIDS_FILE))
    return sum(bool(_PROC["reap_file"](path)) for path in files)


class _Watchdog:
    """The process that SIGKILLs the local Ray's processes once this driver is gone (see the module doc)."""

    def __init__(self, session_dir: str) -> None:
        self.pids_file = os.path.join(session_dir, PIDS_FILE)
        read, self._write = os.pipe()  # both non-inheritable: no process Ray spawns holds the write end
        me = os.getpid()
        args = [str(me), str(_PROC["start_time"](me)), session_dir, os.path.dirname(ray.__file__)]
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-I", "-c", _PROC_CODE, *args, self.pids_file, str(read), str(WATCH_POLL_S)],
                pass_fds=(read,),
                start_new_session=True,  # a terminal's Ctrl-C to the driver's group does not stop it first
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        finally:
            os.close(read)

    def close(self, timeout: float = 15.0) -> None:
        """Ray was shut down: the watchdog kills what is left (agents slow to exit) and ends."""
        if self._write is not None:
            os.close(self._write)
            self._write = None
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout)


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
        self._watchdog: _Watchdog | None = None
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
        if self.address is None:
            reaped = reap_orphans()  # what killed drivers' Rays left, should their watchdogs be gone too
            if reaped:
                self._warn(f"[ray] killed what {reaped} earlier killed run(s) left of their Ray")
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
        if self.address is None and sys.platform.startswith("linux"):
            self._watchdog = _Watchdog(self._session_dir())
        where = "started on this machine" if self.address is None else f"joined at {self.address}"
        self._info(f"[ray] {ray.__version__} {where}: {self._resources_text()}")
        url = getattr(context, "dashboard_url", None)
        if url:
            self._info(f"[ray] dashboard: http://{url}")

    @staticmethod
    def _session_dir() -> str:
        node = getattr(ray._private.worker, "_global_node", None)  # Ray has no public accessor for it
        if node is not None:
            return node.get_session_dir_path()
        return os.path.realpath(os.path.join(ray_temp_dir(), "session_latest"))

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
        if self._watchdog is not None:
            self._watchdog.close()
            self._watchdog = None
