"""Network morphism through the real CLI: trials, files, evaluation of the best graph, reload."""

import json

import torch
import yaml

import archsearch
from archsearch.algos.morphism import json_to_graph
from tests.conftest import config_fixture

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
    trials = yaml.safe_load((out / "search" / "trials" / "trials.yaml").read_text())
    assert [t["trial_id"] for t in trials] == [0, 1, 2] and trials[0]["father_id"] == -1
    assert all(t["status"] == "done" for t in trials)
    assert trials[1]["inherited_weights"]  # children start from their father's trained weights
    best = (out / "search" / "best_model.txt").read_text()
    assert "best" in best
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
