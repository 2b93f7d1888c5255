"""Seed networks: NNI's layouts, any input aspect ratio, clear errors."""

from __future__ import annotations

import pytest
import torch

from archsearch.common.errors import ArchitectureError
from archsearch.strategies.morphism import CnnGenerator, MlpGenerator


def kinds(graph):
    return [type(layer).__name__.removeprefix("Stub") for layer in graph.layer_list]


def test_cnn_generator_default_is_nni_seed():
    graph = CnnGenerator(10, (32, 32, 3)).generate()
    assert kinds(graph) == ["ReLU", "BatchNormalization2d", "Conv2d", "Pooling2d"] * 3 + [
        "GlobalPooling2d",
        "Dropout2d",
        "Dense",
        "ReLU",
        "Dense",
    ]
    assert graph.layer_list[2].filters == 64 and graph.layer_list[13].rate == 0.25
    assert graph.node_list[-1].shape == (10,)


def test_cnn_pooling_every_model_len_over_4_blocks():
    graph = CnnGenerator(10, (32, 32, 3)).generate(model_len=8, model_width=4)
    # pooling after blocks 2, 4, 6 but not after the last
    assert kinds(graph).count("Pooling2d") == 3


@pytest.mark.parametrize("input_shape", [(20, 36, 3), (7, 40, 1), (64, 2), (6, 10, 8, 2)])
def test_cnn_any_shape_runs(input_shape):
    graph = CnnGenerator(5, input_shape).generate(3, 4)
    x = torch.randn((2, input_shape[-1]) + tuple(input_shape[:-1]))
    assert graph.produce_torch_model().eval()(x).shape == (2, 5)


def test_cnn_skips_pooling_that_would_not_fit():
    graph = CnnGenerator(3, (4, 9, 3)).generate(3, 4)  # 4 -> 2 -> 1, then no third pooling
    assert kinds(graph).count("Pooling2d") == 2
    assert graph.produce_torch_model()(torch.randn(1, 3, 4, 9)).shape == (1, 3)


def test_mlp_generator_layout_and_widths():
    graph = MlpGenerator(3, (12,)).generate(2, [8, 5])
    assert kinds(graph) == ["Dense", "Dropout1d", "ReLU", "Dense", "Dropout1d", "ReLU", "Dense"]
    assert [layer.units for layer in graph.layer_list if hasattr(layer, "units")] == [8, 5, 3]
    assert MlpGenerator(3, 12).generate().produce_torch_model()(torch.randn(4, 12)).shape == (4, 3)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: CnnGenerator(10, (32,)), r"use MlpGenerator"),
        (lambda: MlpGenerator(10, (8, 8, 3)), r"use CnnGenerator"),
        (lambda: CnnGenerator(0, (8, 8, 3)), r"n_output_node must be a positive integer"),
        (lambda: CnnGenerator(10, (8, 8, 3)).generate(model_len=0), r"model_len"),
        (lambda: MlpGenerator(2, (4,)).generate(2, [3]), r"model_width has 1 entries but model_len is 2"),
    ],
)
def test_generator_errors_are_clear(make, message):
    with pytest.raises(ArchitectureError, match=message):
        make()
