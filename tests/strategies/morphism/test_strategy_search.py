"""The trial queue (MorphismSearchStrategy), and morphism driven by the one trial loop (MorphismTrials)."""

from __future__ import annotations

import json
import math

import pytest
import torch
import yaml

from archsearch.common.errors import ConfigError
from archsearch.search.trial_loop import Budget, TrialLoop
from archsearch.strategies.morphism import MorphismLimits, MorphismSearchStrategy, MorphismTrials, json_to_graph


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


# ----------------------------------------------------------------------------- on the trial loop
def dummy_train(calls: list):
    def score(graph, trial):
        calls.append(trial.index)
        model = graph.produce_torch_model()
        assert model(torch.randn(2, 3, 8, 12)).shape == (2, 4)
        graph.set_weights_from_model(model)  # "trained" weights for the children to inherit
        return {"val_top1": -graph.size()}

    return score


def search(folder, score, n_trials: int, **kwargs) -> list[dict]:
    """One process's worth of search: a fresh queue resuming whatever the folder holds."""
    trials = MorphismTrials(small_cnn_strategy(**kwargs), folder, score, log=lambda line: None)
    loop = TrialLoop(folder, 0, Budget(n_trials), resume=True, log=lambda line: None)
    return loop.run(trials.propose, trials.evaluate).records


def test_the_trial_loop_drives_morphism_and_a_resume_reruns_no_finished_trial(tmp_path):
    calls = []
    records = search(tmp_path, dummy_train(calls), 4)
    assert calls == [0, 1, 2, 3] and [r["father_id"] for r in records][0] == -1
    index = yaml.safe_load((tmp_path / "trials.yaml").read_text())
    assert [r["index"] for r in index] == [0, 1, 2, 3]
    for record in index:
        doc = json.loads((tmp_path / record["arch"]).read_text())
        assert doc["weighted"] is False  # loadable by NNI's own json_to_graph
        assert json_to_graph(doc).size() == record["n_params"] == -record["metrics"]["val_top1"]
        assert (tmp_path / "trials" / f"trial_{record['index']:03d}.pt").exists()
    assert any(r["inherited_weights"] for r in index[1:])  # children start from their father's weights

    resumed_calls = []
    records = search(tmp_path, dummy_train(resumed_calls), 6)
    assert resumed_calls == [4, 5] and [r["index"] for r in records] == list(range(6))
    keys = {json_to_graph((tmp_path / r["arch"]).read_text()).extract_descriptor().key for r in records}
    assert len(keys) == 6  # resumed trials are known to the queue: no repeats


def test_failing_trials_are_recorded_and_three_in_a_row_stop(tmp_path):
    attempts = []

    def flaky(graph, trial):
        attempts.append(trial.index)
        if trial.index in (1, 3, 4, 5):
            raise RuntimeError("out of memory")
        return {"val_top1": 1.0 if trial.index != 2 else math.nan}

    with pytest.raises(RuntimeError, match="3 morphism trials in a row failed, the last with RuntimeError: out of"):
        search(tmp_path, flaky, 10)
    index = yaml.safe_load((tmp_path / "trials.yaml").read_text())
    assert [r["metrics"].get("error") is not None for r in index] == [False, True, False, True, True, True]
    assert attempts == [0, 1, 2, 3, 4, 5]


def test_an_exhausted_space_ends_the_search_early(tmp_path):
    # no child of the seed fits max_model_size, so after the seed there is nothing left to propose
    records = search(tmp_path, dummy_train([]), 5, limits=MorphismLimits(max_model_size=1, n_neighbours=2))
    assert [r["index"] for r in records] == [0]
