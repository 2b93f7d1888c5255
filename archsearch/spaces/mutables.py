"""Mutables: choices inside a user's own PyTorch model (NNI-style `LayerChoice` and `InputChoice`).

    self.conv1 = LayerChoice({"conv3x3": nn.Conv2d(1, 16, 3, padding=1), "conv5x5": nn.Conv2d(1, 16, 5, padding=2)})
    self.skip = InputChoice(n_candidates=1, n_chosen=None)      # any subset of its inputs, the empty one included
    ...
    x = self.conv1(x)                                           # used like any module
    skip = self.skip([x0])                                      # the reduction of the chosen inputs, or None

A mutable answers in one of three ways, first that applies:
1. a *driver* a strategy binds (`drive`), e.g. DARTS' softmax-weighted mixture of all candidates;
2. its *decision* (`set_decision`): the candidate / input subset a strategy sampled (random, ENAS);
3. by default (nothing decided yet): the first candidate, the first `n_chosen` inputs (all for n_chosen=None),
   so a model with mutables runs before any search.

`MutableSpace(model)` finds a model's mutables and groups them by key: a mutable's key is the one it was
given, or its module path in the model ("conv1", "blocks.0.choice"), which is unique and the same for every
instance of the model, so a choice JSON found on one instance applies to another. Mutables sharing a key
share one decision. An architecture is a *choice JSON* `{key: candidate name | [input indices]}`;
`apply_fixed_arch(model, choices)` turns the model into a plain one that holds only the chosen candidates.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from archsearch.common.errors import ArchitectureError
from archsearch.common.readers import MAX_ARCH_BYTES, read_json

REDUCTIONS = ("sum", "mean", "concat", "none")
Decision = int | tuple[int, ...]  # a LayerChoice's candidate index, an InputChoice's sorted input indices
Choices = dict[str, Decision]
InputReduction = torch.Tensor | list[torch.Tensor] | None


class Mutable(nn.Module):
    """Base of the choices a strategy drives. `key` names the decision (None: the module path in the model)."""

    def __init__(self, key: str | None = None) -> None:
        super().__init__()
        if key is not None and (not isinstance(key, str) or not key):
            raise ValueError(f"a choice key must be a non-empty string, got {key!r}")
        self.key = key
        self.decision: Decision | None = None
        self.set_driver(None)

    @property
    def n_candidates(self) -> int:
        raise NotImplementedError

    def set_decision(self, decision: Decision | None) -> None:
        self.decision = decision

    def set_driver(self, driver: Callable[..., Any] | None) -> None:
        # object.__setattr__: a driver bound to a module (a supernet) must not become a submodule of the choice
        object.__setattr__(self, "driver", driver)


class LayerChoice(Mutable):
    """One of several candidate modules; `forward(*args, **kwargs)` runs the chosen one.

    `candidates` is a list (candidate names "0", "1", ...) or a mapping name -> module (an OrderedDict)."""

    def __init__(self, candidates: Sequence[nn.Module] | Mapping[str, nn.Module], key: str | None = None) -> None:
        super().__init__(key)
        if isinstance(candidates, Mapping):
            names, modules = [str(name) for name in candidates], list(candidates.values())
        else:
            modules = list(candidates)
            names = [str(i) for i in range(len(modules))]
        if not modules:
            raise ValueError(f"LayerChoice {key!r} needs at least one candidate")
        for name, module in zip(names, modules):
            if not isinstance(module, nn.Module):
                raise TypeError(f"LayerChoice candidate {name!r} is a {type(module).__name__}, not an nn.Module")
        if len(set(names)) != len(names):
            raise ValueError(f"LayerChoice candidate names must be unique, got {names}")
        self.names: list[str] = names
        self.candidates = nn.ModuleList(modules)  # a list, not a ModuleDict: any name is allowed, even "a.b"

    @property
    def n_candidates(self) -> int:
        return len(self.candidates)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if self.driver is not None:
            return self.driver(self, *args, **kwargs)
        index = 0 if self.decision is None else self.decision
        return self.candidates[index](*args, **kwargs)

    def extra_repr(self) -> str:
        return f"key={self.key!r}, names={self.names}"


class InputChoice(Mutable):
    """Chooses `n_chosen` of `n_candidates` input tensors (None: any number, none included) and reduces them:
    `sum`, `mean`, `concat` (along channels) or `none` (the list). Nothing chosen returns None."""

    def __init__(
        self, n_candidates: int, n_chosen: int | None = 1, reduction: str = "sum", key: str | None = None
    ) -> None:
        super().__init__(key)
        if isinstance(n_candidates, bool) or not isinstance(n_candidates, int) or n_candidates < 1:
            raise ValueError(f"InputChoice n_candidates must be a positive int, got {n_candidates!r}")
        if n_chosen is not None and (isinstance(n_chosen, bool) or not 1 <= n_chosen <= n_candidates):
            raise ValueError(f"InputChoice n_chosen must be None or 1..{n_candidates}, got {n_chosen!r}")
        if reduction not in REDUCTIONS:
            raise ValueError(f"InputChoice reduction must be one of {', '.join(REDUCTIONS)}, got {reduction!r}")
        self._n_candidates, self.n_chosen, self.reduction = n_candidates, n_chosen, reduction

    @property
    def n_candidates(self) -> int:
        return self._n_candidates

    def default_indices(self) -> tuple[int, ...]:
        return tuple(range(self.n_candidates if self.n_chosen is None else self.n_chosen))

    def forward(self, inputs: Sequence[torch.Tensor]) -> InputReduction:
        inputs = check_inputs(inputs, self.n_candidates, self.key)
        if self.driver is not None:
            return self.driver(self, inputs)
        indices = self.default_indices() if self.decision is None else self.decision
        return reduce_inputs([inputs[i] for i in indices], self.reduction)

    def extra_repr(self) -> str:
        return f"key={self.key!r}, n_candidates={self.n_candidates}, n_chosen={self.n_chosen}, {self.reduction}"


class ChosenInputs(nn.Module):
    """What an InputChoice becomes in a fixed model: the same call, with its inputs chosen once and for all."""

    def __init__(self, n_candidates: int, indices: Sequence[int], reduction: str, key: str | None = None) -> None:
        super().__init__()
        self.n_candidates, self.indices, self.reduction, self.key = n_candidates, tuple(indices), reduction, key

    def forward(self, inputs: Sequence[torch.Tensor]) -> InputReduction:
        inputs = check_inputs(inputs, self.n_candidates, self.key)
        return reduce_inputs([inputs[i] for i in self.indices], self.reduction)

    def extra_repr(self) -> str:
        return f"key={self.key!r}, indices={list(self.indices)}, {self.reduction}"


def check_inputs(inputs: Sequence[torch.Tensor], n_candidates: int, key: str | None) -> list[torch.Tensor]:
    inputs = list(inputs)
    if len(inputs) != n_candidates:
        raise ValueError(f"InputChoice {key!r} has {n_candidates} candidates but was called with {len(inputs)} inputs")
    return inputs


def reduce_inputs(chosen: list[torch.Tensor], reduction: str) -> InputReduction:
    if not chosen:
        return None
    if reduction == "none":
        return chosen
    if reduction == "concat":
        return torch.cat(chosen, dim=1)
    total = chosen[0]
    for x in chosen[1:]:
        total = total + x  # not torch.stack: broadcasting inputs of different shapes still add
    return total / len(chosen) if reduction == "mean" else total


# ---- the space of a model's mutables ------------------------------------------------------------


@dataclass
class ChoiceGroup:
    """The mutables sharing one key, hence one decision."""

    key: str
    mutables: list[Mutable]
    paths: list[str]

    @property
    def first(self) -> Mutable:
        return self.mutables[0]

    @property
    def is_layer(self) -> bool:
        return isinstance(self.first, LayerChoice)

    @property
    def n_candidates(self) -> int:
        return self.first.n_candidates

    @property
    def n_chosen(self) -> int | None:
        return None if self.is_layer else self.first.n_chosen  # type: ignore[union-attr]

    @property
    def names(self) -> list[str]:
        return self.first.names if self.is_layer else [str(i) for i in range(self.n_candidates)]  # type: ignore

    @property
    def is_fixed(self) -> bool:
        """Nothing to decide: one candidate, or every input chosen."""
        return self.n_candidates == 1 if self.is_layer else self.n_chosen == self.n_candidates

    def default(self) -> Decision:
        return 0 if self.is_layer else self.first.default_indices()  # type: ignore[union-attr]

    def n_options(self) -> int:
        if self.is_layer:
            return self.n_candidates
        n = self.n_candidates
        return 2**n if self.n_chosen is None else math.comb(n, self.n_chosen)

    def sample(self, rng: random.Random) -> Decision:
        n, k = self.n_candidates, self.n_chosen
        if self.is_layer:
            return rng.randrange(n)
        if k is None:
            return tuple(i for i in range(n) if rng.random() < 0.5)
        return tuple(sorted(rng.sample(range(n), k)))

    def to_json(self, decision: Decision) -> str | list[int]:
        return self.names[decision] if self.is_layer else list(decision)  # type: ignore[index,arg-type]

    def parse(self, value: Any, where: str) -> Decision:
        """A choice-JSON value for this key as a decision, or an ArchitectureError naming what is wrong."""
        prefix = f"{where}: key {self.key!r}"
        if self.is_layer:
            if isinstance(value, str) and value in self.names:
                return self.names.index(value)
            if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < self.n_candidates:
                return value
            raise ArchitectureError(f"{prefix}: {value!r} is not a candidate; choose one of {self.names}")
        n, k = self.n_candidates, self.n_chosen
        if not isinstance(value, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in value):
            raise ArchitectureError(f"{prefix}: expected a list of input indices, got {value!r}")
        if len(set(value)) != len(value) or not all(0 <= i < n for i in value):
            raise ArchitectureError(f"{prefix}: {value} must be distinct input indices in 0..{n - 1}")
        if k is not None and len(value) != k:
            raise ArchitectureError(f"{prefix}: {value} chooses {len(value)} inputs, the choice takes n_chosen={k}")
        return tuple(sorted(value))


class MutableSpace:
    """The choices of a model, grouped by key in the order the model registers them."""

    def __init__(self, model: nn.Module, name: str = "the model") -> None:
        self.name = name
        self.groups: dict[str, ChoiceGroup] = {}
        found = [(path, m) for path, m in model.named_modules() if isinstance(m, Mutable)]
        if not found:
            raise ArchitectureError(
                f"{name} has no LayerChoice or InputChoice to search; add them from archsearch.spaces.mutables"
            )
        explicit = {m.key for _, m in found if m.key is not None}
        for path, mutable in found:
            key = mutable.key if mutable.key is not None else (path or type(mutable).__name__)
            if mutable.key is None and key in explicit:
                raise ArchitectureError(
                    f"{name}: the choice at {path!r} has no key and its default key {key!r} is another choice's "
                    f"key; give it key=..."
                )
            group = self.groups.setdefault(key, ChoiceGroup(key, [], []))
            if group.mutables:
                self._check_compatible(group, path, mutable)
            group.mutables.append(mutable)
            group.paths.append(path)

    def _check_compatible(self, group: ChoiceGroup, path: str, mutable: Mutable) -> None:
        first, where = group.first, f"{self.name}: choices sharing key {group.key!r} ({group.paths[0]}, {path})"
        if type(first) is not type(mutable):
            raise ArchitectureError(
                f"{where} must be of one kind, got {type(first).__name__} and {type(mutable).__name__}"
            )
        if first.n_candidates != mutable.n_candidates:
            raise ArchitectureError(
                f"{where} must have the same number of candidates, got {first.n_candidates} and {mutable.n_candidates}"
            )
        if isinstance(first, InputChoice) and first.n_chosen != mutable.n_chosen:  # type: ignore[union-attr]
            raise ArchitectureError(f"{where} must have the same n_chosen, got {first.n_chosen} and {mutable.n_chosen}")

    # ---- shape of the space --------------------------------------------------------------------
    def keys(self) -> list[str]:
        return list(self.groups)

    def searched(self) -> list[ChoiceGroup]:
        return [g for g in self.groups.values() if not g.is_fixed]

    def size(self) -> int:
        return math.prod(g.n_options() for g in self.groups.values())

    def describe(self) -> str:
        parts = []
        for g in self.groups.values():
            what = f"{g.names}" if g.is_layer else f"{g.n_chosen or 'any'} of {g.n_candidates} inputs"
            parts.append(f"{g.key}: {what}")
        return f"{len(self.groups)} choices ({'; '.join(parts)}), {self.size()} architectures"

    # ---- decisions -----------------------------------------------------------------------------
    def default_choices(self) -> Choices:
        return {key: g.default() for key, g in self.groups.items()}

    def random_choices(self, rng: random.Random) -> Choices:
        return {key: g.sample(rng) for key, g in self.groups.items()}

    def set_choices(self, choices: Mapping[str, Decision] | None) -> None:
        """Make every mutable run its key's decision (None: back to the defaults)."""
        for key, group in self.groups.items():
            for mutable in group.mutables:
                mutable.set_decision(None if choices is None else choices[key])

    def to_json(self, choices: Mapping[str, Decision]) -> dict[str, str | list[int]]:
        return {key: g.to_json(choices[key]) for key, g in self.groups.items()}

    def parse(self, choice_json: Mapping[str, Any], where: str = "choice JSON") -> Choices:
        """Validate a choice JSON against this space: every key known, none missing, every value in range."""
        if not isinstance(choice_json, Mapping):
            raise ArchitectureError(f"{where}: expected a mapping {{key: choice}}, got {type(choice_json).__name__}")
        unknown = [k for k in choice_json if k not in self.groups]
        if unknown:
            raise ArchitectureError(f"{where}: {self.name} has no choice {unknown[0]!r}; its keys are {self.keys()}")
        missing = [k for k in self.groups if k not in choice_json]
        if missing:
            raise ArchitectureError(f"{where}: no decision for key {missing[0]!r} (keys needed: {self.keys()})")
        return {key: g.parse(choice_json[key], where) for key, g in self.groups.items()}


# ---- fixed architectures ------------------------------------------------------------------------


def read_choice_json(arch: Mapping[str, Any] | str | Path) -> tuple[dict[str, Any], str]:
    """(choice JSON, where it came from) from a mapping or a JSON file; a search's final_arch.json, which wraps
    the choices with the model they belong to (`{"model": ..., "choices": {...}}`), is unwrapped."""
    if isinstance(arch, Mapping):
        data, where = dict(arch), "choice JSON"
    else:
        where = str(arch)
        data = read_json(arch, "choice JSON", ArchitectureError, max_bytes=MAX_ARCH_BYTES)
        if not isinstance(data, dict):
            raise ArchitectureError(f"{where}: expected a JSON object {{key: choice}}, got {type(data).__name__}")
    if isinstance(data.get("choices"), Mapping) and "model" in data:  # a LayerChoice value is never a mapping
        data = dict(data["choices"])
    return data, where


def apply_fixed_arch(model: nn.Module, arch: Mapping[str, Any] | str | Path, where: str | None = None) -> nn.Module:
    """Turn `model` into a plain model that holds only the candidates `arch` (a choice JSON, or its file) chooses.

    Every LayerChoice is replaced by its chosen module (with its weights, so a searched model keeps what it
    learned) and every InputChoice by a ChosenInputs; the model is changed in place and returned (a model
    that is itself a choice is replaced, so use the return value). `where` names the choices in errors."""
    choice_json, source = read_choice_json(arch)
    space = MutableSpace(model)
    choices = space.parse(choice_json, where or source)
    keys = {id(m): key for key, g in space.groups.items() for m in g.mutables}
    memo: dict[int, nn.Module] = {}

    def fixed(module: nn.Module) -> nn.Module:
        if id(module) in memo:  # a module used at several places is replaced by one module everywhere
            return memo[id(module)]
        if isinstance(module, LayerChoice):
            result = fixed(module.candidates[choices[keys[id(module)]]])  # type: ignore[index]
        elif isinstance(module, InputChoice):
            key = keys[id(module)]
            result = ChosenInputs(module.n_candidates, choices[key], module.reduction, key)  # type: ignore[arg-type]
        else:
            # _modules, not named_children(): that skips a child already seen, and a shared one sits at each place
            for name, child in list(module._modules.items()):
                if child is not None:
                    setattr(module, name, fixed(child))
            result = module
        memo[id(module)] = result
        return result

    return fixed(model)


__all__ = [
    "REDUCTIONS",
    "ChoiceGroup",
    "Choices",
    "ChosenInputs",
    "Decision",
    "InputChoice",
    "LayerChoice",
    "Mutable",
    "MutableSpace",
    "apply_fixed_arch",
    "read_choice_json",
    "reduce_inputs",
]
