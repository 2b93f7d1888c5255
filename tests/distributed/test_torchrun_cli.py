"""The real CLI under `torchrun --nproc_per_node 2` (gloo on CPU), in subprocesses.

(1) DARTS (first and second order), ENAS and a user-model DARTS search end with one final architecture file
    that every rank produced byte for byte, and bit-identical weights and architecture parameters (or ENAS
    controller) on both ranks: each rank's sha256 is in log.yaml, and a difference would stop the run.
(3) The eval phase on 2 ranks reports the test accuracy one process computes for the same weights.
(4) SIGKILL of rank 1 ends the job non-zero with one line from the surviving rank; the rerun with resume
    ends with the uninterrupted 2-rank run's architecture, metrics and weights; so does a job torchrun
    restarts by itself (--max-restarts).
Only rank 0 writes: one log, one summary, one copy of the final lines on stdout.
The in-process exactness property (2 ranks at batch b == 1 process at 2b) is in test_sync.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from archsearch.common.checkpoint import KILL_AT_ENV, KILL_RANK_ENV
from archsearch.common.errors import ConfigError
from tests.conftest import MAIN, REPO, RUN_TIMEOUT_S

TINY = {
    "dataset": {"synthetic_train": 96, "synthetic_test": 36},  # 36 test images: an uneven last test batch
    "nas": {
        "search": {
            "model_desc": {"n_cells": 3, "init_channels": 4, "n_nodes": 2},
            "loader": {"batch_size": 16, "limit_batches": 2, "test_batch_size": 16},
            "trainer": {"epochs": 2},
        },
        "eval": {
            "model_desc": {"n_cells": 3, "init_channels": 4},
            "loader": {"batch_size": 16, "limit_batches": 2, "test_batch_size": 16},
            "trainer": {"epochs": 2},
        },
    },
}
ENAS = {
    "search": {
        "space": {"n_nodes": 2, "n_layers": 4},
        "model_desc": {"n_cells": 3, "init_channels": 4, "n_nodes": 2},
        "loader": {"batch_size": 16, "limit_batches": 2},
        "trainer": {"epochs": 2, "controller": {"train_steps": 2, "n_samples": 2}},
        "final": {"n_samples": 2, "eval_batches": 1},
    }
}
USER_MODEL = {  # DARTS and ENAS on NNI's MNIST example space, one after the other in one torchrun job
    "search": {
        "loader": {"batch_size": 16, "limit_batches": 2},
        "trainer": {"epochs": 2, "controller": {"train_steps": 2, "n_samples": 2}},
        "final": {"n_samples": 2, "eval_batches": 1},
    }
}
EXAMPLE = str(REPO / "examples" / "mnist_space.yaml")


def torchrun(
    *args: str, logdir: Path, env: dict | None = None, launcher: tuple[str, ...] = (), timeout: int = RUN_TIMEOUT_S
) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1", **(env or {})}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *launcher, str(MAIN),
        *args, "--common.logdir", str(logdir), "--common.num_threads", "1",
    ]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=full_env, cwd=REPO)


def config(tmp: Path, name: str, data: dict) -> str:
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def out_dir(logdir: Path, algo: str) -> Path:
    [found] = logdir.glob(f"*_toy/{algo}")
    return found


def identical_records(out: Path) -> dict[tuple[str, str], list[str]]:
    records = yaml.safe_load((out / "log.yaml").read_text())
    return {(r["phase"], r["what"]): r["digests"] for r in records if r["event"] == "ranks_identical"}


def assert_ranks_identical(out: Path, *expected: tuple[str, str]) -> None:
    found = identical_records(out)
    for key in expected:
        assert key in found, (key, sorted(found))
        digests = found[key]
        assert len(digests) == 2 and digests[0] == digests[1] and len(digests[0]) == 64, (key, digests)


def assert_ok(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-5000:])


@pytest.fixture(scope="module")
def darts_run(tmp_path_factory) -> tuple[Path, str, subprocess.CompletedProcess]:
    """One uninterrupted 2-rank DARTS run (first order), search and eval: shared by tests (1), (3), (4)."""
    tmp = tmp_path_factory.mktemp("darts")
    conf = config(tmp, "tiny", TINY)
    proc = torchrun("--algos", "darts", "--datasets", "synthetic", "--config", conf, logdir=tmp / "logdir")
    assert_ok(proc)
    return out_dir(tmp / "logdir", "darts"), conf, proc


def test_darts_first_order_ranks_identical_and_rank0_writes_alone(darts_run):
    out, _, proc = darts_run
    assert_ranks_identical(
        out,
        ("search", "weights"),
        ("search", "architecture parameters"),
        ("search", "final architecture file"),
        ("eval", "weights"),
    )
    assert proc.stdout.count("== darts on synthetic ==") == 1  # rank 1 prints no summary
    records = yaml.safe_load((out / "log.yaml").read_text())
    assert [r["event"] for r in records].count("start") == 1  # one log, rank 0's
    [world] = [r for r in records if r["event"] == "distributed"]
    assert world["world_size"] == 2 and world["backend"] == "gloo"
    assert (out / "summary.yaml").exists() and not list(out.parent.glob("*.lock"))


@pytest.mark.parametrize("case", ["darts-second", "enas", "user-model"])
def test_search_ends_identical_on_both_ranks(tmp_path, case):
    logdir = tmp_path / "logdir"
    if case == "darts-second":
        conf = config(tmp_path, "tiny", TINY)
        args = ["--algos", "darts", "--datasets", "synthetic", "--config", conf,
                "--nas.search.trainer.bilevel.order", "second"]  # fmt: skip
        expected = {"darts": ("architecture parameters",)}
    elif case == "enas":
        conf = config(tmp_path, "enas", {"dataset": TINY["dataset"], "nas": ENAS})
        args = ["--algos", "enas", "--datasets", "synthetic", "--config", conf]
        expected = {"enas": ("controller",)}
    else:
        conf = config(tmp_path, "user", {"nas": USER_MODEL})
        args = ["--algos", "darts,enas", "--config", EXAMPLE, "--config", conf]
        expected = {"darts": ("architecture parameters",), "enas": ("controller",)}
    proc = torchrun(*args, "--search-only", logdir=logdir)
    assert_ok(proc)
    for algo, what in expected.items():
        searched = [("search", w) for w in ("weights", "final architecture file", *what)]
        assert_ranks_identical(out_dir(logdir, algo), *searched)


def test_eval_on_two_ranks_reports_the_single_process_test_accuracy(darts_run):
    """The 2-rank test accuracy is over the whole test split: one process evaluating model.pt agrees."""
    import archsearch
    import archsearch.plugins  # noqa: F401 - registers the algorithms' config sections
    from archsearch.common.logging import RunLog
    from archsearch.config import load_config
    from archsearch.data.loaders import eval_loaders
    from archsearch.train.trainer import Trainer

    out, _, _ = darts_run
    metrics = yaml.safe_load((out / "eval" / "metrics.yaml").read_text())
    conf = load_config([out / "config.yaml"])
    model = archsearch.load_model(out / "eval" / "model.pt")
    _, test_loader = eval_loaders(conf["dataset"], conf["nas"]["eval"]["loader"], torch.device("cpu"), 2)
    trainer = Trainer(conf["nas"]["eval"]["trainer"], model, RunLog(None, verbose=False), torch.device("cpu"), "x")
    single = trainer.evaluate(test_loader)
    assert metrics["test_top1"] == single["top1"] and metrics["test_top5"] == single["top5"]
    assert abs(metrics["test_loss"] - single["loss"]) < 1e-6


def assert_same_results(a: Path, b: Path) -> None:
    """The same final architecture bytes, eval metrics and trained weights."""
    ra, rb = (yaml.safe_load((d / "search" / "result.yaml").read_text()) for d in (a, b))
    assert (a / ra["final_arch"]).read_bytes() == (b / rb["final_arch"]).read_bytes()
    ma, mb = (yaml.safe_load((d / "eval" / "metrics.yaml").read_text()) for d in (a, b))
    ma.pop("train_time_s"), mb.pop("train_time_s")
    assert ma == mb
    wa, wb = (torch.load(d / "eval" / "model.pt", weights_only=True)["state_dict"] for d in (a, b))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_a_killed_rank_ends_the_job_and_resume_matches_the_uninterrupted_run(darts_run, tmp_path):
    straight, conf, _ = darts_run
    logdir = tmp_path / "logdir"
    args = ["--algos", "darts", "--datasets", "synthetic", "--config", conf]
    killed = torchrun(*args, logdir=logdir, env={KILL_AT_ENV: "search:epoch:1", KILL_RANK_ENV: "1"})
    assert killed.returncode != 0
    ours = [line for line in killed.stderr.splitlines() if line.startswith("error: rank 0")]
    assert len(ours) == 1 and "--common.resume true" in ours[0], killed.stderr[-3000:]
    assert "rank      : 1" in killed.stderr and "Signal 9 (SIGKILL)" in killed.stderr  # torchrun names rank 1
    out = out_dir(logdir, "darts")
    assert (out / "search" / "checkpoint.pt").exists() and not (out / "search" / "result.yaml").exists()

    resumed = torchrun(*args, "--common.resume", "true", logdir=logdir)
    assert_ok(resumed)
    assert "[search] resumed from" in resumed.stdout
    assert_same_results(straight, out)


def test_torchrun_elastic_restart_resumes_from_the_checkpoint_by_itself(darts_run, tmp_path):
    """torchrun --max-restarts 1: the restarted job resumes without --common.resume and ends like the straight run."""
    straight, conf, _ = darts_run
    logdir = tmp_path / "logdir"
    env = {KILL_AT_ENV: "search:epoch:1", KILL_RANK_ENV: "1"}
    proc = torchrun("--algos", "darts", "--datasets", "synthetic", "--config", conf, logdir=logdir, env=env,
                    launcher=("--max-restarts", "1"))  # fmt: skip
    assert_ok(proc)
    assert "torchrun restart 1: resuming from the last checkpoint" in proc.stdout
    assert "[search] resumed from" in proc.stdout
    assert_same_results(straight, out_dir(logdir, "darts"))


@pytest.mark.parametrize("rank", [0, 1])
def test_dry_run_under_torchrun_prints_world_batches_and_devices(tmp_path, monkeypatch, rank):
    """--dry-run starts no process group, so torchrun's environment is all it reads: set it in-process."""
    from archsearch.experiment.run import RunOptions, run_experiment

    env = {"RANK": rank, "WORLD_SIZE": 2, "LOCAL_RANK": rank, "LOCAL_WORLD_SIZE": 2, "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": 29999}  # fmt: skip
    for key, value in env.items():
        monkeypatch.setenv(key, str(value))
    options = RunOptions(config=(config(tmp_path, "tiny", TINY),), dry_run=True)
    lines = run_experiment("darts", "synthetic", options, {"common.logdir": str(tmp_path)})["lines"]
    if rank == 1:  # one description per job
        assert lines == []
        return
    text = "\n".join(lines)
    assert "torchrun: world size 2 (1 node(s) x 2 per node), this process rank 0" in text
    assert "per-rank batch: search 16 = 2 x 8 (test 16 = 2 x 8), eval 16 = 2 x 8" in text
    assert "devices: cpu, 2 process(es) per node, gloo" in text
    monkeypatch.setenv("WORLD_SIZE", "3")
    with pytest.raises(ConfigError, match="nas.search.loader.batch_size: 16 does not divide among 3 ranks"):
        run_experiment("darts", "synthetic", options, {"common.logdir": str(tmp_path)})
