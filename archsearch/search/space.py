"""The SearchSpace protocol: everything a strategy may ask of a search space, and the registry of spaces.

A strategy never asks which space it has. It declares the capabilities it needs (`Strategy.requires`), the
runner checks them against `space.capabilities()` before any work, and the strategy then calls only the
methods those capabilities name. Adding a space is one module that subclasses `SearchSpace`, overrides
what it can provide, and registers itself in SPACES; every strategy whose needs it meets runs on it.

Architectures are the space's own encoding and are JSON values, so they round-trip through
`to_json`/`from_json` exactly, go into trial indexes and result files as they are, and read naturally:
the NAS-Bench-201 cell string, the DARTS genotype string, the ENAS arc_seq list, a user model's choice dict.

Capabilities (a method group a subclass provides by overriding it):

    sample          sample(rng) and size(): every space
    mutate          mutate(arch, rng): one-edit neighbour (regularized evolution)
    benchmark       benchmark_key(arch): the key of `arch` in a table of trained accuracies
    differentiable  differentiable_supernet(): a supernet with continuous architecture weights (DARTS)
    sampled         sampled_supernet(), token_spec(), arch_from_tokens(): a weight-sharing supernet that runs
                    one sampled child, and the token layout a controller samples (ENAS)
    morphism        configure_morphism(conf): the architecture is a growing graph document (NNI's JSON graph
                    IR) whose seed network nas.search.morphism sets (spaces/morphism.py only)
    choices         choices(), arch_from_choices(values), choices_of(arch): the architecture as named categorical
                    decisions (name, its options), for black-box optimizers that work on such parameters
                    (Optuna's samplers, NSGA-II); `arch_from_choices(choices_of(a))` is `a` for every
                    architecture `arch_from_choices` returns
    cost            cost_items(arch), profile_items(): what a network runs, op by op at its shapes, and every
                    such item the space can hold; a latency table (model/latency.py) of the latter predicts
                    the latency of any architecture as the sum of the former
    encode          encode(arch, kind): the architecture as a fixed-length vector of floats, for a performance
                    predictor (BANANAS): `path` (one bit per input-to-output path, as an op sequence; shortest
                    paths first, so truncating the vector keeps the likeliest) or `adjacency` (one bit per
                    (edge, op)); every architecture of one space configuration gives the same length

Both supernets are `nn.Module`s that the shared Trainer trains; see `DifferentiableSupernet` and
`SampledSupernet` for what the one-shot strategies call on them.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

from torch import nn

from archsearch.common.errors import ArchitectureError
from archsearch.common.registry import Registry
from archsearch.model.latency import CostItem
from archsearch.search.pictures import ArchPicture, desc_cell_pictures

Arch = Any  # a JSON value: str, list or dict, as the space encodes architectures

CAPABILITIES: dict[str, tuple[str, ...]] = {
    "sample": ("sample",),
    "mutate": ("mutate",),
    "benchmark": ("benchmark_key",),
    "differentiable": ("differentiable_supernet",),
    "mixed_op": ("mixed_op_supernet",),  # MixedOp-edge supernets with DARTS-family options (PC-DARTS, GDAS)
    "sampled": ("sampled_supernet", "token_spec", "arch_from_tokens"),
    "morphism": ("configure_morphism",),  # only spaces/morphism.py: a method the base class does not declare
    "cost": ("cost_items", "profile_items"),  # a latency table predicts the space's latencies
    "choices": ("choices", "arch_from_choices", "choices_of"),  # named categorical decisions (Optuna, NSGA-II)
    "encode": ("encode",),  # a fixed-length vector of an architecture (BANANAS' path or adjacency encoding)
}

ENCODINGS = ("path", "adjacency")  # the kinds `encode` takes


@runtime_checkable
class DifferentiableSupernet(Protocol):
    """What DARTS-family strategies use: weights and architecture parameters kept apart, and the
    architecture the current parameters stand for."""

    def arch_params(self) -> list[nn.Parameter]: ...
    def nonarch_params(self) -> list[nn.Parameter]: ...
    def derive_arch(self) -> Arch: ...  # e.g. DARTS' top-2 genotype, NB201's argmax per edge
    def column_names(self) -> dict[str, list[str]]: ...  # per architecture table, its columns' names
    def log_view(self) -> dict[str, Any]: ...  # {label: the current architecture}, logged every epoch


@runtime_checkable
class SampledSupernet(Protocol):
    """What ENAS-family strategies use: pick the child that the next forward passes run."""

    def set_arch(self, arch: Arch) -> None: ...


class SearchSpace(ABC):
    """One search space, built from the config sections it reads.

    `conf_space` is `nas.search.space` (the space's own keys), `conf_model_desc` the phase's `model_desc`
    section (the search-size network; evaluation passes its own to `eval_model`), `conf_dataset` the
    dataset section (channels, image size, classes).
    """

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""  # one line for --help and error messages
    final_file: ClassVar[str] = "final_model_desc.yaml"  # what search/ holds for evaluation
    cell_based: ClassVar[bool] = True  # False: no cell model_desc to show in --dry-run (a graph IR)
    conf_eval: Mapping | None = None  # nas.eval, set by the runner: what `eval_model` may read beyond model_desc

    def __init__(self, conf_space: Mapping, conf_model_desc: Mapping, conf_dataset: Mapping) -> None:
        self.conf_space = conf_space
        self.conf_model_desc = conf_model_desc
        self.conf_dataset = conf_dataset

    # ---- capabilities ----------------------------------------------------------------------------
    @classmethod
    def capabilities(cls) -> set[str]:
        """The capability names whose methods this space overrides."""
        provided = set()
        for capability, methods in CAPABILITIES.items():
            # getattr with None: a capability may name a method only its own space defines
            if all(getattr(cls, m, None) is not getattr(SearchSpace, m, None) for m in methods):
                provided.add(capability)
        return provided

    # ---- every space -----------------------------------------------------------------------------
    def describe(self) -> str:
        """One line: what the space is and how large, e.g. 'NAS-Bench-201: 15,625 cells of 6 edges'."""
        size = self.size()
        return f"{self.name}: {size:,} architectures" if size is not None else self.name

    def size(self) -> int | None:
        """The number of distinct architectures, or None where it is not worth counting (DARTS: ~10^18)."""
        return None

    @abstractmethod
    def sample(self, rng: random.Random) -> Arch:
        """A uniformly random architecture, drawn from `rng` only (seeded per trial by the trial loop)."""

    @abstractmethod
    def to_json(self, arch: Arch) -> Any:
        """`arch` as a JSON value; `from_json(to_json(a)) == a`."""

    @abstractmethod
    def from_json(self, data: Any, where: str = "architecture") -> Arch:
        """Parse and validate; an ArchitectureError naming `where` for anything that is not an arch of this space."""

    def arch_str(self, arch: Arch) -> str:
        """A short human-readable form for logs (the encoding itself where it is a string)."""
        data = self.to_json(arch)
        return data if isinstance(data, str) else str(data)

    @abstractmethod
    def build(self, arch: Arch) -> nn.Module:
        """The network of `arch` at search size (model_desc of the search phase), freshly initialized,
        to train or score as a candidate."""

    @abstractmethod
    def save_arch(self, arch: Arch, folder: Path, meta: Mapping[str, Any]) -> Path:
        """Write the final architecture file (tagged with this space's name) into `folder`; return its path."""

    @abstractmethod
    def load_arch(self, path: Path) -> Arch:
        """The architecture in a file written by `save_arch` (or a user's equivalent file)."""

    @abstractmethod
    def eval_model(self, path: Path, conf_model_desc: Mapping, eval_dir: Path | None) -> Any:
        """The network of the architecture file at evaluation size, as an evaluater BuiltModel
        (module, arch_format, arch_text for model.pt); writes the scaled description into eval_dir."""

    # ---- how an architecture looks (the report, TensorBoard and `archsearch show` render these) --------
    @classmethod
    def pictures(cls, final_file: Mapping[str, Any]) -> list[ArchPicture]:
        """Pictures of the architecture in a final file's content, already checked by whoever read it; by
        default one per distinct cell type of a ModelDesc (DARTS' normal and reduction cells)."""
        return desc_cell_pictures(final_file)

    @classmethod
    def arch_pictures(cls, arch: Arch) -> list[ArchPicture]:
        """Pictures of an architecture in this space's encoding (a supernet's current pick, drawn per epoch);
        none where the encoding has no picture."""
        return []

    @classmethod
    def arch_table(cls, final_file: Mapping[str, Any]) -> list[tuple[str, str]]:
        """(decision, choice) rows for an architecture better read as a table than drawn (a user model's)."""
        return []

    @classmethod
    def op_names(cls, conf_search: Mapping[str, Any], width: int) -> list[str] | None:
        """The names of an architecture-weight table's `width` columns (its candidate ops), where known."""
        return None

    # ---- optional capabilities -------------------------------------------------------------------
    def mutate(self, arch: Arch, rng: random.Random) -> Arch:
        """A neighbour of `arch` differing in exactly one decision (one op or one input)."""
        raise NotImplementedError

    def benchmark_key(self, arch: Arch) -> str:
        """The string under which `arch` appears in this space's benchmark table."""
        raise NotImplementedError

    def differentiable_supernet(self) -> nn.Module:
        """A supernet with continuous architecture weights (DifferentiableSupernet)."""
        raise NotImplementedError

    def mixed_op_supernet(self, options: Any) -> nn.Module:
        """The differentiable supernet with its MixedOp edges built with `options` (nas.mixed_op.MixedOpOptions:
        PC-DARTS' partial channels and edge normalization, GDAS' hard Gumbel sampling)."""
        raise NotImplementedError

    def sampled_supernet(self) -> nn.Module:
        """A weight-sharing supernet that runs one child at a time (SampledSupernet); `set_arch` takes the
        architecture `arch_from_tokens` returns."""
        raise NotImplementedError

    def token_spec(self) -> Sequence[Any]:
        """The controller's token layout (archsearch.spaces.token_space.Token list)."""
        raise NotImplementedError

    def arch_from_tokens(self, tokens: Sequence[int]) -> Arch:
        """The architecture a token sequence sampled under `token_spec` stands for."""
        raise NotImplementedError

    def choices(self) -> list[tuple[str, list[Any]]]:
        """The space's decisions as named categorical parameters: (name, its options), in a fixed order; the
        options are str, int, float, bool or None (what Optuna's categorical distributions hold)."""
        raise NotImplementedError

    def arch_from_choices(self, values: Mapping[str, Any]) -> Arch:
        """The architecture of one option per decision of `choices()` (ArchitectureError for a missing name or
        an option the decision does not have)."""
        raise NotImplementedError

    def choices_of(self, arch: Arch) -> dict[str, Any]:
        """The option of each decision of `choices()` that `arch` takes (the inverse of `arch_from_choices`)."""
        raise NotImplementedError

    def encode(self, arch: Arch, kind: str = "path") -> list[float]:
        """`arch` as a vector of 0/1 floats of one length for every architecture of this space (kind: one of
        ENCODINGS): `path`, a bit per possible input-to-output path (the op sequence along it), ordered by path
        length so that the vector's first entries are the paths a random architecture most likely has
        (White et al., BANANAS, AAAI 2021: a prefix is their truncated path encoding); `adjacency`, a bit per
        (edge, op) the architecture has."""
        raise NotImplementedError

    def cost_items(self, arch: Arch) -> list[CostItem]:
        """What `build(arch)` runs for one image of the dataset's size, op by op at the shape it runs it,
        the fixed skeleton (stem, head, cell preprocessing, sums, concatenation) included (model/latency.py)."""
        raise NotImplementedError

    def profile_items(self) -> list[CostItem]:
        """Every distinct item `cost_items` can return for any architecture of the space (at this space's
        sizes): what `archsearch profile` measures into a latency table."""
        raise NotImplementedError

    def image_hw(self) -> tuple[int, int]:
        """The input's height and width: the dataset's `image_size` (32 where the section does not say)."""
        size = self.conf_dataset["image_size"] if "image_size" in list(self.conf_dataset) else 32
        return int(size), int(size)


SPACES: Registry[type[SearchSpace]] = Registry("search space")


def spaces_with(capability: str) -> list[str]:
    """The registered spaces that provide `capability`."""
    return [name for name in SPACES.names() if capability in SPACES.get(name).capabilities()]


def chosen(space: SearchSpace, values: Mapping[str, Any]) -> list[Any]:
    """The option `values` names for each of `space.choices()`, in their order; an ArchitectureError naming the
    first decision that is missing or has an option it does not offer (for `arch_from_choices`)."""
    picked = []
    for name, options in space.choices():
        if name not in values:
            raise ArchitectureError(f"{space.name}: no option for decision {name!r} (options: {options})")
        if values[name] not in options:
            raise ArchitectureError(
                f"{space.name}: decision {name!r} has no option {values[name]!r} (options: {options})"
            )
        picked.append(values[name])
    return picked


def path_encoding(
    paths: Iterable[tuple[int, Sequence[int]]], n_sources: int, n_ops: int, max_length: int
) -> list[float]:
    """BANANAS' path encoding (White et al., AAAI 2021) of a cell's input-to-output paths, each given as (source,
    op indices along it from the source): one bit per possible (source, op sequence) of 1..max_length ops, set
    when the cell has that path. The bits are ordered by path length first (all sources' one-op paths, then the
    two-op paths, ...), then source, then the op sequence (first op least significant), so a prefix of the vector
    holds the shortest paths, which a random architecture is the likeliest to have (their truncation)."""
    offsets, total = [], 0
    for length in range(1, max_length + 1):
        offsets.append(total)
        total += n_sources * n_ops**length
    vector = [0.0] * total
    for source, ops in paths:
        if not 1 <= len(ops) <= max_length or not 0 <= source < n_sources:
            raise ValueError(f"a path of {len(ops)} ops from source {source} is outside the encoding")
        index = sum(op * n_ops**j for j, op in enumerate(ops))
        vector[offsets[len(ops) - 1] + source * n_ops ** len(ops) + index] = 1.0
    return vector


def cell_encoding(cells: Sequence[Any], ops: Sequence[str], n_nodes: int, kind: str, what: str) -> list[float]:
    """`encode` of cells (model.genotype.CellTemplate: per node its (op, input state) edges; states 0 and 1 are
    the cell's inputs, node k is state k + 2; `concat` the states the output joins), one after the other, as
    DARTS and ENAS micro cells are. `path`: per cell and cell input, one bit per op sequence of 1..n_nodes ops
    that reaches a concatenated node (path_encoding). `adjacency`: per cell, node k and earlier state s, one
    bit per op: the op on edge s -> k, if the node reads s. `what` names the architecture in an error."""
    index = {op: i for i, op in enumerate(ops)}
    for c, cell in enumerate(cells):
        if len(cell.nodes) != n_nodes or any(op not in index for node in cell.nodes for op, _ in node):
            raise ArchitectureError(f"{what}: cell {c} is not {n_nodes} nodes of the ops {', '.join(ops)}; no encoding")
    if kind == "adjacency":
        vector: list[float] = []
        for cell in cells:
            for k, node in enumerate(cell.nodes):
                reads = {(source, index[op]) for op, source in node}
                vector += [float((s, o) in reads) for s in range(k + 2) for o in range(len(ops))]
        return vector
    paths: list[tuple[int, list[int]]] = []
    for c, cell in enumerate(cells):
        into: list[list[tuple[int, list[int]]]] = []  # per node: every (cell input, op sequence) reaching it
        for node in cell.nodes:
            reaching: list[tuple[int, list[int]]] = []
            for op, source in node:
                if source < 2:
                    reaching.append((source, [index[op]]))
                else:
                    reaching += [(s, [*seq, index[op]]) for s, seq in into[source - 2]]
            into.append(reaching)
        for state in cell.concat:
            paths += [(2 * c + s, seq) for s, seq in into[state - 2]] if state >= 2 else []
    return path_encoding(paths, 2 * len(cells), len(ops), n_nodes)
