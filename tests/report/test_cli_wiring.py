"""`archsearch export` and `archsearch show` are reached through the one CLI entry point (scripts/main.py)."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import MAIN, REPO, assert_user_error


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(MAIN), *args], capture_output=True, text=True, cwd=REPO, timeout=600)


def test_show_and_export_are_subcommands_with_one_line_errors(tmp_path):
    missing = str(tmp_path / "model.pt")
    assert_user_error(run("show", missing), missing, "does not exist")
    assert_user_error(run("export", missing, str(tmp_path / "out"), "--format", "onnx"), missing, "does not exist")
    assert "--format" in run("export", "--help").stdout
