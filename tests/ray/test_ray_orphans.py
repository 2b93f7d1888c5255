"""Nothing of a Ray started by a driver (`--common.executor ray`, no address) outlives that driver: after a
`kill -9` of the driver, every process of its Ray (GCS, raylet, the dashboard and runtime-env agents, workers)
is gone within a bounded time, and the resumed run, which starts its own Ray, finishes and leaves nothing
either. Two Ray start-ups in all. The reaper for a watchdog killed too is tested without Ray."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from archsearch.common.checkpoint import WAIT_AT_ENV, WAIT_FILE_ENV
from tests.conftest import MAIN, REPO
from tests.strategies.rea.test_rea import nb201_table  # noqa: F401 - the fixture

if not os.environ.get("CI"):
    pytest.importorskip("ray")
if not sys.platform.startswith("linux"):
    pytest.skip("reads /proc", allow_module_level=True)

GONE_S = 30  # the bound: Ray's processes must be gone this long after their driver
SEEN_S = 120  # how long the paused driver waits for the watcher to see its Ray's agents before it is killed
# Ray's two agents, by the title they set once started or by their script before that (the watcher polls, so
# it may see either): the processes the finding was about
AGENTS = {
    "dashboard agent": ("DashboardAgent", "dashboard/agent.py"),
    "runtime-env agent": ("RuntimeEnvAgent", "runtime_env/agent/main.py"),
}


def start_time(pid: int) -> int | None:
    """The start time of `pid` (None when it is gone or a zombie): with the pid, it names one process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return None if fields[0] in ("Z", "X") else int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def descendants(pid: int) -> dict[int, int]:
    """{pid: start time} of every process below `pid`."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry))
    found, todo = {}, list(parents.get(pid, []))
    while todo:
        p = todo.pop()
        start = start_time(p)
        if start is not None:
            found[p] = start
            todo.extend(parents.get(p, []))
    return found


def name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:300]
    except OSError:
        return "?"


def agents_missing(names: dict[int, str]) -> list[str]:
    text = " ".join(names.values())
    return [agent for agent, marks in AGENTS.items() if not any(m in text for m in marks)]


def run_watched(args: list[str], env: dict, paused: Path | None = None) -> tuple[int, dict[int, int], dict[int, str]]:
    """Run the CLI; (its status, {pid: start} and names of every process ever seen below it while it ran).
    With `paused` (the marker file of a driver told to wait at a fault point), SIGKILL the driver once it
    waits there and the watcher has seen both of Ray's agents (or SEEN_S after it waits): a kill that cannot
    come before the watcher saw what the test is about, however slow the machine."""
    cmd = [sys.executable, str(MAIN), *args]
    proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen: dict[int, int] = {}
    names: dict[int, str] = {}
    deadline = time.monotonic() + 300
    waiting_since = None
    while proc.poll() is None and time.monotonic() < deadline:
        for pid, start in descendants(proc.pid).items():
            seen[pid] = start
            names[pid] = name(pid)  # again each time: Ray's agents rename themselves once started
        if paused is not None and waiting_since is None and paused.exists():
            waiting_since = time.monotonic()
        if waiting_since is not None and (not agents_missing(names) or time.monotonic() > waiting_since + SEEN_S):
            proc.kill()  # SIGKILL, as kill -9 would: the driver's own clean-up never runs
            break
        time.sleep(0.2)
    if proc.poll() is None:
        proc.kill()
    out = proc.communicate()[0]
    assert proc.returncode is not None
    run_watched.output = out  # type: ignore[attr-defined]
    return proc.returncode, seen, names


def assert_all_gone(seen: dict[int, int], names: dict[int, str]) -> None:
    deadline = time.monotonic() + GONE_S
    while time.monotonic() < deadline:
        left = {p: names[p] for p, s in seen.items() if start_time(p) == s}
        if not left:
            return
        time.sleep(0.2)
    raise AssertionError(f"still alive {GONE_S}s after the driver: {left}")


def test_nothing_of_a_local_ray_outlives_a_killed_driver_and_the_run_resumes(tmp_path, nb201_table):  # noqa: F811
    args = ["--algos", "random", "--datasets", "synthetic", "--search-only", "--nas.search.space", "nasbench201"]
    args += ["--nas.search.evaluate_by", "table", "--nas.search.benchmark", str(nb201_table)]
    args += ["--nas.search.random.n_candidates", "6", "--common.experiment_name", "orphans"]
    args += ["--common.executor", "ray", "--common.ray.local_cpus", "1", "--common.ray.dashboard", "false"]
    args += ["--common.logdir", str(tmp_path / "logdir"), "--common.num_threads", "1"]
    env = {**os.environ, "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1", "RAY_USAGE_STATS_ENABLED": "0"}

    # the driver stops after its third trial is recorded, in the middle of the search, and is killed there
    paused = tmp_path / "paused"
    code, seen, names = run_watched(args, {**env, WAIT_AT_ENV: "trial:recorded:2", WAIT_FILE_ENV: str(paused)}, paused)
    assert paused.exists(), run_watched.output[-3000:]  # type: ignore[attr-defined]
    assert code == -signal.SIGKILL, run_watched.output[-3000:]  # type: ignore[attr-defined]
    ray_names = " ".join(names.values())
    # the processes the finding was about were there, and seen: the test watches what it claims to
    assert "raylet" in ray_names and "gcs_server" in ray_names, "\n".join(names.values())
    assert not agents_missing(names), names
    assert_all_gone(seen, names)

    code, seen, names = run_watched([*args, "--common.resume", "true"], env)
    assert code == 0, run_watched.output[-3000:]  # type: ignore[attr-defined]
    trials = yaml.safe_load((tmp_path / "logdir" / "orphans" / "random" / "search" / "trials.yaml").read_text())
    assert sorted(r["index"] for r in trials) == list(range(6))
    assert_all_gone(seen, names)  # a run that ends normally leaves nothing either


def test_reap_orphans_kills_what_a_dead_drivers_file_lists_checking_start_times(tmp_path):
    from archsearch.search.ray_executor import PIDS_FILE, reap_orphans

    sleepers = [subprocess.Popen(["sleep", "120"], start_new_session=True) for _ in range(3)]
    dead = subprocess.Popen(["true"])
    dead.wait()  # a driver that is gone
    try:
        starts = [start_time(p.pid) for p in sleepers]
        gone, reused, live = (tmp_path / f"session_{n}" for n in ("gone", "reused", "live"))
        for folder in (gone, reused, live):
            folder.mkdir()
        # a dead driver's file: its first sleeper is killed; a pid whose start time differs (reused) is not
        (gone / PIDS_FILE).write_text(json.dumps({"driver": [dead.pid, 1], "pids": [[sleepers[0].pid, starts[0]]]}))
        (reused / PIDS_FILE).write_text(
            json.dumps({"driver": [dead.pid, 1], "pids": [[sleepers[1].pid, starts[1] - 1]]})
        )
        # a live driver's file (this process): nothing it lists is touched
        me = [os.getpid(), start_time(os.getpid())]
        (live / PIDS_FILE).write_text(json.dumps({"driver": me, "pids": [[sleepers[2].pid, starts[2]]]}))
        assert reap_orphans(str(tmp_path)) == 2
        assert sleepers[0].wait(timeout=10) == -signal.SIGKILL
        assert sleepers[1].poll() is None and sleepers[2].poll() is None
        assert not (gone / PIDS_FILE).exists() and (live / PIDS_FILE).exists()
    finally:
        for p in sleepers:
            p.kill()
            p.wait()
