"""The op registry: `name -> builder(OpDesc) -> nn.Module`, and what validation may check about each op.

It is its own module, below both the ModelDesc (whose validation checks op names against it) and the op
definitions (which register into it), so neither imports the other to reach it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from torch import nn

from archsearch.common.registry import Registry

if TYPE_CHECKING:
    from archsearch.model.model_desc import OpDesc

OpBuilder = Callable[["OpDesc"], nn.Module]
OPS: Registry[OpBuilder] = Registry("op")


def build_op(desc: OpDesc) -> nn.Module:
    return OPS.get(desc.name)(desc)


# What ModelDesc.validate may check about an op beyond its name and channels: the `params` keys it reads,
# and how many times smaller its output map is than its input (DARTS' skip_connect and factorized_reduce
# halve whatever their stride says). Ops an algorithm registers without declaring them are not checked
# past these two points, so a desc using them is never refused for what the framework cannot know.
OP_PARAMS: dict[str, frozenset[str]] = {}
OP_DOWNSAMPLE: dict[str, Callable[[OpDesc], int]] = {}


@dataclass(frozen=True)
class OpTable:
    """What ModelDesc validation checks ops against: the builders, and the params and downsampling each
    declared op has. `ModelDesc.validate(ops=...)` takes one, so validation never reaches for a global."""

    builders: Registry[OpBuilder]
    params: dict[str, frozenset[str]]
    downsample: dict[str, Callable[[OpDesc], int]]


REGISTERED_OPS = OpTable(OPS, OP_PARAMS, OP_DOWNSAMPLE)  # the one table every registration fills


def declare_op(name: str, params: tuple[str, ...] = (), downsample: Callable[[OpDesc], int] | None = None) -> None:
    """Declare op `name`'s accepted params and its downsampling (default: its stride)."""
    OP_PARAMS[name] = frozenset(params)
    OP_DOWNSAMPLE[name] = downsample or (lambda d: d.stride)
