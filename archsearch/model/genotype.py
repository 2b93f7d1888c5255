"""Cell templates and the DARTS paper's genotype notation.

A `CellTemplate` is the structure of one cell type without channels: per node, its edges as
(op name, input state id), and which states the cell concatenates. The ModelDescBuilder stamps templates
into every cell at the right width. A DARTS `Genotype` is two templates whose nodes have two edges each:

    Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ...], normal_concat=[2, 3, 4, 5],
             reduce=[...], reduce_concat=[2, 3, 4, 5])
"""

from __future__ import annotations

import ast
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from archsearch.common.errors import ArchitectureError


@dataclass
class CellTemplate:
    nodes: list[list[tuple[str, int]]]  # per node: its edges as (op name, input state id)
    concat: list[int]
    n_inputs: int = 2


class Genotype(NamedTuple):
    normal: list[tuple[str, int]]
    normal_concat: list[int]
    reduce: list[tuple[str, int]]
    reduce_concat: list[int]

    def __str__(self) -> str:
        return format_genotype(self)


# From the DARTS paper (Liu et al., 2019), genotypes.py of the original code.
DARTS_V1 = Genotype(
    normal=[
        ("sep_conv_3x3", 1),
        ("sep_conv_3x3", 0),
        ("skip_connect", 0),
        ("sep_conv_3x3", 1),
        ("skip_connect", 0),
        ("sep_conv_3x3", 1),
        ("sep_conv_3x3", 0),
        ("skip_connect", 2),
    ],
    normal_concat=[2, 3, 4, 5],
    reduce=[
        ("max_pool_3x3", 0),
        ("max_pool_3x3", 1),
        ("skip_connect", 2),
        ("max_pool_3x3", 0),
        ("max_pool_3x3", 0),
        ("skip_connect", 2),
        ("skip_connect", 2),
        ("avg_pool_3x3", 0),
    ],
    reduce_concat=[2, 3, 4, 5],
)
DARTS_V2 = Genotype(
    normal=[
        ("sep_conv_3x3", 0),
        ("sep_conv_3x3", 1),
        ("sep_conv_3x3", 0),
        ("sep_conv_3x3", 1),
        ("sep_conv_3x3", 1),
        ("skip_connect", 0),
        ("skip_connect", 0),
        ("dil_conv_3x3", 2),
    ],
    normal_concat=[2, 3, 4, 5],
    reduce=[
        ("max_pool_3x3", 0),
        ("max_pool_3x3", 1),
        ("skip_connect", 2),
        ("max_pool_3x3", 1),
        ("max_pool_3x3", 0),
        ("skip_connect", 2),
        ("skip_connect", 2),
        ("max_pool_3x3", 1),
    ],
    reduce_concat=[2, 3, 4, 5],
)
# NASNet-A (Zoph et al., 2018) and AmoebaNet-A (Real et al., 2019) as the DARTS code writes them, the
# baselines of the DARTS paper's Table 1. Five nodes each, and the cell outputs only the loose ends (states
# no node reads), so a cell is len(concat) * C wide: 5C for NASNet's normal cell, 3C for the others. The
# templates carry both, so no n_nodes setting is involved in building them.
NASNET = Genotype(
    normal=[
        ("sep_conv_5x5", 1),
        ("sep_conv_3x3", 0),
        ("sep_conv_5x5", 0),
        ("sep_conv_3x3", 0),
        ("avg_pool_3x3", 1),
        ("skip_connect", 0),
        ("avg_pool_3x3", 0),
        ("avg_pool_3x3", 0),
        ("sep_conv_3x3", 1),
        ("skip_connect", 1),
    ],
    normal_concat=[2, 3, 4, 5, 6],
    reduce=[
        ("sep_conv_5x5", 1),
        ("sep_conv_7x7", 0),
        ("max_pool_3x3", 1),
        ("sep_conv_7x7", 0),
        ("avg_pool_3x3", 1),
        ("sep_conv_5x5", 0),
        ("skip_connect", 3),
        ("avg_pool_3x3", 2),
        ("sep_conv_3x3", 2),
        ("max_pool_3x3", 1),
    ],
    reduce_concat=[4, 5, 6],
)
AMOEBANET = Genotype(
    normal=[
        ("avg_pool_3x3", 0),
        ("max_pool_3x3", 1),
        ("sep_conv_3x3", 0),
        ("sep_conv_5x5", 2),
        ("sep_conv_3x3", 0),
        ("avg_pool_3x3", 3),
        ("sep_conv_3x3", 1),
        ("skip_connect", 1),
        ("skip_connect", 0),
        ("avg_pool_3x3", 1),
    ],
    normal_concat=[4, 5, 6],
    reduce=[
        ("avg_pool_3x3", 0),
        ("sep_conv_3x3", 1),
        ("max_pool_3x3", 0),
        ("sep_conv_7x7", 2),
        ("sep_conv_7x7", 0),
        ("avg_pool_3x3", 1),
        ("max_pool_3x3", 0),
        ("max_pool_3x3", 1),
        ("conv_7x1_1x7", 0),
        ("sep_conv_3x3", 5),
    ],
    reduce_concat=[3, 4, 6],
)
NAMED_GENOTYPES = {
    "DARTS_V1": DARTS_V1,
    "DARTS_V2": DARTS_V2,
    "DARTS": DARTS_V2,
    "NASNet": NASNET,
    "AmoebaNet": AMOEBANET,
}


def format_genotype(g: Genotype) -> str:
    return (
        f"Genotype(normal={list(map(tuple, g.normal))!r}, normal_concat={list(g.normal_concat)!r}, "
        f"reduce={list(map(tuple, g.reduce))!r}, reduce_concat={list(g.reduce_concat)!r})"
    )


def parse_genotype(text: str) -> Genotype:
    """Parse the paper's notation (or a name in NAMED_GENOTYPES) without eval()."""
    if not isinstance(text, str):
        raise ArchitectureError(f"genotype must be a string, got {text!r:.60}")
    text = text.strip()
    if text in NAMED_GENOTYPES:
        return NAMED_GENOTYPES[text]
    hint = (
        f"write Genotype(normal=[('op', input), ...], normal_concat=[...], reduce=..., reduce_concat=...) "
        f"or one of {', '.join(NAMED_GENOTYPES)}"
    )
    try:
        call = ast.parse(text, mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError):  # ValueError: a NUL byte
        raise ArchitectureError(f"genotype {text[:60]!r} is not valid syntax; {hint}") from None
    if not (isinstance(call, ast.Call) and getattr(call.func, "id", None) == "Genotype" and not call.args):
        raise ArchitectureError(f"genotype {text[:60]!r} must be Genotype(...) with keyword fields; {hint}")
    fields = {}
    for kw in call.keywords:
        if kw.arg is None:
            raise ArchitectureError(f"genotype {text[:60]!r}: write every field as name=value, not **mapping; {hint}")
        fields[kw.arg] = _literal_field(kw.arg, kw.value)
    missing = [f for f in Genotype._fields if f not in fields]
    extra = [f for f in fields if f not in Genotype._fields]
    if missing or extra:
        raise ArchitectureError(f"genotype fields: missing {missing}, unknown {extra}; {hint}")
    for name in ("normal", "reduce"):
        edges = fields[name]
        ok = isinstance(edges, (list, tuple)) and all(
            isinstance(e, (list, tuple)) and len(e) == 2 and isinstance(e[0], str) and _is_int(e[1]) for e in edges
        )
        if not ok or not edges or len(edges) % 2:
            raise ArchitectureError(
                f"genotype field {name} must be a non-empty, even-length list of ('op', input_id) pairs"
            )
        fields[name] = [tuple(e) for e in edges]
    for name in ("normal_concat", "reduce_concat"):
        concat = fields[name]
        if not isinstance(concat, (list, tuple)) or not concat or not all(_is_int(i) for i in concat):
            raise ArchitectureError(f"genotype field {name} must be a non-empty list of state ids, got {concat!r:.60}")
        fields[name] = list(concat)
    genotype = Genotype(**fields)
    genotype_to_templates(genotype)  # validates ids and op names
    return genotype


MAX_FIELD_ITEMS = 1000  # far above any real cell; keeps range(10**12) from allocating the machine away


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # True is not state 1


def _literal_field(name: str, value: ast.expr) -> object:
    """A field's value: a Python literal, or range(...) as the original code writes concat lists."""
    try:
        if isinstance(value, ast.Call) and getattr(value.func, "id", None) == "range" and not value.keywords:
            bounds = [ast.literal_eval(a) for a in value.args]
            if not 1 <= len(bounds) <= 3 or not all(_is_int(b) for b in bounds):
                raise ValueError
            items = range(*bounds)
            if len(items) > MAX_FIELD_ITEMS:
                raise ArchitectureError(f"genotype field {name}: {ast.unparse(value)[:40]} is far too long")
            return list(items)
        return ast.literal_eval(value)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise ArchitectureError(
            f"genotype field {name} must be a literal list or range(a, b), got {ast.unparse(value)[:60]!r}"
        ) from None


def genotype_to_templates(g: Genotype) -> dict[str, CellTemplate]:
    from archsearch.model.ops import OPS

    templates = {}
    for cell_type, edges, concat in (("regular", g.normal, g.normal_concat), ("reduction", g.reduce, g.reduce_concat)):
        nodes = [list(edges[i : i + 2]) for i in range(0, len(edges), 2)]
        for ni, node in enumerate(nodes):
            for op, input_id in node:
                if op not in OPS:
                    raise ArchitectureError(f"genotype {cell_type} node {ni}: {OPS.unknown_message(op)}")
                if not 0 <= input_id < ni + 2:
                    raise ArchitectureError(f"genotype {cell_type} node {ni}: input {input_id} must be in 0..{ni + 1}")
        for sid in concat:
            if not 0 <= sid < len(nodes) + 2:
                raise ArchitectureError(f"genotype {cell_type}_concat: {sid} must be in 0..{len(nodes) + 1}")
        templates[cell_type] = CellTemplate(nodes=nodes, concat=list(concat))
    return templates


def templates_to_genotype(templates: dict[str, CellTemplate]) -> Genotype:
    """The paper's notation for two-input cells (any number of edges per node is written flat)."""
    normal, reduce = templates["regular"], templates.get("reduction", templates["regular"])
    flat = lambda t: [(op, i) for node in t.nodes for op, i in node]
    return Genotype(flat(normal), list(normal.concat), flat(reduce), list(reduce.concat))


def random_template(rng: random.Random, n_nodes: int, primitives: Sequence[str], n_inputs: int = 2) -> CellTemplate:
    """A random DARTS-space cell: each node takes two distinct earlier states, each through a random op."""
    nodes = []
    for i in range(n_nodes):
        inputs = rng.sample(range(i + n_inputs), 2)
        nodes.append([(rng.choice(list(primitives)), j) for j in sorted(inputs)])
    return CellTemplate(nodes=nodes, concat=list(range(n_inputs, n_nodes + n_inputs)), n_inputs=n_inputs)


def random_templates(rng: random.Random, n_nodes: int, primitives: Sequence[str]) -> dict[str, CellTemplate]:
    """A random DARTS genotype as templates: a random normal and a random reduction cell."""
    return {t: random_template(rng, n_nodes, primitives) for t in ("regular", "reduction")}
