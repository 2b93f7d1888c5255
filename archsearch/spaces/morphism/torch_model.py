"""Compile a Graph to an ``nn.Module`` that runs its layers in topological order.

Modules are registered under their layer id (``"3.weight"``), as NNI's TorchModel does, so state dicts are
interchangeable with NNI's. Inputs are NCHW (NC for flat inputs) while the graph's shapes are channels-last.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from archsearch.common.errors import ArchitectureError
from archsearch.spaces.morphism.layers import StubLayer

if TYPE_CHECKING:
    from archsearch.spaces.morphism.graph import Graph

_PARAM_NAMES = {
    "conv": ("weight", "bias"),
    "dense": ("weight", "bias"),
    "bn": ("weight", "bias", "running_mean", "running_var"),
}


class GlobalAvgPool(nn.Module):
    """Mean over all spatial dims, for any number of them and any (non-square) size."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=tuple(range(2, x.dim())))


class TorchFlatten(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.size(0), -1)


class TorchAdd(nn.Module):
    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        out = inputs[0]
        for x in inputs[1:]:
            out = out + x
        return out


class TorchConcatenate(nn.Module):
    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat(inputs, dim=1)


_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_BN = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
_POOL = {1: nn.MaxPool1d, 2: nn.MaxPool2d, 3: nn.MaxPool3d}
_CHANNEL_DROPOUT = {2: nn.Dropout2d, 3: nn.Dropout3d}


def build_torch_layer(layer: StubLayer, input_shape: tuple[int, ...]) -> nn.Module:
    """The torch module for one stub, given its (channels-last) input shape."""
    n_spatial = len(input_shape) - 1
    kind = layer.kind
    if kind == "conv":
        return _CONV[n_spatial](
            layer.input_channel,
            layer.filters,
            layer.kernel_size,  # type: ignore[attr-defined]
            stride=layer.stride,
            padding=layer.padding,
        )  # type: ignore[attr-defined]
    if kind == "dense":
        return nn.Linear(layer.input_units, layer.units)  # type: ignore[attr-defined]
    if kind == "bn":
        return _BN[max(n_spatial, 1)](layer.num_features)  # type: ignore[attr-defined]
    if kind == "dropout":
        # NNI applies StubDropout2d to the flat tensor after global pooling, which torch's Dropout2d rejects
        # (deprecated, soon an error): channel-wise dropout only where the input really has those dims.
        if layer.n_dim in _CHANNEL_DROPOUT and n_spatial == layer.n_dim:
            return _CHANNEL_DROPOUT[n_spatial](layer.rate)  # type: ignore[attr-defined]
        return nn.Dropout(layer.rate)  # type: ignore[attr-defined]
    if kind == "pool":
        return _POOL[n_spatial](layer.kernel_size, stride=layer.stride, padding=layer.padding)  # type: ignore[attr-defined]
    if kind == "gpool":
        return GlobalAvgPool()
    if kind == "relu":
        return nn.ReLU()
    if kind == "softmax":
        return nn.LogSoftmax(dim=1)  # NNI's StubSoftmax is a LogSoftmax; kept for NLL-loss trial code
    if kind == "flatten":
        return TorchFlatten()
    if kind == "add":
        return TorchAdd()
    if kind == "concat":
        return TorchConcatenate()
    raise ArchitectureError(f"no torch layer for {layer.type_name}")


class TorchModel(nn.Module):
    """Runs a Graph. ``model.graph`` is the graph it was built from (NNI keeps it there too)."""

    def __init__(self, graph: Graph) -> None:
        super().__init__()
        self.graph = graph
        self.layers: list[nn.Module] = []
        for layer_id, layer in enumerate(graph.layer_list):
            first_input = graph.layer_id_to_input_node_ids[layer_id][0]
            module = build_torch_layer(layer, graph.node_list[first_input].shape)
            self.layers.append(module)
            self.add_module(str(layer_id), module)
        self._plan = [
            (
                layer_id,
                tuple(graph.layer_id_to_input_node_ids[layer_id]),
                graph.layer_id_to_output_node_ids[layer_id][0],
                graph.layer_list[layer_id].aggregate,
            )
            for layer_id in graph.layer_execution_order()
        ]
        self._output_id = graph.output_node_id
        if graph.weighted:
            load_graph_weights(self, graph)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values: dict[int, torch.Tensor] = {0: x}
        for layer_id, input_ids, output_id, aggregate in self._plan:
            module = self.layers[layer_id]
            if aggregate:
                values[output_id] = module([values[i] for i in input_ids])
            else:
                values[output_id] = module(values[input_ids[0]])
        return values[self._output_id]

    def set_weight_to_graph(self) -> None:
        """NNI's name for copying the trained weights back into ``self.graph``."""
        self.graph.set_weights_from_model(self)


def load_graph_weights(model: nn.Module, graph: Graph) -> None:
    """Copy the stubs' weights into the model's modules (layers without weights keep torch's init)."""
    state = state_dict_from_weights(graph)
    if state:
        model.load_state_dict(state, strict=False)


def state_dict_from_weights(graph: Graph) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = {}
    for layer_id, layer in enumerate(graph.layer_list):
        if layer.weights is None or layer.kind not in _PARAM_NAMES:
            continue
        for name, array in zip(_PARAM_NAMES[layer.kind], layer.weights):
            state[f"{layer_id}.{name}"] = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    return state


def weights_from_state_dict(
    layer: StubLayer, layer_id: int, state_dict: Mapping[str, Any]
) -> tuple[np.ndarray, ...] | None:
    """The layer's weights read from a TorchModel state dict, or None when it has none there."""
    names = _PARAM_NAMES.get(layer.kind)
    if names is None or f"{layer_id}.{names[0]}" not in state_dict:
        return None
    arrays = []
    for name, expected in zip(names, layer.param_shapes()):
        key = f"{layer_id}.{name}"
        if key not in state_dict:
            raise ArchitectureError(f"state dict has {layer_id}.{names[0]} but not {key}; save the whole model")
        value = state_dict[key]
        array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
        if tuple(array.shape) != tuple(expected):
            raise ArchitectureError(
                f"weights {key} have shape {list(array.shape)} but layer {layer_id} "
                f"({layer.type_name}) needs {list(expected)}; the model does not match "
                "the graph"
            )
        arrays.append(array.astype(np.float32, copy=True))
    return tuple(arrays)
