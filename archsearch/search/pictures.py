"""What an architecture looks like, as plain data: the pictures a space hands the report, TensorBoard and
`archsearch show`, which render them (archsearch.report.drawing) without knowing which space drew them.

A picture is a small DAG: labelled nodes with a role (input | inner | output), edges (u, v, op label or None
for a plain connection such as a concatenation), a title and a note. `cell_picture` builds the usual cell
(input states, one state per node, a concatenated output) that cell-based spaces share.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

MAX_LABEL = 40  # characters of an op or layer name drawn; a longer name from a file is cut
NO_CONNECTION = ("none", "zero")  # ops that connect nothing: left out of a picture and counted in its note


def label(name: Any) -> str:
    """An op or layer name as drawn: a string of at most MAX_LABEL characters."""
    name = str(name)
    return name if len(name) <= MAX_LABEL else name[: MAX_LABEL - 3] + "..."


def short_op(name: str) -> str:
    return name.replace("_conv_", " conv ").replace("_pool_", " pool ").replace("_", " ")


@dataclass
class ArchPicture:
    """A picture-ready DAG of (part of) an architecture."""

    title: str
    nodes: list[tuple[str, str]] = field(default_factory=list)
    edges: list[tuple[int, int, str | None]] = field(default_factory=list)
    note: str = ""
    vertical: bool = False  # layers top to bottom (long chains such as a morphism network)
    chain: bool = False  # nodes on one line in order, the other edges as arcs (ENAS' macro network)
    plain_solid: bool = False  # draw unlabelled edges solid (a chain's main path) instead of dashed

    def add_node(self, label: str, role: str) -> int:
        self.nodes.append((label, role))
        return len(self.nodes) - 1


def cell_picture(
    title: str,
    n_inputs: int,
    nodes: Sequence[Sequence[tuple[str, int]]],
    concat: Sequence[int],
    input_names: Sequence[str] | None = None,
) -> ArchPicture:
    """A cell: `n_inputs` input states, then one state per node whose edges are (op name, input state); the
    output concatenates the `concat` states. `none` edges are left out and counted in the note; a
    single-state output (NB201) is that state itself, drawn as the output."""
    picture = ArchPicture(title)
    names = list(input_names) if input_names else [f"c_{{k-{n_inputs - i}}}" for i in range(n_inputs)]
    for name in names:
        picture.add_node(name, "input")
    single_out = len(concat) == 1 and concat[0] >= n_inputs
    for j in range(len(nodes)):
        state = n_inputs + j
        is_out = single_out and state == concat[0]
        picture.add_node("out" if is_out else str(j), "output" if is_out else "inner")
    dropped = 0
    for j, edges in enumerate(nodes):
        for op, src in edges:
            if str(op).lower() in NO_CONNECTION:
                dropped += 1
                continue
            picture.edges.append((int(src), n_inputs + j, label(op)))
    if not single_out:
        out = picture.add_node("c_{k}", "output")
        for s in concat:
            picture.edges.append((int(s), out, None))
    if dropped:
        picture.note = f"{dropped} 'none' edge{'s' if dropped > 1 else ''} (no connection) not drawn"
    return picture


def desc_cell_pictures(
    desc: Any, only: Sequence[str] | None = None, title: Any = None, input_names: Sequence[str] | None = None
) -> list[ArchPicture]:
    """One picture per distinct cell type of a ModelDesc (object or dict), in order; `only` keeps those types,
    `title(kind, n_nodes)` names each (default: 'normal cell (4 nodes)', 'reduction cell (4 nodes)')."""
    data = desc.to_dict() if hasattr(desc, "to_dict") else desc
    seen: dict[str, ArchPicture] = {}
    for cell in data.get("cells", []):
        kind = cell["cell_type"]
        if kind in seen or (only is not None and kind not in only):
            continue
        n_in = len(cell.get("input_states") or cell.get("stems") or [0, 0])
        nodes = [[(e["op"]["name"], int(e["input_id"])) for e in node["edges"]] for node in cell["nodes"]]
        default = f"{'normal' if kind == 'regular' else kind} cell ({len(nodes)} nodes)"
        name = title(kind, len(nodes)) if title else default
        seen[kind] = cell_picture(name, n_in, nodes, cell["concat"], input_names)
    return list(seen.values())
