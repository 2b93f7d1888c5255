"""NetworkDescriptor: what the architecture kernel compares (main-chain layers and skip connections).

NNI keeps copies of the stub layers; we keep, per layer, a code ``(type_name, a, b, c)`` holding exactly the
attributes ``layer_distance`` reads (hashable, so descriptors dedupe by set lookup and distances vectorize).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from archsearch.spaces.morphism.layers import StubLayer

LayerCode = tuple[str, int, int, int]
SkipConnection = tuple[int, int, str | None]


def layer_code(layer: StubLayer) -> LayerCode:
    """The attributes the kernel compares: conv (filters, kernel, stride), pooling (padding, kernel, stride)
    as in NNI; dense (units) is our addition, because without it every MLP widening looks like a duplicate."""
    if layer.kind == "conv":
        return (layer.type_name, layer.filters, layer.kernel_size, layer.stride)  # type: ignore[attr-defined]
    if layer.kind == "pool":
        return (layer.type_name, layer.padding, layer.kernel_size, layer.stride)  # type: ignore[attr-defined]
    if layer.kind == "dense":
        return (layer.type_name, layer.units, 0, 0)  # type: ignore[attr-defined]
    return (layer.type_name, 0, 0, 0)


class NetworkDescriptor:
    """Layers of the main chain (as codes) and skip connections ``(from_index, to_index, type)``."""

    CONCAT_CONNECT = "concat"
    ADD_CONNECT = "add"

    def __init__(self) -> None:
        self.layers: list[LayerCode] = []
        self.skip_connections: list[SkipConnection] = []
        self._ids: np.ndarray | None = None  # vocabulary ids of the layers, set by distance.layer_ids
        self._skip_key: tuple[SkipConnection, ...] | None = None
        self._key: tuple[Any, ...] | None = None

    @classmethod
    def from_layers(cls, layers: Iterable[StubLayer], skips: Iterable[SkipConnection]) -> NetworkDescriptor:
        desc = cls()
        desc.layers = [layer_code(layer) for layer in layers]
        desc.skip_connections = list(skips)
        return desc

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    def add_layer(self, layer: StubLayer | LayerCode) -> None:
        self.layers.append(layer if isinstance(layer, tuple) else layer_code(layer))
        self._ids = None
        self._key = None

    def add_skip_connection(self, u: int, v: int, connection_type: str) -> None:
        if connection_type not in (self.CONCAT_CONNECT, self.ADD_CONNECT):
            raise ValueError(f"connection_type must be {self.CONCAT_CONNECT!r} or {self.ADD_CONNECT!r}")
        self.skip_connections.append((u, v, connection_type))
        self._skip_key = None
        self._key = None

    @property
    def skip_key(self) -> tuple[SkipConnection, ...]:
        """The skip connections in a canonical order (their distance does not depend on the order)."""
        if self._skip_key is None:
            self._skip_key = sort_skips(self.skip_connections)
        return self._skip_key

    @property
    def key(self) -> tuple[Any, ...]:
        """Hashable; equal keys <=> edit distance 0, so duplicate checks are a set lookup."""
        if self._key is None:
            self._key = (tuple(self.layers), self.skip_key)
        return self._key

    def to_json(self) -> dict[str, Any]:
        return {
            "node_list": [list(code) for code in self.layers],
            "skip_list": [{"from": u, "to": v, "type": t} for u, v, t in self.skip_connections],
        }

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NetworkDescriptor) and self.key == other.key

    def __hash__(self) -> int:
        return hash(self.key)

    def __repr__(self) -> str:
        return f"NetworkDescriptor(layers={len(self.layers)}, skips={self.skip_connections})"


def sort_skips(skips: Iterable[SkipConnection]) -> tuple[SkipConnection, ...]:
    return tuple(sorted(skips, key=lambda s: (s[0], s[1], s[2] or "")))
