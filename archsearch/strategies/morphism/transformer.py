"""Random graph-level morphisms and the neighbourhood used by the optimizer (NNI's graph_transformer).

Each helper returns a new graph (the argument is never modified) or None when no morphism of that kind is
possible within the limits. Randomness comes only from the ``rng`` passed in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from archsearch.common.errors import ArchitectureError
from archsearch.spaces.morphism.constants import MAX_LAYER_WIDTH, MAX_LAYERS, MAX_MODEL_SIZE, N_NEIGHBOURS
from archsearch.spaces.morphism.graph import Graph
from archsearch.spaces.morphism.layers import (
    StubDense,
    StubLayer,
    StubReLU,
    get_batch_norm_class,
    get_conv_class,
    layer_width,
)

DEEPER_KERNEL_SIZES = (1, 3, 5)
# Layers that keep a non-negative input non-negative (max pooling, averaging, dropout, reshaping).
_SIGN_PRESERVING = ("pool", "gpool", "dropout", "flatten", "add", "concat")


@dataclass(frozen=True)
class MorphismLimits:
    """Bounds on what a morphism may produce.

    max_model_size: trainable parameters of a child (NNI ``max_model_size``, default 2**24).
    max_layer_width: filters/units of one layer after widening (NNI has none; Autokeras used 4096).
    max_layers: no deepening once the graph has this many deep-able layers (NNI ``Constant.MAX_LAYERS``).
    n_neighbours: children ``transform`` returns per call (NNI ``Constant.N_NEIGHBOURS``).
    """

    max_model_size: int = MAX_MODEL_SIZE
    max_layer_width: int = MAX_LAYER_WIDTH
    max_layers: int = MAX_LAYERS
    n_neighbours: int = N_NEIGHBOURS

    def __post_init__(self) -> None:
        for name in ("max_model_size", "max_layer_width", "max_layers", "n_neighbours"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"MorphismLimits.{name} must be a positive integer, got {value!r}")


def _default_rng(rng: np.random.Generator | None) -> np.random.Generator:
    return rng if rng is not None else np.random.default_rng(0)


def to_wider_graph(
    graph: Graph, rng: np.random.Generator | None = None, limits: MorphismLimits | None = None
) -> Graph | None:
    """Double the width of one random widenable layer (capped at ``limits.max_layer_width``)."""
    rng, limits = _default_rng(rng), limits or MorphismLimits()
    layer_ids = [i for i in graph.wide_layer_ids() if layer_width(graph.layer_list[i]) < limits.max_layer_width]
    for layer_id in rng.permutation(layer_ids).tolist() if layer_ids else []:
        width = layer_width(graph.layer_list[layer_id])
        child = graph.copy(share_layers=True)
        try:
            child.to_wider_model(layer_id, min(width, limits.max_layer_width - width), rng)
        except ArchitectureError:
            continue  # e.g. the units reach the output: try another layer instead of failing the proposal
        return child
    return None


def _is_nonnegative(graph: Graph, node_id: int, memo: dict[int, bool] | None = None) -> bool:
    """True when the tensor is provably >= 0 (it comes from a ReLU through sign-preserving layers)."""
    memo = {} if memo is None else memo
    if node_id not in memo:
        producers = graph.reverse_adj_list[node_id]
        kinds = {graph.layer_list[layer_id].kind for _, layer_id in producers}
        if not producers:
            memo[node_id] = False
        elif kinds == {"relu"}:
            memo[node_id] = True
        elif kinds <= set(_SIGN_PRESERVING):
            memo[node_id] = all(_is_nonnegative(graph, u, memo) for u, _ in producers)
        else:
            memo[node_id] = False
    return memo[node_id]


def create_new_block(graph: Graph, target_id: int, rng: np.random.Generator | None = None) -> list[StubLayer]:
    """The block a deepening inserts after ``target_id``: conv(k in 1/3/5)-BN(-ReLU) on feature maps,
    dense(-ReLU) on flat tensors. The ReLU is only added where the block's input is non-negative, because
    only there is it an identity, which keeps the morphism function-preserving."""
    rng = _default_rng(rng)
    output_id = graph.layer_id_to_output_node_ids[target_id][0]
    shape = graph.node_list[output_id].shape
    if len(shape) == 1:
        block: list[StubLayer] = [StubDense(shape[0], shape[0])]
    else:
        n_dim = len(shape) - 1
        kernel = int(rng.choice(DEEPER_KERNEL_SIZES))
        block = [get_conv_class(n_dim)(shape[-1], shape[-1], kernel, 1), get_batch_norm_class(n_dim)(shape[-1])]
    if _is_nonnegative(graph, output_id):
        block.append(StubReLU())
    return block


def to_deeper_graph(
    graph: Graph, rng: np.random.Generator | None = None, limits: MorphismLimits | None = None
) -> Graph | None:
    """Insert an identity block after one random main-chain layer (before the global pooling)."""
    rng, limits = _default_rng(rng), limits or MorphismLimits()
    layer_ids = graph.deep_layer_ids()
    if not layer_ids or len(layer_ids) >= limits.max_layers:
        return None
    target_id = int(rng.choice(layer_ids))
    child = graph.copy(share_layers=True)
    child.to_deeper_model(target_id, create_new_block(graph, target_id, rng), rng)
    return child


def to_skip_connection_graph(
    graph: Graph, rng: np.random.Generator | None = None, limits: MorphismLimits | None = None, max_tries: int = 8
) -> Graph | None:
    """Add one random add- or concat-skip between two main-chain layers at the same resolution."""
    rng = _default_rng(rng)
    layer_ids = graph.skip_connection_layer_ids()
    pairs = [(a, b, kind) for kind in ("add", "concat") for i, a in enumerate(layer_ids) for b in layer_ids[i + 1 :]]
    if not pairs:
        return None
    for index in rng.permutation(len(pairs))[:max_tries].tolist():
        start_id, end_id, kind = pairs[index]
        child = graph.copy(share_layers=True)
        try:
            if kind == "add":
                child.to_add_skip_model(start_id, end_id, rng)
            else:
                child.to_concat_skip_model(start_id, end_id, rng)
        except ArchitectureError:
            continue  # different resolutions (e.g. an unpadded conv between them): try another pair
        return child
    return None


_MORPHISMS = (to_deeper_graph, to_wider_graph, to_skip_connection_graph)


def transform(
    graph: Graph, limits: MorphismLimits | None = None, rng: np.random.Generator | None = None
) -> list[Graph]:
    """Up to ``limits.n_neighbours`` random children (deeper / wider / skip, uniformly), each within the
    model-size limit; like NNI it makes at most twice that many attempts."""
    rng, limits = _default_rng(rng), limits or MorphismLimits()
    children: list[Graph] = []
    for _ in range(limits.n_neighbours * 2):
        child = _MORPHISMS[int(rng.integers(len(_MORPHISMS)))](graph, rng, limits)
        if child is not None and child.size() <= limits.max_model_size:
            children.append(child)
        if len(children) >= limits.n_neighbours:
            break
    return children
