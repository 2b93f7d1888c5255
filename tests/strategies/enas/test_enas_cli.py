"""ENAS through the real CLI: micro and macro search on synthetic data, outputs and logs."""

import pytest
import yaml

from archsearch.model.genotype import parse_genotype
from tests.conftest import assert_user_error

TINY = {
    "nas": {
        "search": {
            "space": {"n_nodes": 2, "n_layers": 4},
            "model_desc": {"n_cells": 3, "init_channels": 4, "n_nodes": 2},
            "loader": {"batch_size": 16, "limit_batches": 2},
            "trainer": {"epochs": 1, "controller": {"train_steps": 2, "n_samples": 2}},
            "final": {"n_samples": 2, "eval_batches": 1},
        },
        "eval": {
            "model_desc": {"n_cells": 3, "init_channels": 4},
            "loader": {"batch_size": 32, "limit_batches": 2},
            "trainer": {"epochs": 1},
        },
    },
    "dataset": {"synthetic_train": 96, "synthetic_test": 32},
}


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return str(path)


def test_one_micro_search_epoch_then_eval(cli, tiny):
    proc = cli("--algos", "enas", "--datasets", "synthetic", "--config", tiny)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = cli.logdir / "archsearch_synthetic_toy" / "enas"
    desc = yaml.safe_load((out / "search" / "final_model_desc.yaml").read_text())
    assert len(desc["meta"]["arc_seq"]) == 2 * 2 * 4  # two cells, 2 nodes, [in1, op1, in2, op2]
    assert parse_genotype((out / "search" / "genotype.txt").read_text())
    assert "arc_seq" in proc.stdout
    records = yaml.safe_load((out / "log.yaml").read_text())
    epoch = [r for r in records if r["event"] == "search_epoch"][0]
    for key in ("controller_reward", "controller_entropy", "controller_baseline"):
        assert key in epoch
    assert (out / "eval" / "model.pt").exists()


def test_search_refuses_drop_path(cli_in_process, tiny):
    cli = cli_in_process
    proc = cli(
        "--algos", "enas", "--datasets", "synthetic", "--config", tiny, "--nas.search.trainer.drop_path_prob", "0.2"
    )
    assert_user_error(proc, "nas.search.trainer.drop_path_prob=0.2", "set it to 0")


def test_macro_search_then_eval_rebuilds_the_chain(cli, tiny):
    proc = cli(
        "--algos",
        "enas",
        "--datasets",
        "synthetic",
        "--config",
        tiny,
        "--nas.search.space",
        "enas_macro",
        "--nas.search.trainer.controller.temperature",
        "null",
        "--nas.search.trainer.controller.skip_weight",
        "0.8",
        "--nas.search.trainer.controller.op_bias_init",
        "0",
        "--nas.search.trainer.controller.fixed_op_bias",
        "0",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = cli.logdir / "archsearch_synthetic_toy" / "enas"
    found = yaml.safe_load((out / "search" / "final_model_desc.yaml").read_text())
    assert found["meta"]["space"]["name"] == "enas_macro" and len(found["meta"]["arc_seq"]) == 4 + 6
    evaluated = yaml.safe_load((out / "eval" / "model_desc.yaml").read_text())
    assert evaluated["meta"]["arc_seq"] == found["meta"]["arc_seq"]


def test_the_old_space_type_key_names_its_new_name(cli_in_process, tiny):
    cli = cli_in_process
    proc = cli("--algos", "enas", "--datasets", "synthetic", "--config", tiny, "--nas.search.space.type", "macro")
    assert_user_error(proc, "nas.search.space.type was renamed", "nas.search.space.name (enas_micro | enas_macro)")


def test_full_dry_run_prints_paper_sizes(cli):
    proc = cli("--algos", "enas", "--full", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "epochs 150, batch 160" in proc.stdout and "search model:" in proc.stdout and "eval model:" in proc.stdout
