"""NNI graph JSON: loading NNI's documents, exact round trips, running them, and rejecting bad ones."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from archsearch.common.errors import ArchitectureError
from archsearch.strategies.morphism import CnnGenerator, MlpGenerator, graph_to_dict, graph_to_json, json_to_graph


def canonical(doc: dict) -> str:
    return json.dumps(doc, sort_keys=True)


# ---------------------------------------------------------------------------------------- NNI documents
def test_nni_doc_example_loads_round_trips_and_runs(doc_17):
    graph = json_to_graph(json.dumps(doc_17))
    assert graph.n_layers == 17 and graph.n_nodes == 18
    assert json.loads(graph_to_json(graph)) == doc_17
    assert canonical(json.loads(graph_to_json(graph))) == canonical(doc_17)
    model = graph.produce_torch_model().eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_nni_trial_code_pattern_works(doc_17):
    # what NNI's example trial does with the string the tuner sends
    from archsearch.strategies.morphism import json_to_graph as nni_style_json_to_graph

    model = nni_style_json_to_graph(json.dumps(doc_17)).produce_torch_model()
    assert isinstance(model, torch.nn.Module)
    assert model(torch.randn(3, 3, 32, 32)).shape == (3, 10)


@pytest.mark.parametrize("name", ["nni_cnn_morphed", "nni_mlp_morphed"])
def test_documents_written_by_nni_compute_the_same_function(name, load_fixture, data_dir):
    doc = load_fixture(f"{name}.json")
    graph = json_to_graph(doc)
    assert canonical(json.loads(graph_to_json(graph))) == canonical(doc)  # vis, history and all
    reference = torch.load(data_dir / f"{name}.pt", weights_only=True)
    model = graph.produce_torch_model()
    model.load_state_dict(reference["state_dict"])  # NNI's module names are layer ids, so are ours
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(reference["input"]), reference["output"])


def test_seed_cnn_matches_nni_generator_output(load_fixture):
    ours = CnnGenerator(10, (32, 32, 3)).generate(3, 64)
    ours = graph_to_dict(ours)
    assert canonical(ours) == canonical(load_fixture("nni_seed_cnn_32x32x3.json"))


def test_vis_is_optional_and_kept_when_present(doc_17):
    assert "vis" not in json.loads(graph_to_json(json_to_graph(doc_17)))
    with_vis = dict(doc_17, vis=[[3, 8, 8, 8]])
    assert json.loads(graph_to_json(json_to_graph(with_vis)))["vis"] == [[3, 8, 8, 8]]
    # graphs we create write "vis": null like NNI, because NNI's loader requires the key
    assert json.loads(graph_to_json(MlpGenerator(2, (4,)).generate(1, 3)))["vis"] is None


def test_unknown_top_level_keys_survive_a_round_trip(doc_17):
    doc = dict(doc_17, note={"by": "someone"})
    assert json.loads(graph_to_json(json_to_graph(doc)))["note"] == {"by": "someone"}


def test_graph_to_json_writes_the_file(tmp_path, doc_17):
    path = tmp_path / "sub" / "model.json"
    text = graph_to_json(json_to_graph(doc_17), path)
    assert path.read_text() == text


# -------------------------------------------------------------------------------------- weighted graphs
def test_weighted_round_trip_keeps_weights_and_function(make_weighted, forward):
    graph = make_weighted(CnnGenerator(5, (12, 20, 3)).generate(2, 6))
    text = graph_to_json(graph)
    doc = json.loads(text)
    assert doc["weighted"] is True and set(doc["layer_weights"]) == {"1", "2", "5", "6", "10", "12"}
    loaded = json_to_graph(text)
    for original, restored in zip(graph.layer_list, loaded.layer_list):
        if original.weights is None:
            assert restored.weights is None
        else:
            for a, b in zip(original.weights, restored.weights):
                np.testing.assert_array_equal(a, b)
    x = torch.randn(2, 3, 12, 20)
    torch.testing.assert_close(forward(loaded, x), forward(graph, x), rtol=0, atol=0)
    assert canonical(json.loads(graph_to_json(loaded))) == canonical(doc)


def test_without_weights_the_document_says_unweighted(make_weighted):
    graph = make_weighted(MlpGenerator(3, (5,)).generate(1, 4))
    doc = json.loads(graph_to_json(graph, include_weights=False))
    assert doc["weighted"] is False and "layer_weights" not in doc


def test_weighted_true_without_weights_loads_and_runs(doc_17):
    # NNI's own loader crashes on this; we build the model with fresh initialization
    graph = json_to_graph(dict(doc_17, weighted=True))
    assert graph.produce_torch_model()(torch.randn(1, 3, 32, 32)).shape == (1, 10)


def test_weights_survive_through_a_state_dict(make_weighted, forward):
    graph = make_weighted(MlpGenerator(3, (7,)).generate(2, 5))
    clone = json_to_graph(graph_to_json(graph, include_weights=False))
    assert not clone.has_weights()
    clone.set_weights_from_state_dict(graph.weights_state_dict())
    x = torch.randn(4, 7)
    torch.testing.assert_close(forward(clone, x), forward(graph, x))


def test_non_square_and_non_image_inputs_run():
    for input_shape, x in (
        ((20, 36, 3), torch.randn(2, 3, 20, 36)),
        ((50, 4), torch.randn(2, 4, 50)),
        ((6, 10, 8, 2), torch.randn(2, 2, 6, 10, 8)),
    ):
        graph = json_to_graph(graph_to_json(CnnGenerator(7, input_shape).generate(2, 4)))
        assert graph.produce_torch_model().eval()(x).shape == (2, 7)


# ------------------------------------------------------------------------------------------ malformed
def _mutate(doc, change):
    doc = copy.deepcopy(doc)
    change(doc)
    return doc


def _set(path, value):
    def change(doc):
        target = doc
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return change


MALFORMED = [
    ("missing key", lambda d: d.pop("adj_list"), r"missing key 'adj_list'"),
    ("missing layer_list", lambda d: d.pop("layer_list"), r"missing key 'layer_list'"),
    (
        "unknown layer type",
        _set(["layer_list", 3, 1, 0], "StubFancy"),
        r"unknown layer type 'StubFancy'.*"
        r"layer_list\[3\]",
    ),
    ("dangling output node", _set(["layer_list", 5, 1, 2], 99), r"layer_list\[5\].*node 99"),
    ("dangling adjacency node", _set(["adj_list", "4"], [[42, 4]]), r"adj_list\['4'\].*node 42"),
    ("dangling adjacency layer", _set(["adj_list", "4"], [[5, 40]]), r"adj_list\['4'\].*layer 40"),
    ("channel mismatch", _set(["layer_list", 5, 1, 3], 32), r"layer 5 \(StubConv2d\).*input_channel is 32"),
    ("dense units mismatch", _set(["layer_list", 16, 1, 3], 32), r"layer 16 \(StubDense\).*input_units is 32"),
    ("bn features mismatch", _set(["layer_list", 2, 1, 3], 8), r"layer 2 .*num_features is 8"),
    ("declared shape mismatch", _set(["node_list", 4, 1], [15, 15, 64]), r"node 4 is declared \[15, 15, 64\]"),
    ("input shape mismatch", _set(["input_shape"], [28, 28, 3]), r"node 0 has shape"),
    ("input_shape type", _set(["input_shape"], "32x32"), r"input_shape must be a list"),
    ("weighted type", _set(["weighted"], "yes"), r"weighted must be true or false"),
    ("kernel type", _set(["layer_list", 1, 1, 5], "3"), r"layer_list\[1\] \(StubConv2d\).*field 5"),
    ("dropout rate", _set(["layer_list", 13, 1, 3], 1.5), r"dropout rate 1.5"),
    (
        "too many fields",
        _set(["layer_list", 2, 1], ["StubBatchNormalization2d", 2, 3, 64, 1]),
        r"layer_list\[2\].*2 attribute fields",
    ),
    ("node ids out of order", _set(["node_list", 3, 0], 7), r"node_list\[3\] has id 7"),
    ("layer ids out of order", _set(["layer_list", 3, 0], 9), r"layer_list\[3\] has id 9"),
    ("negative shape", _set(["node_list", 2, 1], [32, -32, 64]), r"node_list\[2\]"),
    (
        "layer maps disagree",
        _set(["layer_id_to_input_node_ids", "3"], [2]),
        r"layer_id_to_input_node_ids\['3'\] is \[2\].*reads \[3\]",
    ),
    (
        "missing layer map entry",
        lambda d: d["layer_id_to_output_node_ids"].pop("7"),
        r"layer_id_to_output_node_ids has no entry for layer 7",
    ),
    ("adjacency disagrees", _set(["adj_list", "3"], []), r"adj_list\['3'\] is \[\] but the layers give"),
    ("reverse adjacency disagrees", _set(["reverse_adj_list", "5"], [[3, 3]]), r"reverse_adj_list\['5'\]"),
    ("bad layer map key", _set(["adj_list", "x"], []), r"adj_list has key 'x'"),
    (
        "bad history entry",
        _set(["operation_history"], [["to_fancier_model", 1]]),
        r"operation_history\[0\].*to_wider_model",
    ),
    ("bad weights shape", _set(["layer_weights"], {"14": [[[0.0]], [0.0]]}), r"layer_weights\['14'\]\[0\] has shape"),
    ("weights for a weightless layer", _set(["layer_weights"], {"0": [[0.0]]}), r"layer_weights\['0'\]"),
]


@pytest.mark.parametrize("case, change, message", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_documents_name_the_problem(doc_17, case, change, message):
    with pytest.raises(ArchitectureError, match=message) as info:
        json_to_graph(_mutate(doc_17, change))
    assert "\n" not in str(info.value) and str(info.value).startswith("IR JSON: ")


def _chain_doc(layers, shapes, input_shape):
    """A document from (type, inputs, output, *attrs) tuples, with consistent maps and adjacency."""
    doc = {
        "input_shape": input_shape,
        "weighted": False,
        "operation_history": [],
        "layer_id_to_input_node_ids": {},
        "layer_id_to_output_node_ids": {},
        "adj_list": {str(i): [] for i in range(len(shapes))},
        "reverse_adj_list": {str(i): [] for i in range(len(shapes))},
        "node_list": [[i, s] for i, s in enumerate(shapes)],
        "layer_list": [],
    }
    for layer_id, (type_name, inputs, output, *attrs) in enumerate(layers):
        input_ids = inputs if isinstance(inputs, list) else [inputs]
        doc["layer_id_to_input_node_ids"][str(layer_id)] = input_ids
        doc["layer_id_to_output_node_ids"][str(layer_id)] = [output]
        for u in input_ids:
            doc["adj_list"][str(u)].append([output, layer_id])
            doc["reverse_adj_list"][str(output)].append([u, layer_id])
        doc["layer_list"].append([layer_id, [type_name, inputs, output, *attrs]])
    return doc


def test_a_cycle_is_rejected():
    doc = _chain_doc(
        [("StubReLU", 0, 1), ("StubReLU", 1, 2), ("StubReLU", 2, 3), ("StubReLU", 3, 1)], [[4], [4], [4], [4]], [4]
    )
    with pytest.raises(ArchitectureError, match=r"cycle through node\(s\) \[1, 2, 3\]"):
        json_to_graph(doc)


def test_two_outputs_are_rejected():
    doc = _chain_doc(
        [("StubReLU", 0, 1), ("StubDense", 1, 2, 4, 3), ("StubDense", 1, 3, 4, 2)], [[4], [4], [3], [2]], [4]
    )
    with pytest.raises(ArchitectureError, match=r"2 output nodes \[2, 3\]"):
        json_to_graph(doc)


def test_add_of_different_shapes_is_rejected():
    doc = _chain_doc(
        [("StubDense", 0, 1, 4, 3), ("StubDense", 0, 2, 4, 2), ("StubAdd", [1, 2], 3)], [[4], [3], [2], [3]], [4]
    )
    with pytest.raises(ArchitectureError, match=r"layer 2 \(StubAdd\).*equal shapes"):
        json_to_graph(doc)


def test_a_small_hand_written_graph_with_concat_runs():
    doc = _chain_doc(
        [
            ("StubDense", 0, 1, 4, 3),
            ("StubDense", 0, 2, 4, 2),
            ("StubConcatenate", [1, 2], 3),
            ("StubDense", 3, 4, 5, 1),
        ],
        [[4], [3], [2], [5], [1]],
        [4],
    )
    assert json_to_graph(doc).produce_torch_model()(torch.randn(6, 4)).shape == (6, 1)


@pytest.mark.parametrize("text, message", [("{", r"not valid JSON \(line 1"), ("[1, 2]", r"JSON object")])
def test_unparseable_text_is_an_architecture_error(text, message):
    with pytest.raises(ArchitectureError, match=message):
        json_to_graph(text)
