"""Morphisms: function preservation, NNI-style history, limits, and refusing what cannot be done."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from archsearch.common.errors import ArchitectureError
from archsearch.strategies.morphism import (
    CnnGenerator,
    Graph,
    MlpGenerator,
    MorphismLimits,
    StubBatchNormalization2d,
    StubConv2d,
    StubDense,
    StubGlobalPooling2d,
    StubReLU,
    graph_to_json,
    json_to_graph,
    to_deeper_graph,
    to_skip_connection_graph,
    to_wider_graph,
    transform,
)
from archsearch.strategies.morphism.transformer import create_new_block

# CnnGenerator(10, (16, 24, 3)).generate(3, 8): 0 ReLU, 1 BN, 2 Conv, 3 Pool, 4 ReLU, 5 BN, 6 Conv, 7 Pool,
# 8 ReLU, 9 BN, 10 Conv, 11 Pool, 12 GAP, 13 Dropout, 14 Dense, 15 ReLU, 16 Dense


@pytest.fixture
def cnn(make_weighted):
    return make_weighted(CnnGenerator(10, (16, 24, 3)).generate(3, 8))


@pytest.fixture
def x_cnn():
    return torch.randn(4, 3, 16, 24, generator=torch.Generator().manual_seed(1))


def rng(seed=0):
    return np.random.default_rng(seed)


MORPHISMS = {
    "wider conv": lambda g: g.to_wider_model(2, 5, rng()),
    "wider dense": lambda g: g.to_wider_model(14, 7, rng()),
    "deeper conv after relu": lambda g: g.to_deeper_model(4, create_new_block(g, 4, rng()), rng()),
    "deeper conv after conv": lambda g: g.to_deeper_model(2, create_new_block(g, 2, rng()), rng()),
    "deeper dense": lambda g: g.to_deeper_model(15, create_new_block(g, 15, rng()), rng()),
    "add skip": lambda g: g.to_add_skip_model(4, 9, rng()),
    "concat skip": lambda g: g.to_concat_skip_model(0, 5, rng()),
}


@pytest.mark.parametrize("name", MORPHISMS)
def test_morphism_preserves_the_function(name, cnn, x_cnn, forward, same_function):
    before = forward(cnn, x_cnn)
    child = cnn.copy()
    MORPHISMS[name](child)
    assert child.n_layers > cnn.n_layers or child.size() > cnn.size()
    same_function(before, forward(child, x_cnn))
    # and the child survives its own JSON round trip with the same function
    same_function(before, forward(json_to_graph(graph_to_json(child)), x_cnn))


def test_deeper_blocks_are_conv_bn_relu_only_where_relu_is_identity(cnn):
    assert [type(layer).__name__ for layer in create_new_block(cnn, 4, rng())][1:] == [
        "StubBatchNormalization2d",
        "StubReLU",
    ]  # after a ReLU: its input is >= 0
    assert [type(layer).__name__ for layer in create_new_block(cnn, 2, rng())][1:] == [
        "StubBatchNormalization2d"
    ]  # after a conv a ReLU would change the function
    assert [type(layer).__name__ for layer in create_new_block(cnn, 15, rng())] == ["StubDense", "StubReLU"]


def test_operation_history_is_recorded_as_nni_does(cnn):
    child = cnn.copy()
    child.to_wider_model(2, 4, rng())
    child.to_deeper_model(4, StubConv2d(12, 12, 3), rng())  # layer 2 is 12 wide now
    child.to_add_skip_model(4, 9, rng())
    child.to_concat_skip_model(0, 5, rng())
    history = json.loads(graph_to_json(child))["operation_history"]
    assert history[0] == ["to_wider_model", 2, 4]
    assert history[1][:2] == ["to_deeper_model", 4] and history[1][2][0] == "StubConv2d"
    assert history[1][2][3:] == [12, 12, 3, 1, 1]
    assert history[2:] == [["to_add_skip_model", 4, 9], ["to_concat_skip_model", 0, 5]]
    # replaying the history on the father rebuilds the same architecture
    replay = cnn.copy()
    replay.apply_operations(history, rng())
    assert replay.extract_descriptor() == child.extract_descriptor()
    assert [n.shape for n in replay.node_list] == [n.shape for n in child.node_list]


def _strided_graph() -> Graph:
    """conv(s1) - relu - conv(s2) - bn - relu - gap - dense on a non-square 15x22 input."""
    graph = Graph((15, 22, 3), weighted=False)
    node = graph.add_layer(StubConv2d(3, 6, 3, stride=1), 0)
    node = graph.add_layer(StubReLU(), node)
    node = graph.add_layer(StubConv2d(6, 6, 3, stride=2), node)
    node = graph.add_layer(StubBatchNormalization2d(6), node)
    node = graph.add_layer(StubReLU(), node)
    node = graph.add_layer(StubGlobalPooling2d(), node)
    graph.add_layer(StubDense(6, 4), node)
    return graph


def test_widening_a_strided_conv_keeps_its_stride(make_weighted, forward, same_function):
    graph = make_weighted(_strided_graph())
    x = torch.randn(3, 3, 15, 22)
    before = forward(graph, x)
    child = graph.copy()
    child.to_wider_model(2, 6, rng())
    assert child.layer_list[2].stride == 2 and child.layer_list[2].filters == 12
    assert child.node_list[3].shape == (8, 11, 12)
    same_function(before, forward(child, x))
    # NNI's unweighted path reset the stride too; ours keeps it there as well
    bare = _strided_graph()
    bare.to_wider_model(2, 6)
    assert bare.layer_list[2].stride == 2


def test_skip_across_a_strided_conv_matches_resolution(make_weighted, forward, same_function):
    graph = make_weighted(_strided_graph())
    x = torch.randn(2, 3, 15, 22)
    before = forward(graph, x)
    child = graph.copy()
    child.to_add_skip_model(1, 4, rng())  # relu (15x22) ... relu (8x11): the skip copies the stride
    assert any(
        isinstance(layer, StubConv2d) and layer.kernel_size == 1 and layer.stride == 2 for layer in child.layer_list
    )
    same_function(before, forward(child, x))


def test_widening_through_an_add_widens_both_branches(cnn, x_cnn, forward, same_function):
    child = cnn.copy()
    child.to_add_skip_model(4, 9, rng())  # the skip's 1x1 conv and layer 6 both feed the Add
    before = forward(child, x_cnn)
    grown = child.copy()
    grown.to_wider_model(6, 3, rng())
    assert grown.layer_list[6].filters == 11
    assert sum(isinstance(layer, StubConv2d) and layer.filters == 11 for layer in grown.layer_list) == 2
    same_function(before, forward(grown, x_cnn))


def test_mlp_morphisms_preserve_the_function(make_weighted, forward, same_function):
    graph = make_weighted(MlpGenerator(4, (12,)).generate(3, 6))
    x = torch.randn(5, 12)
    before = forward(graph, x)
    generator = rng(3)
    for _ in range(8):
        children = transform(graph, rng=generator)
        graph = children[int(generator.integers(len(children)))]
        same_function(before, forward(graph, x))
    assert graph.n_layers > 10


def test_random_chains_of_morphisms_stay_valid_and_preserving(cnn, x_cnn, forward, same_function):
    before = forward(cnn, x_cnn)
    generator = rng(5)
    graph = cnn
    kinds = set()
    for _ in range(10):
        children = transform(graph, rng=generator)
        graph = children[int(generator.integers(len(children)))]
        kinds.add(graph.operation_history[-1][0])
    assert kinds >= {"to_wider_model", "to_deeper_model"}
    same_function(before, forward(graph, x_cnn), rel=3e-3)
    reloaded = json_to_graph(graph_to_json(graph))
    same_function(before, forward(reloaded, x_cnn), rel=3e-3)


def test_graph_level_helpers_return_new_graphs_and_leave_the_input_alone(cnn):
    original = graph_to_json(cnn)
    for helper in (to_wider_graph, to_deeper_graph, to_skip_connection_graph):
        child = helper(cnn, rng())
        assert child is not None and child is not cnn
        assert child.extract_descriptor() != cnn.extract_descriptor()
    assert graph_to_json(cnn) == original


def test_limits_are_honored(cnn):
    assert to_wider_graph(cnn, rng(), MorphismLimits(max_layer_width=8)) is None
    child = to_wider_graph(cnn, rng(), MorphismLimits(max_layer_width=12))
    widened = child.operation_history[-1]
    assert widened[0] == "to_wider_model" and widened[2] == 4  # capped: 8 + 4 = 12, not doubled to 16
    assert to_deeper_graph(cnn, rng(), MorphismLimits(max_layers=len(cnn.deep_layer_ids()))) is None
    assert transform(cnn, MorphismLimits(max_model_size=cnn.size()), rng()) == []
    small = MorphismLimits(max_model_size=cnn.size() + 2000, n_neighbours=3)
    children = transform(cnn, small, rng())
    assert 0 < len(children) <= 3 and all(child.size() <= small.max_model_size for child in children)


def test_limits_reject_nonsense():
    with pytest.raises(ValueError, match="max_layers"):
        MorphismLimits(max_layers=0)


REFUSED = [
    ("widen a relu", lambda g: g.to_wider_model(0, 3), r"layer 0 is StubReLU"),
    ("widen the output layer", lambda g: g.to_wider_model(16, 3), r"reach the network output"),
    ("widen by zero", lambda g: g.to_wider_model(2, 0), r"n_add must be a positive"),
    ("unknown layer", lambda g: g.to_wider_model(99, 3), r"layer id 99 does not exist"),
    ("deeper with wrong channels", lambda g: g.to_deeper_model(2, StubConv2d(4, 4, 3)), r"input_channel is 4"),
    ("deeper that shrinks", lambda g: g.to_deeper_model(2, StubConv2d(8, 8, 3, stride=2)), r"must keep the shape"),
    ("skip backwards", lambda g: g.to_add_skip_model(9, 4), r"no path from layer 9 to layer 4"),
    ("skip across resolutions", lambda g: g.to_add_skip_model(4, 14), r"pick layers at the same resolution"),
]


@pytest.mark.parametrize("case, change, message", REFUSED, ids=[r[0] for r in REFUSED])
def test_refused_morphisms_raise_and_leave_the_graph_unchanged(cnn, case, change, message):
    before = graph_to_json(cnn)
    with pytest.raises(ArchitectureError, match=message):
        change(cnn)
    assert graph_to_json(cnn) == before


def test_weights_of_copies_are_independent(cnn):
    child = cnn.copy(share_layers=True)
    child.set_weights_from_state_dict({k: v * 0 for k, v in cnn.weights_state_dict().items()})
    assert np.abs(cnn.layer_list[2].weights[0]).sum() > 0
    cnn.clear_weights()
    assert child.layer_list[2].weights is not None


def test_widening_through_a_flatten_preserves_the_function(make_weighted, forward, same_function):
    from archsearch.strategies.morphism import StubBatchNormalization1d, StubFlatten

    graph = Graph((5, 7, 2), weighted=False)
    node = graph.add_layer(StubConv2d(2, 3, 3), 0)
    node = graph.add_layer(StubReLU(), node)
    node = graph.add_layer(StubFlatten(), node)
    node = graph.add_layer(StubBatchNormalization1d(105), node)
    node = graph.add_layer(StubDense(105, 6), node)
    graph.add_layer(StubDense(6, 2), node)
    graph = make_weighted(graph)
    x = torch.randn(4, 2, 5, 7)
    before = forward(graph, x)
    graph.to_wider_model(0, 2, rng())
    assert graph.layer_list[3].num_features == 175 and graph.layer_list[4].input_units == 175
    same_function(before, forward(graph, x))
