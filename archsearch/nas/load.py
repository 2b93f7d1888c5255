"""Rebuild a trained network from eval/model.pt (architecture text + weights in one file)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from torch import nn

from archsearch.common.checkpoint import load_checkpoint
from archsearch.common.errors import ArchitectureError
from archsearch.common.registry import Registry
from archsearch.nas.model import Model
from archsearch.nas.model_desc import ModelDesc

# arch_format -> builder(arch_text) -> nn.Module; algorithms with other formats register theirs
ARCH_FORMATS: Registry[Callable[[str], nn.Module]] = Registry("architecture format")
ARCH_FORMATS.add("model_desc", lambda text: Model(ModelDesc.from_yaml(text, "model.pt architecture")))


def load_model(path: str | Path) -> nn.Module:
    """The network saved by the Evaluater, with its trained weights, in eval mode."""
    import archsearch.algos  # noqa: F401 - registers the formats and ops of every algorithm

    state = load_checkpoint(Path(path).expanduser())
    if not {"arch_format", "arch", "state_dict"} <= set(state):
        raise ArchitectureError(f"{path} is not an archsearch model file (expected eval/model.pt)")
    model = ARCH_FORMATS.get(state["arch_format"])(state["arch"])
    model.load_state_dict(state["state_dict"])
    return model.eval()
