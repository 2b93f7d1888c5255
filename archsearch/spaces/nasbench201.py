"""NAS-Bench-201 (Dong & Yang, ICLR 2020): cell strings, benchmark indices, and the network as a ModelDesc.

A cell has 4 nodes; node j (1..3) sums one op applied to each earlier node i < j, so 6 edges, each one of
`NB201_OPS`. The benchmark writes a cell as one `|op~i|...|` group per node, joined by `+`:

    |nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|

The benchmark's index of a cell (its `uid`, 0..15624) is NOT the lexicographic product order: the
benchmark enumerated all cells (node 1 first, edges in input order, ops in `NB201_OPS` order) and then
shuffled the list with Python's `random.seed(88); random.shuffle(...)` (xautodl, NAS-Bench-201 `main.py`).
We replay that shuffle; it reproduces all 15,625 rows of the published table.

The network (xautodl `TinyNetwork`): 3x3 conv + BN stem to C channels, N cells, a stride-2 ResNet basic
block to 2C, N cells, a block to 4C, N cells, BN-ReLU, global pooling, linear. As a ModelDesc each cell
takes the previous state through an identity stem (`skip_connect`), and each basic block is a
`reduction` cell whose only content is its `nb201_resblock` stem (no nodes, `concat=[0]`).

`NasBench201Space` (registered as `nasbench201`) is the SearchSpace: the architecture is the cell string (its
benchmark index reads too), `benchmark_key` is the string itself, mutation changes one edge's op, and both
supernets keep the network above with searchable edges: a MixedOp over the 5 ops on every edge (DARTS; one
(6 x 5) alpha table shared by all cells, `none` a column), or one choice op per edge (ENAS; 6 tokens of 5 ops).
"""

from __future__ import annotations

import copy
import functools
import itertools
import operator
import random
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from archsearch.common.errors import ArchitectureError
from archsearch.config.schema import POSITIVE_INT, register_section
from archsearch.model.builder import scaled_eval_model
from archsearch.model.choice_ops import choice_op
from archsearch.model.latency import CostItem, desc_cost_items, unique_items
from archsearch.model.mixed_op import MixedOpOptions, MixedOpSupernet
from archsearch.model.model_desc import CellDesc, EdgeDesc, ModelDesc, NodeDesc, OpDesc
from archsearch.model.network import Model
from archsearch.search.pictures import ArchPicture, cell_picture, desc_cell_pictures
from archsearch.search.space import SPACES, SearchSpace, chosen, path_encoding
from archsearch.spaces import nasbench201_ops  # noqa: F401  (registers the NAS-Bench-201 ops)
from archsearch.spaces.token_space import Token, check_arc

# The benchmark's op order (xautodl `NAS_BENCH_201`); it fixes the enumeration order of cells.
NB201_OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
N_NODES = 4  # including the input node 0
N_EDGES = N_NODES * (N_NODES - 1) // 2
N_CELLS = len(NB201_OPS) ** N_EDGES  # 15,625
_SHUFFLE_SEED = 88  # the benchmark's, in generate_meta_info()
SPACE_NAME = "nasbench201"

# (node j, input i) for every edge, in string order: node 1's edge, then node 2's, then node 3's.
EDGES: tuple[tuple[int, int], ...] = tuple((j, i) for j in range(1, N_NODES) for i in range(j))

Cell = tuple[str, ...]  # one op name per edge, in EDGES order

# every path from the input node 0 to the output node 3, as its edges (node j, input i) in order
_PATHS: tuple[tuple[tuple[int, int], ...], ...] = (
    ((3, 0),),
    ((1, 0), (3, 1)),
    ((2, 0), (3, 2)),
    ((1, 0), (2, 1), (3, 2)),
)


# ---- strings -------------------------------------------------------------------------------------


def parse_arch(arch_str: str) -> Cell:
    """Parse a cell string into its 6 op names (EDGES order). Strict: node j must list inputs 0..j-1."""
    if not isinstance(arch_str, str):
        raise ArchitectureError(f"NAS-Bench-201 arch must be a string, got {arch_str!r}; write e.g. {_example()}")
    text = arch_str.strip()
    if not text:
        raise ArchitectureError(f"NAS-Bench-201 arch is empty; write e.g. {_example()}")
    groups = text.split("+")
    if len(groups) != N_NODES - 1:
        raise ArchitectureError(
            f"NAS-Bench-201 arch {_short(text)} has {len(groups)} node group(s) joined by '+', "
            f"expected {N_NODES - 1}; write e.g. {_example()}"
        )
    ops: list[str] = []
    for j, group in enumerate(groups, start=1):
        if len(group) < 2 or group[0] != "|" or group[-1] != "|":
            raise ArchitectureError(
                f"NAS-Bench-201 arch node {j} {group!r} must be written |op~i|...| (bars at both ends)"
            )
        items = group[1:-1].split("|")
        if len(items) != j:
            raise ArchitectureError(
                f"NAS-Bench-201 arch node {j} {group!r} has {len(items)} edge(s), expected {j} (inputs 0..{j - 1})"
            )
        for i, item in enumerate(items):
            op, sep, input_id = item.partition("~")
            if not sep:
                raise ArchitectureError(
                    f"NAS-Bench-201 arch node {j}: edge {item!r} must be op~input, e.g. skip_connect~{i}"
                )
            if op not in NB201_OPS:
                raise ArchitectureError(
                    f"NAS-Bench-201 arch node {j}: unknown op {op!r}; valid: {', '.join(NB201_OPS)}"
                )
            if input_id != str(i):
                raise ArchitectureError(
                    f"NAS-Bench-201 arch node {j}: edge {item!r} has input {input_id!r}, expected {i} "
                    f"(node {j} lists inputs 0..{j - 1} in order)"
                )
            ops.append(op)
    return tuple(ops)


def format_arch(cell: Sequence[str]) -> str:
    """The benchmark's string of a cell given as 6 op names in EDGES order."""
    cell = _check_cell(cell)
    groups, k = [], 0
    for j in range(1, N_NODES):
        groups.append("|" + "|".join(f"{cell[k + i]}~{i}" for i in range(j)) + "|")
        k += j
    return "+".join(groups)


def _check_cell(cell: Sequence[str]) -> Cell:
    cell = tuple(cell)
    if len(cell) != N_EDGES:
        raise ArchitectureError(f"NAS-Bench-201 cell needs {N_EDGES} ops (one per edge), got {len(cell)}")
    for op in cell:
        if op not in NB201_OPS:
            raise ArchitectureError(f"NAS-Bench-201 cell: unknown op {op!r}; valid: {', '.join(NB201_OPS)}")
    return cell


def _short(text: str) -> str:
    return repr(text if len(text) <= 100 else text[:97] + "...")


def _example() -> str:
    return "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"


# ---- benchmark indices ---------------------------------------------------------------------------


def _product_index(cell: Cell) -> int:
    """Position in the benchmark's enumeration before its shuffle: base-5 digits, first edge first."""
    index = 0
    for op in cell:
        index = index * len(NB201_OPS) + NB201_OPS.index(op)
    return index


@functools.cache
def _benchmark_order() -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(product index of each benchmark index, benchmark index of each product index)."""
    # shuffle() only draws from the generator as a function of the list length, so shuffling the
    # product indices permutes them exactly as the benchmark shuffled its cell objects.
    order = list(range(N_CELLS))
    random.Random(_SHUFFLE_SEED).shuffle(order)
    inverse = [0] * N_CELLS
    for bench_index, product_index in enumerate(order):
        inverse[product_index] = bench_index
    return tuple(order), tuple(inverse)


def arch_to_index(arch_str: str) -> int:
    """The benchmark's index (`uid`) of a cell string."""
    return _benchmark_order()[1][_product_index(parse_arch(arch_str))]


def index_to_arch(index: int) -> str:
    """The cell string of a benchmark index 0..15624."""
    try:
        position = operator.index(index)  # accepts numpy integers, rejects floats and strings
    except TypeError:
        position = -1
    if isinstance(index, bool) or not 0 <= position < N_CELLS:
        raise ArchitectureError(f"NAS-Bench-201 index {index!r} is out of range; use an int in 0..{N_CELLS - 1}")
    product_index = _benchmark_order()[0][position]
    digits = []
    for _ in range(N_EDGES):
        product_index, digit = divmod(product_index, len(NB201_OPS))
        digits.append(NB201_OPS[digit])
    return format_arch(tuple(reversed(digits)))


def all_archs() -> list[str]:
    """All 15,625 cell strings in benchmark order (index i -> string)."""
    return [index_to_arch(i) for i in range(N_CELLS)]


def enumerate_cells() -> list[Cell]:
    """All cells in the benchmark's pre-shuffle (product) order."""
    return [tuple(c) for c in itertools.product(NB201_OPS, repeat=N_EDGES)]


# ---- ModelDesc -----------------------------------------------------------------------------------


EdgeOp = Callable[[int, int], OpDesc]  # (edge index in EDGES order, width) -> the op on that edge


def cell_desc(cell: Cell | EdgeOp, c: int) -> CellDesc:
    """One NAS-Bench-201 cell at width c: identity stem from the previous state, output = node 3. `cell` is
    the 6 op names, or a function giving each edge's op (the searchable edges of a supernet)."""
    edge_op = cell if callable(cell) else lambda k, width: OpDesc.of(cell[k], width, width)
    nodes, k = [], 0
    for j in range(1, N_NODES):
        nodes.append(NodeDesc([EdgeDesc(edge_op(k + i, c), i) for i in range(j)]))
        k += j
    return CellDesc("regular", [-1], [OpDesc.of("skip_connect", c, c)], nodes, [N_NODES - 1], c)


def resblock_desc(ch_in: int, ch_out: int) -> CellDesc:
    """The stride-2 ResNet basic block between stages, as a cell that is only its stem."""
    return CellDesc("reduction", [-1], [OpDesc.of("nb201_resblock", ch_in, ch_out, stride=2)], [], [0], ch_out)


def network_desc(cell: Cell | EdgeOp, C: int, N: int, ch_in: int, n_classes: int, meta: dict) -> ModelDesc:
    """The benchmark's network skeleton (3 stages of N cells, C, 2C, 4C channels) around `cell` (see cell_desc)."""
    for name, value in (("C", C), ("N", N), ("ch_in", ch_in), ("n_classes", n_classes)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ArchitectureError(f"NAS-Bench-201 network: {name} must be a positive int, got {value!r}")
    cells: list[CellDesc] = []
    c = C
    for stage in range(3):
        if stage:
            cells.append(resblock_desc(c, 2 * c))
            c *= 2
        cells.extend(cell_desc(cell, c) for _ in range(N))
    return ModelDesc(
        ch_in=ch_in,
        n_classes=n_classes,
        stems=[OpDesc.of("stem_conv3x3", ch_in, C)],
        cells=cells,
        pool_op=OpDesc.of("bn_relu_global_avg_pool", c, c),
        logits_op=OpDesc.of("linear", c, n_classes),
        meta=meta,
    )


def arch_to_desc(arch_str: str, C: int = 16, N: int = 5, ch_in: int = 3, n_classes: int = 10) -> ModelDesc:
    """The benchmark's network for a cell string: C channels in the first stage, N cells per stage."""
    cell = parse_arch(arch_str)
    meta = {"space": SPACE_NAME, "arch": format_arch(cell), "arch_index": arch_to_index(arch_str)}
    desc = network_desc(cell, C, N, ch_in, n_classes, meta)
    desc.validate(f"NAS-Bench-201 network {arch_str}")
    return desc


def desc_to_arch(desc: ModelDesc) -> str:
    """The cell string of a NAS-Bench-201 desc, read from its cells (not from `meta`)."""
    arch = None
    for ci, cell in enumerate(desc.cells):
        if cell.cell_type != "regular":
            continue
        where = f"cells[{ci}]"
        if cell.n_inputs != 1 or len(cell.nodes) != N_NODES - 1:
            raise ArchitectureError(
                f"desc is not a NAS-Bench-201 network: {where} has {cell.n_inputs} input(s) and "
                f"{len(cell.nodes)} node(s), expected 1 and {N_NODES - 1}"
            )
        ops: list[str] = []
        for ni, node in enumerate(cell.nodes):
            inputs = [e.input_id for e in node.edges]
            if inputs != list(range(ni + 1)):
                raise ArchitectureError(
                    f"desc is not a NAS-Bench-201 network: {where}.nodes[{ni}] reads states {inputs}, "
                    f"expected {list(range(ni + 1))}"
                )
            ops.extend(e.op.name for e in node.edges)
        try:
            this = format_arch(ops)
        except ArchitectureError as e:
            raise ArchitectureError(f"desc is not a NAS-Bench-201 network: {where}: {e}") from None
        if arch is not None and this != arch:
            raise ArchitectureError(
                f"desc is not a NAS-Bench-201 network: {where} is {this}, but an earlier cell is {arch}"
            )
        arch = this
    if arch is None:
        raise ArchitectureError("desc is not a NAS-Bench-201 network: it has no regular cell")
    return arch


class NB201DescBuilder:
    """Config -> NAS-Bench-201 ModelDesc, with ModelDescBuilder's `build()` / `scale()` shape.

    conf_model_desc keys: `init_channels` (C, 16 in the benchmark), `n_cells_per_stage` (N, 5).
    conf_dataset keys: `channels`, `n_classes`.
    """

    def __init__(self, conf_model_desc: Mapping, conf_dataset: Mapping, arch: str | None = None) -> None:
        self.conf = conf_model_desc
        self.conf_dataset = conf_dataset
        self.arch = format_arch(parse_arch(arch)) if arch is not None else None

    def build(self, meta: dict | None = None) -> ModelDesc:
        if self.arch is None:
            raise ArchitectureError(
                "no NAS-Bench-201 cell to build: give an arch string (e.g. from a NASWOT search) or an index"
            )
        desc = arch_to_desc(
            self.arch,
            C=self.conf["init_channels"],
            N=self.conf["n_cells_per_stage"],
            ch_in=self.conf_dataset["channels"],
            n_classes=self.conf_dataset["n_classes"],
        )
        # the caller's meta (algorithm, scores, ...) comes first; the space's own keys win on conflict
        desc.meta = {**(meta or {}), **desc.meta}
        return desc

    def scale(self, found: ModelDesc) -> ModelDesc:
        """Rebuild `found`'s cell at this builder's C and N (a pure ModelDesc -> ModelDesc function)."""
        return type(self)(self.conf, self.conf_dataset, desc_to_arch(found)).build(meta=copy.deepcopy(found.meta))


# ---- the search space -----------------------------------------------------------------------------

ARCH_KEY = "cell"  # the one alpha table: every cell of the network shares it, as in the benchmark's DARTS


class NB201DartsSupernet(MixedOpSupernet):
    """The NAS-Bench-201 network with a MixedOp over all 5 ops on each of the 6 edges of every cell; one
    (6 x 5) alpha table shared by all cells, `none` a column as in the benchmark's DARTS (xautodl
    `TinyNetworkDarts`)."""

    arch_label = "cell"

    def derive_arch(self) -> str:
        """The argmax op of each edge, `none` included (xautodl's `genotype()`: how DARTS collapses there).
        PC-DARTS' edge betas scale a whole edge, so they never change its argmax: the alphas decide."""
        table = self.arch_tables[ARCH_KEY].detach()
        return format_arch([NB201_OPS[int(row.argmax())] for row in table])

    def pictures(self) -> list[ArchPicture]:
        """The cell the current alphas pick (TensorBoard draws it per epoch)."""
        return NasBench201Space.arch_pictures(self.derive_arch())


class NB201SampledSupernet(Model):
    """The NAS-Bench-201 network with one `enas_choice` per edge holding all 5 ops; `set_arch` picks the op
    each edge runs (ENAS-style weight sharing: cells keep their own weights)."""

    def set_arch(self, arch: str) -> None:
        op_indices = [NB201_OPS.index(op) for op in parse_arch(arch)]
        for cell in self.cells:
            if cell.desc.cell_type == "regular":
                for k, (j, i) in enumerate(EDGES):
                    cell.nodes[j - 1][i].select(0, op_indices[k])


class NasBench201Space(SearchSpace):
    name = SPACE_NAME
    summary = "NAS-Bench-201: one cell of 6 edges x 5 ops, 15,625 cells with trained accuracies"

    # ---- pictures: the one searched cell (its reduction blocks are fixed residual blocks) --------------
    @classmethod
    def pictures(cls, final_file: Mapping[str, Any]) -> list[ArchPicture]:
        return desc_cell_pictures(final_file, ("regular",), lambda kind, n: "NAS-Bench-201 cell", input_names=["in"])

    @classmethod
    def arch_pictures(cls, arch: str) -> list[ArchPicture]:
        ops = parse_arch(arch)
        nodes: list[list[tuple[str, int]]] = [[] for _ in range(N_NODES - 1)]
        for (j, i), op in zip(EDGES, ops, strict=True):
            nodes[j - 1].append((op, i))
        return [cell_picture("NAS-Bench-201 cell", 1, nodes, [N_NODES - 1], input_names=["in"])]

    @classmethod
    def op_names(cls, conf_search: Mapping[str, Any], width: int) -> list[str] | None:
        return list(NB201_OPS) if len(NB201_OPS) == width else None

    def describe(self) -> str:
        return f"{SPACE_NAME}: {N_CELLS:,} cells of {N_EDGES} edges x {len(NB201_OPS)} ops"

    def size(self) -> int:
        return N_CELLS

    def sample(self, rng: random.Random) -> str:
        return format_arch([rng.choice(NB201_OPS) for _ in range(N_EDGES)])

    def to_json(self, arch: str) -> str:
        return arch

    def from_json(self, data: Any, where: str = "architecture") -> str:
        """A cell string, or its benchmark index (an int)."""
        try:
            if isinstance(data, int) and not isinstance(data, bool):
                return index_to_arch(data)
            return format_arch(parse_arch(data))
        except ArchitectureError as e:
            raise ArchitectureError(f"{where}: {e}") from None

    def mutate(self, arch: str, rng: random.Random) -> str:
        cell = list(parse_arch(arch))
        edge = rng.randrange(N_EDGES)
        cell[edge] = rng.choice([op for op in NB201_OPS if op != cell[edge]])
        return format_arch(cell)

    def benchmark_key(self, arch: str) -> str:
        return arch

    def builder(self, conf_model_desc: Mapping, arch: str | None = None) -> NB201DescBuilder:
        return NB201DescBuilder(conf_model_desc, self.conf_dataset, arch)

    def build(self, arch: str) -> Model:
        return Model(self.builder(self.conf_model_desc, arch).build())

    def save_arch(self, arch: str, folder: Path, meta: Mapping[str, Any]) -> Path:
        return self.builder(self.conf_model_desc, arch).build(meta=dict(meta)).save(Path(folder) / self.final_file)

    def load_arch(self, path: Path) -> str:
        return desc_to_arch(ModelDesc.load(Path(path)))

    def eval_model(self, path: Path, conf_model_desc: Mapping, eval_dir: Path | None) -> Any:
        return scaled_eval_model(self.builder(conf_model_desc), Path(path), eval_dir)

    def supernet_desc(self, edge_op: EdgeOp, kind: str) -> ModelDesc:
        conf = self.conf_model_desc
        meta = {"space": SPACE_NAME, "supernet": kind}
        ch_in, n_classes = self.conf_dataset["channels"], self.conf_dataset["n_classes"]
        return network_desc(edge_op, conf["init_channels"], conf["n_cells_per_stage"], ch_in, n_classes, meta)

    def differentiable_supernet(self) -> NB201DartsSupernet:
        return self.mixed_op_supernet(MixedOpOptions())

    def mixed_op_supernet(self, options: MixedOpOptions) -> NB201DartsSupernet:
        """Edge k is EDGES[k] = (node j, input i): with edge normalization its beta is entry i of node j's
        table `cell_edges<j>` (node 1's single edge has weight 1)."""
        affine = self.conf_model_desc["affine"]

        def mixed(k: int, c: int) -> OpDesc:
            j, i = EDGES[k]
            extra = options.op_params(f"{ARCH_KEY}_edges{j}", i, j)
            candidates = list(NB201_OPS)
            return OpDesc.of("mixed_op", c, c, 1, affine, candidates=candidates, arch_key=ARCH_KEY, arch_row=k, **extra)

        return NB201DartsSupernet(self.supernet_desc(mixed, "differentiable"))

    def sampled_supernet(self) -> NB201SampledSupernet:
        affine = self.conf_model_desc["affine"]
        return NB201SampledSupernet(self.supernet_desc(lambda k, c: choice_op(NB201_OPS, c, 1, affine), "sampled"))

    def token_spec(self) -> list[Token]:
        return [Token("op", j, len(NB201_OPS), 0, i, NB201_OPS, label="node") for j, i in EDGES]

    def arch_from_tokens(self, tokens: Sequence[int]) -> str:
        ops = check_arc(tokens, self.token_spec(), f"{N_EDGES} edges x {len(NB201_OPS)} ops")
        return format_arch([NB201_OPS[t] for t in ops])

    def choices(self) -> list[tuple[str, list[Any]]]:
        """One decision per edge, `node<j>_in<i>` (the op on node j's edge from node i), in EDGES order."""
        return [(f"node{j}_in{i}", list(NB201_OPS)) for j, i in EDGES]

    def arch_from_choices(self, values: Mapping[str, Any]) -> str:
        return format_arch(chosen(self, values))

    def choices_of(self, arch: str) -> dict[str, Any]:
        return {name: op for (name, _), op in zip(self.choices(), parse_arch(arch), strict=True)}

    def encode(self, arch: str, kind: str = "path") -> list[float]:
        """`path`: 155 bits, one per op sequence along each of the cell's 4 paths from node 0 to node 3 (5 of one
        edge, 25 of two, 125 of three), as BANANAS' NAS-Bench-201 cell (paths through `none` included, as theirs);
        `adjacency`: 30 bits, one op of 5 per edge."""
        cell = parse_arch(arch)
        ops = [NB201_OPS.index(op) for op in cell]
        if kind == "adjacency":
            return [float(op == k) for op in ops for k in range(len(NB201_OPS))]
        paths = [[ops[EDGES.index(edge)] for edge in path] for path in _PATHS]
        return path_encoding(((0, p) for p in paths), 1, len(NB201_OPS), N_NODES - 1)

    def cost_items(self, arch: str) -> list[CostItem]:
        return desc_cost_items(self.builder(self.conf_model_desc, arch).build(), self.image_hw())

    def profile_items(self) -> list[CostItem]:
        """Every edge runs stride 1 at its stage's width and map size whatever its op, so the five cells that
        hold one op on all edges cover every (op, shape) and the whole skeleton."""
        return unique_items(self.cost_items(format_arch([op] * N_EDGES)) for op in NB201_OPS)


SPACES.add(SPACE_NAME, NasBench201Space)

__all__ = [
    "NB201_OPS",
    "N_CELLS",
    "EDGES",
    "SPACE_NAME",
    "parse_arch",
    "format_arch",
    "arch_to_index",
    "index_to_arch",
    "all_archs",
    "enumerate_cells",
    "cell_desc",
    "resblock_desc",
    "arch_to_desc",
    "desc_to_arch",
    "NB201DescBuilder",
    "NasBench201Space",
]


# N, the cells per stage (confs/spaces/nasbench201.yaml: 5, the benchmark's)
register_section("nas.search.model_desc", {"n_cells_per_stage": POSITIVE_INT})
