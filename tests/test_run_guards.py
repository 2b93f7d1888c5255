"""What a run refuses before it writes anything: paths outside the logdir, a second run of the same experiment,
filesystems it cannot write; and the library call the CLI is a thin wrapper of."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import assert_user_error, config_fixture, run_cli

TINY = {
    "nas": {
        "eval": {
            "model_desc": {"n_cells": 3, "init_channels": 4},
            "loader": {"batch_size": 32, "limit_batches": 2},
            "trainer": {"epochs": 1},
        },
    },
    "dataset": {"synthetic_train": 64, "synthetic_test": 32},
}
tiny = config_fixture(TINY)
MANUAL = ("--algos", "manual", "--datasets", "synthetic")


@pytest.mark.parametrize(
    "args",
    [
        ["--exp-prefix", "../../x"],
        ["--exp-prefix", "a/b"],
        ["--common.experiment_name", "/tmp/elsewhere"],
        ["--common.experiment_name", "a/../../b"],
        ["--common.experiment_name", ".."],
    ],
)
def test_experiment_names_stay_inside_the_logdir(cli_in_process, tiny, tmp_path, args):
    cli = cli_in_process
    proc = cli(*MANUAL, "--config", tiny, *args)
    assert_user_error(proc, args[0].lstrip("-"), repr(args[1]), "folder name")
    assert not (tmp_path / "x").exists() and not Path("/tmp/elsewhere").exists()
    assert not cli.logdir.exists() or not any(cli.logdir.rglob("config.yaml"))


def _lock_path(cli) -> Path:
    return cli.logdir / "archsearch_synthetic_toy" / "manual.lock"


def test_a_second_run_of_a_running_experiment_stops_and_leaves_it_alone(cli, tiny):
    lock = _lock_path(cli)
    lock.parent.mkdir(parents=True)
    running = lock.with_name("manual")
    running.mkdir()
    (running / "log.log").write_text("the first run's log\n")
    # this test process stands in for the first run: alive, on this host
    lock.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
    proc = cli(*MANUAL, "--config", tiny)
    assert_user_error(proc, "in use by another run", f"pid {os.getpid()}", socket.gethostname(), str(lock))
    assert (running / "log.log").read_text() == "the first run's log\n"  # not moved aside, not written into
    assert sorted(p.name for p in lock.parent.iterdir()) == ["manual", "manual.lock"]


def test_a_lock_left_by_a_dead_run_is_taken_over_and_released(cli, tiny):
    # no process ever has pid_max as its pid (pids are below it); a pid that just exited could be handed out again
    dead = int(Path("/proc/sys/kernel/pid_max").read_text())
    lock = _lock_path(cli)
    lock.parent.mkdir(parents=True)
    lock.write_text(json.dumps({"pid": dead, "host": socket.gethostname()}))
    proc = cli(*MANUAL, "--config", tiny)
    assert proc.returncode == 0, proc.stderr
    assert "taking over the lock" in proc.stdout
    assert not lock.exists()


@pytest.fixture
def mounted_tmpfs(tmp_path):
    """A tmpfs mounted at tmp_path/mnt with the given options (root only); unmounted afterwards."""
    mounts = []

    def mount(options: str) -> Path:
        point = tmp_path / f"mnt{len(mounts)}"
        point.mkdir()
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "none", str(point)], capture_output=True)
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.decode().strip()}); needs root")
        mounts.append(point)
        return point

    yield mount
    for point in mounts:
        subprocess.run(["umount", "-l", str(point)], check=False)


def test_a_read_only_logdir_is_one_line_naming_the_path(tiny, mounted_tmpfs):
    logdir = mounted_tmpfs("ro,size=1m")
    proc = run_cli(*MANUAL, "--config", tiny, logdir=logdir)
    assert_user_error(proc, str(logdir), "Read-only file system")


def test_a_full_disk_is_one_line_naming_the_path(tiny, mounted_tmpfs):
    logdir = mounted_tmpfs("size=96k")  # room for config and logs, not for a checkpoint
    proc = run_cli(*MANUAL, "--config", tiny, logdir=logdir)
    assert_user_error(proc, str(logdir), "disk is full")


def test_the_library_call_runs_what_the_cli_runs(tmp_path, tiny):
    import archsearch
    from archsearch.experiment.run import RunOptions

    summary = archsearch.run(
        "manual",
        "synthetic",
        RunOptions(config=(tiny,), exp_prefix="lib"),
        {"common.logdir": str(tmp_path), "common.num_threads": 1, "nas.eval.trainer.epochs": 1},
    )
    folder = tmp_path / "lib_synthetic_toy" / "manual"
    on_disk = yaml.safe_load((folder / "summary.yaml").read_text())
    assert on_disk["eval"]["test_top1"] == summary["eval"]["test_top1"]
    assert yaml.safe_load((folder / "config.yaml").read_text())["nas"]["eval"]["trainer"]["epochs"] == 1
    assert not (tmp_path / "lib_synthetic_toy" / "manual.lock").exists()


def test_a_logdir_that_cannot_exist_is_one_line(tiny):
    proc = run_cli(*MANUAL, "--config", tiny, logdir=Path("/dev/null/logdir"))
    assert_user_error(proc, "cannot create the output folder /dev/null/logdir", "--common.logdir")
