"""The trial queue (MorphismSearchStrategy) and the resumable search loop."""

from __future__ import annotations

import json
import math

import pytest
import torch
import yaml

from archsearch.algos.morphism import (
    MorphismLimits,
    MorphismSearchStrategy,
    json_to_graph,
    run_morphism_search,
)
from archsearch.common.errors import ConfigError


def small_cnn_strategy(**kwargs) -> MorphismSearchStrategy:
    options = dict(
        n_output_node=4,
        input_shape=(8, 12, 3),
        model_len=2,
        model_width=4,
        seed=0,
        max_candidates=24,
        limits=MorphismLimits(n_neighbours=4),
    )
    options.update(kwargs)
    return MorphismSearchStrategy(**options)


def test_proposals_before_any_result_are_distinct():
    strategy = small_cnn_strategy()
    proposals = [strategy.propose() for _ in range(5)]
    assert [p[0] for p in proposals] == [0, 1, 2, 3, 4]
    assert proposals[0][2] == -1  # the seed network comes first
    keys = {graph.extract_descriptor().key for _, graph, _ in proposals}
    assert len(keys) == 5


def test_report_feeds_the_optimizer_and_tracks_the_best():
    strategy = small_cnn_strategy(optimize_mode="minimize")
    for _ in range(3):
        trial_id, graph, _ = strategy.propose()
        strategy.report(trial_id, graph.size())
    trial_id, graph, father_id = strategy.propose()
    assert father_id in (0, 1, 2)  # a child of an observed model, chosen by the optimizer
    assert strategy.best_trial.metric == min(t.metric for t in strategy.trials.values() if t.metric)
    with pytest.raises(ValueError, match="already reported"):
        strategy.report(0, 1.0)
    with pytest.raises(ValueError, match="unknown trial id 99"):
        strategy.report(99, 1.0)


def test_failed_trials_are_recorded_not_fitted():
    strategy = small_cnn_strategy()
    trial_id, _, _ = strategy.propose()
    strategy.report(trial_id, float("nan"))
    assert strategy.trials[trial_id].status == "failed" and strategy.best_trial is None
    next_id, graph, father = strategy.propose()  # still proposes: a child of the failed seed
    assert next_id == 1 and father == 0


def test_children_inherit_trained_weights(make_weighted, forward, same_function):
    strategy = small_cnn_strategy()
    trial_id, graph, _ = strategy.propose()
    make_weighted(graph)  # stands in for training + graph.set_weights_from_model(model)
    strategy.report(trial_id, 0.5)
    x = torch.randn(2, 3, 8, 12)
    for _ in range(3):
        child_id, child, father_id = strategy.propose()
        assert father_id == trial_id and child.has_weights()
        same_function(forward(graph, x), forward(child, x))
        strategy.report(child_id, 0.4)


def test_from_config_maps_keys_and_rejects_unknown_ones():
    strategy = MorphismSearchStrategy.from_config(
        {
            "n_output_node": 3,
            "input_shape": [10],
            "task": "common",
            "optimize_mode": "minimize",
            "beta": 1.0,
            "t_min": 0.001,
            "model_len": 2,
            "model_width": 5,
            "max_model_size": 10_000,
            "max_layer_width": 64,
            "max_layers": 20,
            "n_neighbours": 4,
            "seed": 3,
        }
    )
    assert strategy.limits == MorphismLimits(10_000, 64, 20, 4)
    assert strategy.optimizer.beta == 1.0 and strategy.optimize_mode == "minimize"
    with pytest.raises(ConfigError, match="unknown morphism config key 'epochz'"):
        MorphismSearchStrategy.from_config({"epochz": 3})
    with pytest.raises(ConfigError, match="task must be one of"):
        MorphismSearchStrategy(task="nlp")


# ------------------------------------------------------------------------------------------ the loop
def dummy_train(calls: list):
    def train_and_score(graph, trial_id):
        calls.append(trial_id)
        model = graph.produce_torch_model()
        assert model(torch.randn(2, 3, 8, 12)).shape == (2, 4)
        graph.set_weights_from_model(model)  # "trained" weights for the children to inherit
        return -graph.size()

    return train_and_score


def test_search_loop_writes_files_and_resumes(tmp_path):
    calls, lines = [], []
    result = run_morphism_search(
        small_cnn_strategy(), dummy_train(calls), n_trials=4, out_dir=tmp_path, logger=lines.append
    )
    assert calls == [0, 1, 2, 3] and result.n_finished == 4
    trials_dir = tmp_path / "trials"
    index = yaml.safe_load((trials_dir / "trials.yaml").read_text())
    assert [r["trial_id"] for r in index] == [0, 1, 2, 3] and all(r["status"] == "done" for r in index)
    for record in index:
        doc = json.loads((trials_dir / record["json"]).read_text())
        assert doc["weighted"] is False  # loadable by NNI's own json_to_graph
        assert json_to_graph(doc).size() == -record["metric"]
        assert (trials_dir / record["weights"]).exists()
    best = max(index, key=lambda r: r["metric"])
    assert result.best_trial_id == best["trial_id"]
    assert (tmp_path / "best_model.txt").read_text().splitlines()[0] == f"best model: {best['trial_id']}"
    assert (tmp_path / "best_model.json").read_text() == (trials_dir / best["json"]).read_text()
    assert (tmp_path / "best_model.pt").exists()
    assert any("trial 3" in line for line in lines)

    # a fresh process picks up where it stopped: only the missing trials run
    resumed_calls = []
    result = run_morphism_search(
        small_cnn_strategy(), dummy_train(resumed_calls), n_trials=6, out_dir=tmp_path, logger=lines.append
    )
    assert resumed_calls == [4, 5] and result.n_finished == 6
    index = yaml.safe_load((trials_dir / "trials.yaml").read_text())
    assert [r["trial_id"] for r in index] == list(range(6))
    keys = {json_to_graph((trials_dir / r["json"]).read_text()).extract_descriptor().key for r in index}
    assert len(keys) == 6  # resumed trials are known to the strategy: no repeats


def test_interrupted_trial_is_redone_on_resume(tmp_path):
    run_morphism_search(small_cnn_strategy(), dummy_train([]), n_trials=2, out_dir=tmp_path, logger=print)
    index_path = tmp_path / "trials" / "trials.yaml"
    index = yaml.safe_load(index_path.read_text())
    index.append(dict(index[-1], trial_id=2, status="running", metric=None))
    index_path.write_text(yaml.safe_dump(index))
    calls, lines = [], []
    run_morphism_search(small_cnn_strategy(), dummy_train(calls), n_trials=3, out_dir=tmp_path, logger=lines.append)
    assert calls == [2] and any("dropping trial 2" in line for line in lines)


def test_failing_callbacks_mark_trials_and_three_in_a_row_stop(tmp_path):
    attempts = []

    def flaky(graph, trial_id):
        attempts.append(trial_id)
        if trial_id in (1, 3, 4, 5):
            raise RuntimeError("out of memory")
        return 1.0 if trial_id != 2 else math.nan

    with pytest.raises(RuntimeError, match="out of memory"):
        run_morphism_search(small_cnn_strategy(), flaky, n_trials=10, out_dir=tmp_path, logger=lambda s: None)
    index = yaml.safe_load((tmp_path / "trials" / "trials.yaml").read_text())
    assert [r["status"] for r in index] == ["done", "failed", "failed", "failed", "failed", "failed"]
    assert attempts == [0, 1, 2, 3, 4, 5]


def test_time_budget_stops_the_loop(tmp_path):
    calls = []
    result = run_morphism_search(
        small_cnn_strategy(),
        dummy_train(calls),
        n_trials=50,
        time_budget_s=0.0,
        out_dir=tmp_path,
        logger=lambda s: None,
    )
    assert calls == [] and result.best_trial_id is None
