"""NNI's graph JSON format: ``json_to_graph`` (validating) and ``graph_to_json`` (round-tripping).

Format (keys in NNI's order): input_shape, vis (optional), weighted, operation_history,
layer_id_to_input_node_ids, layer_id_to_output_node_ids, adj_list, reverse_adj_list, node_list, layer_list.
Our one extension is the optional ``layer_weights`` key, ``{"<layer id>": [array, ...]}`` with each array
as nested lists in torch layout (conv/dense: weight, bias; batch norm: weight, bias, running_mean,
running_var). NNI's loader ignores unknown keys, so a weights-carrying document still loads there
(with ``"weighted": false``). Unknown top-level keys are kept and written back.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Mapping
from typing import Any

import numpy as np

from archsearch.common.errors import ArchitectureError
from archsearch.common.io import atomic_write_text
from archsearch.common.readers import MAX_ARCH_BYTES, read_bytes
from archsearch.spaces.morphism.graph import Graph, Node
from archsearch.spaces.morphism.layers import ATTR_COUNTS, LAYER_CLASSES, LayerShapeError, build_layer

REQUIRED_KEYS = (
    "input_shape",
    "weighted",
    "operation_history",
    "layer_id_to_input_node_ids",
    "layer_id_to_output_node_ids",
    "adj_list",
    "reverse_adj_list",
    "node_list",
    "layer_list",
)
WEIGHTS_KEY = "layer_weights"
MORPHISM_NAMES = ("to_wider_model", "to_deeper_model", "to_add_skip_model", "to_concat_skip_model")


def _fail(message: str) -> ArchitectureError:
    return ArchitectureError(f"IR JSON: {message}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# ------------------------------------------------------------------------------------------- writing
def graph_to_dict(graph: Graph, include_weights: bool = True) -> dict[str, Any]:
    """The NNI document for ``graph``; ``layer_weights`` only when weighted, asked for, and present.
    Without weights the document says ``"weighted": false`` (it carries none, and NNI's loader crashes on
    ``true``)."""
    data: dict[str, Any] = {"input_shape": list(graph.input_shape)}
    if graph.json_has_vis:
        data["vis"] = graph.vis
    data["weighted"] = graph.weighted if include_weights else False
    data["operation_history"] = [list(op) for op in graph.operation_history]
    for key in ("layer_id_to_input_node_ids", "layer_id_to_output_node_ids"):
        data[key] = {str(k): list(v) for k, v in getattr(graph, key).items()}
    data["adj_list"] = {str(k): [list(e) for e in v] for k, v in graph.adj_list.items()}
    data["reverse_adj_list"] = {str(k): [list(e) for e in v] for k, v in graph.reverse_adj_list.items()}
    data["node_list"] = [[i, list(node.shape)] for i, node in enumerate(graph.node_list)]
    data["layer_list"] = [[layer_id, layer_description(graph, layer_id)] for layer_id in range(len(graph.layer_list))]
    if include_weights and graph.weighted:
        weights = {
            str(i): [np.asarray(w, dtype=np.float32).tolist() for w in layer.weights]
            for i, layer in enumerate(graph.layer_list)
            if layer.weights is not None
        }
        if weights:
            data[WEIGHTS_KEY] = weights
    data.update(graph.json_extra)
    return data


def layer_description(graph: Graph, layer_id: int) -> list[Any]:
    """A layer's JSON description: [type, input node id(s), output node id, *attributes]."""
    layer, inputs = graph.layer_list[layer_id], graph.layer_id_to_input_node_ids[layer_id]
    output = graph.layer_id_to_output_node_ids[layer_id][0]
    return [layer.type_name, list(inputs) if layer.aggregate else inputs[0], output, *layer.json_attrs()]


def graph_to_json(graph: Graph, json_model_path: str | os.PathLike | None = None, include_weights: bool = True) -> str:
    """Serialize ``graph`` (and write it atomically to ``json_model_path`` when given, like NNI)."""
    text = json.dumps(graph_to_dict(graph, include_weights))
    if json_model_path is not None:
        atomic_write_text(json_model_path, text)
    return text


# ------------------------------------------------------------------------------------------- reading
def json_to_graph(json_model: str | bytes | Mapping[str, Any]) -> Graph:
    """Load and validate an NNI graph document (text or already-parsed dict)."""
    if isinstance(json_model, (str, bytes, bytearray)):
        try:
            data = json.loads(json_model)
        except json.JSONDecodeError as err:
            raise _fail(
                f"not valid JSON (line {err.lineno} column {err.colno}: {err.msg}); check the document is complete"
            ) from None
        except UnicodeDecodeError as err:
            raise _fail(f"not UTF-8 text (byte {err.start}); save the document as UTF-8 JSON") from None
        except RecursionError:
            raise _fail("nested too deeply to be a graph document") from None
    else:
        data = json_model
    if not isinstance(data, Mapping):
        raise _fail(
            f"the document must be a JSON object with keys {', '.join(REQUIRED_KEYS)}; got {type(data).__name__}"
        )
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise _fail(f"missing key {missing[0]!r}; an NNI graph document needs {', '.join(REQUIRED_KEYS)}")
    return _Loader(data).load()


def load_graph_file(path: str | os.PathLike) -> Graph:
    """`json_to_graph` of a file, with a missing, unreadable or non-UTF-8 file as one line naming it."""
    # bytes, so a non-UTF-8 file is reported, not raised; a FIFO, device or oversized file is one line too
    raw = read_bytes(path, "IR JSON file", ArchitectureError, max_bytes=MAX_ARCH_BYTES)
    try:
        return json_to_graph(raw)
    except ArchitectureError as e:
        raise ArchitectureError(f"{path}: {e}") from None


class _Loader:
    def __init__(self, data: Mapping[str, Any]) -> None:
        self.data = data

    def load(self) -> Graph:
        data = self.data
        input_shape = data["input_shape"]
        if (
            not isinstance(input_shape, list)
            or not 1 <= len(input_shape) <= 4
            or not all(_is_int(d) and d > 0 for d in input_shape)
        ):
            raise _fail(f"input_shape must be a list of 1 to 4 positive integers (channels last), got {input_shape!r}")
        if not isinstance(data["weighted"], bool):
            raise _fail(f"weighted must be true or false, got {data['weighted']!r}")
        graph = Graph(input_shape, data["weighted"])
        graph.node_list = self._nodes()
        n_nodes = len(graph.node_list)
        layers, descriptions = self._layers(n_nodes)
        graph.layer_list = layers
        for key in ("layer_id_to_input_node_ids", "layer_id_to_output_node_ids"):
            setattr(graph, key, self._layer_map(key, len(layers), n_nodes))
        self._check_layer_maps(graph, descriptions)
        graph.adj_list = self._adjacency("adj_list", n_nodes, len(layers))
        graph.reverse_adj_list = self._adjacency("reverse_adj_list", n_nodes, len(layers))
        self._check_adjacency(graph)
        self._check_structure(graph)
        self._check_shapes(graph)
        graph.operation_history = self._history()
        vis = data.get("vis")
        if vis is not None and not isinstance(vis, list):
            raise _fail(f"vis must be null or a list, got {type(vis).__name__}")
        graph.vis = vis
        graph.json_has_vis = "vis" in data
        if WEIGHTS_KEY in data:
            self._weights(graph, data[WEIGHTS_KEY])
        graph.json_extra = {k: v for k, v in data.items() if k not in REQUIRED_KEYS + ("vis", WEIGHTS_KEY)}
        return graph

    def _nodes(self) -> list[Node]:
        node_list = self.data["node_list"]
        if not isinstance(node_list, list) or not node_list:
            raise _fail("node_list must be a non-empty list of [node_id, shape] pairs")
        nodes = []
        for index, item in enumerate(node_list):
            if not (
                isinstance(item, list)
                and len(item) == 2
                and _is_int(item[0])
                and isinstance(item[1], list)
                and item[1]
                and all(_is_int(d) and d > 0 for d in item[1])
            ):
                raise _fail(f"node_list[{index}] must be [node_id, [positive ints]], got {item!r}")
            if item[0] != index:
                raise _fail(f"node_list[{index}] has id {item[0]}; node ids must be 0..n-1 in order")
            nodes.append(Node(item[1]))
        return nodes

    def _node_id(self, value: Any, where: str, n_nodes: int) -> int:
        if not _is_int(value):
            raise _fail(f"{where} has node id {value!r}; node ids are integers")
        if not 0 <= value < n_nodes:
            raise _fail(f"{where} refers to node {value}, which is not in node_list (ids 0..{n_nodes - 1})")
        return value

    def _layers(self, n_nodes: int) -> tuple[list[Any], list[tuple[list[int], int]]]:
        layer_list = self.data["layer_list"]
        if not isinstance(layer_list, list):
            raise _fail("layer_list must be a list of [layer_id, description] pairs")
        layers, descriptions = [], []
        for index, item in enumerate(layer_list):
            where = f"layer_list[{index}]"
            if not (isinstance(item, list) and len(item) == 2 and isinstance(item[1], list) and len(item[1]) >= 3):
                raise _fail(f"{where} must be [layer_id, [type, inputs, output, ...]], got {item!r}")
            if item[0] != index:
                raise _fail(f"{where} has id {item[0]!r}; layer ids must be 0..n-1 in order")
            type_name, inputs, output, *attrs = item[1]
            if not isinstance(type_name, str) or type_name not in LAYER_CLASSES:
                raise _fail(f"unknown layer type {type_name!r} in {where}; known types: {', '.join(LAYER_CLASSES)}")
            cls = LAYER_CLASSES[type_name]
            where = f"{where} ({type_name})"
            if cls.aggregate:
                if not isinstance(inputs, list) or len(inputs) < 2:
                    raise _fail(f"{where} needs a list of at least 2 input node ids, got {inputs!r}")
            elif isinstance(inputs, list):
                if len(inputs) != 1:
                    raise _fail(f"{where} takes one input node, got {inputs!r}")
                inputs = inputs[0]
            input_list = inputs if isinstance(inputs, list) else [inputs]
            input_ids = [self._node_id(i, where, n_nodes) for i in input_list]
            output_id = self._node_id(output, where, n_nodes)
            self._check_attrs(cls.kind, attrs, where)
            layers.append(build_layer(type_name, attrs))
            descriptions.append((input_ids, output_id))
        return layers, descriptions

    @staticmethod
    def _check_attrs(kind: str, attrs: list[Any], where: str) -> None:
        low, high = ATTR_COUNTS.get(kind, (0, 0))
        if not low <= len(attrs) <= high:
            expected = f"{low}" if low == high else f"{low} to {high}"
            raise _fail(f"{where} has {len(attrs)} attribute fields after the node ids, expected {expected}")
        if kind == "dropout":
            if not isinstance(attrs[0], (int, float)) or isinstance(attrs[0], bool) or not 0 <= attrs[0] < 1:
                raise _fail(f"{where} has dropout rate {attrs[0]!r}; it must be a number in [0, 1)")
            return
        for position, value in enumerate(attrs):
            # padding (conv field 4, pooling field 2) may be 0; every other size must be positive
            minimum = 0 if (kind, position) in (("conv", 4), ("pool", 2)) else 1
            if not _is_int(value) or value < minimum:
                raise _fail(
                    f"{where} has attribute {value!r} at field {position + 3}; expected an integer >= {minimum}"
                )

    def _layer_map(self, key: str, n_layers: int, n_nodes: int) -> dict[int, list[int]]:
        raw = self.data[key]
        if not isinstance(raw, Mapping):
            raise _fail(f"{key} must be an object mapping layer ids to node id lists")
        result: dict[int, list[int]] = {}
        for k, v in raw.items():
            try:
                layer_id = int(k)
            except (TypeError, ValueError):
                raise _fail(f"{key} has key {k!r}; keys must be layer ids") from None
            if not 0 <= layer_id < n_layers:
                raise _fail(f"{key} has layer {layer_id}, which is not in layer_list (ids 0..{n_layers - 1})")
            if not isinstance(v, list) or not v:
                raise _fail(f"{key}[{k!r}] must be a non-empty list of node ids, got {v!r}")
            result[layer_id] = [self._node_id(i, f"{key}[{k!r}]", n_nodes) for i in v]
        for layer_id in range(n_layers):
            if layer_id not in result:
                raise _fail(f"{key} has no entry for layer {layer_id}; every layer needs one")
        return result

    @staticmethod
    def _check_layer_maps(graph: Graph, descriptions: list[tuple[list[int], int]]) -> None:
        for layer_id, (inputs, output) in enumerate(descriptions):
            if graph.layer_id_to_input_node_ids[layer_id] != inputs:
                raise _fail(
                    f"layer_id_to_input_node_ids['{layer_id}'] is "
                    f"{graph.layer_id_to_input_node_ids[layer_id]} but layer_list[{layer_id}] reads "
                    f"{inputs}; make them agree"
                )
            if graph.layer_id_to_output_node_ids[layer_id] != [output]:
                raise _fail(
                    f"layer_id_to_output_node_ids['{layer_id}'] is "
                    f"{graph.layer_id_to_output_node_ids[layer_id]} but layer_list[{layer_id}] "
                    f"writes node {output}; a layer has exactly one output node"
                )

    def _adjacency(self, key: str, n_nodes: int, n_layers: int) -> dict[int, list[tuple[int, int]]]:
        raw = self.data[key]
        if not isinstance(raw, Mapping):
            raise _fail(f"{key} must be an object mapping node ids to [[node_id, layer_id], ...] lists")
        result: dict[int, list[tuple[int, int]]] = {}
        for k, edges in raw.items():
            try:
                node_id = int(k)
            except (TypeError, ValueError):
                raise _fail(f"{key} has key {k!r}; keys must be node ids") from None
            where = f"{key}[{k!r}]"
            self._node_id(node_id, where, n_nodes)
            if not isinstance(edges, list):
                raise _fail(f"{where} must be a list of [node_id, layer_id] pairs, got {edges!r}")
            pairs = []
            for edge in edges:
                if not (isinstance(edge, list) and len(edge) == 2 and _is_int(edge[1])):
                    raise _fail(f"{where} has edge {edge!r}; edges are [node_id, layer_id] pairs")
                if not 0 <= edge[1] < n_layers:
                    raise _fail(f"{where} refers to layer {edge[1]}, which is not in layer_list")
                pairs.append((self._node_id(edge[0], where, n_nodes), edge[1]))
            result[node_id] = pairs
        for node_id in range(n_nodes):
            if node_id not in result:
                raise _fail(f"{key} has no entry for node {node_id}; list every node, with [] if it has no edges")
        return result

    @staticmethod
    def _check_adjacency(graph: Graph) -> None:
        forward: dict[int, Counter] = {i: Counter() for i in range(graph.n_nodes)}
        backward: dict[int, Counter] = {i: Counter() for i in range(graph.n_nodes)}
        for layer_id, inputs in graph.layer_id_to_input_node_ids.items():
            output = graph.layer_id_to_output_node_ids[layer_id][0]
            for u in inputs:
                forward[u][(output, layer_id)] += 1
                backward[output][(u, layer_id)] += 1
        for key, expected, actual in (
            ("adj_list", forward, graph.adj_list),
            ("reverse_adj_list", backward, graph.reverse_adj_list),
        ):
            for node_id in range(graph.n_nodes):
                if Counter(actual[node_id]) != expected[node_id]:
                    raise _fail(
                        f"{key}['{node_id}'] is {[list(e) for e in actual[node_id]]} but the layers "
                        f"give {sorted(map(list, expected[node_id].elements()))}; regenerate it from "
                        "layer_list"
                    )

    @staticmethod
    def _check_structure(graph: Graph) -> None:
        order = graph.topological_order
        if len(order) < graph.n_nodes:
            cyclic = sorted(set(range(graph.n_nodes)) - set(order))
            raise _fail(f"the graph has a cycle through node(s) {cyclic}; a network must be acyclic")
        for node_id in range(graph.n_nodes):
            writers = sorted({layer_id for _, layer_id in graph.reverse_adj_list[node_id]})
            if node_id == 0 and writers:
                raise _fail(f"node 0 is the network input but layer {writers[0]} writes it")
            if node_id != 0 and not writers:
                raise _fail(
                    f"node {node_id} has no layer writing it and is not the input (node 0); connect it or remove it"
                )
            if len(writers) > 1:
                raise _fail(f"node {node_id} is written by layers {writers}; each tensor has one producing layer")
        sinks = [i for i in range(graph.n_nodes) if not graph.adj_list[i]]
        if len(sinks) != 1:
            raise _fail(f"the graph has {len(sinks)} output nodes {sinks}; exactly one tensor may be left unconsumed")

    @staticmethod
    def _check_shapes(graph: Graph) -> None:
        if graph.node_list[0].shape != graph.input_shape:
            raise _fail(
                f"node 0 has shape {list(graph.node_list[0].shape)} but input_shape is "
                f"{list(graph.input_shape)}; they must be equal"
            )
        for layer_id in graph.layer_execution_order():
            layer = graph.layer_list[layer_id]
            inputs = graph.layer_id_to_input_node_ids[layer_id]
            try:
                shape = layer.output_shape([graph.node_list[i].shape for i in inputs])
            except LayerShapeError as err:
                raise _fail(f"layer {layer_id} ({layer.type_name}) on node(s) {inputs}: {err}") from None
            output = graph.layer_id_to_output_node_ids[layer_id][0]
            if graph.node_list[output].shape != shape:
                raise _fail(
                    f"node {output} is declared {list(graph.node_list[output].shape)} but layer "
                    f"{layer_id} ({layer.type_name}) produces {list(shape)}; fix node_list or the layer"
                )

    def _history(self) -> list[list[Any]]:
        history = self.data["operation_history"]
        if not isinstance(history, list):
            raise _fail("operation_history must be a list")
        for index, op in enumerate(history):
            if not isinstance(op, list) or not op or op[0] not in MORPHISM_NAMES:
                raise _fail(
                    f"operation_history[{index}] is {op!r}; entries are [name, args...] with name "
                    f"one of {', '.join(MORPHISM_NAMES)}"
                )
        return [list(op) for op in history]

    @staticmethod
    def _weights(graph: Graph, raw: Any) -> None:
        if not isinstance(raw, Mapping):
            raise _fail(f"{WEIGHTS_KEY} must be an object mapping layer ids to lists of arrays")
        for k, arrays in raw.items():
            try:
                layer_id = int(k)
                layer = graph.layer_list[layer_id]
            except (TypeError, ValueError, IndexError):
                raise _fail(f"{WEIGHTS_KEY} has key {k!r}, which is not a layer id") from None
            shapes = layer.param_shapes()
            if not shapes or not isinstance(arrays, list) or len(arrays) != len(shapes):
                raise _fail(f"{WEIGHTS_KEY}[{k!r}] must hold {len(shapes)} arrays for {layer.type_name}")
            converted = []
            for position, (array, shape) in enumerate(zip(arrays, shapes)):
                try:
                    value = np.asarray(array, dtype=np.float32)
                except (TypeError, ValueError):
                    raise _fail(f"{WEIGHTS_KEY}[{k!r}][{position}] is not a numeric array") from None
                if value.shape != tuple(shape):
                    raise _fail(
                        f"{WEIGHTS_KEY}[{k!r}][{position}] has shape {list(value.shape)} but layer "
                        f"{layer_id} ({layer.type_name}) needs {list(shape)}"
                    )
                converted.append(value)
            layer.weights = tuple(converted)
