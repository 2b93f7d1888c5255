"""ENAS' micro cells and macro chains as registered search spaces (`enas_micro`, `enas_macro`): the architecture
is the arc_seq itself. The arc-sequence geometry is archsearch.spaces.enas_spaces, the supernets
archsearch.spaces.enas_supernet; this module, above both, ties them into the SearchSpace protocol.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from torch import nn

from archsearch.common.errors import ArchitectureError
from archsearch.common.io import atomic_write_text
from archsearch.common.logging import plain
from archsearch.config.schema import COUNT, POSITIVE_INT, Bool, List, Str, register_rename, register_section
from archsearch.model.builder import ModelDescBuilder, scaled_eval_model
from archsearch.model.load import BuiltModel
from archsearch.model.model_desc import ModelDesc
from archsearch.model.network import Model
from archsearch.search.pictures import ArchPicture, label, short_op
from archsearch.search.space import SPACES, SearchSpace, cell_encoding, chosen
from archsearch.spaces.enas_spaces import (
    EnasSpace,
    MacroSpace,
    MicroSpace,
)
from archsearch.spaces.enas_supernet import build_supernet
from archsearch.spaces.token_space import Token, choices_from_tokens, mutate_arc, token_choices, tokens_from_choices

# ---- the SearchSpace protocol ----------------------------------------------------------------------

FINAL_DESC = "final_model_desc.yaml"
# the file's meta.space of each space: its name, or (files written before spaces had names) its type
FILE_SPACE = {"enas_micro": ("enas_micro", "micro"), "enas_macro": ("enas_macro", "macro")}
register_rename("nas.search.space.type", "nas.search.space.name (enas_micro | enas_macro)")


class EnasSearchSpace(SearchSpace):
    """An ENAS space as a SearchSpace: the architecture is the arc_seq itself (a list of ints), so a
    controller's tokens are the architecture (`arch_from_tokens` is the identity). `geometry` is the
    MicroSpace or MacroSpace that the keys of nas.search.space describe."""

    geometry: EnasSpace
    space_keys: ClassVar[tuple[str, ...]] = ()

    def __init__(self, conf_space: Mapping, conf_model_desc: Mapping, conf_dataset: Mapping) -> None:
        super().__init__(conf_space, conf_model_desc, conf_dataset)
        self.geometry = self.geometry_of({k: conf_space[k] for k in self.space_keys})

    @staticmethod
    def geometry_of(keys: Mapping[str, Any]) -> EnasSpace:
        raise NotImplementedError

    def describe(self) -> str:
        return f"{self.name}: {self.geometry.describe()}, {self.size():,} architectures"

    def size(self) -> int:
        return math.prod(t.n_choices for t in self.token_spec())

    def sample(self, rng: random.Random) -> list[int]:
        return self.geometry.random_arc(rng)

    def mutate(self, arch: list[int], rng: random.Random) -> list[int]:
        return mutate_arc(arch, self.token_spec(), rng)

    def to_json(self, arch: Sequence[int]) -> list[int]:
        return list(arch)

    def from_json(self, data: Any, where: str = "architecture") -> list[int]:
        try:
            return self.geometry.check(data)
        except ArchitectureError as e:
            raise ArchitectureError(f"{where}: {e}") from None

    def desc(self, arch: Sequence[int], conf_model_desc: Mapping) -> ModelDesc:
        return self.geometry.to_desc(arch, conf_model_desc, self.conf_dataset)

    def build(self, arch: Sequence[int]) -> nn.Module:
        return Model(self.desc(arch, self.conf_model_desc))

    def save_arch(self, arch: Sequence[int], folder: Path, meta: Mapping[str, Any]) -> Path:
        """final_model_desc.yaml at search size; its meta holds the arc_seq and the space's keys (what a
        macro evaluation rebuilds from), plus genotype.txt for micro cells."""
        desc = self.desc(arch, self.conf_model_desc)
        space = {"name": self.name, **{k: plain(self.conf_space[k]) for k in self.space_keys}}
        desc.meta.update(meta, arc_seq=list(arch), space=space)
        if isinstance(self.geometry, MicroSpace):
            atomic_write_text(Path(folder) / "genotype.txt", desc.meta["genotype"] + "\n")
        return desc.save(Path(folder) / FINAL_DESC)

    def load_arch(self, path: Path) -> list[int]:
        return self.from_json(self.found_desc(path).meta.get("arc_seq"), str(path))

    def found_desc(self, path: Path) -> ModelDesc:
        """The desc a search of this space wrote; a file of the other ENAS space is one line saying which."""
        found = ModelDesc.load(path)
        space = found.meta.get("space")
        named = space.get("name", space.get("type")) if isinstance(space, dict) else None
        if named is not None and named not in FILE_SPACE[self.name]:
            other = next((n for n, names in FILE_SPACE.items() if named in names), named)
            raise ArchitectureError(f"{path} is an {other} architecture; evaluate it with --nas.search.space {other}")
        return found

    def eval_builder(self, conf_model_desc: Mapping) -> Any:
        raise NotImplementedError

    def eval_model(self, path: Path, conf_model_desc: Mapping, eval_dir: Path | None) -> BuiltModel:
        self.found_desc(path)  # a file of the other ENAS space is refused before anything is built
        return scaled_eval_model(self.eval_builder(conf_model_desc), path, eval_dir)

    def token_spec(self) -> list[Token]:
        return self.geometry.token_spec()

    def arch_from_tokens(self, tokens: Sequence[int]) -> list[int]:
        return list(tokens)

    def choices(self) -> list[tuple[str, list[Any]]]:
        """One decision per token of the arc (an architecture is its arc)."""
        return token_choices(self.token_spec())

    def arch_from_choices(self, values: Mapping[str, Any]) -> list[int]:
        return tokens_from_choices(self.token_spec(), chosen(self, values))

    def choices_of(self, arch: Sequence[int]) -> dict[str, Any]:
        return choices_from_tokens(self.token_spec(), arch)

    def sampled_supernet(self) -> nn.Module:

        return build_supernet(self.geometry, self.conf_model_desc, self.conf_dataset)


@SPACES.register("enas_micro")
class EnasMicroSpace(EnasSearchSpace):
    name = "enas_micro"
    summary = "ENAS micro: two cells of B nodes, each [input, op, input, op] (Pham et al., 2018)"
    space_keys = ("n_nodes",)

    @staticmethod
    def geometry_of(keys: Mapping[str, Any]) -> MicroSpace:
        return MicroSpace(n_nodes=keys["n_nodes"])

    def eval_builder(self, conf_model_desc: Mapping) -> ModelDescBuilder:
        """Micro cells scale like any cell-based desc (ModelDescBuilder.scale), as the original's fixed-arc child."""
        return ModelDescBuilder(conf_model_desc, self.conf_dataset)

    def encode(self, arch: Sequence[int], kind: str = "path") -> list[float]:
        """As DARTS cells' (search/space.py cell_encoding): the normal then the reduction cell; the output joins
        the loose ends (the nodes no other node reads)."""
        geometry = self.geometry
        assert isinstance(geometry, MicroSpace)
        templates = geometry.to_templates(arch)
        cells = [templates[t] for t in geometry.CELL_TYPES]
        return cell_encoding(cells, geometry.ops, geometry.n_nodes, kind, f"enas_micro arc {list(arch)}")


@SPACES.register("enas_macro")
class EnasMacroSpace(EnasSearchSpace):
    name = "enas_macro"
    summary = "ENAS macro: a chain of L layers, one op and skip bits each (Pham et al., 2018)"
    space_keys = ("n_layers", "pool_layers", "skip_combine", "double_channels")

    @staticmethod
    def geometry_of(keys: Mapping[str, Any]) -> MacroSpace:
        pools = keys["pool_layers"]
        return MacroSpace(
            n_layers=keys["n_layers"],
            pool_layers=None if pools is None else tuple(pools),
            skip_combine=keys["skip_combine"],
            double_channels=keys["double_channels"],
        )

    @classmethod
    def pictures(cls, final_file: Mapping[str, Any]) -> list[ArchPicture]:
        """The macro chain of a final file (its meta holds the geometry and the arc_seq): the layer ops and each
        layer's skip sources, not the stack of cells its ModelDesc compiles to."""
        meta = final_file.get("meta") or {}
        keys = {k: v for k, v in (meta.get("space") or {}).items() if k in cls.space_keys}
        if keys.get("pool_layers") is not None:
            keys["pool_layers"] = tuple(keys["pool_layers"])
        geometry = MacroSpace(**keys)
        ops, skips = geometry.decode(meta["arc_seq"])
        sources = [[]] + [[i for i, bit in enumerate(bits) if bit] for bits in skips]
        return [macro_picture([geometry.ops[o] for o in ops], sources)]

    def eval_builder(self, conf_model_desc: Mapping) -> MacroEvalBuilder:
        """A macro chain is not a stack of repeated cells: rebuild it from its arc_seq at the eval size, with the
        file's space keys and nas.eval.macro_space on top (the original's final network concatenates skips)."""
        return MacroEvalBuilder(self, conf_model_desc)


@dataclass
class MacroEvalBuilder:
    space: EnasMacroSpace
    conf_model_desc: Mapping

    def scale(self, found: ModelDesc) -> ModelDesc:
        keys = {k: self.space.conf_space[k] for k in self.space.space_keys}
        keys.update((k, v) for k, v in found.meta.get("space", {}).items() if k in self.space.space_keys)
        keys.update(self.space.conf_eval["macro_space"] if self.space.conf_eval is not None else {})
        desc = self.space.geometry_of(keys).to_desc(
            found.meta["arc_seq"], self.conf_model_desc, self.space.conf_dataset
        )
        desc.meta = {**found.meta, **desc.meta}
        return desc


# the keys of both ENAS spaces (confs/spaces/enas_micro.yaml, enas_macro.yaml); nas.eval.macro_space rebuilds a
# macro chain at evaluation size
ENAS_SPACE = {
    "n_nodes": POSITIVE_INT,
    "n_layers": POSITIVE_INT,
    "pool_layers": List(COUNT, null=True),
    "skip_combine": Str("sum", "concat"),
    "double_channels": Bool(),
}
register_section("nas.search.space", ENAS_SPACE)
register_section("nas.eval.macro_space", ENAS_SPACE)


def macro_picture(layer_ops: Sequence[str], skips: Sequence[Sequence[int]]) -> ArchPicture:
    """ENAS' macro network: a chain of layers, each labelled with its op, plus the skip connections
    (`skips[j]`: the earlier layer inputs, 0 = the stem, that layer j adds)."""
    title = f"ENAS macro network ({len(layer_ops)} layers; orange: skip connections)"
    picture = ArchPicture(title, chain=True, plain_solid=True)
    picture.add_node("stem", "input")
    for j, op in enumerate(layer_ops):
        picture.add_node(f"{j}\n{short_op(label(op))}", "inner")
    out = picture.add_node("out", "output")
    for j in range(len(layer_ops)):
        picture.edges.append((j, j + 1, None))
        for s in skips[j] if j < len(skips) else ():
            if s != j:
                picture.edges.append((s, j + 1, "skip"))
    picture.edges.append((len(layer_ops), out, None))
    return picture
