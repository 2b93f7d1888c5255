"""Network morphism through the real CLI: trials, files, evaluation of the best graph, reload."""

import json

import torch
import yaml

import archsearch
from archsearch.strategies.morphism import json_to_graph
from tests.conftest import assert_user_error, config_fixture

TINY = {
    "nas": {
        "search": {
            "morphism": {"n_trials": 3, "model_width": 8, "model_len": 2},
            "loader": {"batch_size": 32, "limit_batches": 2},
            "trainer": {"epochs": 1},
        },
        "eval": {"loader": {"batch_size": 32, "limit_batches": 2}, "trainer": {"epochs": 1}},
    },
    "dataset": {"synthetic_train": 96, "synthetic_test": 32},
}


tiny = config_fixture(TINY)


def test_trials_then_eval_of_the_best_graph(cli, tiny):
    proc = cli("--algos", "morphism", "--datasets", "synthetic", "--config", tiny)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = cli.logdir / "archsearch_synthetic_toy" / "morphism"
    trials = yaml.safe_load((out / "search" / "trials.yaml").read_text())  # the trial loop's index
    assert [t["index"] for t in trials] == [0, 1, 2] and trials[0]["father_id"] == -1
    assert [t["arch"] for t in trials] == [f"trials/trial_{i:03d}.json" for i in range(3)]
    assert all(0 <= t["metrics"]["val_top1"] <= 1 for t in trials)
    assert trials[1]["inherited_weights"]  # children start from their father's trained weights
    best = max(trials, key=lambda t: t["metrics"]["val_top1"])
    assert (out / "search" / "best_model.txt").read_text().startswith(f"best model: {best['index']}\n")
    assert yaml.safe_load((out / "summary.yaml").read_text())["search"]["best_trial"] == best["index"]
    graph = json_to_graph((out / "search" / "best_model.json").read_text())
    assert (
        json.loads((out / "eval" / "model.json").read_text())["node_list"]
        == json.loads((out / "search" / "best_model.json").read_text())["node_list"]
    )
    model = archsearch.load_model(out / "eval" / "model.pt")
    assert model(torch.randn(2, 3, 8, 8)).shape == (2, 10)
    assert graph.size() == yaml.safe_load((out / "eval" / "metrics.yaml").read_text())["params"]


def test_full_dry_run_prints_the_cifar10_configuration(cli):
    proc = cli("--algos", "morphism", "--full", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "task cv, input_width 32, input_channel 3, n_output_node 10" in proc.stdout
    assert "n_cells" not in proc.stdout  # no cell settings for a graph-IR algorithm


def test_finetune_without_weights_is_a_user_error(cli, tiny, tmp_path):
    graph = tmp_path / "g.json"
    assert cli("--algos", "morphism", "--datasets", "synthetic", "--config", tiny, "--search-only").returncode == 0
    src = cli.logdir / "archsearch_synthetic_toy" / "morphism" / "search" / "best_model.json"
    graph.write_text(src.read_text())
    proc = cli(
        "--algos",
        "morphism",
        "--datasets",
        "synthetic",
        "--config",
        tiny,
        "--eval-only",
        "--nas.eval.final_desc",
        str(graph),
        "--nas.eval.morphism.init",
        "finetune",
    )
    assert proc.returncode == 2 and "init finetune needs the trained weights" in proc.stderr


def test_morphism_on_another_space_is_the_one_line_impossible_pair_error(cli_in_process):
    cli = cli_in_process
    proc = cli("--algos", "morphism", "--nas.search.space.name", "nasbench201", "--dry-run")
    assert_user_error(proc, "--algos morphism needs a search space with morphism, which nasbench201 does not provide")
    assert "spaces morphism runs on: morphism" in proc.stderr
