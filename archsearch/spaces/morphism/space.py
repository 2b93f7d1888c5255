"""Network morphism's growing graph space: an architecture is NNI's JSON graph document (the morphism IR).

The space has no fixed size: the morphism strategy grows it from a seed network by function-preserving
morphisms (archsearch/strategies/morphism), within limits its config sets. Its encoding is the unweighted graph
document, which NNI's own `json_to_graph` also reads; trained weights travel beside it (`best_model.pt`).
Only this space offers the `morphism` capability, so every other strategy/space pair with morphism is
check_pair's one-line error.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from archsearch.common.checkpoint import load_checkpoint
from archsearch.common.errors import ArchitectureError
from archsearch.common.io import atomic_write_text
from archsearch.config import choice
from archsearch.config.schema import Str, register_section
from archsearch.model.load import ARCH_FORMATS, BuiltModel
from archsearch.search.pictures import ArchPicture, label
from archsearch.search.space import SPACES, Arch, SearchSpace
from archsearch.spaces.morphism.constants import MODEL_LEN, MODEL_WIDTH
from archsearch.spaces.morphism.generators import TASKS
from archsearch.spaces.morphism.graph import Graph
from archsearch.spaces.morphism.ir_json import graph_to_dict, graph_to_json, json_to_graph, load_graph_file

ARCH_FORMAT = "morphism_graph_json"
META_KEY = "archsearch"  # the document's own keys are NNI's; ours go under one extra key that NNI ignores



def graph_picture(doc: Mapping[str, Any]) -> ArchPicture:
    """An NNI network-morphism graph (its JSON document, already checked): one node per layer."""
    raw = doc["layer_list"]
    layers = {int(lid): spec for lid, spec in (dict(raw) if isinstance(raw, list) else raw).items()}
    inputs = {int(k): [int(n) for n in v] for k, v in doc["layer_id_to_input_node_ids"].items()}
    outputs = {int(k): [int(n) for n in v] for k, v in doc["layer_id_to_output_node_ids"].items()}
    produced_by = {n: lid for lid, nodes in outputs.items() for n in nodes}
    picture = ArchPicture(f"morphism network ({len(layers)} layers)", vertical=True, plain_solid=True)
    picture.add_node("input", "input")
    vertex = {lid: picture.add_node(layer_label(layers[lid]), "inner") for lid in sorted(layers)}
    consumed = set()
    for lid in sorted(layers):
        for n in inputs.get(lid, []):
            src = produced_by.get(n)
            picture.edges.append((vertex[src] if src is not None else 0, vertex[lid], None))
            if src is not None:
                consumed.add(src)
    out = picture.add_node("output", "output")
    for lid in sorted(layers):
        if lid not in consumed:
            picture.edges.append((vertex[lid], out, None))
    return picture


def layer_label(spec: Sequence[Any]) -> str:
    kind = label(spec[0]).removeprefix("Stub")
    short = {
        "BatchNormalization2d": "BN",
        "GlobalPooling2d": "global pool",
        "Concatenate": "concat",
        "Flatten": "flatten",
        "Softmax": "softmax",
        "Pooling2d": "pool",
    }
    if kind == "Conv2d" and len(spec) >= 6:
        return f"conv {label(spec[5])}x{label(spec[5])}\n{label(spec[4])} ch"
    if kind == "Dense" and len(spec) >= 5:
        return f"dense {label(spec[4])}"
    return short.get(kind, kind)


@SPACES.register("morphism")
class MorphismSpace(SearchSpace):
    name = "morphism"
    summary = "network morphism's growing graph (NNI's JSON graph IR), grown by function-preserving morphisms"
    final_file = "best_model.json"
    cell_based = False

    @classmethod
    def pictures(cls, final_file: Mapping[str, Any]) -> list[ArchPicture]:
        """The network of an NNI graph document: one node per layer, edges along the tensors, top to bottom."""
        return [graph_picture(final_file)]

    def __init__(self, conf_space: Mapping, conf_model_desc: Mapping, conf_dataset: Mapping) -> None:
        super().__init__(conf_space, conf_model_desc, conf_dataset)
        size, channels = conf_dataset["image_size"], conf_dataset["channels"]
        self.input_shape = (size, size, channels)  # NNI's graphs are channels last
        self.n_classes = conf_dataset["n_classes"]
        self.task, self.model_len, self.model_width = "cv", MODEL_LEN, MODEL_WIDTH  # NNI's seed network

    def configure_morphism(self, conf_morphism: Mapping) -> None:
        """The seed network of nas.search.morphism (task, model_len, model_width)."""
        self.task, self.model_len, self.model_width = (conf_morphism[k] for k in ("task", "model_len", "model_width"))

    def describe(self) -> str:
        shape = "x".join(map(str, self.input_shape))
        return f"{self.name}: graphs grown from a {self.task} seed network on {shape} inputs, {self.n_classes} outputs"

    def seed_graph(self) -> Graph:
        return TASKS[self.task](self.n_classes, self.input_shape).generate(self.model_len, self.model_width)

    def sample(self, rng: random.Random) -> Arch:
        """The seed network: the one architecture of this space known before a search grows it."""
        return graph_to_dict(self.seed_graph(), include_weights=False)

    def to_json(self, arch: Arch) -> Any:
        return arch

    def from_json(self, data: Any, where: str = "architecture") -> Arch:
        try:
            return graph_to_dict(json_to_graph(data), include_weights=False)
        except ArchitectureError as err:
            raise ArchitectureError(f"{where}: {err}") from None

    def arch_str(self, arch: Arch) -> str:
        graph = json_to_graph(arch)
        return f"graph of {len(graph.layer_list)} layers, {graph.size():,} parameters"

    def build(self, arch: Arch) -> nn.Module:
        return json_to_graph(arch).produce_torch_model()

    def save_arch(self, arch: Arch, folder: Path, meta: Mapping[str, Any]) -> Path:
        path = Path(folder) / self.final_file
        atomic_write_text(path, json.dumps({**arch, META_KEY: {"space": self.name, **meta}}))
        return path

    def load_arch(self, path: Path) -> Arch:
        return graph_to_dict(load_graph_file(path), include_weights=False)

    def eval_model(self, path: Path, conf_model_desc: Mapping, eval_dir: Path | None) -> BuiltModel:
        """The graph as found (morphism has no eval-size scaling), trained from scratch or, with
        nas.eval.morphism.init finetune, from the best trial's trained weights (best_model.pt beside it)."""
        graph = load_graph_file(path)
        init = choice(self.conf_eval["morphism"], "init", ["scratch", "finetune"])
        weights = Path(path).with_suffix(".pt")
        if init == "finetune":
            if not weights.exists():
                raise ArchitectureError(f"init finetune needs the trained weights {weights}; use init scratch")
            graph.set_weights_from_state_dict(load_checkpoint(weights))  # verified when its sha256 is beside it
        else:
            graph.clear_weights()
        text = graph_to_json(graph, eval_dir / "model.json" if eval_dir is not None else None, include_weights=False)
        return BuiltModel(graph.produce_torch_model(), ARCH_FORMAT, text)


# a graph names no code (layer types come from an allow-list), so what the caller allowed does not matter
ARCH_FORMATS.add(ARCH_FORMAT, lambda text, where, allowed: json_to_graph(text).produce_torch_model())


# how evaluation starts a found graph: from scratch, or from the weights the search trained
register_section("nas.eval.morphism", {"init": Str("scratch", "finetune")})
