"""Token spaces: an architecture as a flat sequence of ints (AMBER's `arc_seq`).

A `ModelSpace` is an ordered list of layers, each a list of candidate `Operation`s. An architecture is
the sequence of per-layer choices; when skip connections are searched, each layer i > 0 is followed by
i bits, bit j saying whether layer j's output feeds layer i (AMBER's residual layout):

    [op_0, op_1, skip_1_0, op_2, skip_2_0, skip_2_1, op_3, skip_3_0, skip_3_1, skip_3_2]

`decode` and `encode` are exact inverses. `token_spec()` describes every position (what it chooses, for
which layer, among how many values) so one controller can sample any space; spaces that are not a plain
layer chain (the ENAS micro cell) describe themselves with the same `Token`s.
"""

from __future__ import annotations

import operator
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from archsearch.common.errors import ArchitectureError

TOKEN_KINDS = ("op", "input", "skip")


@dataclass
class Operation:
    """One candidate of a layer: an op name (a key of the op registry, or any name a builder knows)
    and its settings."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)

    def short_name(self) -> str:
        """A compact unique id such as `conv_3x3(ch=16)`, for logs and plots (AMBER's get_layer_shortname)."""
        if not self.params:
            return self.name
        return f"{self.name}({','.join(f'{k}={v}' for k, v in sorted(self.params.items()))})"


@dataclass(frozen=True)
class Token:
    """What one position of an arc sequence chooses.

    kind:      "op" (an operation index), "input" (which earlier state feeds an input slot, chosen by the
               controller's attention) or "skip" (a 0/1 bit: is an earlier layer connected).
    layer:     the layer (or cell node) the token belongs to.
    n_choices: the token ranges over 0..n_choices-1.
    group:     independent sub-sequences of one arc (ENAS micro: 0 = normal cell, 1 = reduction cell);
               the controller restarts its attention memory at every group.
    slot:      op/input tokens: which input slot of the layer; skip tokens: the earlier layer it connects.
    choices:   op tokens: the candidate names; tokens with equal lists share one softmax in the controller.
    label:     what a layer is called in error messages ("layer", "reduction cell node").
    """

    kind: str
    layer: int
    n_choices: int
    group: int = 0
    slot: int = 0
    choices: tuple[str, ...] = ()
    label: str = "layer"

    def describe(self) -> str:
        where = f"{self.label} {self.layer}"
        if self.kind == "op":
            return f"{where}'s operation" + (f" {self.slot}" if self.slot else "")
        if self.kind == "input":
            return f"{where}'s input {self.slot}"
        return f"{where}'s skip bit from layer {self.slot}"


def check_arc(arc_seq: Sequence[Any], spec: Sequence[Token], space_description: str) -> list[int]:
    """Return `arc_seq` as a list of ints, or raise ArchitectureError naming the first bad token."""
    try:
        tokens = list(arc_seq)
    except TypeError:
        raise ArchitectureError(f"arc_seq must be a sequence of ints, got {type(arc_seq).__name__}") from None
    if len(tokens) != len(spec):
        raise ArchitectureError(f"arc_seq has {len(tokens)} tokens, the space needs {len(spec)} ({space_description})")
    out = []
    for position, (value, token) in enumerate(zip(tokens, spec)):
        try:
            if isinstance(value, bool):  # True would silently read as 1
                raise TypeError
            as_int = operator.index(value)
        except TypeError:
            raise ArchitectureError(f"arc_seq[{position}] = {value!r} must be an int ({token.describe()})") from None
        if not 0 <= as_int < token.n_choices:
            raise ArchitectureError(
                f"arc_seq[{position}] = {as_int} is out of range for {token.describe()}: "
                f"expected 0..{token.n_choices - 1}"
            )
        out.append(as_int)
    return out


def random_arc(spec: Sequence[Token], rng: random.Random | None = None) -> list[int]:
    """A uniformly random valid sequence for any token spec."""
    rng = rng or random.Random()
    return [rng.randrange(token.n_choices) for token in spec]


def mutate_arc(arc_seq: Sequence[int], spec: Sequence[Token], rng: random.Random) -> list[int]:
    """`arc_seq` with exactly one token changed to another of its values (a token with one value never is)."""
    free = [i for i, token in enumerate(spec) if token.n_choices > 1]
    if not free:
        raise ArchitectureError("nothing to mutate: every token of this space has a single value")
    out = list(arc_seq)
    i = rng.choice(free)
    out[i] = (out[i] + rng.randrange(1, spec[i].n_choices)) % spec[i].n_choices  # any other value, uniformly
    return out


class ModelSpace:
    """Ordered layers of candidate operations, optionally with searched skip connections (AMBER)."""

    def __init__(self, layers: Sequence[Sequence[Operation]], skip_connections: bool = True) -> None:
        if not layers:
            raise ArchitectureError("a model space needs at least one layer")
        for i, layer in enumerate(layers):
            if not layer:
                raise ArchitectureError(f"model space layer {i} has no candidate operations; give at least one")
        self.layers: list[list[Operation]] = [list(layer) for layer in layers]
        self.skip_connections = skip_connections

    @classmethod
    def from_list(cls, layers: Sequence[Sequence[Mapping[str, Any]]], skip_connections: bool = True) -> ModelSpace:
        """Build from plain data (a YAML list): `[[{name: conv_3x3, ch: 16}, {name: max_pool_3x3}], ...]`."""
        built = []
        for i, layer in enumerate(layers):
            ops = []
            for j, entry in enumerate(layer):
                if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
                    raise ArchitectureError(f"model space layer {i} op {j}: expected a mapping with a 'name' string")
                ops.append(Operation(entry["name"], {k: v for k, v in entry.items() if k != "name"}))
            built.append(ops)
        return cls(built, skip_connections)

    # ---- shape of the space --------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, layer: int) -> list[Operation]:
        return self.layers[layer]

    def __repr__(self) -> str:
        return f"ModelSpace({len(self)} layers, {self.describe()}, {self.size()} architectures)"

    def describe(self) -> str:
        with_skips = "with" if self.skip_connections else "without"
        return f"{len(self)} layers {with_skips} skip connections"

    def arc_length(self) -> int:
        n = len(self.layers)
        return n + (n * (n - 1) // 2 if self.skip_connections else 0)

    def size(self) -> int:
        """Number of distinct architectures."""
        total = 1
        for layer in self.layers:
            total *= len(layer)
        if self.skip_connections:
            total *= 2 ** (len(self.layers) * (len(self.layers) - 1) // 2)
        return total

    def token_spec(self) -> list[Token]:
        spec = []
        for i, layer in enumerate(self.layers):
            spec.append(Token("op", i, len(layer), choices=tuple(op.short_name() for op in layer)))
            if self.skip_connections:
                spec.extend(Token("skip", i, 2, slot=j) for j in range(i))
        return spec

    # ---- sequences -----------------------------------------------------------------------------
    def check(self, arc_seq: Sequence[Any]) -> list[int]:
        return check_arc(arc_seq, self.token_spec(), self.describe())

    def decode(self, arc_seq: Sequence[Any]) -> tuple[list[int], list[list[int]]]:
        """(operation index per layer, skip bits per layer i > 0 as a list of i bits)."""
        tokens = self.check(arc_seq)
        ops: list[int] = []
        skips: list[list[int]] = []
        pos = 0
        for i in range(len(self.layers)):
            ops.append(tokens[pos])
            pos += 1
            if self.skip_connections and i > 0:
                skips.append(tokens[pos : pos + i])
                pos += i
        return ops, skips

    def encode(self, operations: Sequence[int], skip_connections: Sequence[Sequence[int]] = ()) -> list[int]:
        """Inverse of `decode`."""
        n = len(self.layers)
        if len(operations) != n:
            raise ArchitectureError(f"got {len(operations)} operations, the space has {n} layers")
        expected_skips = n - 1 if self.skip_connections else 0
        if len(skip_connections) != expected_skips:
            raise ArchitectureError(
                f"got skip lists for {len(skip_connections)} layers, expected {expected_skips} "
                f"(one list of i bits per layer i > 0{'' if self.skip_connections else '; skips are not searched'})"
            )
        arc: list[int] = []
        for i, op in enumerate(operations):
            arc.append(op)
            if self.skip_connections and i > 0:
                bits = list(skip_connections[i - 1])
                if len(bits) != i:
                    raise ArchitectureError(f"layer {i} needs {i} skip bits (one per earlier layer), got {len(bits)}")
                arc.extend(bits)
        return self.check(arc)

    def chosen_operations(self, arc_seq: Sequence[Any]) -> list[Operation]:
        ops, _ = self.decode(arc_seq)
        return [self.layers[i][op] for i, op in enumerate(ops)]

    def random_arc(self, rng: random.Random | None = None) -> list[int]:
        return random_arc(self.token_spec(), rng)


# ---- the tokens as named categorical decisions (the `choices` capability: Optuna's samplers, NSGA-II) --------


def token_choices(spec: Sequence[Token]) -> list[tuple[str, list[Any]]]:
    """One decision per token, named by its position and what it chooses (`03 layer 1 operation`, `04 layer 2
    skip from 0`: unique, in token order, no quotes); an op token's options are its candidates' names when they
    name them one-to-one, every other token's its values 0..n-1."""
    decisions = []
    for i, token in enumerate(spec):
        named = len(token.choices) == token.n_choices and len(set(token.choices)) == token.n_choices
        options: list[Any] = list(token.choices) if named else list(range(token.n_choices))
        what = {"op": "operation" + (f" {token.slot}" if token.slot else ""), "input": f"input {token.slot}"}
        decisions.append((f"{i:02d} {token.label} {token.layer} {what.get(token.kind, f'skip from {token.slot}')}",
                          options))  # fmt: skip
    return decisions


def tokens_from_choices(spec: Sequence[Token], picked: Sequence[Any]) -> list[int]:
    """The arc of `picked` (one option per `token_choices(spec)` decision, in order)."""
    return [options.index(value) for (_, options), value in zip(token_choices(spec), picked, strict=True)]


def choices_from_tokens(spec: Sequence[Token], arc_seq: Sequence[int]) -> dict[str, Any]:
    """The inverse of tokens_from_choices, as {decision name: option}."""
    return {name: options[t] for (name, options), t in zip(token_choices(spec), arc_seq, strict=True)}


__all__ = [
    "Operation",
    "Token",
    "TOKEN_KINDS",
    "ModelSpace",
    "check_arc",
    "choices_from_tokens",
    "mutate_arc",
    "random_arc",
    "token_choices",
    "tokens_from_choices",
]
