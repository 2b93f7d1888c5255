"""Function-preserving network morphisms on a Graph (NNI's to_wider/to_deeper/to_*_skip_model).

Every operation first plans and checks, then mutates, so a refused morphism leaves the graph untouched.
Where the graph is weighted the new weights keep the network's function (up to ~1e-4 relative noise that
breaks the symmetry between copied units):
- wider: new units copy random existing ones (same teacher map for every producer of the widened tensor,
  so it also holds across Add), and each consumer's weights from a teacher are split among its copies;
- deeper: identity-initialized conv (center tap) / dense (eye) / batch norm; a ReLU only where its input is
  already non-negative (see ``transformer.create_new_block``);
- skips: a zero-initialized projection into an Add, or a concatenation followed by an identity-initialized
  1x1 conv (dense for flat tensors) that restores the channel count.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from archsearch.common.errors import ArchitectureError
from archsearch.spaces.morphism.constants import NOISE_RATIO
from archsearch.spaces.morphism.layers import (
    LAYER_CLASSES,
    LayerShapeError,
    StubAdd,
    StubConcatenate,
    StubConv,
    StubDense,
    StubLayer,
    StubReLU,
    build_layer,
    get_conv_class,
    layer_width,
)

if TYPE_CHECKING:
    from archsearch.spaces.morphism.graph import Graph

BN_EPS = 1e-5  # torch's BatchNorm default; running_var = 1 - eps makes an inserted BN an exact identity


def _rng(rng: np.random.Generator | None) -> np.random.Generator:
    # Never the global numpy state: a caller that passes nothing still gets reproducible noise.
    return rng if rng is not None else np.random.default_rng(0)


def _noise(rng: np.random.Generator, shape: tuple[int, ...], reference: np.ndarray) -> np.ndarray:
    """Uniform noise of width NOISE_RATIO * range(reference), NNI's ``add_noise``."""
    span = float(np.ptp(reference)) if reference.size else 1.0
    half = NOISE_RATIO * (span if span > 0 else 1.0) / 2.0
    return rng.uniform(-half, half, size=shape).astype(np.float32)


# --------------------------------------------------------------------------------------------- wider
@dataclass
class _WideningPlan:
    producers: list[int] = field(default_factory=list)
    batch_norms: dict[int, tuple[int, int]] = field(default_factory=dict)  # layer id -> (offset, unit)
    consumers: dict[int, tuple[int, int]] = field(default_factory=dict)
    vis: list[list[int]] = field(default_factory=list)


def _plan_widening(graph: Graph, pre_layer_id: int, n_add: int) -> _WideningPlan:
    """Walk every tensor that carries the widened channels. A state is (node, offset, unit): the widened
    group occupies channels [offset, offset + dim) of the node, each channel spanning ``unit`` consecutive
    entries (unit > 1 only after a Flatten). Producers (conv/dense writing such a tensor) get new output
    units, consumers new input units; BN/ReLU/pooling/dropout/Add pass the group through."""
    dim = layer_width(graph.layer_list[pre_layer_id])
    output_node = graph.output_node_id
    plan = _WideningPlan(producers=[pre_layer_id])
    stack = [(graph.layer_id_to_output_node_ids[pre_layer_id][0], 0, 1)]
    visited: set[tuple[int, int, int]] = set()

    def refuse(reason: str) -> ArchitectureError:
        return ArchitectureError(f"cannot widen layer {pre_layer_id}: {reason}")

    while stack:
        state = stack.pop()
        if state in visited:
            continue
        visited.add(state)
        u, offset, unit = state
        plan.vis.append([u, offset + dim, graph.node_list[u].shape[-1], n_add])
        if u == output_node:
            raise refuse(f"its units reach the network output (node {u}); widen an earlier layer")
        if u == 0:
            raise refuse("its units reach the network input (node 0)")
        for v, layer_id in graph.adj_list[u]:
            kind = graph.layer_list[layer_id].kind
            if kind in ("conv", "dense"):
                if plan.consumers.setdefault(layer_id, (offset, unit)) != (offset, unit):
                    raise refuse(f"layer {layer_id} reads the widened units twice")
            elif kind == "bn":
                plan.batch_norms[layer_id] = (offset, unit)
                stack.append((v, offset, unit))
            elif kind == "concat":
                if unit != 1:
                    raise refuse(f"concatenation {layer_id} of flattened tensors is not supported")
                inputs = graph.layer_id_to_input_node_ids[layer_id]
                before = sum(graph.node_list[i].shape[-1] for i in inputs[: inputs.index(u)])
                stack.append((v, offset + before, unit))
            elif kind == "flatten":
                if unit != 1:
                    raise refuse(f"flatten {layer_id} of an already flat tensor")
                stack.append((v, offset, math.prod(graph.node_list[u].shape[:-1])))
            else:
                stack.append((v, offset, unit))
        for w, layer_id in graph.reverse_adj_list[u]:
            layer = graph.layer_list[layer_id]
            if layer.kind in ("conv", "dense"):
                if layer_id in plan.producers:
                    continue
                if offset != 0 or unit != 1 or layer_width(layer) != dim:
                    raise refuse(
                        f"layer {layer_id} also writes the widened tensor but its "
                        f"{layer_width(layer)} units do not line up with the {dim} being widened"
                    )
                plan.producers.append(layer_id)
            elif layer.kind == "concat":
                continue  # came to the concat's output from one input: the other inputs stay as they are
            elif layer.kind == "flatten":
                # Only the way we came (the whole flattened input is the group): go back unflattened.
                if unit != math.prod(graph.node_list[w].shape[:-1]):
                    raise refuse(f"it would have to widen through flatten {layer_id} backwards")
                stack.append((w, offset, 1))
            else:
                stack.append((w, offset, unit))
    return plan


def _widen_axis(
    array: np.ndarray,
    axis: int,
    offset: int,
    dim: int,
    unit: int,
    teachers: np.ndarray,
    counts: np.ndarray | None = None,
) -> np.ndarray:
    """Insert copies of the teacher channels after the group on ``axis``; with ``counts``, divide every
    teacher channel and its copies by the number of copies so a following sum is unchanged."""
    moved = np.moveaxis(array, axis, 0)
    rest = moved.shape[1:]
    group = moved[offset * unit : (offset + dim) * unit].reshape((dim, unit) + rest)
    if counts is not None:
        group = group / counts.reshape((dim,) + (1,) * (group.ndim - 1))
    new = group[teachers].reshape((len(teachers) * unit,) + rest)
    out = np.concatenate(
        [moved[: offset * unit], group.reshape((dim * unit,) + rest), new, moved[(offset + dim) * unit :]], axis=0
    )
    return np.moveaxis(out, 0, axis).astype(np.float32)


def to_wider_model(graph: Graph, pre_layer_id: int, n_add: int, rng: np.random.Generator | None) -> None:
    _check_layer_id(graph, pre_layer_id, "to_wider_model")
    pre_layer = graph.layer_list[pre_layer_id]
    if pre_layer.kind not in ("conv", "dense"):
        raise ArchitectureError(
            f"to_wider_model: layer {pre_layer_id} is {pre_layer.type_name}; only "
            "StubConv* and StubDense layers can be widened"
        )
    if int(n_add) < 1:
        raise ArchitectureError(f"to_wider_model: n_add must be a positive integer, got {n_add}")
    n_add = int(n_add)
    plan = _plan_widening(graph, pre_layer_id, n_add)
    rng = _rng(rng)
    dim = layer_width(pre_layer)
    teachers = rng.integers(0, dim, size=n_add)
    counts = (np.bincount(teachers, minlength=dim) + 1).astype(np.float32)
    weighted = graph.weighted
    saved_layers, saved_shapes = list(graph.layer_list), [node.shape for node in graph.node_list]

    for layer_id in plan.producers:
        old = graph.layer_list[layer_id]
        new = old.copy()
        if isinstance(new, StubConv):
            new.filters += n_add  # stride, padding and kernel stay: NNI reset a widened conv's stride to 1
        else:
            new.units += n_add  # type: ignore[attr-defined]
        new.weights = None
        if weighted and old.weights is not None:
            weight, bias = old.weights
            weight = _widen_axis(weight, 0, 0, dim, 1, teachers)
            weight[dim:] += _noise(rng, weight[dim:].shape, old.weights[0])
            new.weights = (weight, _widen_axis(bias, 0, 0, dim, 1, teachers))
        graph._replace_layer(layer_id, new)

    for layer_id, (offset, unit) in plan.batch_norms.items():
        old = graph.layer_list[layer_id]
        new = old.copy()
        new.num_features += n_add * unit  # type: ignore[attr-defined]
        new.weights = None
        if weighted and old.weights is not None:
            new.weights = tuple(_widen_axis(p, 0, offset, dim, unit, teachers) for p in old.weights)
        graph._replace_layer(layer_id, new)

    for layer_id, (offset, unit) in plan.consumers.items():
        old = graph.layer_list[layer_id]
        new = old.copy()
        if isinstance(new, StubConv):
            new.input_channel += n_add * unit
        else:
            new.input_units += n_add * unit  # type: ignore[attr-defined]
        new.weights = None
        if weighted and old.weights is not None:
            weight, bias = old.weights
            new.weights = (_widen_axis(weight, 1, offset, dim, unit, teachers, counts), bias)
        graph._replace_layer(layer_id, new)

    try:
        graph.infer_shapes()
    except ArchitectureError as err:  # e.g. a concat reached from its output: undo, the graph stays valid
        graph.layer_list = saved_layers
        for node, shape in zip(graph.node_list, saved_shapes):
            node.shape = shape
        raise ArchitectureError(f"cannot widen layer {pre_layer_id}: {err}") from None
    graph.operation_history.append(["to_wider_model", pre_layer_id, n_add])
    graph.vis = plan.vis


# -------------------------------------------------------------------------------------------- deeper
def identity_weights(layer: StubLayer, rng: np.random.Generator) -> tuple[np.ndarray, ...] | None:
    """Weights that make a shape-preserving conv/dense/BN compute (almost exactly) the identity."""
    if isinstance(layer, StubConv):
        n_dim = layer.n_dim or 2
        shape = (layer.filters, layer.input_channel) + (layer.kernel_size,) * n_dim
        weight = np.zeros(shape, dtype=np.float32)
        center = (layer.kernel_size - 1) // 2
        for i in range(min(layer.filters, layer.input_channel)):
            weight[(i, i) + (center,) * n_dim] = 1.0
        unit_range = np.array([0.0, 1.0])
        return (weight + _noise(rng, weight.shape, unit_range), _noise(rng, (layer.filters,), unit_range))
    if isinstance(layer, StubDense):
        weight = np.eye(layer.units, layer.input_units, dtype=np.float32)
        unit_range = np.array([0.0, 1.0])
        return (weight + _noise(rng, weight.shape, unit_range), _noise(rng, (layer.units,), unit_range))
    if layer.kind == "bn":
        n = layer.num_features  # type: ignore[attr-defined]
        return (
            np.ones(n, np.float32),
            np.zeros(n, np.float32),
            np.zeros(n, np.float32),
            np.full(n, 1.0 - BN_EPS, np.float32),
        )
    return None


def _layer_description(layer: StubLayer, inputs: Any, output: int) -> list[Any]:
    return [layer.type_name, inputs, output, *layer.json_attrs()]


def to_deeper_model(
    graph: Graph, target_id: int, new_layer: StubLayer | Sequence[StubLayer], rng: np.random.Generator | None
) -> None:
    _check_layer_id(graph, target_id, "to_deeper_model")
    block = [new_layer] if isinstance(new_layer, StubLayer) else list(new_layer)
    if not block:
        raise ArchitectureError("to_deeper_model: new_layer is an empty block; pass at least one layer")
    shape = graph.node_list[graph.layer_id_to_output_node_ids[target_id][0]].shape
    for layer in block:  # check the whole block before touching the graph
        try:
            out = layer.output_shape([shape])
        except LayerShapeError as err:
            raise ArchitectureError(f"to_deeper_model after layer {target_id}: {layer!r}: {err}") from None
        if out != shape:
            raise ArchitectureError(
                f"to_deeper_model after layer {target_id}: {layer!r} maps shape "
                f"{list(shape)} to {list(out)}; a deeper layer must keep the shape "
                "(same channels, stride 1, padding k//2)"
            )
    rng = _rng(rng)
    after = target_id
    for layer in block:
        after = _insert_after(graph, after, layer.copy(), rng)  # the caller's stub stays untouched


def _insert_after(graph: Graph, target_id: int, layer: StubLayer, rng: np.random.Generator) -> int:
    output_id = graph.layer_id_to_output_node_ids[target_id][0]
    new_node = graph._add_node(graph.node_list[output_id].shape)
    for input_id in dict.fromkeys(graph.layer_id_to_input_node_ids[target_id]):
        graph._redirect_edge(input_id, output_id, new_node, target_id)
    layer_id = len(graph.layer_list)
    graph.layer_list.append(layer)
    graph._add_edge(layer_id, new_node, output_id)
    layer.weights = identity_weights(layer, rng) if graph.weighted else None
    description = _layer_description(layer, new_node, output_id)
    graph.operation_history.append(["to_deeper_model", target_id, description])
    return layer_id


# --------------------------------------------------------------------------------------------- skips
def _path_layers(graph: Graph, start_node: int, end_node: int) -> list[int] | None:
    """Layer ids on the first depth-first path from start_node to end_node (NNI's _depth_first_search)."""
    stack: list[tuple[int, list[int]]] = [(start_node, [])]
    seen = set()
    while stack:
        u, path = stack.pop()
        if u == end_node:
            return path
        if u in seen:
            continue
        seen.add(u)
        for v, layer_id in reversed(graph.adj_list[u]):
            stack.append((v, path + [layer_id]))
    return None


def _skip_chain(graph: Graph, start_id: int, end_id: int, op: str) -> tuple[list[StubLayer], tuple[int, ...]]:
    """Layers that bring the start tensor to the end tensor's resolution: a copy of every pooling and strided
    conv (as a 1x1 identity conv) between them, then a ReLU, as NNI does. Returns them and the final shape."""
    for layer_id in (start_id, end_id):
        _check_layer_id(graph, layer_id, op)
        if graph.layer_list[layer_id].aggregate:
            raise ArchitectureError(
                f"{op}: layer {layer_id} is {graph.layer_list[layer_id].type_name}; "
                "start and end must be single-input layers"
            )
    start_node = graph.layer_id_to_output_node_ids[start_id][0]
    end_node = graph.layer_id_to_output_node_ids[end_id][0]
    path = _path_layers(graph, start_node, end_node) if start_node != end_node else None
    if not path:
        raise ArchitectureError(f"{op}: no path from layer {start_id} to layer {end_id}; end must come after start")
    shape = graph.node_list[start_node].shape
    chain: list[StubLayer] = []
    for layer_id in path:
        layer = graph.layer_list[layer_id]
        if layer.kind == "pool":
            new = layer.copy()
            new.weights = None
        elif isinstance(layer, StubConv) and layer.stride != 1:
            new = type(layer)(shape[-1], shape[-1], 1, layer.stride, padding=0)
        else:
            continue
        chain.append(new)
        shape = new.output_shape([shape])
    chain.append(StubReLU())
    end_shape = graph.node_list[end_node].shape
    if len(shape) != len(end_shape) or shape[:-1] != end_shape[:-1]:
        raise ArchitectureError(
            f"{op}: layer {start_id} gives shape {list(shape)} after the skip's "
            f"pooling but layer {end_id} outputs {list(end_shape)}; pick layers at the "
            "same resolution"
        )
    return chain, shape


def _add_chain(graph: Graph, start_id: int, chain: list[StubLayer], rng: np.random.Generator) -> int:
    node = graph.layer_id_to_output_node_ids[start_id][0]
    for layer in chain:
        node = graph.add_layer(layer, node)
        layer.weights = identity_weights(layer, rng) if graph.weighted else None
    return node


def _is_spatial(shape: tuple[int, ...]) -> bool:
    return len(shape) > 1


def to_add_skip_model(graph: Graph, start_id: int, end_id: int, rng: np.random.Generator | None) -> None:
    chain, skip_shape = _skip_chain(graph, start_id, end_id, "to_add_skip_model")
    rng = _rng(rng)
    end_node = graph.layer_id_to_output_node_ids[end_id][0]
    pre_end_node = graph.layer_id_to_input_node_ids[end_id][0]
    end_shape = graph.node_list[end_node].shape
    projection = (
        get_conv_class(len(end_shape) - 1)(skip_shape[-1], end_shape[-1], 1, 1, padding=0)
        if _is_spatial(end_shape)
        else StubDense(skip_shape[-1], end_shape[-1])
    )
    skip_output = _add_chain(graph, start_id, chain, rng)
    skip_output = graph.add_layer(projection, skip_output)
    if graph.weighted:  # zero (+ noise) so the Add starts as a no-op
        unit_range = np.array([0.0, 1.0])
        shapes = projection.param_shapes()
        projection.weights = tuple(_noise(rng, s, unit_range) for s in shapes)
    add_input = graph._add_node(end_shape)
    graph._redirect_edge(pre_end_node, end_node, add_input, end_id)
    add_id = len(graph.layer_list)
    graph.layer_list.append(StubAdd())
    graph._add_edge(add_id, add_input, end_node)
    graph._add_edge(add_id, skip_output, end_node)
    graph.operation_history.append(["to_add_skip_model", start_id, end_id])


def to_concat_skip_model(graph: Graph, start_id: int, end_id: int, rng: np.random.Generator | None) -> None:
    chain, skip_shape = _skip_chain(graph, start_id, end_id, "to_concat_skip_model")
    rng = _rng(rng)
    end_node = graph.layer_id_to_output_node_ids[end_id][0]
    pre_end_node = graph.layer_id_to_input_node_ids[end_id][0]
    end_shape = graph.node_list[end_node].shape
    filters_end, filters_start = end_shape[-1], skip_shape[-1]
    skip_output = _add_chain(graph, start_id, chain, rng)
    concat_input = graph._add_node(end_shape)
    graph._redirect_edge(pre_end_node, end_node, concat_input, end_id)
    concat_id = len(graph.layer_list)
    graph.layer_list.append(StubConcatenate())
    concat_output = graph._add_node(end_shape[:-1] + (filters_end + filters_start,))
    graph._add_edge(concat_id, concat_input, concat_output)
    graph._add_edge(concat_id, skip_output, concat_output)
    # The 1x1 conv after the concat restores the channel count; identity on the main-path channels and zero
    # on the skip's makes the whole thing a no-op at first.
    restore = (
        get_conv_class(len(end_shape) - 1)(filters_end + filters_start, filters_end, 1, 1, padding=0)
        if _is_spatial(end_shape)
        else StubDense(filters_end + filters_start, filters_end)
    )
    restore_id = len(graph.layer_list)
    graph.layer_list.append(restore)
    graph._add_edge(restore_id, concat_output, end_node)
    restore.weights = identity_weights(restore, rng) if graph.weighted else None
    graph.operation_history.append(["to_concat_skip_model", start_id, end_id])


# ------------------------------------------------------------------------------------------- helpers
def _check_layer_id(graph: Graph, layer_id: Any, op: str) -> None:
    if not isinstance(layer_id, (int, np.integer)) or not 0 <= int(layer_id) < graph.n_layers:
        raise ArchitectureError(
            f"{op}: layer id {layer_id!r} does not exist; the graph has layers 0..{graph.n_layers - 1}"
        )


def layer_from_description(description: Sequence[Any]) -> StubLayer:
    """Rebuild a stub from an NNI layer description ``[type, inputs, output, *attrs]`` (node ids ignored)."""
    if not description or description[0] not in LAYER_CLASSES:
        raise ArchitectureError(
            f"unknown layer description {list(description)!r}; the type must be one of {', '.join(LAYER_CLASSES)}"
        )
    return build_layer(description[0], list(description[3:]))


def apply_operations(graph: Graph, operations: Iterable[Sequence[Any]], rng: np.random.Generator | None) -> None:
    rng = _rng(rng)
    for op in operations:
        name, args = op[0], list(op[1:])
        if name == "to_wider_model":
            to_wider_model(graph, args[0], args[1], rng)
        elif name == "to_deeper_model":
            layer = args[1] if isinstance(args[1], StubLayer) else layer_from_description(args[1])
            to_deeper_model(graph, args[0], layer, rng)
        elif name == "to_add_skip_model":
            to_add_skip_model(graph, args[0], args[1], rng)
        elif name == "to_concat_skip_model":
            to_concat_skip_model(graph, args[0], args[1], rng)
        else:
            raise ArchitectureError(
                f"unknown morphism {name!r} in operation history; expected "
                "to_wider_model, to_deeper_model, to_add_skip_model or to_concat_skip_model"
            )
