"""Shared test helpers: run the real CLI in a subprocess with a temporary logdir."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

import archsearch.plugins  # noqa: F401 - every space's and strategy's config keys, as a run registers them

# One thread: the suite's tensors are tiny, and OpenMP threads fighting over 2 busy cores are 10-100x slower.
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parent.parent
MAIN = REPO / "scripts" / "main.py"


# Safety nets only, never a measurement: a tiny run takes seconds on a quiet machine, minutes on a busy 2-core one.
RUN_TIMEOUT_S = 900
WAIT_TIMEOUT_S = 600


def cli_env(env: dict | None = None) -> dict:
    return {**os.environ, "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1", **(env or {})}


def run_cli(
    *args: str, logdir: Path, timeout: int = RUN_TIMEOUT_S, env: dict | None = None
) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(MAIN), *args, "--common.logdir", str(logdir), "--common.num_threads", "1"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=cli_env(env), cwd=REPO)


def default_sigint() -> None:
    """`preexec_fn` of a child the test will send SIGINT: runs in the child before exec and resets SIGINT to
    its default. A child inherits an ignored SIGINT, and Python then keeps ignoring it (no KeyboardInterrupt):
    so it is under any background job of a non-interactive shell (`make test &`, nohup, some CI runners),
    where pytest and its workers start with SIGINT ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_cli(*args: str, logdir: Path, out: Path, env: dict | None = None) -> subprocess.Popen:
    """The CLI in the background, stdout and stderr into files beside `out` (`out`.stdout, `out`.stderr: a pipe
    nobody reads while the test waits could fill and stall the run). SIGINT is reset to its default in the
    child, so Python turns it into KeyboardInterrupt even when this process ignores it (a background job)."""
    cmd = [sys.executable, str(MAIN), *args, "--common.logdir", str(logdir), "--common.num_threads", "1"]
    with open(f"{out}.stdout", "w") as stdout, open(f"{out}.stderr", "w") as stderr:
        return subprocess.Popen(
            cmd, stdout=stdout, stderr=stderr, env=cli_env(env), cwd=REPO, preexec_fn=default_sigint
        )


def wait_for_file(path: Path, proc: subprocess.Popen | None = None, timeout: float = WAIT_TIMEOUT_S) -> str:
    """Wait until `path` exists (a fault point's marker, written atomically) and return its text; fail at
    once if `proc` ends first, or after the generous `timeout` (a safety net, not a measurement)."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the process ended (status {proc.returncode}) before {path} appeared")
        if time.monotonic() > deadline:
            pytest.fail(f"{path} did not appear within {timeout:.0f} s")
        time.sleep(0.05)
    return path.read_text()


def stop(proc: subprocess.Popen) -> None:
    """SIGKILL `proc` if it still runs and reap it (a failed test leaves no process behind)."""
    if proc.poll() is None:
        proc.kill()
    proc.wait()


@pytest.fixture
def cli(tmp_path):
    def runner(*args: str, **kwargs) -> subprocess.CompletedProcess:
        return run_cli(*args, logdir=tmp_path / "logdir", **kwargs)

    runner.logdir = tmp_path / "logdir"
    return runner


@pytest.fixture
def cli_in_process(tmp_path, capsys, monkeypatch):
    """`cli`'s argv, exit status and output from `archsearch.cli.main` in this process: for runs refused with a
    user error before any training, without a ~3-second interpreter and torch start per call. An exception
    escaping `main` fails the test with its traceback, as a traceback on the subprocess's stderr would."""
    import archsearch.cli
    from archsearch.cli import main

    monkeypatch.setattr(archsearch.cli, "_run_started", False)  # module state a run sets: restored afterwards
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("PYTHONHASHSEED", "0")

    def runner(*args: str) -> subprocess.CompletedProcess:
        argv = [*args, "--common.logdir", str(tmp_path / "logdir"), "--common.num_threads", "1"]
        code = main(argv)
        out = capsys.readouterr()
        return subprocess.CompletedProcess(argv, code, out.out, out.err)

    runner.logdir = tmp_path / "logdir"
    return runner


def assert_user_error(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    """Exit status 2, one line on stderr starting with 'error:', naming every fragment, no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def config_fixture(data: dict):
    """A fixture giving the path of a YAML file holding `data`, for `--config` (tiny settings for CLI tests)."""

    @pytest.fixture
    def fixture(tmp_path) -> str:
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump(data))
        return str(path)

    return fixture


def assert_config_error(files, key: str, value: str, fragments) -> None:
    """`--key value` on top of `files` is one ConfigError line naming the key and every fragment."""
    from archsearch.common.errors import ConfigError
    from archsearch.config import load_config

    with pytest.raises(ConfigError) as err:
        load_config(files, [(key, value)])
    message = str(err.value)
    assert "\n" not in message and key.rsplit(".", 1)[-1] in message, message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
