"""NNI's own unit tests for NetworkMorphismTuner (test/ut/sdk/test_networkmorphism_tuner.py), run through the
import alias: the same imports, the same checks, plus load_best_model and a few rounds of search.

Written as pytest functions; NNI's unittest methods map one-to-one (test_graph_json_transform,
test_to_wider_graph, test_to_deeper_graph, test_to_skip_connection_graph, test_generate_parameters,
test_receive_trial_result, test_update_search_space, test_init_search, test_add_model,
test_get_best_model_id). NNI's tests write temp.json and model_path/ into the working directory, so
every test here runs in its own temporary one.
"""

from __future__ import annotations

import json
import types
from copy import deepcopy

import pytest
import torch

import archsearch.compat.nni

archsearch.compat.nni.install()

from nni.algorithms.hpo.networkmorphism_tuner.graph import graph_to_json, json_to_graph  # noqa: E402
from nni.algorithms.hpo.networkmorphism_tuner.graph_transformer import (  # noqa: E402
    to_deeper_graph,
    to_skip_connection_graph,
    to_wider_graph,
)
from nni.algorithms.hpo.networkmorphism_tuner.layers import layer_description_extractor  # noqa: E402
from nni.algorithms.hpo.networkmorphism_tuner.networkmorphism_tuner import NetworkMorphismTuner  # noqa: E402
from nni.algorithms.hpo.networkmorphism_tuner.nn import CnnGenerator  # noqa: E402


@pytest.fixture(autouse=True)
def in_tmp_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def recovered_seed_graph():
    graph_init = CnnGenerator(10, (32, 32, 3)).generate()
    return json_to_graph(graph_to_json(graph_init, "temp.json"))


def test_graph_json_transform():
    graph_init = CnnGenerator(10, (32, 32, 3)).generate()
    graph_init = to_wider_graph(deepcopy(graph_init))
    graph_init = to_deeper_graph(deepcopy(graph_init))
    graph_init = to_skip_connection_graph(deepcopy(graph_init))
    graph_recover = json_to_graph(graph_to_json(graph_init, "temp.json"))

    for attr in ("input_shape", "weighted", "layer_id_to_input_node_ids", "adj_list", "reverse_adj_list", "n_dim",
                 "conv", "batch_norm", "vis"):  # fmt: skip
        assert getattr(graph_init, attr) == getattr(graph_recover, attr), attr
    assert len(graph_init.operation_history) == len(graph_recover.operation_history) > 0
    assert [n.shape for n in graph_init.node_list] == [n.shape for n in graph_recover.node_list]
    assert len(graph_init.node_to_id) == len(graph_recover.node_to_id)
    described = [
        [layer_description_extractor(layer, graph.node_to_id) for layer in graph.layer_list]
        for graph in (graph_init, graph_recover)
    ]
    assert described[0] == described[1]
    for graph in (graph_init, graph_recover):
        assert [graph.node_to_id[n] for n in graph.node_list] == list(range(len(graph.node_list)))
        assert [graph.layer_to_id[layer] for layer in graph.layer_list] == list(range(len(graph.layer_list)))


@pytest.mark.parametrize("morphism", [to_wider_graph, to_deeper_graph, to_skip_connection_graph])
def test_a_morphism_of_a_recovered_graph_builds_a_working_model(morphism):
    graph = recovered_seed_graph()
    child = morphism(deepcopy(graph))
    assert child.extract_descriptor().key != graph.extract_descriptor().key  # it did change the graph
    out = child.produce_torch_model()(torch.ones(1, 3, 32, 32))
    assert out.shape == torch.Size([1, 10])


def test_generate_parameters():
    tuner = NetworkMorphismTuner()
    model_json = json.loads(tuner.generate_parameters(0))
    assert model_json["input_shape"] == [32, 32, 3]
    assert tuner.total_data[0][1:] == (-1, 0)


def test_receive_trial_result():
    tuner = NetworkMorphismTuner()
    model_json = tuner.generate_parameters(0)
    tuner.receive_trial_result(0, {}, 0.7)
    json_out, father_id, model_id = tuner.total_data[0]
    assert father_id == -1 and model_json == json_out
    assert tuner.bo.search_tree.adj_list[model_id] == []
    assert tuner.history[-1] == {"model_id": 0, "metric_value": 0.7}
    with pytest.raises(RuntimeError, match="not in total_data"):
        tuner.receive_trial_result(5, {}, 0.7)


def test_update_search_space():
    tuner = NetworkMorphismTuner()
    assert tuner.search_space == {}
    tuner.update_search_space("Test")
    assert tuner.search_space == "Test"


def test_init_search():
    tuner = NetworkMorphismTuner()
    assert tuner.history == []
    tuner.init_search()
    assert tuner.model_count == 1 and len(tuner.training_queue) == 1 and len(tuner.descriptors) == 1


def test_add_model_and_get_best_model_id():
    tuner = NetworkMorphismTuner()
    assert tuner.add_model(0.8, 0) == tuner.history[-1] == {"model_id": 0, "metric_value": 0.8}
    tuner.add_model(0.9, 1)
    assert tuner.get_best_model_id() == 1
    assert open("model_path/best_model.txt").read() == "best model: 1"  # noqa: SIM115 - NNI's file
    minimizing = NetworkMorphismTuner(optimize_mode="minimize", path="other")
    minimizing.add_model(0.8, 0)
    minimizing.add_model(0.9, 1)
    assert minimizing.get_best_model_id() == 0 and minimizing.get_metric_value_by_id(1) == 0.9


def test_rounds_of_search_grow_children_of_the_best_and_load_best_model():
    tuner = NetworkMorphismTuner(default_model_width=8, default_model_len=2)
    fathers = []
    for parameter_id in range(4):
        graph = json_to_graph(tuner.generate_parameters(parameter_id))
        fathers.append(tuner.total_data[parameter_id][1])
        tuner.receive_trial_result(parameter_id, {}, {"default": graph.size() / 1e5})  # NNI's dict form
    assert fathers[0] == -1 and all(f in range(i) for i, f in enumerate(fathers[1:], start=1))
    keys = {tuner.load_model_by_id(i).extract_descriptor().key for i in range(4)}
    assert len(keys) == 4  # every proposal is a new architecture
    best = max(tuner.history, key=lambda item: item["metric_value"])
    assert tuner.get_best_model_id() == best["model_id"]
    assert tuner.load_best_model().size() / 1e5 == best["metric_value"]
    assert tuner.bo.search_tree.get_dict()["name"] == 0  # the seed is the search tree's root


def test_the_alias_fills_a_module_table_and_leaves_a_real_nni_alone():
    modules: dict = {}
    names = archsearch.compat.nni.install(modules)
    assert set(names) == set(modules) and modules["nni"].algorithms.hpo.networkmorphism_tuner.graph.json_to_graph
    assert modules["nni.algorithms.hpo.networkmorphism_tuner.utils"].Constant.MODEL_WIDTH == 64  # NNI's default
    with pytest.raises(ImportError, match="a real nni is already imported"):
        archsearch.compat.nni.install({"nni": types.ModuleType("nni")})
