"""The morphism graph IR: nodes are tensors, edges are stub layers (NNI's ``Graph``).

The attribute names and dict layouts are NNI's (``adj_list[u] = [(v, layer_id), ...]``), so a JSON document
maps one-to-one onto this object and NNI users' code that pokes at a graph keeps working. Structural
queries (main chain, descriptor, candidate layer ids) follow NNI's definitions; the morphisms themselves live
in ``morphisms.py`` and are exposed here under NNI's method names.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from archsearch.common.errors import ArchitectureError
from archsearch.spaces.morphism import morphisms
from archsearch.spaces.morphism.descriptor import NetworkDescriptor
from archsearch.spaces.morphism.layers import LayerShapeError, Shape, StubLayer, get_batch_norm_class, get_conv_class

if TYPE_CHECKING:
    import torch

    from archsearch.spaces.morphism.torch_model import TorchModel


class Node:
    """A tensor in the graph; ``shape`` is channels-last without the batch axis, as in NNI's JSON."""

    __slots__ = ("shape",)

    def __init__(self, shape: Sequence[int]) -> None:
        self.shape: Shape = tuple(int(d) for d in shape)

    def __repr__(self) -> str:
        return f"Node{list(self.shape)}"


class NodeIds(dict):
    """NNI's ``graph.node_to_id`` ({Node: id}). It keeps its graph, so NNI's
    ``layer_description_extractor(layer, node_to_id)`` finds a layer's wiring, which the graph owns here."""

    def __init__(self, graph: Graph) -> None:
        super().__init__((node, i) for i, node in enumerate(graph.node_list))
        self.graph = graph


class Graph:
    """A DAG of stub layers from one input tensor (node 0) to one output tensor."""

    def __init__(self, input_shape: Sequence[int], weighted: bool = True) -> None:
        self.input_shape: Shape = tuple(int(d) for d in input_shape)
        self.weighted = bool(weighted)
        self.node_list: list[Node] = []
        self.layer_list: list[StubLayer] = []
        self.layer_id_to_input_node_ids: dict[int, list[int]] = {}
        self.layer_id_to_output_node_ids: dict[int, list[int]] = {}
        self.adj_list: dict[int, list[tuple[int, int]]] = {}
        self.reverse_adj_list: dict[int, list[tuple[int, int]]] = {}
        # JSON form: [name, *args]; to_deeper_model's layer argument is stored as its layer description.
        self.operation_history: list[list[Any]] = []
        # NNI's record of the last widening traversal; kept only so documents round-trip.
        self.vis: list[Any] | None = None
        self.json_has_vis = True
        self.json_extra: dict[str, Any] = {}
        self.n_dim = len(self.input_shape) - 1
        self._add_node(self.input_shape)

    # ----------------------------------------------------------------------------------------- building
    def add_layer(self, layer: StubLayer, input_node_id: int | Iterable[int]) -> int:
        """Append ``layer`` reading ``input_node_id`` (a list for Add/Concatenate); returns the output
        node id."""
        ids = list(input_node_id) if isinstance(input_node_id, Iterable) else [int(input_node_id)]
        out_shape = self._checked_output_shape(layer, ids, len(self.layer_list))
        output_id = self._add_node(out_shape)
        layer_id = len(self.layer_list)
        self.layer_list.append(layer)
        for node_id in ids:
            self._add_edge(layer_id, node_id, output_id)
        return output_id

    def _checked_output_shape(self, layer: StubLayer, input_ids: list[int], layer_id: int) -> Shape:
        try:
            return layer.output_shape([self.node_list[i].shape for i in input_ids])
        except LayerShapeError as err:
            raise ArchitectureError(f"layer {layer_id} ({layer.type_name}) on node(s) {input_ids}: {err}") from None

    def _add_node(self, shape: Sequence[int]) -> int:
        node_id = len(self.node_list)
        self.node_list.append(Node(shape))
        self.adj_list[node_id] = []
        self.reverse_adj_list[node_id] = []
        return node_id

    def _add_edge(self, layer_id: int, input_id: int, output_id: int) -> None:
        if layer_id in self.layer_id_to_input_node_ids:
            if input_id not in self.layer_id_to_input_node_ids[layer_id]:
                self.layer_id_to_input_node_ids[layer_id].append(input_id)
            if output_id not in self.layer_id_to_output_node_ids[layer_id]:
                self.layer_id_to_output_node_ids[layer_id].append(output_id)
        else:
            self.layer_id_to_input_node_ids[layer_id] = [input_id]
            self.layer_id_to_output_node_ids[layer_id] = [output_id]
        self.adj_list[input_id].append((output_id, layer_id))
        self.reverse_adj_list[output_id].append((input_id, layer_id))

    def _redirect_edge(self, u_id: int, v_id: int, new_v_id: int, layer_id: int | None = None) -> None:
        """Make the layer on edge u -> v (the given layer, or the first such edge) write ``new_v_id``."""
        for index, (v, lid) in enumerate(self.adj_list[u_id]):
            if v == v_id and layer_id in (None, lid):
                layer_id = lid
                self.adj_list[u_id][index] = (new_v_id, lid)
                break
        else:
            raise ArchitectureError(f"no edge from node {u_id} to node {v_id} to redirect")
        self.reverse_adj_list[v_id].remove((u_id, layer_id))
        self.reverse_adj_list[new_v_id].append((u_id, layer_id))
        outputs = self.layer_id_to_output_node_ids[layer_id]
        if v_id in outputs:
            outputs[outputs.index(v_id)] = new_v_id

    def _replace_layer(self, layer_id: int, new_layer: StubLayer) -> None:
        self.layer_list[layer_id] = new_layer

    def copy(self, share_layers: bool = False) -> Graph:
        """An independent copy. Weight arrays are always shared (nothing writes into them in place).
        ``share_layers`` also shares the stub objects, which is safe because morphisms and weight setters
        replace layers rather than modify them; the optimizer uses it for its many throwaway children."""
        new = object.__new__(Graph)
        new.__dict__.update(self.__dict__)
        new.node_list = [Node(n.shape) for n in self.node_list]
        new.layer_list = list(self.layer_list) if share_layers else [layer.copy() for layer in self.layer_list]
        new.layer_id_to_input_node_ids = {k: list(v) for k, v in self.layer_id_to_input_node_ids.items()}
        new.layer_id_to_output_node_ids = {k: list(v) for k, v in self.layer_id_to_output_node_ids.items()}
        new.adj_list = {k: list(v) for k, v in self.adj_list.items()}
        new.reverse_adj_list = {k: list(v) for k, v in self.reverse_adj_list.items()}
        new.operation_history = [list(op) for op in self.operation_history]
        new.vis = None if self.vis is None else [list(v) for v in self.vis]
        new.json_extra = dict(self.json_extra)
        return new

    def __deepcopy__(self, memo: dict) -> Graph:
        return self.copy()  # NNI user code deepcopies graphs; weight arrays are never written in place

    # ------------------------------------------------------------------------------------------ queries
    @property
    def node_to_id(self) -> NodeIds:
        return NodeIds(self)

    @property
    def layer_to_id(self) -> dict[StubLayer, int]:
        return {layer: i for i, layer in enumerate(self.layer_list)}

    @property
    def conv(self) -> type[StubLayer]:
        """NNI's conv class for this graph's dimensionality (likewise ``batch_norm``)."""
        return get_conv_class(self.n_dim)

    @property
    def batch_norm(self) -> type[StubLayer]:
        return get_batch_norm_class(self.n_dim)

    @property
    def n_nodes(self) -> int:
        return len(self.node_list)

    @property
    def n_layers(self) -> int:
        return len(self.layer_list)

    @property
    def output_node_id(self) -> int:
        return self.topological_order[-1]

    @property
    def topological_order(self) -> list[int]:
        """Node ids in Kahn order (FIFO, like NNI); shorter than n_nodes when the graph has a cycle."""
        in_degree = [len(self.reverse_adj_list[i]) for i in range(self.n_nodes)]
        queue = deque(i for i in range(self.n_nodes) if in_degree[i] == 0)
        order = []
        while queue:
            u = queue.popleft()
            order.append(u)
            for v, _ in self.adj_list[u]:
                in_degree[v] -= 1
                if in_degree[v] == 0:
                    queue.append(v)
        return order

    def layer_execution_order(self) -> list[int]:
        """Layer ids so that every layer comes after the layers producing its inputs."""
        order, seen = [], set()
        for v in self.topological_order:
            for _, layer_id in self.reverse_adj_list[v]:
                if layer_id not in seen:
                    seen.add(layer_id)
                    order.append(layer_id)
        return order

    def infer_shapes(self) -> None:
        """Recompute every node shape from the input shape; raises ArchitectureError on a mismatch."""
        for layer_id in self.layer_execution_order():
            layer = self.layer_list[layer_id]
            out_shape = self._checked_output_shape(layer, self.layer_id_to_input_node_ids[layer_id], layer_id)
            self.node_list[self.layer_id_to_output_node_ids[layer_id][0]].shape = out_shape

    def get_main_chain(self) -> list[int]:
        """Node ids on the longest input-to-output path (NNI's main chain)."""
        distance = [0] * self.n_nodes
        pre_node = list(range(self.n_nodes))
        for u in self.topological_order:
            for v, _ in self.adj_list[u]:
                if distance[u] + 1 > distance[v]:
                    distance[v] = distance[u] + 1
                    pre_node[v] = u
        node = int(np.argmax(distance))
        chain = [node]
        while pre_node[node] != node:
            node = pre_node[node]
            chain.append(node)
        return chain[::-1]

    def get_main_chain_layers(self) -> list[int]:
        chain = set(main := self.get_main_chain())
        return [layer_id for u in main for v, layer_id in self.adj_list[u] if v in chain]

    def _layer_ids_in_order(self, layer_ids: Iterable[int]) -> list[int]:
        position = {node_id: i for i, node_id in enumerate(self.topological_order)}
        return sorted(layer_ids, key=lambda lid: position[self.layer_id_to_output_node_ids[lid][0]])

    def _layer_ids_by_kind(self, kind: str) -> list[int]:
        return [i for i, layer in enumerate(self.layer_list) if layer.kind == kind]

    def _conv_layer_ids_in_order(self) -> list[int]:
        return [i for i in self.get_main_chain_layers() if self.layer_list[i].kind == "conv"]

    def _dense_layer_ids_in_order(self) -> list[int]:
        return self._layer_ids_in_order(self._layer_ids_by_kind("dense"))

    def deep_layer_ids(self) -> list[int]:
        """Main-chain layers after which a deeper block may go (NNI: up to the global pooling)."""
        ids = []
        for layer_id in self.get_main_chain_layers():
            kind = self.layer_list[layer_id].kind
            if kind == "gpool":
                break
            if kind not in ("add", "concat"):
                ids.append(layer_id)
        return ids

    def wide_layer_ids(self) -> list[int]:
        """Layers that may be widened: all main-chain convs but the last, all denses but the output one."""
        return self._conv_layer_ids_in_order()[:-1] + self._dense_layer_ids_in_order()[:-1]

    def skip_connection_layer_ids(self) -> list[int]:
        return self.deep_layer_ids()[:-1]

    def extract_descriptor(self) -> NetworkDescriptor:
        """The main-chain layers and skip connections, which is all the GP kernel looks at."""
        main_chain = self.get_main_chain()
        index = {u: i for i, u in enumerate(main_chain)}
        layers = [self.layer_list[lid] for u in main_chain for v, lid in self.adj_list[u] if v in index]
        skips = []
        for u in main_chain:
            for v, layer_id in self.adj_list[u]:
                if v not in index:
                    temp_u, temp_v, temp_layer_id, skip_type = u, v, layer_id, None
                    while not (temp_v in index and temp_u in index):
                        skip_type = _skip_type(self.layer_list[temp_layer_id]) or skip_type
                        temp_u = temp_v
                        temp_v, temp_layer_id = self.adj_list[temp_v][0]
                    skips.append((index[u], index[temp_u], skip_type))
                elif index[v] - index[u] != 1:
                    skips.append((index[u], index[v], _skip_type(self.layer_list[layer_id])))
        return NetworkDescriptor.from_layers(layers, skips)

    def size(self) -> int:
        """Number of trainable parameters (NNI's size() also counted BN running statistics)."""
        return sum(layer.n_params() for layer in self.layer_list)

    def n_params(self) -> int:
        return self.size()

    def clear_operation_history(self) -> None:
        self.operation_history = []

    def clear_weights(self) -> None:
        self.weighted = False
        self.layer_list = [_with_weights(layer, None) for layer in self.layer_list]

    def has_weights(self) -> bool:
        return self.weighted and any(layer.weights is not None for layer in self.layer_list)

    # ----------------------------------------------------------------------------------------- morphisms
    def to_wider_model(self, pre_layer_id: int, n_add: int, rng: np.random.Generator | None = None) -> None:
        """Add ``n_add`` units/filters to a conv or dense layer, function-preserving (Net2WiderNet)."""
        morphisms.to_wider_model(self, pre_layer_id, n_add, rng)

    def to_deeper_model(
        self, target_id: int, new_layer: StubLayer | Sequence[StubLayer], rng: np.random.Generator | None = None
    ) -> None:
        """Insert an identity-initialized layer (or block of layers, in order) after layer ``target_id``."""
        morphisms.to_deeper_model(self, target_id, new_layer, rng)

    def to_add_skip_model(self, start_id: int, end_id: int, rng: np.random.Generator | None = None) -> None:
        """Add a zero-initialized skip from after layer ``start_id`` to after layer ``end_id``."""
        morphisms.to_add_skip_model(self, start_id, end_id, rng)

    def to_concat_skip_model(self, start_id: int, end_id: int, rng: np.random.Generator | None = None) -> None:
        """Concatenate a skip from after ``start_id`` after ``end_id``; a 1x1 conv restores the channels."""
        morphisms.to_concat_skip_model(self, start_id, end_id, rng)

    def apply_operations(self, operations: Iterable[Sequence[Any]], rng: np.random.Generator | None = None) -> None:
        """Replay ``operation_history`` entries (e.g. those found by the optimizer on an unweighted copy)."""
        morphisms.apply_operations(self, operations, rng)

    # ------------------------------------------------------------------------------- weights and models
    def produce_torch_model(self) -> TorchModel:
        """Build an ``nn.Module`` (input NCHW / NC) carrying this graph's weights where it has them."""
        from archsearch.spaces.morphism.torch_model import TorchModel

        return TorchModel(self)

    def set_weights_from_model(self, model: torch.nn.Module) -> None:
        """Take the (trained) weights of a model made by ``produce_torch_model`` into the graph."""
        self.set_weights_from_state_dict(model.state_dict())

    def set_weights_from_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        from archsearch.spaces.morphism.torch_model import weights_from_state_dict

        for layer_id, layer in enumerate(self.layer_list):
            weights = weights_from_state_dict(layer, layer_id, state_dict)
            if weights is not None:
                self.layer_list[layer_id] = _with_weights(layer, weights)
        self.weighted = True

    def weights_state_dict(self) -> dict[str, Any]:
        """The graph's weights as a state dict with TorchModel's keys (``"<layer_id>.weight"``)."""
        from archsearch.spaces.morphism.torch_model import state_dict_from_weights

        return state_dict_from_weights(self)

    def __repr__(self) -> str:
        return f"Graph(input_shape={list(self.input_shape)}, layers={self.n_layers}, params={self.size()})"


def _with_weights(layer: StubLayer, weights: tuple[np.ndarray, ...] | None) -> StubLayer:
    """A copy of ``layer`` holding ``weights``; copies of this graph may share the original object."""
    if layer.weights is None and weights is None:
        return layer
    new = layer.copy()
    new.weights = weights
    return new


def _skip_type(layer: StubLayer) -> str | None:
    if layer.kind == "concat":
        return NetworkDescriptor.CONCAT_CONNECT
    if layer.kind == "add":
        return NetworkDescriptor.ADD_CONNECT
    return None
