"""Seed networks the search starts from (NNI's nn.py): a small CNN for images, an MLP for flat data."""

from __future__ import annotations

from collections.abc import Sequence

from archsearch.common.errors import ArchitectureError
from archsearch.spaces.morphism.constants import (
    CONV_DROPOUT_RATE,
    MLP_DROPOUT_RATE,
    MODEL_LEN,
    MODEL_WIDTH,
    POOLING_KERNEL_SIZE,
)
from archsearch.spaces.morphism.graph import Graph
from archsearch.spaces.morphism.layers import (
    StubDense,
    StubDropout1d,
    StubReLU,
    get_batch_norm_class,
    get_conv_class,
    get_dropout_class,
    get_global_avg_pooling_class,
    get_pooling_class,
)


def _positive(name: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ArchitectureError(f"{name} must be a positive integer, got {value!r}")
    return value


class NetworkGenerator:
    """Base: ``n_output_node`` classes/outputs, ``input_shape`` channels-last without the batch axis."""

    def __init__(self, n_output_node: int, input_shape: Sequence[int] | int) -> None:
        self.n_output_node = _positive("n_output_node", n_output_node)
        shape = (input_shape,) if isinstance(input_shape, int) else tuple(input_shape)
        for d in shape:
            _positive("every input_shape entry", d)
        self.input_shape: tuple[int, ...] = shape

    def generate(self, model_len: int | None = None, model_width: int | None = None) -> Graph:
        raise NotImplementedError


class CnnGenerator(NetworkGenerator):
    """NNI's seed CNN: ``model_len`` blocks of ReLU-BN-Conv3x3 with max pooling every ``model_len // 4``
    blocks (after every block when that is 0, never after the last), then global average pooling,
    dropout 0.25, Dense(width)-ReLU and Dense(n_output_node). Works for 1-3 spatial dims of any aspect ratio;
    a pooling that would shrink a spatial dim below 1 is left out (NNI's shape formula clamped it to 1,
    which torch's MaxPool then rejected)."""

    def __init__(self, n_output_node: int, input_shape: Sequence[int]) -> None:
        super().__init__(n_output_node, input_shape)
        if not 2 <= len(self.input_shape) <= 4:
            raise ArchitectureError(
                f"CnnGenerator input_shape must be (spatial..., channels) with 1-3 "
                f"spatial dims, got {list(self.input_shape)}; use MlpGenerator for flat data"
            )
        self.n_dim = len(self.input_shape) - 1

    def generate(self, model_len: int | None = None, model_width: int | None = None) -> Graph:
        model_len = _positive("model_len", MODEL_LEN if model_len is None else model_len)
        model_width = _positive("model_width", MODEL_WIDTH if model_width is None else model_width)
        pooling_len = model_len // 4
        graph = Graph(self.input_shape, weighted=False)
        node = 0
        channels = self.input_shape[-1]
        for i in range(model_len):
            node = graph.add_layer(StubReLU(), node)
            node = graph.add_layer(get_batch_norm_class(self.n_dim)(channels), node)
            conv = get_conv_class(self.n_dim)(channels, model_width, kernel_size=3, stride=1)
            node = graph.add_layer(conv, node)
            channels = model_width
            wants_pool = pooling_len == 0 or ((i + 1) % pooling_len == 0 and i != model_len - 1)
            if wants_pool and min(graph.node_list[node].shape[:-1]) >= POOLING_KERNEL_SIZE:
                node = graph.add_layer(get_pooling_class(self.n_dim)(), node)
        node = graph.add_layer(get_global_avg_pooling_class(self.n_dim)(), node)
        node = graph.add_layer(get_dropout_class(self.n_dim)(CONV_DROPOUT_RATE), node)
        node = graph.add_layer(StubDense(graph.node_list[node].shape[0], model_width), node)
        node = graph.add_layer(StubReLU(), node)
        graph.add_layer(StubDense(model_width, self.n_output_node), node)
        return graph


class MlpGenerator(NetworkGenerator):
    """NNI's seed MLP: per hidden layer Dense-Dropout(0.25)-ReLU, then Dense(n_output_node).
    ``model_width`` is one int for all hidden layers or a list of ``model_len`` ints."""

    def __init__(self, n_output_node: int, input_shape: Sequence[int] | int) -> None:
        super().__init__(n_output_node, input_shape)
        if len(self.input_shape) != 1:
            raise ArchitectureError(
                f"MlpGenerator needs a flat input_shape like (n_features,), got "
                f"{list(self.input_shape)}; use CnnGenerator for images"
            )

    def generate(self, model_len: int | None = None, model_width: int | Sequence[int] | None = None) -> Graph:
        model_len = _positive("model_len", MODEL_LEN if model_len is None else model_len)
        width = MODEL_WIDTH if model_width is None else model_width
        widths = [width] * model_len if isinstance(width, int) else list(width)
        if len(widths) != model_len:
            raise ArchitectureError(
                f"model_width has {len(widths)} entries but model_len is {model_len}; "
                "give one width per hidden layer or a single int"
            )
        graph = Graph(self.input_shape, weighted=False)
        node, previous = 0, self.input_shape[0]
        for w in widths:
            w = _positive("model_width", w)
            node = graph.add_layer(StubDense(previous, w), node)
            node = graph.add_layer(StubDropout1d(MLP_DROPOUT_RATE), node)
            node = graph.add_layer(StubReLU(), node)
            previous = w
        graph.add_layer(StubDense(previous, self.n_output_node), node)
        return graph


# the initial networks of the space, by task: NNI tuner's `task` argument
TASKS = {"cv": CnnGenerator, "common": MlpGenerator}
