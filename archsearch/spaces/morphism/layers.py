"""Stub layers: the edges of the morphism graph, with NNI's class names, constructor arguments and JSON
field orders (``["StubConv2d", in, out, input_channel, filters, kernel_size, stride, padding]``).

A stub knows its attributes, its parameter shapes and how to infer its output shape; it optionally carries
its weights as numpy arrays in torch layout, so a child network can inherit its father's trained weights.
Shapes are channels-last tuples, as NNI writes them in ``node_list``.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from archsearch.spaces.morphism.constants import POOLING_KERNEL_SIZE

Shape = tuple[int, ...]


class LayerShapeError(ValueError):
    """A layer does not fit the tensor(s) it is applied to; the graph turns it into an ArchitectureError."""


class StubLayer:
    """Base of all stub layers. ``input_node``/``output_node`` are accepted for NNI signature compatibility;
    the graph, not the layer, owns the wiring."""

    kind: ClassVar[str] = "layer"
    n_dim: ClassVar[int | None] = None
    aggregate: ClassVar[bool] = False

    def __init__(self, input_node: Any = None, output_node: Any = None) -> None:
        self.weights: tuple[np.ndarray, ...] | None = None
        # Number of attribute fields the JSON gave; lets the doc's short conv form round-trip unchanged.
        self.n_json_attrs: int | None = None

    @property
    def type_name(self) -> str:
        return type(self).__name__

    def attrs(self) -> list[Any]:
        """The description fields that follow ``[type, inputs, output]`` in NNI's JSON."""
        return []

    def json_attrs(self) -> list[Any]:
        full, short = self.attrs(), self.n_json_attrs
        # Emit the short form only while the omitted fields still hold the defaults they stood for.
        if short is not None and short < len(full) and full[short:] == self.attr_defaults()[short:]:
            return full[:short]
        return full

    def attr_defaults(self) -> list[Any]:
        return self.attrs()

    def param_shapes(self) -> list[Shape]:
        return []

    def n_params(self) -> int:
        return sum(math.prod(s) for s in self.param_shapes())

    def output_shape(self, input_shapes: list[Shape]) -> Shape:
        return input_shapes[0]

    def set_weights(self, weights: Any) -> None:
        self.weights = None if weights is None else tuple(np.asarray(w, dtype=np.float32) for w in weights)

    def get_weights(self) -> tuple[np.ndarray, ...] | None:
        return self.weights

    def copy(self) -> StubLayer:
        # Weight arrays are shared: morphisms always build new arrays, never write into old ones.
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        return new

    def size(self) -> int:
        return self.n_params()

    def __str__(self) -> str:
        return self.type_name[4:]

    def __repr__(self) -> str:
        return f"{self.type_name}({', '.join(map(str, self.attrs()))})"


def _spatial(shape: Shape, n_dim: int | None, name: str) -> Shape:
    if n_dim is not None and len(shape) != n_dim + 1:
        raise LayerShapeError(f"{name} needs a tensor with {n_dim} spatial dims + channels, got shape {list(shape)}")
    return shape[:-1]


class StubConv(StubLayer):
    kind = "conv"

    def __init__(
        self,
        input_channel: int,
        filters: int,
        kernel_size: int,
        stride: int = 1,
        input_node: Any = None,
        output_node: Any = None,
        *,
        padding: int | None = None,
    ) -> None:
        super().__init__(input_node, output_node)
        self.input_channel = int(input_channel)
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        self.stride = int(stride)
        self.padding = int(kernel_size) // 2 if padding is None else int(padding)

    def attrs(self) -> list[Any]:
        return [self.input_channel, self.filters, self.kernel_size, self.stride, self.padding]

    def attr_defaults(self) -> list[Any]:
        return [None, None, None, 1, self.kernel_size // 2]

    def param_shapes(self) -> list[Shape]:
        return [(self.filters, self.input_channel) + (self.kernel_size,) * (self.n_dim or 2), (self.filters,)]

    def output_shape(self, input_shapes: list[Shape]) -> Shape:
        shape = input_shapes[0]
        spatial = _spatial(shape, self.n_dim, self.type_name)
        if shape[-1] != self.input_channel:
            raise LayerShapeError(
                f"input_channel is {self.input_channel} but the input tensor has {shape[-1]} channels"
            )
        out = tuple((d + 2 * self.padding - self.kernel_size) // self.stride + 1 for d in spatial)
        if min(out) < 1:
            raise LayerShapeError(f"kernel {self.kernel_size} does not fit the input of spatial size {list(spatial)}")
        return out + (self.filters,)


class StubConv1d(StubConv):
    n_dim = 1


class StubConv2d(StubConv):
    n_dim = 2


class StubConv3d(StubConv):
    n_dim = 3


class StubDense(StubLayer):
    kind = "dense"

    def __init__(self, input_units: int, units: int, input_node: Any = None, output_node: Any = None) -> None:
        super().__init__(input_node, output_node)
        self.input_units = int(input_units)
        self.units = int(units)

    def attrs(self) -> list[Any]:
        return [self.input_units, self.units]

    def param_shapes(self) -> list[Shape]:
        return [(self.units, self.input_units), (self.units,)]

    def output_shape(self, input_shapes: list[Shape]) -> Shape:
        shape = input_shapes[0]
        if len(shape) != 1:
            raise LayerShapeError(
                f"StubDense needs a flat (1-D) input, got shape {list(shape)}; add a "
                "StubGlobalPooling or StubFlatten before it"
            )
        if shape[0] != self.input_units:
            raise LayerShapeError(f"input_units is {self.input_units} but the input tensor has {shape[0]} units")
        return (self.units,)


class StubBatchNormalization(StubLayer):
    kind = "bn"

    def __init__(self, num_features: int, input_node: Any = None, output_node: Any = None) -> None:
        super().__init__(input_node, output_node)
        self.num_features = int(num_features)

    def attrs(self) -> list[Any]:
        return [self.num_features]

    def param_shapes(self) -> list[Shape]:
        # weight, bias, running_mean, running_var (NNI's order)
        return [(self.num_features,)] * 4

    def n_params(self) -> int:
        return 2 * self.num_features  # running statistics are buffers, not trainable parameters

    def output_shape(self, input_shapes: list[Shape]) -> Shape:
        shape = input_shapes[0]
        if not (self.n_dim == 1 and len(shape) == 1):  # BatchNorm1d also takes (N, C)
            _spatial(shape, self.n_dim, self.type_name)
        if shape[-1] != self.num_features:
            raise LayerShapeError(f"num_features is {self.num_features} but the input tensor has {shape[-1]} channels")
        return shape


class StubBatchNormalization1d(StubBatchNormalization):
    n_dim = 1


class StubBatchNormalization2d(StubBatchNormalization):
    n_dim = 2


class StubBatchNormalization3d(StubBatchNormalization):
    n_dim = 3


class StubDropout(StubLayer):
    kind = "dropout"

    def __init__(self, rate: float, input_node: Any = None, output_node: Any = None) -> None:
        super().__init__(input_node, output_node)
        self.rate = float(rate)

    def attrs(self) -> list[Any]:
        return [self.rate]


class StubDropout1d(StubDropout):
    n_dim = 1


class StubDropout2d(StubDropout):
    n_dim = 2


class StubDropout3d(StubDropout):
    n_dim = 3


class StubPooling(StubLayer):
    kind = "pool"

    def __init__(
        self,
        kernel_size: int | None = None,
        stride: int | None = None,
        padding: int = 0,
        input_node: Any = None,
        output_node: Any = None,
    ) -> None:
        super().__init__(input_node, output_node)
        self.kernel_size = int(kernel_size if kernel_size is not None else POOLING_KERNEL_SIZE)
        self.stride = int(stride if stride is not None else self.kernel_size)
        self.padding = int(padding)

    def attrs(self) -> list[Any]:
        return [self.kernel_size, self.stride, self.padding]

    def attr_defaults(self) -> list[Any]:
        return [POOLING_KERNEL_SIZE, self.kernel_size, 0]

    def output_shape(self, input_shapes: list[Shape]) -> Shape:
        shape = input_shapes[0]
        spatial = _spatial(shape, self.n_dim, self.type_name)
        # torch's MaxPool formula; NNI's max(dim // k, 1) disagrees with what torch computes for small inputs.
        out = tuple((d + 2 * self.padding - self.kernel_size) // self.stride + 1 for d in spatial)
        if min(out) < 1:
            raise LayerShapeError(f"pooling kernel {self.kernel_size} does not fit spatial size {list(spatial)}")
        return out + (shape[-1],)


class StubPooling1d(StubPooling):
    n_dim = 1


class StubPooling2d(StubPooling):
    n_dim = 2


class StubPooling3d(StubPooling):
    n_dim = 3


class StubGlobalPooling(StubLayer):
    kind = "gpool"

    def output_shape(self, input_shapes: list[Shape]) -> Shape:
        shape = input_shapes[0]
        _spatial(shape, self.n_dim, self.type_name)
        return (shape[-1],)


class StubGlobalPooling1d(StubGlobalPooling):
    n_dim = 1


class StubGlobalPooling2d(StubGlobalPooling):
    n_dim = 2


class StubGlobalPooling3d(StubGlobalPooling):
    n_dim = 3


class StubReLU(StubLayer):
    kind = "relu"


class StubSoftmax(StubLayer):
    kind = "softmax"


class StubFlatten(StubLayer):
    kind = "flatten"

    def output_shape(self, input_shapes: list[Shape]) -> Shape:
        return (math.prod(input_shapes[0]),)


class StubAggregateLayer(StubLayer):
    aggregate = True

    def __init__(self, input_nodes: Any = None, output_node: Any = None) -> None:
        super().__init__(input_nodes, output_node)


class StubAdd(StubAggregateLayer):
    kind = "add"

    def output_shape(self, input_shapes: list[Shape]) -> Shape:
        if len(set(input_shapes)) != 1:
            raise LayerShapeError(f"StubAdd inputs must have equal shapes, got {[list(s) for s in input_shapes]}")
        return input_shapes[0]


class StubConcatenate(StubAggregateLayer):
    kind = "concat"

    def output_shape(self, input_shapes: list[Shape]) -> Shape:
        if len({s[:-1] for s in input_shapes}) != 1:
            raise LayerShapeError(
                f"StubConcatenate inputs must agree on all but the channel dim, got {[list(s) for s in input_shapes]}"
            )
        return input_shapes[0][:-1] + (sum(s[-1] for s in input_shapes),)


LAYER_CLASSES: dict[str, type[StubLayer]] = {
    cls.__name__: cls
    for cls in (
        StubConv1d,
        StubConv2d,
        StubConv3d,
        StubDense,
        StubBatchNormalization1d,
        StubBatchNormalization2d,
        StubBatchNormalization3d,
        StubDropout1d,
        StubDropout2d,
        StubDropout3d,
        StubPooling1d,
        StubPooling2d,
        StubPooling3d,
        StubGlobalPooling1d,
        StubGlobalPooling2d,
        StubGlobalPooling3d,
        StubReLU,
        StubSoftmax,
        StubFlatten,
        StubAdd,
        StubConcatenate,
    )
}

# (minimum, maximum) number of attribute fields after [type, inputs, output]; the doc example omits the
# conv's stride and padding, and older NNI writers omit pooling fields.
ATTR_COUNTS: dict[str, tuple[int, int]] = {
    "conv": (3, 5),
    "dense": (2, 2),
    "bn": (1, 1),
    "dropout": (1, 1),
    "pool": (0, 3),
}


def _by_dim(classes: tuple[type[StubLayer], ...], n_dim: int) -> type[StubLayer]:
    if n_dim not in (1, 2, 3):
        raise ValueError(f"n_dim must be 1, 2 or 3, got {n_dim}")
    return classes[n_dim - 1]


def get_conv_class(n_dim: int) -> type[StubConv]:
    return _by_dim((StubConv1d, StubConv2d, StubConv3d), n_dim)  # type: ignore[return-value]


def get_batch_norm_class(n_dim: int) -> type[StubBatchNormalization]:
    return _by_dim((StubBatchNormalization1d, StubBatchNormalization2d, StubBatchNormalization3d), n_dim)  # type: ignore[return-value]


def get_dropout_class(n_dim: int) -> type[StubDropout]:
    return _by_dim((StubDropout1d, StubDropout2d, StubDropout3d), n_dim)  # type: ignore[return-value]


def get_pooling_class(n_dim: int) -> type[StubPooling]:
    return _by_dim((StubPooling1d, StubPooling2d, StubPooling3d), n_dim)  # type: ignore[return-value]


def get_global_avg_pooling_class(n_dim: int) -> type[StubGlobalPooling]:
    return _by_dim((StubGlobalPooling1d, StubGlobalPooling2d, StubGlobalPooling3d), n_dim)  # type: ignore[return-value]


_KIND_BY_NNI_NAME = {
    "Conv": "conv",
    "Dense": "dense",
    "BatchNormalization": "bn",
    "Dropout": "dropout",
    "Pooling": "pool",
    "GlobalAveragePooling": "gpool",
    "ReLU": "relu",
    "Softmax": "softmax",
    "Flatten": "flatten",
    "Add": "add",
    "Concatenate": "concat",
}


def is_layer(layer: StubLayer, layer_type: str) -> bool:
    """NNI's type test: ``is_layer(layer, "Conv")``."""
    return layer.kind == _KIND_BY_NNI_NAME.get(layer_type, layer_type)


def layer_width(layer: StubLayer) -> int:
    if isinstance(layer, StubDense):
        return layer.units
    if isinstance(layer, StubConv):
        return layer.filters
    raise TypeError(f"{layer.type_name} has no width; only StubDense and StubConv layers do")


def build_layer(type_name: str, attrs: list[Any]) -> StubLayer:
    """Make a stub from its JSON type name and attribute fields (already type-checked by the caller)."""
    cls = LAYER_CLASSES[type_name]
    if cls.kind == "conv":
        ic, filters, kernel = attrs[:3]
        stride = attrs[3] if len(attrs) > 3 else 1
        padding = attrs[4] if len(attrs) > 4 else None
        layer: StubLayer = cls(ic, filters, kernel, stride, padding=padding)  # type: ignore[call-arg]
    elif cls.kind == "pool":
        layer = cls(*attrs)  # type: ignore[arg-type]
    else:
        layer = cls(*attrs)
    layer.n_json_attrs = len(attrs)
    return layer
