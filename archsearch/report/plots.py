"""The report's charts, each a function of an experiment's data returning a matplotlib figure (or None
when the run has nothing to show for it). The same heatmap goes to TensorBoard every epoch."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

from archsearch.common import readers
from archsearch.common.errors import UserError
from archsearch.report.drawing import plain_text
from archsearch.report.run_data import ReportError, RunData
from archsearch.search.pictures import label

PHASE_COLOURS = {"train": "#2b6cb0", "val": "#dd6b20", "test": "#2f855a"}
MAX_TABLES, MAX_ROWS, MAX_COLUMNS = 16, 400, 200  # larger architecture-weight tables are not drawn (page says so)


def _plt():
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and in tests
    import matplotlib.pyplot as plt

    return plt


def _nan(value: Any) -> float:
    """A checked value (a number or None, see run_data) for plotting: None is a gap."""
    return math.nan if value is None else float(value)


@plain_text()
def learning_curves(run: RunData) -> Any:
    """Loss, top-1 and learning rate per epoch, one row per phase (search, eval) that logged epochs."""
    phases = [(p, run.of(f"{p}_epoch")) for p in ("search", "eval")]
    phases = [(p, rows) for p, rows in phases if rows]
    if not phases:
        return None
    plt = _plt()
    fig, axes = plt.subplots(len(phases), 3, figsize=(12, 3.0 * len(phases)), squeeze=False)
    for (phase, rows), row_axes in zip(phases, axes, strict=True):
        epochs = [r["epoch"] for r in rows]
        for ax, metric in zip(row_axes[:2], ("loss", "top1"), strict=True):
            for split, colour in PHASE_COLOURS.items():
                values = [r.get(f"{split}_{metric}") for r in rows]
                if any(v is not None for v in values):
                    ax.plot(epochs, values, marker="o", ms=3, color=colour, label=split)
            ax.set_title(f"{phase}: {'top-1 accuracy' if metric == 'top1' else metric}")
            ax.set_xlabel("epoch")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        lrs = [r.get("lr") for r in rows]
        row_axes[2].plot(epochs, lrs, marker="o", ms=3, color="#4a5568")
        row_axes[2].set_title(f"{phase}: learning rate")
        row_axes[2].set_xlabel("epoch")
        row_axes[2].grid(alpha=0.3)
    fig.tight_layout()
    return fig


def column_names(run: RunData, key: str, width: int) -> list[str]:
    """The candidate op names of an architecture table's columns: recorded with the weights, else the
    space's known op list of that width, else the column indices."""
    for event in run.of("arch_weights"):
        names = (event.get("columns") or {}).get(key)
        if names and len(names) == width:
            return [label(n) for n in names]
    space = run.space_class  # the space knows its candidate ops
    names = space.op_names(run.search_conf, width) if space is not None else None
    return [label(n) for n in names] if names else [str(i) for i in range(width)]


def heatmap_axes(
    ax: Any, table: Sequence[Sequence[float]], columns: Sequence[str], title: str, labels=True, limits=None
) -> Any:
    """One softmax table as a heatmap: rows are edges, columns candidate ops; returns the image. The colour
    range is the data's own (`limits`, default this table's), so an early search's small differences from
    uniform are visible; the colour bar gives the values."""
    low, high = limits or (min(min(r) for r in table), max(max(r) for r in table))
    image = ax.imshow(table, aspect="auto", cmap="viridis", vmin=low, vmax=max(high, low + 1e-6))
    ax.set_title(title, fontsize=9)
    ax.set_xticks(range(len(columns)))
    ax.set_xticklabels(columns if labels else [""] * len(columns), rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(table)))
    ax.set_yticklabels([f"edge {i}" for i in range(len(table))] if labels else [], fontsize=7)
    return image


@plain_text()
def arch_weight_heatmaps(run: RunData, max_epochs: int = 5) -> Any:
    """The architecture weights (softmax) of every table at up to `max_epochs` epochs, first to last: one row
    of heatmaps per table (DARTS: normal and reduction cell), so the drift of each edge reads left to right."""
    records = run.of("arch_weights")
    if not records:
        return None
    last = records[-1]["softmax"]
    if len(last) > MAX_TABLES or any(len(t) > MAX_ROWS or len(t[0]) > MAX_COLUMNS for t in last.values()):
        return (
            f"{len(last)} tables of up to {max(len(t) for t in last.values())} rows: too large to draw "
            f"(at most {MAX_TABLES} tables of {MAX_ROWS} rows and {MAX_COLUMNS} columns are drawn)"
        )
    shown = min(max_epochs, len(records))  # evenly spread over the search, first and last always
    picks = sorted({round(i * (len(records) - 1) / max(1, shown - 1)) for i in range(shown)})
    keys = list(records[-1]["softmax"])
    plt = _plt()
    rows = max(len(records[-1]["softmax"][k]) for k in keys)
    fig, axes = plt.subplots(
        len(keys),
        len(picks),
        figsize=(2.2 * len(picks) + 1.6, (0.17 * rows + 1.7) * len(keys)),
        squeeze=False,
        layout="constrained",
    )
    for row, key in zip(axes, keys, strict=True):
        width = len(records[-1]["softmax"][key][0])
        columns = column_names(run, key, width)
        shown = [records[p]["softmax"][key] for p in picks]
        limits = (min(min(r) for t in shown for r in t), max(max(r) for t in shown for r in t))
        for i, (ax, pick) in enumerate(zip(row, picks, strict=True)):
            record = records[pick]
            name = {"regular": "normal cell", "reduction": "reduction cell"}.get(key, label(key))
            image = heatmap_axes(ax, record["softmax"][key], columns, f"{name}, epoch {record['epoch']}", limits=limits)
            if i:
                ax.set_yticklabels([])
        fig.colorbar(image, ax=list(row), fraction=0.02, pad=0.01)
    return fig


@plain_text()
def epoch_heatmap(
    weights: Mapping[str, Sequence[Sequence[float]]], names: Mapping[str, Sequence[str]], epoch: int
) -> Any:
    """This epoch's architecture weights, one heatmap per table (TensorBoard's per-epoch image)."""
    plt = _plt()
    keys = list(weights)
    fig, axes = plt.subplots(
        1, len(keys), figsize=(3.2 * len(keys), 0.22 * max(len(weights[k]) for k in keys) + 1.6), squeeze=False
    )
    for ax, key in zip(axes[0], keys, strict=True):
        table = weights[key]
        image = heatmap_axes(
            ax, table, names.get(key) or [str(i) for i in range(len(table[0]))], f"{key}, epoch {epoch}"
        )
        fig.colorbar(image, ax=ax, fraction=0.05, pad=0.02)  # follows the image's limits as they change
    fig.tight_layout()
    return fig


@plain_text()
def param_free_counts(run: RunData) -> tuple[Any, str] | None:
    """Parameter-free ops (skip, pooling, none) in the derived architecture per epoch, and where the counts
    came from: the search's own `collapse` events when it logged them, else counted from the per-epoch
    architecture records (genotype / cell / choices)."""
    plt = _plt()
    collapse = run.of("collapse")
    if collapse:
        epochs = [c["epoch"] for c in collapse]
        counts = [c.get("param_free") for c in collapse]
        totals = [c.get("n_ops") for c in collapse]
        source = "the search's collapse events"
        extra = {
            k: [c.get(k) for c in collapse] for k in ("entropy", "hessian_eigenvalue") if any(k in c for c in collapse)
        }
    else:
        from archsearch.strategies.darts.collapse import arch_op_names, is_param_free

        records = [
            (e["epoch"], e.get("genotype", e.get("cell", e.get("choices"))))
            for e in run.events
            if e.get("event") in ("genotype", "cell", "choices")
        ]
        records = [(ep, arch) for ep, arch in records if arch is not None]
        if not records:
            return None
        candidates = _candidate_names(run)
        epochs = [ep for ep, _ in records]
        names = [arch_op_names(arch, candidates) for _, arch in records]
        counts = [sum(is_param_free(n) for n in ops) for ops in names]
        totals = [len(ops) for ops in names]
        source = "counted from the per-epoch architecture records in log.yaml"
        extra = {}
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.plot(epochs, counts, marker="o", color="#dd6b20", label="parameter-free ops")
    if any(t for t in totals if t):
        ax.plot(epochs, totals, ls="--", color="#a0aec0", label="ops in the architecture")
    ax.set_xlabel("epoch")
    ax.set_ylabel("ops")
    ax.set_ylim(bottom=0)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.set_title("parameter-free ops in the derived architecture")
    for k, (name, values) in enumerate(extra.items()):
        twin = ax.twinx()
        if k:
            twin.spines["right"].set_position(("axes", 1.15))
        twin.plot(epochs, values, color=["#2b6cb0", "#805ad5"][k % 2], marker=".", label=name)
        twin.set_ylabel(name)
        twin.ticklabel_format(axis="y", useOffset=False)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return fig, source


def _candidate_names(run: RunData) -> set[str]:
    from archsearch.model.ops import OPS

    names = set(OPS.names()) if hasattr(OPS, "names") else set()
    primitives = run.search_conf["model_desc"].get("primitives") or []
    from archsearch.spaces.nasbench201 import NB201_OPS

    return names | set(primitives) | set(NB201_OPS)


@plain_text()
def controller_curves(run: RunData) -> Any:
    """ENAS' controller per epoch: mean reward, its moving-average baseline, and the policy's entropy."""
    rows = [r for r in run.of("search_epoch") if "controller_reward" in r]
    if not rows:
        return None
    plt = _plt()
    epochs = [r["epoch"] for r in rows]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 3.2))
    ax.plot(epochs, [_nan(r["controller_reward"]) for r in rows], marker="o", ms=3, color="#2b6cb0", label="reward")
    if rows[0].get("controller_baseline") is not None:
        ax.plot(epochs, [_nan(r.get("controller_baseline")) for r in rows], color="#dd6b20", label="baseline")
    ax.set_title("ENAS controller: reward and baseline")
    ax2.plot(epochs, [_nan(r.get("controller_entropy")) for r in rows], marker="o", ms=3, color="#805ad5")
    ax2.set_title("ENAS controller: policy entropy")
    for a in (ax, ax2):
        a.set_xlabel("epoch")
        a.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def objective_of(trials: Sequence[Mapping[str, Any]]) -> str | None:
    """The metric the trial loop ranks by: the first of the known objectives every finished trial has."""
    for key in ("val_top1", "benchmark_top1", "score"):
        if trials and all(key in (t.get("metrics") or {}) for t in trials):
            return key
    return None


@plain_text()
def trial_scatter(run: RunData) -> Any:
    """Every trial's objective in order, the best so far as a step line; morphism's parent links drawn."""
    objective = objective_of(run.trials)
    if objective is None:
        return None
    plt = _plt()
    index = [t["index"] for t in run.trials]
    values = [_nan(t["metrics"][objective]) for t in run.trials]
    best = [t.get("best_so_far") for t in run.trials]
    fig, ax = plt.subplots(figsize=(7, 3.6))
    by_index = dict(zip(index, values, strict=True))
    for t in run.trials:  # network morphism grows each candidate from a parent: show the lineage
        parent = t.get("father_id")
        if parent is not None and parent in by_index:
            ax.plot([parent, t["index"]], [by_index[parent], by_index[t["index"]]], color="#cbd5e0", lw=0.8, zorder=1)
    ax.scatter(index, values, s=22, color="#2b6cb0", zorder=2, label="trial")
    if all(b is not None for b in best):
        ax.step(index, best, where="post", color="#dd6b20", lw=2, label="best so far", zorder=3)
    ax.set_xlabel("trial")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(objective)
    ax.set_title(f"{label(run.algo)}: {len(values)} trials")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


@plain_text()
def fidelity_curves(run: RunData) -> Any:
    """A multi-fidelity search (nas.search.fidelity): each candidate's objective against the resource it was
    trained to, one line per candidate across its rungs (promoted ones coloured, the best's candidate
    thick); None for a search without rungs."""
    trials = [t for t in run.trials if isinstance(t.get("candidate"), int) and isinstance(t.get("resource"), int)]
    objective = objective_of(trials)
    if not trials or objective is None or len(trials) != len(run.trials):
        return None
    curves: dict[int, list[tuple[int, float]]] = {}
    for t in sorted(trials, key=lambda t: t["index"]):
        curves.setdefault(t["candidate"], []).append((t["resource"], _nan(t["metrics"][objective])))
    best = run.search_metric("best_trial")
    best_candidate = next((t["candidate"] for t in trials if t["index"] == best), None)
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 3.8))
    promoted = 0
    n_lines = max(sum(len(p) > 1 for p in curves.values()), 1)
    for candidate, points in curves.items():
        xs, ys = zip(*points, strict=True)
        if candidate == best_candidate:
            continue
        if len(points) > 1:  # blues and greens: orange is the selected candidate's
            colour = plt.cm.viridis(0.8 * promoted / n_lines)
            ax.plot(xs, ys, marker="o", ms=3, lw=1.2, alpha=0.8, zorder=2, color=colour)
            promoted += 1
        else:
            ax.scatter(xs, ys, s=10, color="#a0aec0", zorder=1)
    if best_candidate is not None and best_candidate in curves:
        xs, ys = zip(*curves[best_candidate], strict=True)
        chosen = f"selected (candidate {best_candidate + 1})"
        ax.plot(xs, ys, marker="o", color="#dd6b20", lw=2.5, zorder=3, label=chosen)
        ax.legend(fontsize=8)
    resources = sorted({t["resource"] for t in trials})
    if resources[0] > 0 and resources[-1] >= 9 * resources[0]:
        ax.set_xscale("log")
    ax.set_xticks(resources)
    ax.set_xticklabels([str(r) for r in resources])
    fidelity = run.search_conf.get("fidelity")
    ax.set_xlabel(str(fidelity.get("resource", "resource")) if isinstance(fidelity, dict) else "resource")
    ax.set_ylabel(objective)
    ax.set_title(f"{label(run.algo)}: {len(curves)} candidates, {promoted + (best_candidate is not None)} promoted")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


@plain_text()
def score_vs_benchmark(run: RunData) -> tuple[Any, int] | None:
    """NASWOT (or another proxy) score of every scored architecture against its benchmark accuracy, when
    the search was given a table (nas.search.benchmark); None without one, (a note saying why, 0) when the
    table cannot be used (a folder from another machine need not have it)."""
    search = run.search_conf
    if not search.get("benchmark") or not (run.path / "search" / "scores.yaml").is_file():
        return None
    scores = run.scores()
    columns = search.get("benchmark_columns") or ["architecture", "accuracy"]
    try:
        table = benchmark_accuracies(search["benchmark"], columns)
    except UserError as e:
        return f"score vs benchmark accuracy not drawn: {e}", 0
    pairs = [(s["score"], table.get(s["arch"])) for s in scores]
    pairs = [(s, a) for s, a in pairs if a is not None and s is not None]
    if not pairs:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    ax.scatter([a for _, a in pairs], [s for s, _ in pairs], s=16, color="#2b6cb0")
    ax.set_xlabel(f"benchmark {label(columns[1])}")
    ax.set_ylabel(f"{label(run.search_metric('proxy') or 'proxy')} score")
    ax.set_title("proxy score vs benchmark accuracy")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig, len(pairs)


def benchmark_accuracies(path: str, columns: Sequence[str]) -> dict[str, float]:
    """The accuracy per architecture of the benchmark table the run's config names: the one file the report
    reads from outside the run folder. It is read through the guarded reader (a regular file, size limit,
    UTF-8) and only numbers matched to the scored architectures reach the page, never the file's text; any
    fault is one ReportError line (the page then says the view was left out)."""
    text = readers.read_text(path, "benchmark table", ReportError)
    key_column, accuracy_column = columns
    reader = csv.DictReader(io.StringIO(text))
    try:
        found = reader.fieldnames or []
        if key_column not in found or accuracy_column not in found:
            raise ReportError(f"benchmark table {path} has no columns {key_column!r} and {accuracy_column!r}")
        accuracies = {}
        for row in reader:
            value = float(row.get(accuracy_column) or "nan")
            if math.isfinite(value):
                accuracies[row.get(key_column)] = value
    except (csv.Error, ValueError):
        raise ReportError(f"benchmark table {path} is not a CSV table of accuracies") from None
    if accuracies and max(accuracies.values()) > 1.0:  # percent, as NAS-Bench-201's tables
        accuracies = {k: v / 100.0 for k, v in accuracies.items()}
    return accuracies


def best_so_far_series(run: RunData) -> tuple[list[float], list[float], str] | None:
    """(search seconds, best accuracy so far, what was measured) of a run: trials' best_so_far against
    their cumulative time, or a one-shot search's best validation top-1 against its epochs' time. None when
    the search does not rank by an accuracy (a proxy score is on another scale)."""
    if run.trials:
        objective = objective_of(run.trials)
        if objective not in ("val_top1", "benchmark_top1"):
            return None
        times, elapsed = [], 0.0
        for t in run.trials:
            elapsed += float(t.get("time_s") or 0.0)
            times.append(elapsed)
        return times, [_nan(t["best_so_far"]) for t in run.trials], objective
    rows = [r for r in run.of("search_epoch") if r.get("val_top1") is not None]
    if not rows:
        return None
    times, best, elapsed, top = [], [], 0.0, float("-inf")
    for r in rows:
        elapsed += float(r.get("epoch_time") or 0.0)
        top = max(top, float(r["val_top1"]))
        times.append(elapsed)
        best.append(top)
    return times, best, "val_top1"


@plain_text()
def comparison_curves(runs: Sequence[RunData]) -> tuple[Any, list[str]]:
    """Best-so-far accuracy of every run against search time on one axis, and the runs left out (no
    accuracy-ranked search)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 4.2))
    left_out = []
    for run in runs:
        series = best_so_far_series(run)
        if series is None:
            left_out.append(run.name)
            continue
        times, best, what = series
        ax.step(times, best, where="post", marker="o", ms=3, label=f"{label(run.name)} ({what})")
    ax.set_xlabel("search time (s)")
    ax.set_ylabel("best accuracy so far")
    ax.set_title("best so far during the search")
    ax.grid(alpha=0.3)
    if len(left_out) < len(runs):
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig, left_out


# ---- a multi-objective search: the Pareto front ----------------------------------------------------

FRONT_COLOUR, TRIAL_COLOUR, INFEASIBLE_COLOUR, SELECTED_COLOUR = "#dd6b20", "#2b6cb0", "#a0aec0", "#c53030"
CONSTRAINT_COLOUR = "#9b2c2c"


def _front_line(points: Sequence[tuple[float, float]], x_goal: str) -> tuple[list[float], list[float], str]:
    """(xs, ys, `where` for ax.step) of the staircase through 2-D non-dominated `points`: its corners lie on
    the side both neighbours dominate, (lower x, worse y) when x is maximised, (higher x, worse y) when it is
    minimised, so the line bounds the region the front dominates."""
    points = sorted(points)
    return [p[0] for p in points], [p[1] for p in points], "pre" if x_goal == "max" else "post"


def _non_dominated(points: Sequence[tuple[float, float]], goals: tuple[str, str]) -> list[tuple[float, float]]:
    """The points no other point beats in both coordinates (goal max or min each)."""
    sign = [1.0 if g == "max" else -1.0 for g in goals]

    def beats(a, b):
        better = [s * (u - v) for s, u, v in zip(sign, a, b, strict=True)]
        return all(d >= 0 for d in better) and any(d > 0 for d in better)

    return [p for p in points if not any(beats(q, p) for q in points)]


def _constraint_lines(ax: Any, pareto: Any, metric: str, axis: str) -> bool:
    """Dashed lines at `metric`'s constraint bounds on `axis` ('x' or 'y'), labelled; True when drawn."""
    bounds = pareto.constraints.get(metric) or {}
    for bound, value in bounds.items():
        line = ax.axvline if axis == "x" else ax.axhline
        sign = "\u2264" if bound == "max" else "\u2265"
        style = "--" if axis == "x" else "-."
        line(value, color=CONSTRAINT_COLOUR, ls=style, lw=1.2, zorder=1, label=f"{label(metric)} {sign} {value:g}")
    return bool(bounds)


def _pareto_axes(ax: Any, run: RunData, x: str, y: str, goals: tuple[str, str], connect: bool) -> None:
    pareto = run.pareto
    front_ids = {m.index for m in pareto.front}

    def point(metrics: Mapping[str, Any]) -> tuple[float, float] | None:
        a, b = metrics.get(x), metrics.get(y)
        return (float(a), float(b)) if a is not None and b is not None else None

    groups: dict[str, list[tuple[float, float]]] = {"feasible": [], "infeasible": []}
    for t in run.trials:
        if t["index"] in front_ids:
            continue
        p = point(t["metrics"])
        if p is not None:
            groups["infeasible" if t.get("feasible") is False else "feasible"].append(p)
    front = [(m, point(m.metrics)) for m in pareto.front]
    front = [(m, p) for m, p in front if p is not None]
    if groups["infeasible"]:
        xs, ys = zip(*groups["infeasible"], strict=True)
        ax.scatter(xs, ys, s=22, marker="x", color=INFEASIBLE_COLOUR, zorder=2, label="infeasible trial")
    if groups["feasible"]:
        xs, ys = zip(*groups["feasible"], strict=True)
        ax.scatter(xs, ys, s=18, color=TRIAL_COLOUR, alpha=0.7, zorder=2, label="feasible trial")
    if front:
        xs, ys = zip(*(p for _, p in front), strict=True)
        ax.scatter(xs, ys, s=48, color=FRONT_COLOUR, edgecolor="#7b341e", zorder=4, label="Pareto front")
        if connect:
            # the step between two members runs through the corner both dominate
            lx, ly, where = _front_line(_non_dominated([p for _, p in front], goals), goals[0])
            ax.step(lx, ly, where=where, color=FRONT_COLOUR, lw=1.6, zorder=3)
    chosen = pareto.member(pareto.selected)
    if chosen is not None and point(chosen.metrics) is not None:
        cx, cy = point(chosen.metrics)
        ax.scatter([cx], [cy], s=240, marker="o", facecolors="none", edgecolors=SELECTED_COLOUR, linewidths=2,
                   zorder=5, label=f"selected: trial {chosen.index} ({label(pareto.rule)})")  # fmt: skip
    _constraint_lines(ax, pareto, x, "x")
    _constraint_lines(ax, pareto, y, "y")
    arrow = {"max": "\u2191 better", "min": "\u2193 better"}
    ax.set_xlabel(f"{label(x)} ({goals[0]})")
    ax.set_ylabel(f"{label(y)} ({arrow[goals[1]]})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)


@plain_text()
def pareto_scatter(run: RunData) -> Any:
    """Every trial in objective space: the front highlighted (and, for two objectives, joined by its
    staircase), infeasible trials greyed, each constraint on a plotted metric a dashed line, the selected
    member ringed. Three or more objectives: the first against each other one, side by side. None without a
    search/pareto.yaml or with a single objective."""
    pareto = run.pareto
    if pareto is None or len(pareto.objectives) < 2:
        return None
    (first, goal), others = pareto.objectives[0], pareto.objectives[1:]
    plt = _plt()
    shown = others[:6]  # at most six panels; the page's front table has every metric
    fig, axes = plt.subplots(1, len(shown), figsize=(8.4 * len(shown), 4.6), squeeze=False)
    for ax, (metric, other) in zip(axes[0], shown, strict=True):
        _pareto_axes(ax, run, first, metric, (goal, other), connect=len(pareto.objectives) == 2)
        ax.set_title(f"{label(first)} against {label(metric)}", fontsize=10)
    fig.tight_layout()
    return fig


@plain_text()
def hypervolume_curve(run: RunData) -> Any:
    """The hypervolume of the feasible front against trials finished: pareto.yaml's `hypervolume_curve` (one
    fixed reference point, never decreasing), else each trial's own `hypervolume` (files written before it);
    None without either."""
    if run.pareto is None:
        return None
    selected = run.pareto.selected
    if run.pareto.hypervolume_curve:
        xs, ys = zip(*run.pareto.hypervolume_curve)
        order = [t.get("index") for t in run.trials]
        at = order.index(selected) + 1 if selected in order else None  # when the selected trial finished
    else:
        rows = [t for t in run.trials if t.get("hypervolume") is not None]
        if not rows:
            return None
        xs, ys = [t["index"] for t in rows], [t["hypervolume"] for t in rows]
        at = selected
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    ax.plot(xs, ys, marker="o", ms=3, color=FRONT_COLOUR)
    if at is not None:
        ax.axvline(at, color=SELECTED_COLOUR, ls=":", lw=1.2, label=f"selected: trial {selected}")
        ax.legend(fontsize=8)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trials finished" if run.pareto.hypervolume_curve else "trial")
    ax.set_ylabel("hypervolume")
    ax.set_title("hypervolume of the feasible front after each trial", fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def cost_events(run: RunData) -> list[dict[str, Any]]:
    """The DARTS family's per-epoch `cost` records (expected cost, the derived architecture's cost), else the
    same numbers from the search epochs' metrics (`expected_cost`, `arch_cost`), as cost records."""
    events = run.of("cost")
    if events:
        return events
    rows = [r for r in run.of("search_epoch") if r.get("expected_cost") is not None or r.get("arch_cost") is not None]
    return [{"epoch": r["epoch"], "expected": r.get("expected_cost"), "arch": r.get("arch_cost")} for r in rows]


@plain_text()
def cost_curves(run: RunData) -> Any:
    """The expected cost under the architecture weights and the derived architecture's predicted cost per
    epoch (hardware-aware search: nas.search.trainer.cost); None when the search logged no cost."""
    events = cost_events(run)
    if not events:
        return None
    unit = next((e.get("unit") for e in events if e.get("unit")), "")
    source = next((e.get("source") for e in events if e.get("source")), "")
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    epochs = [e["epoch"] for e in events]
    ax.plot(epochs, [_nan(e.get("expected")) for e in events], marker="o", ms=3, color=TRIAL_COLOUR,
            label="expected cost (softmax of the architecture weights)")  # fmt: skip
    if any(e.get("arch") is not None for e in events):
        ax.plot(epochs, [_nan(e.get("arch")) for e in events], marker="s", ms=3, color=FRONT_COLOUR,
                label="derived architecture")  # fmt: skip
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.ticklabel_format(axis="y", useOffset=False)
    ax.set_xlabel("epoch")
    ax.set_ylabel(label(unit) or "cost")
    ax.set_title(f"predicted cost per epoch{f' ({label(source)})' if source else ''}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def front_groups(runs: Sequence[RunData]) -> tuple[dict[tuple[tuple[str, str], ...], list[RunData]], list[str]]:
    """The runs with a front, grouped by their first two objectives (metric and goal), and the names of
    those without one (a single-objective search, a one-shot search)."""
    groups: dict[tuple[tuple[str, str], ...], list[RunData]] = {}
    left_out = []
    for run in runs:
        if run.pareto is None or len(run.pareto.objectives) < 2:
            left_out.append(run.name)
            continue
        groups.setdefault(tuple(run.pareto.objectives[:2]), []).append(run)
    return groups, left_out


@plain_text()
def comparison_fronts(objectives: Sequence[tuple[str, str]], runs: Sequence[RunData]) -> Any:
    """The fronts of `runs` (which share their first two objectives) on one axis, each a staircase in its own
    colour, with each run's selected member ringed."""
    (x, gx), (y, gy) = objectives
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 4.6))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, run in enumerate(runs):
        colour = colours[i % len(colours)]
        points = [(m, m.metrics.get(x), m.metrics.get(y)) for m in run.pareto.front]
        points = [(m, float(a), float(b)) for m, a, b in points if a is not None and b is not None]
        if not points:
            continue
        ax.scatter([p[1] for p in points], [p[2] for p in points], s=30, color=colour, zorder=3,
                   label=f"{label(run.name)} ({len(points)} on the front)")  # fmt: skip
        lx, ly, where = _front_line(_non_dominated([(a, b) for _, a, b in points], (gx, gy)), gx)
        ax.step(lx, ly, where=where, color=colour, lw=1.4, zorder=2)
        chosen = run.pareto.member(run.pareto.selected)
        for m, a, b in points:
            if m is chosen:
                ax.scatter([a], [b], s=200, marker="o", facecolors="none", edgecolors=colour, linewidths=2, zorder=4)
    arrow = {"max": "\u2191 better", "min": "\u2193 better"}
    ax.set_xlabel(f"{label(x)} ({gx})")
    ax.set_ylabel(f"{label(y)} ({arrow[gy]})")
    ax.set_title(f"Pareto fronts: {label(x)} against {label(y)} (ringed: the selected member)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
