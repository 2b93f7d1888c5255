"""The layering is a contract: import-linter's layers and acyclic-siblings contracts (pyproject.toml) pass on the
package, and fail when a module imports upward, so the next change cannot tangle the house without a red build."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

LINT = Path(sys.executable).with_name("lint-imports")


def lint(root: Path) -> subprocess.CompletedProcess:
    # grimp reads the package from sys.path: the folder holding the archsearch/ under test comes first
    return subprocess.run(
        [str(LINT), "--config", str(root / "pyproject.toml"), "--no-cache"],
        cwd=root, capture_output=True, text=True, timeout=300, env={"PYTHONPATH": str(root), "PATH": ""},
    )


def test_the_package_keeps_its_layers_and_has_no_import_cycle():
    proc = lint(REPO)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "Contracts: 2 kept, 0 broken." in proc.stdout


def test_an_upward_import_or_a_cycle_breaks_the_contract(tmp_path):
    shutil.copytree(REPO / "archsearch", tmp_path / "archsearch", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    trainer = tmp_path / "archsearch" / "train" / "trainer.py"  # the framework reaching up to a strategy
    trainer.write_text(trainer.read_text() + "\nimport archsearch.strategies.darts.strategy  # noqa\n")
    proc = lint(tmp_path)
    assert proc.returncode != 0
    assert "archsearch.train is not allowed to import archsearch.strategies" in proc.stdout
    assert "No import cycles anywhere in the package BROKEN" in proc.stdout
