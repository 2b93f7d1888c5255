"""Rebuild a trained network from eval/model.pt (architecture text + weights in one file).

Loading is safe: the weights are read with `weights_only=True` and a builder imports or calls nothing the
file names unless the caller allowed it (`CodeAllowed`), the `trust_remote_code` convention of the Hugging
Face hub. A format that is pure data (a ModelDesc, a morphism graph) ignores the allowance; the user-model
format names a class to import and refuses it unless the caller named that same class or trusts the file.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from archsearch.common.checkpoint import load_checkpoint
from archsearch.common.errors import ArchitectureError
from archsearch.common.registry import Registry
from archsearch.model.model_desc import ModelDesc
from archsearch.model.network import Model


@dataclass
class BuiltModel:
    """A network together with the text that rebuilds it (`arch_format` names the builder in ARCH_FORMATS):
    what a space's `eval_model` returns and the final training stores in eval/model.pt."""

    model: nn.Module
    arch_format: str  # "model_desc" or another format a space registers
    arch_text: str


@dataclass(frozen=True)
class CodeAllowed:
    """The user code a caller allows a file to run: the one import path it named (`model`), or any
    (`trust_code`). `named_by` says where `model` came from, so a refusal tells how to allow the code."""

    model: str | None = None
    trust_code: bool = False
    named_by: str = "load_model"  # "load_model", or the config key the model was read from

    def check(self, named: str, where: str) -> None:
        """Refuse, with one line, to import `named` (what the file at `where` asks for) unless allowed."""
        if self.trust_code or named == self.model:
            return
        if self.named_by == "load_model":
            allowed = "" if self.model is None else f", not the model={json.dumps(self.model)} you allowed"
            fix = f"load it with load_model(path, model={json.dumps(named)}) if you trust it, or trust_code=True"
        else:
            allowed = f" but {self.named_by} is {self.model!r}" if self.model else f" but {self.named_by} is unset"
            fix = f"set --{self.named_by} {named} if you trust that code"
        raise ArchitectureError(f"{where} names user code {named!r}{allowed}; {fix}")


# arch_format -> builder(arch_text, where, allowed) -> nn.Module, `where` naming the file in errors; algorithms
# with other formats register theirs. A builder imports or calls nothing its text names unless
# `allowed.check` passes first.
ArchBuilder = Callable[[str, str, CodeAllowed], nn.Module]
ARCH_FORMATS: Registry[ArchBuilder] = Registry("architecture format")
ARCH_FORMATS.add("model_desc", lambda text, where, allowed: Model(ModelDesc.from_yaml(text, where)))


def load_model(path: str | Path, model: str | None = None, *, trust_code: bool = False) -> nn.Module:
    """The network saved by the final training, with its trained weights, in eval mode.

    The formats and ops of the file must be registered: `archsearch.load_model` (archsearch.plugins) imports
    every space and strategy first; this framework function imports none.

    A file of a user's own model names its class; it is imported only when `model` is that same import path
    ("package.module:Class") or `trust_code=True`. Other files need neither.
    """
    path = Path(path).expanduser()
    state = load_checkpoint(path)
    if not {"arch_format", "arch", "state_dict"} <= set(state):
        raise ArchitectureError(f"{path} is not an archsearch model file (expected eval/model.pt)")
    built = ARCH_FORMATS.get(state["arch_format"])(state["arch"], str(path), CodeAllowed(model, trust_code))
    built.load_state_dict(state["state_dict"])
    return built.eval()
