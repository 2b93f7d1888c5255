"""Shared test helpers: run the real CLI in a subprocess with a temporary logdir."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

import archsearch.plugins  # noqa: F401 - every space's and strategy's config keys, as a run registers them

# One thread: the suite's tensors are tiny, and OpenMP threads fighting over 2 busy cores are 10-100x slower.
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parent.parent
MAIN = REPO / "scripts" / "main.py"


def run_cli(*args: str, logdir: Path, timeout: int = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1", **(env or {})}
    cmd = [sys.executable, str(MAIN), *args, "--common.logdir", str(logdir), "--common.num_threads", "1"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=full_env, cwd=REPO)


@pytest.fixture
def cli(tmp_path):
    def runner(*args: str, **kwargs) -> subprocess.CompletedProcess:
        return run_cli(*args, logdir=tmp_path / "logdir", **kwargs)

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
