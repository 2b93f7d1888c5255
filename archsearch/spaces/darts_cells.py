"""The DARTS cell space (Liu et al., ICLR 2019): a normal and a reduction cell of `n_nodes` nodes; node i
reads two distinct earlier states (the two cell inputs and nodes before it), each through one op of
`model_desc.primitives` (`none` excluded); the cell concatenates all its nodes. ~10^18 genotypes for
4 nodes and 7 ops, so `size()` is None.

An architecture is the DARTS genotype string as `nas.genotype.format_genotype` writes it (the paper's
notation; `DARTS_V1`/`DARTS_V2` parse too). Networks are the DARTS CIFAR skeleton (`ModelDescBuilder`) with
the genotype's cells stamped in.

Supernets:
- differentiable: every edge from every earlier state is a `mixed_op` over all primitives (`none` kept as
  an alpha column), alphas shared per cell type; `derive_arch` is DARTS' discretization: per node the two
  incoming edges whose strongest non-`none` op weighs most, each with that op (sec. 2.4, `genotype()` in
  model_search.py); with PC-DARTS' edge normalization an edge's weight is softmax(alpha) times its beta
  weight, as PC-DARTS' `genotype()` ranks them. `mixed_op_supernet(options)` builds it with the DARTS-family
  options of `MixedOpOptions` (partial channels, edge normalization, Gumbel sampling).
- sampled (ENAS on DARTS cells): the ENAS micro supernet over the DARTS primitives minus `none`, with the
  DARTS space's node count. Its tokens choose per node two inputs and two ops, as ENAS does; the cell
  output is ENAS' (the loose ends), and the genotype's concat field records it, so the found genotype
  evaluates in the DARTS skeleton like any other.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from archsearch.common.errors import ArchitectureError
from archsearch.common.io import atomic_write_text
from archsearch.config.schema import PRIMITIVES, register_section
from archsearch.model.builder import ModelDescBuilder, scaled_eval_model, templates_from_desc
from archsearch.model.genotype import (
    CellTemplate,
    format_genotype,
    genotype_to_templates,
    parse_genotype,
    random_templates,
    templates_to_genotype,
)
from archsearch.model.latency import CostItem, desc_cost_items, unique_items
from archsearch.model.mixed_op import MixedOpOptions, MixedOpSupernet
from archsearch.model.model_desc import EdgeDesc, ModelDesc, NodeDesc, OpDesc
from archsearch.model.network import Model
from archsearch.model.ops import DARTS_PRIMITIVES
from archsearch.search.pictures import ArchPicture, cell_picture, label
from archsearch.search.space import SPACES, SearchSpace, cell_encoding, chosen
from archsearch.spaces.enas_spaces import CELL_INPUTS, MicroSpace, loose_ends
from archsearch.spaces.enas_supernet import MicroSupernet

SPACE_NAME = "darts"
NONE = "none"
CELL_TYPES = ("regular", "reduction")  # the genotype's normal and reduce fields


class DartsModelDescBuilder(ModelDescBuilder):
    """The DARTS supernet desc. Only node building differs from the framework builder: node i receives a
    MixedOp edge from every earlier state (2 cell inputs + nodes before it), mixed as `options` say (DARTS by
    default; PC-DARTS' partial channels and edge normalization, GDAS' sampling)."""

    def __init__(self, *args: Any, options: MixedOpOptions | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.options = options or MixedOpOptions()

    def build_nodes(self, index: int, cell_type: str, c_node: int) -> tuple[list[NodeDesc], list[int]]:
        if self.templates:  # scaling a found architecture: plain ops from its template
            return super().build_nodes(index, cell_type, c_node)
        primitives = list(self.conf["primitives"])
        if primitives[0] != NONE or set(primitives) - set(DARTS_PRIMITIVES):
            raise ArchitectureError(f"model_desc.primitives must start with none and use DARTS ops, got {primitives}")
        n_inputs, n_nodes = 2, self.conf["n_nodes"]
        nodes, row = [], 0
        for i in range(n_nodes):
            edges = []
            for j in range(i + n_inputs):
                stride = 2 if cell_type == "reduction" and j < n_inputs else 1
                op = OpDesc.of(
                    "mixed_op",
                    c_node,
                    c_node,
                    stride,
                    self.affine,
                    candidates=primitives,
                    arch_key=cell_type,
                    arch_row=row,
                    **self.options.op_params(f"{cell_type}_edges{i}", j, i + n_inputs),
                )
                edges.append(EdgeDesc(op, j))
                row += 1
            nodes.append(NodeDesc(edges))
        return nodes, list(range(n_inputs, n_nodes + n_inputs))


class DartsCellSupernet(MixedOpSupernet):
    arch_label = "genotype"

    def derive_arch(self, edges_per_node: int = 2) -> str:
        """DARTS' top-k genotype of the current alphas (cells of a type share them: the first one is read)."""
        templates: dict[str, CellTemplate] = {}
        for cell in self.cells:
            if cell.desc.cell_type in templates:
                continue
            nodes = []
            for node_ops, node_desc in zip(cell.nodes, cell.desc.nodes):
                strongest = [op.strongest() for op in node_ops]
                ranked = sorted(range(len(node_ops)), key=lambda e: -strongest[e][1])  # stable: ties keep order
                nodes.append([(strongest[e][0], node_desc.edges[e].input_id) for e in ranked[:edges_per_node]])
            templates[cell.desc.cell_type] = CellTemplate(nodes, list(cell.desc.concat), cell.desc.n_inputs)
        return format_genotype(templates_to_genotype(templates))

    def pictures(self) -> list[ArchPicture]:
        """The cells the current alphas pick (TensorBoard draws them per epoch)."""
        return DartsCellSpace.arch_pictures(self.derive_arch())


class DartsCellSpace(SearchSpace):
    name = SPACE_NAME
    summary = "DARTS cells: normal + reduction cell, each node reads 2 earlier states through 1 op each"

    @property
    def primitives(self) -> list[str]:
        """The search's candidate ops, `none` included (the supernet's columns)."""
        # model_desc.primitives is DARTS' key; other strategies' configs on this space may not set it (a
        # list of the keys: Config's `in` raises for a missing key instead of answering False)
        conf = self.conf_model_desc
        return list(conf["primitives"] if "primitives" in list(conf) else DARTS_PRIMITIVES)

    @property
    def ops(self) -> list[str]:
        """The ops a genotype edge may hold: a found cell never keeps `none`."""
        return [op for op in self.primitives if op != NONE]

    @property
    def n_nodes(self) -> int:
        return self.conf_model_desc["n_nodes"]

    @classmethod
    def arch_pictures(cls, arch: str) -> list[ArchPicture]:
        """The normal and reduction cells of a genotype string."""
        pictures = []
        for kind, template in genotype_to_templates(parse_genotype(arch)).items():
            name = "normal" if kind == "regular" else kind
            n_inputs = getattr(template, "n_inputs", 2)
            pictures.append(cell_picture(f"{name} cell", n_inputs, template.nodes, template.concat))
        return pictures

    @classmethod
    def op_names(cls, conf_search: Mapping[str, Any], width: int) -> list[str] | None:
        primitives = conf_search.get("model_desc", {}).get("primitives") or DARTS_PRIMITIVES
        return [label(p) for p in primitives] if len(primitives) == width else None

    def describe(self) -> str:
        return f"darts: 2 cells x {self.n_nodes} nodes x 2 of {len(self.ops)} ops ({', '.join(self.ops)})"

    # ---- encoding ------------------------------------------------------------------------------
    def sample(self, rng: random.Random) -> str:
        return format_genotype(templates_to_genotype(random_templates(rng, self.n_nodes, self.ops)))

    def to_json(self, arch: str) -> str:
        return arch

    def from_json(self, data: Any, where: str = "architecture") -> str:
        try:
            return format_genotype(parse_genotype(data))
        except ArchitectureError as e:
            raise ArchitectureError(f"{where}: {e}") from None

    def templates(self, arch: str) -> dict[str, CellTemplate]:
        return genotype_to_templates(parse_genotype(arch))

    def mutate(self, arch: str, rng: random.Random) -> str:
        """One op or one input of one node of one cell type changes; a node's two inputs stay distinct."""
        templates = self.templates(arch)
        cell_type = rng.choice(CELL_TYPES)
        nodes = templates[cell_type].nodes
        node_index = rng.randrange(len(nodes))
        node = nodes[node_index]
        slot = rng.randrange(len(node))
        op, input_id = node[slot]
        free_inputs = [i for i in range(node_index + 2) if i not in {j for _, j in node}]
        other_ops = [o for o in self.ops if o != op]
        if free_inputs and (not other_ops or rng.random() < 0.5):
            node[slot] = (op, rng.choice(free_inputs))
        else:
            node[slot] = (rng.choice(other_ops), input_id)
        return format_genotype(templates_to_genotype(templates))

    # ---- named categorical decisions (capability `choices`) ---------------------------------------------
    def choices(self) -> list[tuple[str, list[Any]]]:
        """Per cell (normal, reduce) and node k: `<cell>_node<k>_inputs`, the pair of distinct earlier states it
        reads ("0,2": cell input 0 and node 0's output, state 2), and `<cell>_node<k>_op0`/`_op1`, the ops on
        the edge from the pair's smaller and larger state."""
        found: list[tuple[str, list[Any]]] = []
        for cell in ("normal", "reduce"):
            for k in range(self.n_nodes):
                pairs = [f"{a},{b}" for a, b in itertools.combinations(range(k + 2), 2)]
                found += [(f"{cell}_node{k}_inputs", pairs), (f"{cell}_node{k}_op0", list(self.ops)),
                          (f"{cell}_node{k}_op1", list(self.ops))]  # fmt: skip
        return found

    def arch_from_choices(self, values: Mapping[str, Any]) -> str:
        picked = iter(chosen(self, values))
        templates = {}
        for kind in CELL_TYPES:
            nodes = []
            for _ in range(self.n_nodes):
                pair, op0, op1 = next(picked), next(picked), next(picked)
                a, b = (int(x) for x in pair.split(","))
                nodes.append([(op0, a), (op1, b)])
            templates[kind] = CellTemplate(nodes=nodes, concat=list(range(2, self.n_nodes + 2)))
        return format_genotype(templates_to_genotype(templates))

    def choices_of(self, arch: str) -> dict[str, Any]:
        """A node's two edges in input order (a genotype that lists them the other way maps to the same
        decisions); a genotype of another node count or with other than two edges per node has none."""
        values: dict[str, Any] = {}
        templates = self.templates(arch)
        for cell, kind in (("normal", "regular"), ("reduce", "reduction")):
            nodes = templates[kind].nodes
            if len(nodes) != self.n_nodes or any(len(node) != 2 for node in nodes):
                raise ArchitectureError(f"{arch!r}: not {self.n_nodes} nodes of two edges each in the {cell} cell")
            for k, node in enumerate(nodes):
                (op0, a), (op1, b) = sorted(node, key=lambda edge: edge[1])
                values.update({f"{cell}_node{k}_inputs": f"{a},{b}", f"{cell}_node{k}_op0": op0,
                               f"{cell}_node{k}_op1": op1})  # fmt: skip
        return values

    # ---- a vector of an architecture (capability `encode`) ----------------------------------------------
    def encode(self, arch: str, kind: str = "path") -> list[float]:
        """`path`: one bit per (cell type, cell input, op sequence of 1..n_nodes ops) that leads from that input
        to a node the cell's output concatenates, ordered shortest first (BANANAS' DARTS encoding, White et al.
        2021; their truncation keeps a prefix: nas.search.bananas.path_cutoff); 4 x (n + ... + n^n_nodes) bits
        for n ops (11,200 for DARTS' 7 and 4 nodes). `adjacency`: per cell type, node k and earlier state s
        (the 2 cell inputs, then nodes 0..k-1), one bit per op: the op on edge s -> k, if the node reads s."""
        return cell_encoding([self.templates(arch)[t] for t in CELL_TYPES], self.ops, self.n_nodes, kind, repr(arch))

    # ---- networks --------------------------------------------------------------------------------
    def desc(self, arch: str, meta: Mapping[str, Any] | None = None) -> ModelDesc:
        builder = ModelDescBuilder(self.conf_model_desc, self.conf_dataset, self.templates(arch))
        return builder.build(meta={**(meta or {}), "space": SPACE_NAME, "genotype": arch})

    def build(self, arch: str) -> Model:
        return Model(self.desc(arch))

    def save_arch(self, arch: str, folder: Path, meta: Mapping[str, Any]) -> Path:
        """final_model_desc.yaml (meta: space, genotype) and genotype.txt, as DARTS has always written."""
        path = self.desc(arch, meta).save(Path(folder) / self.final_file)
        atomic_write_text(Path(folder) / "genotype.txt", arch + "\n")
        return path

    def load_arch(self, path: Path) -> str:
        desc = ModelDesc.load(Path(path))
        for cell in desc.cells:
            if cell.n_inputs != 2 or any(len(node.edges) != 2 for node in cell.nodes):
                raise ArchitectureError(f"{path} is not a DARTS cell network: every node of a cell needs 2 edges")
        return self.from_json(format_genotype(templates_to_genotype(templates_from_desc(desc))), str(path))

    def eval_model(self, path: Path, conf_model_desc: Mapping, eval_dir: Path | None) -> Any:
        return scaled_eval_model(ModelDescBuilder(conf_model_desc, self.conf_dataset), Path(path), eval_dir)

    # ---- supernets ---------------------------------------------------------------------------------
    def differentiable_supernet(self) -> DartsCellSupernet:
        return self.mixed_op_supernet(MixedOpOptions())

    def mixed_op_supernet(self, options: MixedOpOptions) -> DartsCellSupernet:
        conf = {**self.conf_model_desc, "primitives": self.primitives}
        builder = DartsModelDescBuilder(conf, self.conf_dataset, options=options)
        return DartsCellSupernet(builder.build(meta={"space": SPACE_NAME, "supernet": True}))

    def micro_space(self) -> MicroSpace:
        return MicroSpace(n_nodes=self.n_nodes, ops=tuple(self.ops), final_conv=True)

    def sampled_supernet(self) -> DartsSampledSupernet:
        return DartsSampledSupernet(self.micro_space(), self.conf_model_desc, self.conf_dataset)

    def token_spec(self) -> Sequence[Any]:
        return self.micro_space().token_spec()

    def arch_from_tokens(self, tokens: Sequence[int]) -> str:
        return format_genotype(self.micro_space().to_genotype(tokens))

    # ---- cost ---------------------------------------------------------------------------------------
    def cost_items(self, arch: str) -> list[CostItem]:
        return desc_cost_items(self.desc(arch), self.image_hw())

    def profile_items(self) -> list[CostItem]:
        """Items cover every op at every shape: in a cell, an edge from a cell input runs at the cell's input
        size (stride 2 in a reduction cell), an edge from a node at the node size, so the cells where node i
        reads states i and i+1, one op everywhere, hold each op at both. What a cell concatenates (all its
        nodes for a sampled genotype; ENAS' loose ends for one it found) sets the next cells' preprocessing
        widths, so each op's cells are built once per concatenation length."""
        n = self.n_nodes
        archs = []
        for op in self.ops:
            nodes = [[(op, i), (op, i + 1)] for i in range(n)]
            for k in range(1, n + 1):
                cell = CellTemplate(nodes, list(range(2 + n - k, 2 + n)), 2)
                archs.append(format_genotype(templates_to_genotype({t: cell for t in CELL_TYPES})))
        return unique_items(self.cost_items(arch) for arch in archs)


class DartsSampledSupernet(MicroSupernet):
    """ENAS' micro supernet over DARTS ops, driven by this space's architectures (genotypes)."""

    def set_arch(self, arch: str) -> None:
        """Any genotype of this space: its nodes select the micro supernet's choices, and what its cells
        concatenate opens those nodes' gates, so both a DARTS genotype (every node concatenated: what `sample`
        and `mutate` give, which SPOS' search scores) and an ENAS one (its loose ends) run. A closed gate
        gives zeros, which the next cell's 1x1 preprocessing reads as the absent node."""
        templates = genotype_to_templates(parse_genotype(arch))
        ends = {t: CellTemplate(c.nodes, loose_ends(c.nodes), c.n_inputs) for t, c in templates.items()}
        self.set_arc(self.space.encode(ends))
        n = self.space.n_nodes
        for cell in self.cells:
            concat = set(templates[cell.desc.cell_type].concat)
            for j in range(n):
                cell.nodes[n + j][0].active = CELL_INPUTS + j in concat


SPACES.add(SPACE_NAME, DartsCellSpace)


# the space's candidate ops (confs/common.yaml: the DARTS primitives)
register_section("nas.search.model_desc", {"primitives": PRIMITIVES})
