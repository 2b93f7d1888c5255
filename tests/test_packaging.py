"""A real wheel, installed (not editable) in a fresh venv, runs from outside the checkout with its own configs.

The venv reuses the dependencies already installed in the project's venv through a .pth line (torch is not
installed again), and that line is a plain path, so the checkout's editable install (a finder that only a
.pth in a site dir activates) stays out: the tests check that `archsearch` is imported from the new venv.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

TINY = {
    "nas": {
        "search": {"model_desc": {"n_cells": 3, "init_channels": 4, "n_nodes": 2}, "loader": {"limit_batches": 1}},
        "eval": {
            "model_desc": {"n_cells": 3, "init_channels": 4},
            "loader": {"batch_size": 32, "limit_batches": 1},
            "trainer": {"epochs": 1},
        },
    },
    "dataset": {"synthetic_train": 64, "synthetic_test": 32},
}
# confs/ at the top of the checkout ships inside the wheel as archsearch/confs/
SHIPPED_CONFS = sorted(f"archsearch/{p.relative_to(REPO).as_posix()}" for p in (REPO / "confs").rglob("*.yaml"))


def run(*cmd: str | Path, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    # no PYTHONPATH or ARCHSEARCH_CONFS from the caller's shell: the installed package must stand alone
    base = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "ARCHSEARCH_CONFS")}
    full_env = {**base, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([str(c) for c in cmd], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=900)


def checked(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, (proc.args, proc.stdout[-2000:], proc.stderr[-3000:])
    return proc.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """archsearch-*.whl built from a copy of the sources, so no stale build/ folder of the checkout leaks in."""
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    shutil.copytree(REPO / "archsearch", src / "archsearch", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copytree(REPO / "confs", src / "confs")
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(REPO / name, src / name)
    pip_wheel = ["-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", root, src]
    checked(run(sys.executable, *pip_wheel, cwd=root))
    (built,) = root.glob("archsearch-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    """A fresh venv holding only the wheel's archsearch; the project venv's site-packages supplies the rest."""
    venv = tmp_path_factory.mktemp("venv") / "venv"
    checked(run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=venv.parent))
    python = venv / "bin" / "python"
    purelib = checked(run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=venv))
    Path(purelib.strip(), "project_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    # --ignore-installed: the editable archsearch is visible through the .pth; never touch it, just install
    install = ["-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed", "-q", wheel]
    checked(run(python, *install, cwd=venv))
    return venv


@pytest.fixture
def workdir(tmp_path) -> Path:
    """Another folder than the checkout, with the tiny settings as ./tiny.yaml (a relative --config)."""
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(TINY))
    return tmp_path


def test_the_wheel_ships_every_config(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert sorted(n for n in names if n.startswith("archsearch/confs/")) == SHIPPED_CONFS
    assert "archsearch/confs/common.yaml" in SHIPPED_CONFS and all(n.startswith("archsearch") for n in names)


def test_the_venv_imports_the_wheels_archsearch_not_the_checkouts(venv, workdir):
    where = "import archsearch, archsearch.config as c; print(archsearch.__file__); print(c.confs_dir())"
    module, confs = checked(run(venv / "bin" / "python", "-c", where, cwd=workdir)).split()
    assert Path(module).is_relative_to(venv) and Path(confs).is_relative_to(venv)


def test_the_installed_console_script_runs_the_toy_search_from_another_folder(venv, workdir):
    args = ["--algos", "manual", "--datasets", "synthetic", "--config", "tiny.yaml", "--common.logdir", "logs"]
    checked(run(venv / "bin" / "archsearch", *args, "--common.num_threads", "1", cwd=workdir))
    out = workdir / "logs" / "archsearch_synthetic_toy" / "manual"
    assert yaml.safe_load((out / "eval" / "metrics.yaml").read_text())["params"] > 0
    assert yaml.safe_load((out / "config.yaml").read_text())["nas"]["eval"]["trainer"]["epochs"] == 1  # --config


def test_archsearch_confs_replaces_the_shipped_configs(venv, workdir):
    confs = workdir / "my_confs"
    shutil.copytree(REPO / "confs", confs)
    toy = confs / "toy.yaml"
    toy.write_text(toy.read_text().replace("trainer: {epochs: 8", "trainer: {epochs: 5"))
    dry_run = [venv / "bin" / "archsearch", "--algos", "manual", "--dry-run"]
    assert "epochs 5" in checked(run(*dry_run, cwd=workdir, env={"ARCHSEARCH_CONFS": str(confs)}))
    assert "epochs 8" in checked(run(*dry_run, cwd=workdir))  # the shipped toy.yaml
    missing = run(*dry_run, cwd=workdir, env={"ARCHSEARCH_CONFS": str(workdir / "nowhere")})
    assert missing.returncode == 2 and "(from ARCHSEARCH_CONFS) has no common.yaml" in missing.stderr
