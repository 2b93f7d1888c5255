"""Pictures of architectures, shared by `archsearch show`, the HTML report and TensorBoard.

Every architecture is first turned into a small DAG (labelled nodes, op-labelled edges) and then drawn
the same way: igraph's Sugiyama layered layout places the nodes in layers (left to right), orders each
layer to reduce crossings and routes an edge that spans several layers through dummy points, so no edge
runs through a node; matplotlib draws it. The DAGs come from the spaces themselves (`SearchSpace.pictures`,
`arch_pictures`; archsearch.search.pictures), built from plain data, so this module draws any space's
architecture without knowing which space it is.
"""

from __future__ import annotations

import contextlib
import io
import math
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from archsearch.search.pictures import ArchPicture

# op families, coloured alike everywhere (report, show, TensorBoard): parameter-free ops stand out,
# because a search collapsing onto them (skip connections, pooling) is what one looks for first
OP_COLOURS = {
    "conv": "#2b6cb0",
    "pool": "#2f855a",
    "skip": "#dd6b20",
    "none": "#a0aec0",
    "other": "#4a5568",
}
X_GAP, Y_GAP = 3.0, 1.9  # data units between layers (columns) and between rows
X_GAP_VERTICAL, Y_GAP_VERTICAL = 2.4, 1.0  # the same for a DAG drawn top to bottom
INCHES_PER_UNIT = 0.55
NODE_COLOURS = {"input": "#bee3f8", "inner": "#feebc8", "output": "#c6f6d5"}
PARAM_FREE = ("skip_connect", "max_pool_3x3", "avg_pool_3x3", "none", "identity", "zero")
MAX_NODES, MAX_EDGES = 300, 1200  # larger architectures are not drawn (the report says so): a picture's size
MAX_PIXELS = 16000  # a PNG's largest side; a larger figure is saved at a lower resolution
STATE_NAME = re.compile(r"c_\{k(-\d+)?\}")  # the cell-state names drawn as math text (a subscript)


@contextlib.contextmanager
def plain_text() -> Iterator[None]:
    """Draw every text as written: names from a run folder such as `$\\frac{$` are not parsed as math
    text or handed to LaTeX. Figures must be built and saved inside (tick labels are made when drawn);
    the cell-state names this module writes itself ask for math text explicitly."""
    import matplotlib

    with matplotlib.rc_context({"text.usetex": False, "text.parse_math": False}):
        yield


def op_family(name: str) -> str:
    lowered = name.lower()
    if lowered in ("none", "zero"):
        return "none"
    if "skip" in lowered or lowered in ("identity", "skip_connect"):
        return "skip"
    if "pool" in lowered:
        return "pool"
    if "conv" in lowered or "linear" in lowered or "dense" in lowered:
        return "conv"
    return "other"


def is_param_free(name: str) -> bool:
    """An op without weights (what a collapsed DARTS search ends up with)."""
    return name in PARAM_FREE or op_family(name) in ("skip", "pool", "none")


Dag = ArchPicture  # what the renderer draws: a space's picture (archsearch.search.pictures)


# ---- drawing ---------------------------------------------------------------------------------------


def _layers(dag: Dag) -> list[int]:
    """Longest-path layers, inputs at layer 0 (so every input sits in the first column)."""
    preds: dict[int, list[int]] = {i: [] for i in range(len(dag.nodes))}
    for u, v, _ in dag.edges:
        preds[v].append(u)
    layer: dict[int, int] = {}

    def depth(v: int, stack: tuple[int, ...] = ()) -> int:
        if v not in layer:
            if dag.nodes[v][1] == "input" or not preds[v] or v in stack:
                layer[v] = 0
            else:
                layer[v] = 1 + max(depth(u, (*stack, v)) for u in preds[v])
        return layer[v]

    return [depth(v) for v in range(len(dag.nodes))]


def layout(dag: Dag) -> tuple[list[tuple[float, float]], list[list[tuple[float, float]]]]:
    """(x, y) per node in data units and the bend points of each edge. Sugiyama's layers become columns
    (x grows along the data flow; rows for a vertical DAG), a layer's crossing-reducing order the rows.
    A chain keeps its nodes on one line: its edges besides the chain bend into arcs when drawn."""
    import igraph

    if dag.chain:
        return [(i * X_GAP * 0.8, 0.0) for i in range(len(dag.nodes))], [[] for _ in dag.edges]
    graph = igraph.Graph(n=len(dag.nodes), edges=[(u, v) for u, v, _ in dag.edges], directed=True)
    result = graph.layout_sugiyama(layers=_layers(dag), hgap=1, vgap=1, maxiter=200)

    def place(row: float, layer: float) -> tuple[float, float]:
        if dag.vertical:
            return row * X_GAP_VERTICAL, -layer * Y_GAP_VERTICAL
        return layer * X_GAP, -row * Y_GAP

    coords = [place(float(x), float(y)) for x, y in result.coords[: len(dag.nodes)]]
    bends = [[place(float(x), float(y)) for x, y in points] for points in result.edge_routing]
    return coords, bends


def _polyline_point(points: Sequence[tuple[float, float]], fraction: float) -> tuple[float, float]:
    lengths = [math.dist(a, b) for a, b in zip(points, points[1:])]
    target, run = sum(lengths) * fraction, 0.0
    for (a, b), length in zip(zip(points, points[1:]), lengths):
        if run + length >= target and length > 0:
            t = (target - run) / length
            return a[0] + t * (b[0] - a[0]), a[1] + t * (b[1] - a[1])
        run += length
    return points[-1]


def _box_half(label: str, font_size: float) -> tuple[float, float]:
    """Half width and height of a node's box in data units (draw_dag's scale: about 0.62 in per unit)."""
    lines = label.split("\n")
    chars = max(len(re.sub(r"[${}_\\]", "", line)) for line in lines)
    scale = font_size / 10
    return (0.16 + 0.062 * chars) * scale + 0.06, (0.16 + 0.17 * len(lines)) * scale


def _leave_box(
    inside: tuple[float, float], toward: tuple[float, float], half: tuple[float, float]
) -> tuple[float, float]:
    """Where the segment from a box's centre `inside` toward `toward` crosses the box's border."""
    dx, dy = toward[0] - inside[0], toward[1] - inside[1]
    t = min(half[0] / abs(dx) if dx else math.inf, half[1] / abs(dy) if dy else math.inf, 1.0)
    return inside[0] + t * dx, inside[1] + t * dy


def _smooth_path(points: Sequence[tuple[float, float]]) -> Any:
    """A path through the bend points' midpoints with the bends as quadratic control points (smooth, and
    still clear of the nodes the layout routed around)."""
    from matplotlib.path import Path as MplPath

    if len(points) == 2:
        return MplPath(points, [MplPath.MOVETO, MplPath.LINETO])
    verts, codes = [points[0], _mid(points[0], points[1])], [MplPath.MOVETO, MplPath.LINETO]
    for i in range(1, len(points) - 1):
        verts += [points[i], _mid(points[i], points[i + 1]) if i < len(points) - 2 else points[-1]]
        codes += [MplPath.CURVE3, MplPath.CURVE3]
    return MplPath(verts, codes)


def _label_half(text: str, font_size: float) -> tuple[float, float]:
    return 0.052 * len(text) * font_size / 8 + 0.05, 0.16 * font_size / 8


# where along an edge its label may go, best first: past the middle (edges crossing between two columns
# cross at their middle), then further along or back
LABEL_FRACTIONS = (0.6, 0.72, 0.45, 0.82, 0.33, 0.5, 0.25, 0.9, 0.15)


def _free_spot(points, text, placed, pos, halves, font_size) -> tuple[float, float]:
    """The spot along the edge (LABEL_FRACTIONS, in order of preference) whose label overlaps other labels
    and node boxes least: the first free one when there is one."""
    hw, hh = _label_half(text, font_size - 1)

    def overlap(x: float, y: float) -> float:
        boxes = [((px, py), size) for px, py, size in placed] + list(zip(pos, halves))
        total = 0.0
        for (bx, by), (bw, bh) in boxes:
            dx, dy = hw + bw - abs(x - bx), hh + bh - abs(y - by)
            if dx > 0 and dy > 0:
                total += dx * dy
        return total

    spots = [_polyline_point(points, f) for f in LABEL_FRACTIONS]
    return min(spots, key=lambda spot: overlap(*spot))  # min keeps the first of equal (zero) overlaps


def _mid(a: tuple[float, float], b: tuple[float, float]) -> tuple[float, float]:
    return (a[0] + b[0]) / 2, (a[1] + b[1]) / 2


def _mathtext(name: str) -> tuple[str, bool]:
    """(text, parse as math): this module's own state names such as c_{k-2} as math text (a subscript),
    everything else (an op or layer name from a file) as written."""
    return (f"${name}$", True) if STATE_NAME.fullmatch(name) else (name, False)


def draw_dag(ax: Any, dag: Dag, *, font_size: float = 9) -> None:
    """Draw `dag` on a matplotlib axis: rounded node boxes, edges coloured by op family through their bend
    points (arrows ending at the box border), each op label on a white box along its edge."""
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    pos, bends = layout(dag)
    halves = [_box_half(label, font_size) for label, _ in dag.nodes]
    for (label, role), (x, y), (hw, hh) in zip(dag.nodes, pos, halves, strict=True):
        ax.add_patch(
            FancyBboxPatch(
                (x - hw, y - hh),
                2 * hw,
                2 * hh,
                boxstyle="round,pad=0,rounding_size=0.12",
                fc=NODE_COLOURS.get(role, "#e2e8f0"),
                ec="#2d3748",
                lw=1,
                zorder=3,
            )
        )
        shown, math_text = _mathtext(label)
        ax.text(x, y, shown, ha="center", va="center", fontsize=font_size + 1, zorder=4, parse_math=math_text)
    placed: list[tuple[float, float, tuple[float, float]]] = []  # op labels drawn so far: centre, half size
    multiplicity = Counter((u, v) for u, v, _ in dag.edges)
    seen: Counter = Counter()
    for k, (u, v, op) in enumerate(dag.edges):
        points = [pos[u], *bends[k], pos[v]]
        if multiplicity[(u, v)] > 1:  # parallel edges (ENAS: both inputs of a node from one state): fan out
            nth, total = seen[(u, v)], multiplicity[(u, v)]
            seen[(u, v)] += 1
            (x0, y0), (x1, y1) = pos[u], pos[v]
            length = math.dist(pos[u], pos[v]) or 1.0
            offset = (nth - (total - 1) / 2) * 0.9
            points = [
                pos[u],
                ((x0 + x1) / 2 - offset * (y1 - y0) / length, (y0 + y1) / 2 + offset * (x1 - x0) / length),
                pos[v],
            ]
        if dag.chain and v != u + 1:  # an arc over the chain, higher the more layers it skips
            lift = 0.45 * Y_GAP * (v - u - 1) ** 0.7 * (1 if k % 2 == 0 else -1)
            points = [
                pos[u],
                (pos[u][0] + 0.25 * (pos[v][0] - pos[u][0]), lift),
                (pos[u][0] + 0.75 * (pos[v][0] - pos[u][0]), lift),
                pos[v],
            ]
        points[0] = _leave_box(points[0], points[1], halves[u])
        points[-1] = _leave_box(points[-1], points[-2], halves[v])
        family = "skip" if op == "skip" else op_family(op) if op else "none"
        colour = "#2d3748" if dag.plain_solid and not op else OP_COLOURS[family]
        ax.add_patch(
            FancyArrowPatch(
                path=_smooth_path(points),
                arrowstyle="-|>",
                mutation_scale=11,
                color=colour,
                lw=1.6 if op or dag.plain_solid else 1.0,
                linestyle="-" if op or dag.plain_solid else (0, (4, 3)),
                zorder=1,
                shrinkA=0,
                shrinkB=0,
            )
        )
        if op and op != "skip":
            # near the target: edges crossing between two columns cross at their middle, and the two
            # edges into one node still come from different rows there
            x, y = _free_spot(points, op, placed, pos, halves, font_size)
            placed.append((x, y, _label_half(op, font_size - 1)))
            ax.text(
                x,
                y,
                op,
                ha="center",
                va="center",
                fontsize=font_size - 1,
                color=colour,
                zorder=2,
                parse_math=False,
                bbox={"boxstyle": "round,pad=0.12", "fc": "white", "ec": "none", "alpha": 0.92},
            )
    (x0, x1), (y0, y1) = _extent(dag, pos, bends, halves)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_aspect("equal", adjustable="box")  # boxes are sized in data units: the same shape in every picture
    ax.set_title(dag.title + (f"\n{dag.note}" if dag.note else ""), fontsize=font_size + 2, parse_math=False)
    ax.axis("off")


def _extent(dag: Dag, pos, bends, halves) -> tuple[tuple[float, float], tuple[float, float]]:
    """The data limits holding every box, bend and arc, with a margin for labels."""
    xs = [x + s * hw for (x, _), (hw, _) in zip(pos, halves) for s in (-1, 1)] + [x for b in bends for x, _ in b]
    ys = [y + s * hh for (_, y), (_, hh) in zip(pos, halves) for s in (-1, 1)] + [y for b in bends for _, y in b]
    if dag.chain:
        span = max((v - u - 1 for u, v, _ in dag.edges), default=0)
        ys += [0.45 * Y_GAP * span**0.7, -0.45 * Y_GAP * span**0.7]
    return (min(xs) - 0.4, max(xs) + 0.4), (min(ys) - 0.35, max(ys) + 0.35)


def dag_size(dag: Dag) -> tuple[float, float]:
    """The drawing's size in inches at INCHES_PER_UNIT (without its title)."""
    pos, bends = layout(dag)
    (x0, x1), (y0, y1) = _extent(dag, pos, bends, [_box_half(label, 9) for label, _ in dag.nodes])
    return (x1 - x0) * INCHES_PER_UNIT, (y1 - y0) * INCHES_PER_UNIT


TITLE_INCHES, MARGIN_INCHES = 0.45, 0.2


@plain_text()
def figure_of(dags: Sequence[Dag]) -> Any:
    """A matplotlib figure with the DAGs side by side, each axis placed by hand at exactly INCHES_PER_UNIT
    per data unit (a layout engine would shrink a wide graph's axis and its labels would no longer fit the
    room the label placement measured for them)."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and in tests
    import matplotlib.pyplot as plt

    # at least as wide as the title (a tall, narrow graph such as a morphism chain would clip it)
    sizes = [(max(w, 0.085 * max(len(line) for line in d.title.split("\n")) + 0.3), h) for d, (w, h) in
             zip(dags, map(dag_size, dags))]  # fmt: skip
    titles = [TITLE_INCHES + (0.2 if d.note else 0.0) for d in dags]
    width = sum(w for w, _ in sizes) + MARGIN_INCHES * (len(dags) + 1)
    height = max(h + t for (_, h), t in zip(sizes, titles)) + MARGIN_INCHES
    fig = plt.figure(figsize=(width, height))
    left = MARGIN_INCHES
    for dag, (w, h), title in zip(dags, sizes, titles, strict=True):
        bottom = (height - title - h) / 2 if len(dags) > 1 else MARGIN_INCHES / 2
        ax = fig.add_axes((left / width, bottom / height, w / width, h / height))
        draw_dag(ax, dag)
        left += w + MARGIN_INCHES
    return fig


@plain_text()
def png_bytes(fig: Any, dpi: int = 90) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    dpi = min(dpi, MAX_PIXELS / max(*fig.get_size_inches(), 1e-3))  # a huge figure: smaller, not an error
    fig.savefig(buffer, format="png", dpi=dpi)  # the figures are laid out already: one draw, no bbox pass
    plt.close(fig)
    return buffer.getvalue()


def draw_pictures(pictures: Sequence[ArchPicture], out: Path) -> Path:
    """A PNG of an architecture's pictures (a space's `pictures` or `arch_pictures`)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with plain_text():
        out.write_bytes(png_bytes(figure_of(list(pictures)), dpi=110))
    return out
