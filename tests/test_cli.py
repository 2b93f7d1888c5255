"""The real CLI in a subprocess: errors users make, end-to-end runs, outputs, resume after a kill."""

import signal
from pathlib import Path

import pytest
import torch
import yaml

from archsearch.common.checkpoint import WAIT_AT_ENV, WAIT_FILE_ENV
from tests.conftest import WAIT_TIMEOUT_S, assert_user_error, config_fixture, start_cli, stop, wait_for_file

TINY = {
    "nas": {
        "search": {
            "model_desc": {"n_cells": 3, "init_channels": 4, "n_nodes": 2},
            "loader": {"batch_size": 32, "limit_batches": 2},
            "trainer": {"epochs": 1},
        },
        "eval": {
            "model_desc": {"n_cells": 3, "init_channels": 4},
            "loader": {"batch_size": 32, "limit_batches": 2},
            "trainer": {"epochs": 2},
        },
    },
    "dataset": {"synthetic_train": 128, "synthetic_test": 64},
}


tiny = config_fixture(TINY)


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["--algos", "nope"], ["unknown algorithm in --algos 'nope'", "random"]),
        (["--algos", "random", "--datasets", "cifar11"], ["unknown dataset in --datasets 'cifar11'", "cifar10"]),
        (["--algos", "random", "--nas.eval.trainer.epochz", "3"], ["no key 'epochz'", "--nas.eval.trainer.epochs"]),
        (["--algos", "random", "--nas.eval.trainer.epochs", "many"], ["--nas.eval.trainer.epochs", "'many'", "int"]),
        (["--algos", "random", "--bogus"], ["unknown option '--bogus'", "--algos"]),
        (["--algos", "random", "--common.seed"], ["needs a value"]),
        (["--algos", "random", "--eval-only"], ["--nas.eval.final_desc PATH"]),
        (["--algos", "manual", "--nas.search.manual.genotype", "Genotype(normal=[('x', 0)"], ["genotype", "syntax"]),
    ],
)
def test_bad_input_is_one_line_and_status_2(cli_in_process, args, fragments):
    # in process: tests/test_hostile_inputs.py checks that the real process prints the same one line
    assert_user_error(cli_in_process(*args), *fragments)


def test_missing_dataset_says_where_and_how(cli_in_process, tmp_path):
    cli = cli_in_process
    proc = cli(
        "--algos",
        "random",
        "--datasets",
        "cifar10",
        "--dataset.dataroot",
        str(tmp_path / "data"),
        "--dataset.download",
        "false",
    )
    assert_user_error(proc, f"dataset cifar10 not found in {tmp_path / 'data'}/cifar10", "--dataset.dataroot")


def test_malformed_desc_yaml(cli_in_process, tmp_path):
    cli = cli_in_process
    bad = tmp_path / "bad.yaml"
    bad.write_text("ch_in: 3\nn_classes: ten\n")
    proc = cli("--algos", "manual", "--eval-only", "--nas.eval.final_desc", str(bad))
    assert_user_error(proc, str(bad), "n_classes: expected an int, got 'ten'")


def test_help_lists_algorithms_and_datasets(cli):
    proc = cli("--help")
    assert proc.returncode == 0
    for name in ("random", "manual", "digits", "cifar10", "npz", "--dry-run", "--nas.eval.trainer.epochs"):
        assert name in proc.stdout


def test_full_dry_run_prints_paper_sizes_without_data(cli):
    proc = cli("--algos", "manual", "--full", "--dry-run", "--dataset.dataroot", "/nonexistent")
    assert proc.returncode == 0, proc.stderr
    assert "3,349,342 parameters" in proc.stdout  # DARTS_V2 at 20 cells / 36 channels
    assert "'n_cells': 20" in proc.stdout and "epochs 600" in proc.stdout and "cutout 16" in proc.stdout
    assert not cli.logdir.exists()


def test_random_search_then_eval_writes_every_output(cli, tiny):
    proc = cli(
        "--algos", "random", "--datasets", "synthetic", "--config", tiny, "--nas.search.random.n_candidates", "2"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = cli.logdir / "archsearch_synthetic_toy" / "random"
    for name in (
        "config.yaml",
        "log.log",
        "log.yaml",
        "summary.yaml",
        "search/final_model_desc.yaml",
        "search/genotype.txt",
        "search/trials.yaml",
        "eval/model_desc.yaml",
        "eval/model.pt",
        "eval/metrics.yaml",
    ):
        assert (out / name).exists(), name
    assert list((out / "tb").glob("events.out.tfevents.*"))
    records = yaml.safe_load((out / "log.yaml").read_text())
    assert [r["epoch"] for r in records if r["event"] == "eval_epoch"] == [1, 2]
    summary = yaml.safe_load((out / "summary.yaml").read_text())
    assert summary["eval"]["params"] > 0 and 0 <= summary["eval"]["test_top1"] <= 1
    assert summary["model"] == "eval/model.pt" and not Path(summary["final_arch"]).is_absolute()
    assert str(out) in proc.stdout and "test accuracy" in proc.stdout
    assert f"report         {out / 'report.html'}" in proc.stdout and (out / "report.html").is_file()
    state = torch.load(out / "eval" / "model.pt", weights_only=True)
    assert state["arch_format"] == "model_desc" and state["state_dict"]
    # a second run moves the first aside instead of deleting it
    assert (
        cli(
            "--algos",
            "random",
            "--datasets",
            "synthetic",
            "--config",
            tiny,
            "--search-only",
            "--nas.search.random.n_candidates",
            "1",
        ).returncode
        == 0
    )
    assert len(list(out.parent.glob("random.*"))) == 1


def test_saved_model_reloads_with_its_weights(cli, tiny):
    import archsearch

    assert cli("--algos", "manual", "--datasets", "synthetic", "--config", tiny).returncode == 0
    path = cli.logdir / "archsearch_synthetic_toy" / "manual" / "eval" / "model.pt"
    model = archsearch.load_model(path)
    saved = torch.load(path, weights_only=True)["state_dict"]
    assert all(torch.equal(v, saved[k]) for k, v in model.state_dict().items())
    assert model(torch.randn(2, 3, 8, 8)).shape == (2, 10)


def test_ctrl_c_leaves_a_valid_checkpoint_and_says_how_to_resume(cli, tiny, tmp_path):
    args = ["--algos", "manual", "--datasets", "synthetic", "--config", tiny, "--nas.eval.trainer.epochs", "3"]
    # the run stops after epoch 1's checkpoint until the signal comes: it cannot finish first
    marker = tmp_path / "waiting"
    env = {WAIT_AT_ENV: "eval:epoch:1", WAIT_FILE_ENV: str(marker)}
    proc = start_cli(*args, logdir=cli.logdir, out=tmp_path / "run", env=env)
    try:
        assert "waiting at eval:epoch:1" in wait_for_file(marker, proc)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=WAIT_TIMEOUT_S)
    finally:
        stop(proc)
    err = (tmp_path / "run.stderr").read_text()
    assert proc.returncode == 130, err[-3000:]
    assert err.strip().splitlines()[-1].startswith("interrupted") and "--common.resume true" in err
    assert "Traceback" not in err
    checkpoint = cli.logdir / "archsearch_synthetic_toy" / "manual" / "eval" / "checkpoint.pt"
    assert torch.load(checkpoint, weights_only=True)["epoch"] == 1
    assert not (checkpoint.parent / "metrics.yaml").exists()


@pytest.mark.parametrize(
    "algo, expected",
    [
        ("darts", ["1,930,618 weight parameters", "architecture parameters: 224", "epochs 50, batch 64", "epochs 600"]),
        ("random", ["epochs 100", "eval model:"]),
        ("naswot", ["100 nasbench201 architectures scored with naswot at batch 128"]),
    ],
)
def test_every_algorithm_dry_runs_at_paper_scale_without_data(cli, algo, expected):
    proc = cli("--algos", algo, "--full", "--dry-run", "--dataset.dataroot", "/nonexistent")
    assert proc.returncode == 0, proc.stderr
    for text in expected:
        assert text in proc.stdout, (text, proc.stdout)
    assert not cli.logdir.exists()
