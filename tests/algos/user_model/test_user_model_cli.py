"""The MNIST example through the real CLI with each strategy: search, final_arch.json, eval, load_model; errors."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

import archsearch
from archsearch.spaces.mutables import Mutable, MutableSpace
from examples.mnist_space import Net
from tests.conftest import REPO, assert_user_error

EXAMPLE = str(REPO / "examples" / "mnist_space.yaml")
TINY = {
    "nas": {
        "search": {
            "loader": {"limit_batches": 3},
            "trainer": {"epochs": 2, "controller": {"train_steps": 2, "n_samples": 2}},
            "final": {"n_samples": 2, "eval_batches": 1},
            "random": {"n_candidates": 2},
        },
        "eval": {"loader": {"limit_batches": 3}, "trainer": {"epochs": 1}},
    }
}


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return str(path)


@pytest.mark.parametrize("algo", ["darts", "enas", "random"])
def test_each_strategy_searches_the_example_exports_its_choices_and_trains_the_fixed_model(cli, tiny, algo):
    proc = cli("--algos", algo, "--config", EXAMPLE, "--config", tiny)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = cli.logdir / "archsearch_digits_toy" / algo
    final = json.loads((out / "search" / "final_arch.json").read_text())
    assert final["model"] == "examples.mnist_space:Net" and final["model_kwargs"] == {"in_channels": 1, "n_classes": 10}
    choices = MutableSpace(Net()).parse(final["choices"])  # a complete, valid choice JSON
    assert yaml.safe_load((out / "search" / "metrics.yaml").read_text())
    model = archsearch.load_model(out / "eval" / "model.pt", model=final["model"])  # the class, named by us
    assert not any(isinstance(m, Mutable) for m in model.modules())
    assert model.conv1.kernel_size == ((3, 3), (5, 5))[choices["conv1"]]
    assert list(model.skipconnect.indices) == list(choices["skip"])
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 10)
    summary = yaml.safe_load((out / "summary.yaml").read_text())
    assert summary["eval"]["params"] == sum(p.numel() for p in model.parameters())
    if algo == "darts":
        records = yaml.safe_load((out / "log.yaml").read_text())
        tables = [r["softmax"] for r in records if r["event"] == "arch_weights"]
        assert len(tables) == 2 and set(tables[0]) == {"conv1", "conv2", "skip"}
        assert [r["choices"] for r in records if r["event"] == "choices"][-1] == final["choices"]


def test_eval_only_of_a_bad_choice_json_is_a_user_error(cli, tiny, tmp_path):
    bad = tmp_path / "choices.json"
    bad.write_text(json.dumps({"conv1": "conv7x7", "conv2": "conv3x3", "skip": []}))
    proc = cli(
        "--algos", "darts", "--config", EXAMPLE, "--config", tiny, "--eval-only", "--nas.eval.final_desc", str(bad)
    )
    assert_user_error(proc, "choices.json: key 'conv1': 'conv7x7' is not a candidate", "conv5x5")


@pytest.mark.parametrize(
    "model, message",
    [
        ("nope:Net", "cannot import module 'nope'"),
        ("torch.nn:Identity", "has no LayerChoice or InputChoice"),
    ],
)
def test_bad_user_models_are_user_errors(cli, tiny, model, message):
    proc = cli("--algos", "enas", "--config", EXAMPLE, "--config", tiny, "--nas.search.space.model", model)
    assert_user_error(proc, message)


def test_dry_run_describes_the_space_and_trains_nothing(cli):
    proc = cli("--algos", "darts", "--config", EXAMPLE, "--dry-run")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "3 choices" in proc.stdout and "8 architectures" in proc.stdout
    assert "architecture parameters: 6" in proc.stdout
    assert not cli.logdir.exists()
