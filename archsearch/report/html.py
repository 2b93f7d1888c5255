"""`archsearch report EXPDIR [EXPDIR ...]`: a self-contained report.html per experiment and, for several,
one comparison page.

A page is rendered from a jinja2 template (archsearch/report/templates/) with every picture inline as a
data: URI, so the file opens from file:// on any machine, offline, and can be mailed as it is. What a page
shows follows what the folder holds, not the algorithm's name: architecture weights in log.yaml mean a
differentiable search (DARTS, PC-DARTS, GDAS, ...), controller metrics mean ENAS, search/trials.yaml means a
trial strategy (random, REA, morphism, NASWOT).
"""

from __future__ import annotations

import base64
import os
import sys
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from archsearch.common.errors import UserError
from archsearch.common.io import atomic_write_text
from archsearch.report import drawing, plots
from archsearch.report.run_data import ReportError, RunData, clip, experiment_folders, load_run

REPORT_NAME = "report.html"
COMPARISON_NAME = "comparison.html"


@dataclass
class Figure:
    title: str
    uri: str  # data:image/png;base64,...
    caption: str = ""


@dataclass
class Section:
    title: str
    figures: list[Figure] = field(default_factory=list)
    table: list[tuple[str, str]] | None = None  # (name, value) rows, e.g. a user model's choices
    text: str = ""
    front: list[dict[str, Any]] | None = None  # a Pareto front's rows (front_rows), drawn as its own table
    front_metrics: list[str] = field(default_factory=list)  # the front table's metric columns


def data_uri(png: bytes) -> str:
    """The one kind of URL a page embeds besides its links: a PNG inline (base64 holds no quote or '<')."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def relative_link(target: Path, page: Path) -> str | None:
    """The href from the page `page` to the file `target`: a relative path inside the page's folder, each
    segment percent-quoted (a folder named `javascript:x` becomes `javascript%3Ax`, which no browser reads
    as a scheme; `//`, `?`, `#` and quotes are quoted too). None when `target` is not inside that folder:
    a page links only into its own folder."""
    base = page.parent.resolve()
    target = target.resolve()
    if not target.is_relative_to(base) or target == base:
        return None
    return "/".join(urllib.parse.quote(part, safe="") for part in target.relative_to(base).parts)


def _figure(title: str, fig: Any, caption: str = "") -> Figure | None:
    return None if fig is None else Figure(title, data_uri(drawing.png_bytes(fig)), caption)


# ---- the summary table ---------------------------------------------------------------------------


def _pct(value: Any) -> str:
    return f"{float(value) * 100:.2f}%" if isinstance(value, (int, float)) else "-"


def _seconds(value: Any) -> str:
    return f"{float(value):.1f} s" if isinstance(value, (int, float)) else "-"


def measure_latency(run: RunData, model: str | None = None, runs: int = 7, warmup: int = 2) -> str:
    """Median forward time of eval/model.pt at batch 1 on the CPU, measured now (the run's own machine
    may be gone; the report says where it measured). A user model's file is loaded only with its class
    named (`model`, as for load_model); a file that cannot be loaded says why in the table instead."""
    import torch

    from archsearch.plugins import load_model
    from archsearch.report.export import input_shape_of
    from archsearch.report.show import _latency_ms

    path = run.model_path
    if path is None:
        return "- (no eval/model.pt)"
    try:
        net = load_model(path, model=model).eval()
    except UserError as e:  # e.g. a user model whose class was not named: the rest of the report still holds
        return f"- (not measured: {e})"
    example = torch.randn(1, *input_shape_of(path))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # batch 1 is latency-bound: one thread, and no fight with whatever else runs
    try:
        ms = _latency_ms(net, example, runs, warmup)
    finally:
        torch.set_num_threads(threads)
    return f"{ms:.2f} ms (batch 1, CPU, 1 thread, median of {runs}; measured when the report was written)"


def summary_rows(run: RunData, latency: str) -> list[tuple[str, str]]:
    bench = run.search_metric("benchmark_top1")
    rows = [
        ("algorithm", run.algo),
        ("search space", run.space),
        ("dataset", run.dataset),
        ("test top-1", _pct(run.eval_metric("test_top1"))),
        ("parameters", f"{run.eval_metric('params'):,}" if run.eval_metric("params") is not None else "-"),
        ("MACs per image", f"{run.eval_metric('macs') / 1e6:.2f}M" if run.eval_metric("macs") is not None else "-"),
        ("latency", latency),
        ("search time", _seconds(run.search_metric("search_time_s"))),
        ("eval time", _seconds(run.eval_metric("train_time_s"))),
        ("seed", str(run.seed)),
        ("command line", run.command or "-"),
    ]
    for key, label in (("best_val_top1", "best search val top-1"), ("val_top1", "search val top-1")):
        if run.search_metric(key) is not None:
            rows.insert(4, (label, _pct(run.search_metric(key))))
            break
    rows[4:4] = pareto_rows(run) + cost_rows(run)
    if bench is not None:
        best = run.search_metric("benchmark_best_top1")
        rows.insert(
            4,
            (
                "benchmark accuracy of the found architecture",
                _pct(bench) + (f" (table best {_pct(best)})" if best is not None else ""),
            ),
        )
    return rows


def _value(value: Any) -> str:
    """A metric as shown: up to six significant digits, '-' when not recorded."""
    return f"{value:.6g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "-"


def _metrics_text(metrics: dict[str, Any], order: list[str]) -> str:
    names = [m for m in order if m in metrics] + sorted(m for m in metrics if m not in order)
    return ", ".join(f"{clip(m)} {_value(metrics[m])}" for m in names)


def pareto_rows(run: RunData) -> list[tuple[str, str]]:
    """A multi-objective search's summary: objectives, constraints, the front, what was refused, the pick."""
    pareto = run.pareto
    if pareto is None:
        return []
    sign = {"max": "\u2264", "min": "\u2265"}
    constraints = [f"{clip(m)} {sign[b]} {v:g}" for m, bounds in pareto.constraints.items() for b, v in bounds.items()]
    infeasible = sum(1 for t in run.trials if t.get("feasible") is False)
    rows = [
        ("objectives", ", ".join(f"{clip(m)} ({g})" for m, g in pareto.objectives)),
        ("constraints", ", ".join(constraints) or "none"),
        ("Pareto front", f"{len(pareto.front)} feasible trials, hypervolume {_value(pareto.hypervolume)}"),
        ("infeasible trials", f"{infeasible} of {len(run.trials)}"),
        ("rejected proposals", f"{pareto.rejected} (refused by a cheap constraint before evaluation)"),
    ]
    chosen = pareto.member(pareto.selected)
    if chosen is not None:
        rows.append(
            ("selected from the front", f"trial {chosen.index} (rule {clip(pareto.rule)}): "
             + _metrics_text(chosen.metrics, pareto.metrics))
        )  # fmt: skip
    return rows


def cost_rows(run: RunData) -> list[tuple[str, str]]:
    """The DARTS family's cost term (nas.search.trainer.cost): the derived architecture's predicted cost and
    the expected cost under the architecture weights at the search's end, in the unit its source gives."""
    events = plots.cost_events(run)
    last = events[-1] if events else {}
    arch = run.search_metric("arch_cost") if run.search_metric("arch_cost") is not None else last.get("arch")
    expected = run.search_metric("expected_cost")
    expected = expected if expected is not None else last.get("expected")
    if arch is None and expected is None:
        return []
    unit = next((e["unit"] for e in reversed(events) if e.get("unit")), "")
    source = next((e["source"] for e in reversed(events) if e.get("source")), "")
    how = f" {clip(unit)}" if unit else ""
    how += f" (cost source {clip(source)})" if source else ""
    return [
        ("predicted cost of the derived architecture", f"{_value(arch)}{how}"),
        ("expected cost under the architecture weights", f"{_value(expected)}{how}"),
    ]


# ---- the architecture ----------------------------------------------------------------------------


def architecture_section(run: RunData) -> Section:
    arch = run.final_arch()
    path = run.final_arch_path
    section = Section("Final architecture")
    if arch is None:
        section.text = "The run wrote no final architecture file."
        return section
    section.text = f"from {path.relative_to(run.path.resolve())}"  # run_data keeps it inside the folder
    space = run.space_class  # the space draws its own architectures
    if space is None:
        section.text += f" (search space {run.space!r} is not registered here: not drawn)"
        return section
    raw = {k: v for k, v in arch.items() if k not in ("desc", "macro")}  # the file's content, checked on reading
    if run.arch_kind == "choices":  # a user model: its choices, one per mutable
        section.table = space.arch_table(raw)
        section.text += f" (user model {arch.get('model') or ''})"
        return section
    dags = space.pictures(raw)
    if run.arch_kind == "desc":
        genotype = arch["desc"].meta.get("genotype") or arch["desc"].meta.get("arch")
        if genotype:
            section.text += f": {genotype}"
    if not dags:
        return section
    too_big = [d for d in dags if len(d.nodes) > drawing.MAX_NODES or len(d.edges) > drawing.MAX_EDGES]
    if too_big:
        section.text += (
            f" ({len(too_big[0].nodes)} nodes, {len(too_big[0].edges)} edges: too large to draw; "
            f"at most {drawing.MAX_NODES} nodes and {drawing.MAX_EDGES} edges are drawn)"
        )
        return section
    title = "morphism network" if run.arch_kind == "morphism" else None
    section.figures.append(
        Figure(
            title or ("the cells the search found" if len(dags) > 1 else dags[0].title),
            data_uri(drawing.png_bytes(drawing.figure_of(dags))),
        )
    )
    return section


# ---- per-algorithm views -------------------------------------------------------------------------


def search_sections(run: RunData, page: Path | None = None) -> list[Section]:
    sections = []
    if run.differentiable:
        section = Section("Architecture weights")
        heatmaps = plots.arch_weight_heatmaps(run)
        if isinstance(heatmaps, str):  # too large to draw: the page says so
            section.text = heatmaps
        else:
            section.figures.append(
                _figure(
                    "softmax of the architecture weights per edge, first to last epoch",
                    heatmaps,
                    "rows: edges of the cell (in node order); columns: candidate ops",
                )
            )
        counted = plots.param_free_counts(run)
        if counted is not None:
            fig, source = counted
            section.figures.append(
                _figure(
                    "parameter-free ops per epoch",
                    fig,
                    f"{source}; a rising count is DARTS' collapse onto skip connections and pooling",
                )
            )
        sections.append(section)
    controller = plots.controller_curves(run)
    if controller is not None:
        sections.append(Section("ENAS controller", [_figure("reward, baseline and entropy per epoch", controller)]))
    if run.trials:
        section = Section("Trials")
        scatter = plots.trial_scatter(run)
        if scatter is not None:
            section.figures.append(_figure(f"{len(run.trials)} trials and the best so far", scatter))
        curves = plots.fidelity_curves(run)
        if curves is not None:
            caption = ("each candidate's objective after each rung (search/trials.yaml: candidate, rung, resource); "
                       "grey dots: candidates never promoted; orange: the selected one")  # fmt: skip
            section.figures.append(_figure("each candidate across rungs", curves, caption))
        versus = plots.score_vs_benchmark(run)
        if versus is not None:
            fig, n = versus
            if isinstance(fig, str):  # the table could not be used: the view is left out, the page says why
                section.text = fig
            else:
                tau, rho = run.search_metric("kendall_tau"), run.search_metric("spearman_rho")
                ranks = f"Kendall tau {tau:.3f}, Spearman rho {rho:.3f}" if tau is not None and rho is not None else ""
                title = f"score vs benchmark accuracy ({n} architectures in the table)"
                section.figures.append(_figure(title, fig, ranks))
        sections.append(section)
    sections += pareto_sections(run, page)
    return [s for s in sections if s.figures or s.table or s.text or s.front]


def front_rows(run: RunData, page: Path) -> list[dict[str, Any]]:
    """The front table's rows: index, architecture, each objective's value, the member's architecture file
    as a link relative to `page` (None: no file, or the page lies outside the run folder; `file` then names it)."""
    pareto = run.pareto
    rows = []
    for member in pareto.front:
        path = member.arch_file
        rows.append(
            {
                "index": member.index,
                "arch": member.arch,
                "values": [_value(member.metrics.get(m)) for m in pareto.metrics],
                "others": _metrics_text({k: v for k, v in member.metrics.items() if k not in pareto.metrics}, []),
                "link": relative_link(path, page) if path is not None else None,
                "file": str(path.relative_to(run.path.resolve())) if path is not None else "-",
                "selected": member.index == pareto.selected,
            }
        )
    return rows


def pareto_sections(run: RunData, page: Path | None = None) -> list[Section]:
    """A multi-objective search's "Pareto front": the front table, every trial in objective space, the
    hypervolume after each trial; and a hardware-aware one-shot search's "Predicted cost" per epoch."""
    sections = []
    pareto = run.pareto
    if pareto is not None:
        section = Section("Pareto front")
        section.front = front_rows(run, page or run.path / REPORT_NAME)
        section.front_metrics = [clip(m) for m in pareto.metrics]
        section.text = (
            f"{len(pareto.front)} feasible trials no other feasible trial beats in every objective "
            f"(search/pareto.yaml); the selected one is marked"
        )
        scatter = plots.pareto_scatter(run)
        if scatter is not None:
            caption = (
                "orange: the front; blue: other feasible trials; grey crosses: infeasible trials; dashed lines: "
                "constraints; red ring: the selected member"
            )
            if len(pareto.objectives) > 2:
                caption += "; three or more objectives: the first against each other one, the front not joined"
            section.figures.append(_figure("every trial in objective space", scatter, caption))
        hv = plots.hypervolume_curve(run)
        if hv is not None:
            section.figures.append(
                _figure(
                    "hypervolume against trials",
                    hv,
                    (
                        "against the final reference point "
                        if pareto.hypervolume_curve
                        else "each against the reference point of the trials up to it (search/trials.yaml); "
                    )
                    + f"the final front's is {_value(pareto.hypervolume)}",
                )
            )
        sections.append(section)
    cost = plots.cost_curves(run)
    if cost is not None:
        sections.append(
            Section(
                "Predicted cost",
                [
                    _figure(
                        "expected cost and the derived architecture's cost per epoch",
                        cost,
                        "nas.search.trainer.cost: the expected cost weighs every candidate op by its softmax",
                    )
                ],
            )
        )
    return sections


# ---- pages ---------------------------------------------------------------------------------------


def _environment():
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("archsearch.report", "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,  # a template naming a missing value is a bug, not an empty cell
    )


def run_sections(run: RunData, page: Path | None = None) -> list[Section]:
    """What a run's page (`page`, default EXPDIR/report.html) shows below its summary: the architecture, the
    curves, its algorithm's views."""
    sections = [architecture_section(run)]
    curves = plots.learning_curves(run)
    if curves is not None:
        sections.append(Section("Learning curves", [_figure("loss, top-1 and learning rate per epoch", curves)]))
    sections += search_sections(run, page)
    for section in sections:
        section.figures = [f for f in section.figures if f is not None]
    return sections


def _latency_text(run: RunData, latency: bool, model: str | None) -> str:
    return measure_latency(run, model) if latency else "- (not measured)"


def _write_page(template: str, out: Path, title: str, **values: Any) -> Path:
    html = (
        _environment().get_template(template).render(title=title, generated=time.strftime("%Y-%m-%d %H:%M"), **values)
    )
    try:
        atomic_write_text(out, html)
    except OSError as e:  # a read-only folder, a full disk, report.html that is a folder
        raise ReportError(f"cannot write {out}: {e.strerror or e}") from None
    return out


def _write_run_page(run: RunData, out: Path, latency_text: str) -> tuple[Path, list[tuple[str, str]]]:
    rows = summary_rows(run, latency_text)
    with drawing.plain_text():
        sections = run_sections(run, out)
    page = _write_page("report.html", out, f"{run.algo} on {run.dataset}", run=run, rows=rows, sections=sections)
    return page, rows


def write_report(path: Path, out: Path | None = None, *, latency: bool = True, model: str | None = None) -> Path:
    """Write the report of one experiment folder (default: EXPDIR/report.html); returns its path. `model`
    names a user model's class for timing its eval/model.pt (imported only when named, as load_model)."""
    run = load_run(path)
    return _write_run_page(run, Path(out) if out else run.path / REPORT_NAME, _latency_text(run, latency, model))[0]


def write_comparison(
    paths: list[Path], out: Path | None = None, *, latency: bool = True, model: str | None = None
) -> Path:
    """Write a comparison page of several experiments (summary tables side by side, best-so-far curves on
    one axis); each experiment also gets its own report.html, linked from the page."""
    runs = [load_run(p) for p in paths]
    out = Path(out) if out else Path(os.path.commonpath([str(r.path.resolve()) for r in runs])) / COMPARISON_NAME
    columns = []
    for run in runs:
        report, rows = _write_run_page(run, run.path / REPORT_NAME, _latency_text(run, latency, model))
        # a run's page outside the comparison's folder (--out elsewhere) is named, not linked
        columns.append({"run": run, "rows": rows, "link": relative_link(report, out), "page": str(report)})
    with drawing.plain_text():
        fig, left_out = plots.comparison_curves(runs)
        curves = Figure("best accuracy so far against search time", data_uri(drawing.png_bytes(fig)))
        groups, no_front = plots.front_groups(runs)
        fronts = [
            Figure(
                f"Pareto fronts of {len(group)} runs: " + " against ".join(f"{clip(m)} ({g})" for m, g in objectives),
                data_uri(drawing.png_bytes(plots.comparison_fronts(objectives, group))),
                ", ".join(r.name for r in group),
            )
            for objectives, group in groups.items()
        ]
    return _write_page(
        "comparison.html",
        out,
        f"comparison of {len(runs)} runs",
        columns=columns,
        values={label: [dict(c["rows"]).get(label, "-") for c in columns] for label in _all_labels(columns)},
        curves=curves,
        left_out=left_out,
        fronts=fronts,
        no_front=no_front if fronts else [],
    )


def _all_labels(columns: list[dict]) -> list[str]:
    labels: list[str] = []
    for column in columns:
        for label, _ in column["rows"]:
            if label not in labels:
                labels.append(label)
    return labels


def report_after_run(out_dir: Path, log: Any, *, latency: bool = True) -> Path | None:
    """The end-of-run report: the run's results are already written, so a failure here is a warning line
    with its reason (a bug in the report must still be seen), never a failed run."""
    try:
        # the run itself just imported the user model its config names: timing it imports nothing new
        space = load_run(out_dir).search_conf.get("space")
        model = space.get("model") if isinstance(space, dict) else None
        path = write_report(out_dir, latency=latency, model=model)
    except Exception as e:  # noqa: BLE001 - any failure of the report must leave the finished run alone
        log.warning(
            f"the HTML report could not be written: {type(e).__name__}: {e} (rerun `archsearch report {out_dir}`)"
        )
        return None
    log.info(f"report: {path}")
    return path


# ---- the CLI -------------------------------------------------------------------------------------


@click.command(name="report", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("expdirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Where to write (default: EXPDIR/report.html; several: comparison.html in their common folder).",
)
@click.option("--no-latency", is_flag=True, help="Do not time eval/model.pt (faster).")
@click.option("--model", default=None, help="A user model's class (package.module:Class), to time its model.pt.")
def _report_cli(expdirs: tuple[Path, ...], out: Path | None, no_latency: bool, model: str | None) -> None:
    """A self-contained HTML report of each experiment folder EXPDIR; for several, a comparison page."""
    folders = experiment_folders(list(expdirs))
    if len(folders) == 1:
        click.echo(str(write_report(folders[0], out, latency=not no_latency, model=model)))
    else:
        click.echo(str(write_comparison(folders, out, latency=not no_latency, model=model)))


def report_main(argv: list[str]) -> int:
    """`archsearch report EXPDIR [EXPDIR ...]`."""
    from archsearch.report.export import run_click

    if not os.environ.get("MPLBACKEND"):
        os.environ["MPLBACKEND"] = "Agg"
    return run_click(_report_cli, argv)


if __name__ == "__main__":
    sys.exit(report_main(sys.argv[1:]))
