"""NNI's network-morphism module paths on archsearch: `install()` and code written for NNI runs unchanged.

    import archsearch.compat.nni
    archsearch.compat.nni.install()   # before the first `import nni...`
    from nni.algorithms.hpo.networkmorphism_tuner.networkmorphism_tuner import NetworkMorphismTuner
    from nni.algorithms.hpo.networkmorphism_tuner.graph import json_to_graph

`install()` puts modules named `nni`, `nni.algorithms`, `nni.algorithms.hpo` and
`nni.algorithms.hpo.networkmorphism_tuner.{networkmorphism_tuner, graph, layers, nn, bayesian,
graph_transformer, layer_transformer, utils}` into `sys.modules`, holding archsearch's implementations
under NNI's names. To run an NNI script without editing it, install the alias in a `sitecustomize.py` or a
pytest `conftest.py`, or run it as
`python -c "import archsearch.compat.nni as n, runpy; n.install(); runpy.run_path('trial.py', run_name='__main__')"`.
A real `nni` already imported is left alone (ImportError): the alias is for machines without NNI.

Only the network-morphism tuner is mirrored. NNI's layer-level Net2Net helpers (`wider_pre_conv`, ...) are
folded into whole-graph morphisms here, so `layer_transformer` offers those (`to_wider_model`, ...).
"""

from __future__ import annotations

import sys
import types
from collections.abc import MutableMapping
from typing import Any

from archsearch.spaces.morphism import constants, generators, graph, ir_json, layers, morphisms
from archsearch.spaces.morphism.graph import NodeIds
from archsearch.spaces.morphism.layers import StubLayer
from archsearch.strategies.morphism import bayesian, distance, nni_tuner, transformer

PACKAGE = "nni.algorithms.hpo.networkmorphism_tuner"


def layer_description_extractor(layer: StubLayer, node_to_id: NodeIds) -> list[Any]:
    """NNI's description of `layer`: [type, input node id(s), output node id, *attributes]; `node_to_id` must be
    the graph's own `graph.node_to_id` (the graph, not the layer, knows the layer's nodes here)."""
    owner = getattr(node_to_id, "graph", None)
    if owner is None:
        raise TypeError("layer_description_extractor needs graph.node_to_id of the layer's own graph")
    return ir_json.layer_description(owner, owner.layer_to_id[layer])


def _public(module: types.ModuleType, names: str = "") -> dict[str, Any]:
    """The module's classes and upper-case constants, and the functions `names` lists."""
    wanted = set(names.split())
    found = {k: v for k, v in vars(module).items() if (k[0].isupper() or k in wanted) and not k.startswith("_")}
    return {k: v for k, v in found.items() if not isinstance(v, types.ModuleType)}


def _contents() -> dict[str, dict[str, Any]]:
    """NNI's submodules of networkmorphism_tuner -> the names they hold."""
    constant = type("Constant", (), {k: v for k, v in vars(constants).items() if k.isupper()})
    distances = "edit_distance layer_distance layers_distance skip_connection_distance skip_connections_distance"
    return {
        "networkmorphism_tuner": _public(nni_tuner, "extract_scalar_reward"),
        "graph": {**_public(graph), **_public(ir_json, "graph_to_json json_to_graph graph_to_dict")},
        "layers": {
            **_public(
                layers,
                "is_layer layer_width get_conv_class get_batch_norm_class get_dropout_class "
                "get_pooling_class get_global_avg_pooling_class",
            ),
            "layer_description_extractor": layer_description_extractor,
        },  # fmt: skip
        "nn": _public(generators),
        "bayesian": {**_public(bayesian), **_public(distance, distances)},
        "graph_transformer": _public(
            transformer, "to_wider_graph to_deeper_graph to_skip_connection_graph transform create_new_block"
        ),
        "layer_transformer": _public(
            morphisms, "to_wider_model to_deeper_model to_add_skip_model to_concat_skip_model identity_weights"
        ),
        "utils": {"Constant": constant},
    }


def install(modules: MutableMapping[str, types.ModuleType] | None = None) -> list[str]:
    """Register the alias modules in `modules` (sys.modules); returns their names. Idempotent."""
    modules = sys.modules if modules is None else modules
    existing = modules.get("nni")
    if existing is not None and not getattr(existing, "__archsearch_alias__", False):
        raise ImportError(f"a real nni is already imported ({getattr(existing, '__file__', existing)}); use it")
    made: dict[str, types.ModuleType] = {}
    parts = PACKAGE.split(".")
    for depth in range(1, len(parts) + 1):
        name = ".".join(parts[:depth])
        made[name] = types.ModuleType(name, f"archsearch alias of {name} (archsearch.compat.nni)")
    for sub, names in _contents().items():
        module = made[f"{PACKAGE}.{sub}"] = types.ModuleType(f"{PACKAGE}.{sub}", f"archsearch alias of NNI's {sub}")
        module.__dict__.update(names)
    made[PACKAGE].__dict__.update(NetworkMorphismTuner=nni_tuner.NetworkMorphismTuner)
    for name, module in made.items():
        module.__archsearch_alias__ = True  # type: ignore[attr-defined]
        module.__path__ = []  # type: ignore[attr-defined]  # a package, so `import a.b.c` walks it
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(made[parent], child, module)
        modules[name] = module
    return list(made)
