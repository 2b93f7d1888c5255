"""Tiny trained-looking model.pt files of every architecture kind, saved the way the final training saves them."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest
import torch

from archsearch.common.checkpoint import save_checkpoint

ROOT = Path(__file__).resolve().parents[2]
MORPH_JSON = ROOT / "tests" / "strategies" / "morphism" / "data" / "nni_cnn_morphed.json"
USER_MODEL = "examples.mnist_space:Net"
CONF = dict(n_cells=5, init_channels=8, n_nodes=4, stem_multiplier=3, n_reductions=2, aux_weight=0.4, affine=True)
DATASET = dict(channels=3, n_classes=10)


def _randomise_bn(model: torch.nn.Module) -> None:
    """Non-trivial BatchNorm statistics, so an export that dropped them would give other logits."""
    gen = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d) and m.running_mean is not None:
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)


def build(kind: str) -> tuple[torch.nn.Module, str, str, tuple[int, int, int]]:
    """(model, arch_format, arch_text, input C,H,W) of one architecture kind."""
    from archsearch.model.network import Model

    if kind == "darts":
        from archsearch.model.builder import ModelDescBuilder
        from archsearch.model.genotype import DARTS_V2, genotype_to_templates

        desc = ModelDescBuilder(CONF, DATASET, genotype_to_templates(DARTS_V2)).build()
        return Model(desc), "model_desc", desc.to_yaml(), (3, 16, 16)
    if kind == "nb201":
        from archsearch.spaces.nasbench201 import arch_to_desc, index_to_arch

        desc = arch_to_desc(index_to_arch(1234), C=4, N=1, ch_in=3, n_classes=5)
        return Model(desc), "model_desc", desc.to_yaml(), (3, 16, 16)
    if kind == "enas_macro":
        from archsearch.spaces.enas_spaces import MacroSpace

        space = MacroSpace(n_layers=6)
        desc = space.to_desc(space.random_arc(random.Random(0)), dict(init_channels=8, affine=True), DATASET)
        return Model(desc), "model_desc", desc.to_yaml(), (3, 16, 16)
    if kind == "morphism":
        from archsearch.spaces.morphism.ir_json import graph_to_json, load_graph_file

        graph = load_graph_file(MORPH_JSON)
        h, w, c = graph.input_shape
        text = graph_to_json(graph, None, include_weights=False)
        return graph.produce_torch_model(), "morphism_graph_json", text, (c, h, w)
    if kind == "user":
        from archsearch.spaces.user_model import UserModelArch, UserModelRef

        if str(ROOT) not in sys.path:
            sys.path.insert(0, str(ROOT))
        arch = UserModelArch(UserModelRef(USER_MODEL, {}), {"conv1": "conv5x5", "conv2": "conv3x3", "skip": [0]})
        from archsearch.model.load import CodeAllowed

        return arch.build_fixed(CodeAllowed(USER_MODEL)), "user_model_json", arch.to_json(), (1, 8, 8)
    raise ValueError(kind)


KINDS = ("darts", "nb201", "enas_macro", "morphism", "user")


def save_model_pt(kind: str, folder: Path) -> tuple[Path, tuple[int, int, int]]:
    model, arch_format, text, shape = build(kind)
    _randomise_bn(model)
    folder.mkdir(parents=True, exist_ok=True)
    path = save_checkpoint(
        {"arch_format": arch_format, "arch": text, "state_dict": model.state_dict()}, folder / "model.pt"
    )
    return Path(path), shape


@pytest.fixture(scope="session")
def model_pts(tmp_path_factory) -> dict[str, tuple[Path, tuple[int, int, int]]]:
    root = tmp_path_factory.mktemp("models")
    return {kind: save_model_pt(kind, root / kind) for kind in KINDS}


def mutate(data, path: list, value, keys: list[str]):
    """Set a value somewhere in `data` (a random walk down `path` of indices; a negative step in a mapping adds
    one of `keys`), or replace the top: the report fuzzers' planted values."""
    if not path or not isinstance(data, (dict, list)) or not data:
        return value
    step, rest = path[0], path[1:]
    if isinstance(data, dict):
        key = list(data)[step % len(data)] if step >= 0 else keys[step % len(keys)]
        data[key] = mutate(data.get(key), rest, value, keys)
    else:
        data[step % len(data)] = mutate(data[step % len(data)], rest, value, keys)
    return data
