"""TensorBoard images of a differentiable search, once per epoch: the architecture-weight heatmap (the same
chart as the report's) and the cell the weights derive now (the same drawing as `archsearch show`).

Called from ArchTrainer.post_epoch. Kept cheap: small figures at a low resolution; the heatmap figure is
built once and only its data and titles change each epoch (building it is most of its cost), and the cell
picture is drawn again only when the derived architecture changed (late in a search it rarely does).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

DPI = 80  # small but readable in TensorBoard; most of a figure's cost is laying out its text, not pixels


def tb_writer(log: Any) -> Any:
    """The run's SummaryWriter (None where this process writes no files, or the log has no TensorBoard)."""
    return log.tb_writer() if hasattr(log, "tb_writer") else None


def derived_arch_dags(model: Any) -> list[Any]:
    """The pictures of the architecture the supernet's weights pick now, as its space draws them (a DARTS
    genotype's cells, an NB201 cell); none for a supernet whose space has no picture (a user model's)."""
    return model.pictures() if hasattr(model, "pictures") else []


def log_epoch_images(
    log: Any,
    model: Any,
    weights: Mapping[str, Sequence[Sequence[float]]],
    names: Mapping[str, Sequence[str]],
    epoch: int,
    cache: dict[str, Any],
) -> None:
    """Add this epoch's heatmap and (when it changed) cell picture to TensorBoard at step `epoch`.
    `cache` is the caller's dict, remembering the last architecture drawn."""
    writer = tb_writer(log)
    if writer is None:
        return
    from archsearch.report import drawing

    with drawing.plain_text():  # names are drawn as written, never as math text (tick labels are made here)
        writer.add_figure("arch/weights", _heatmap(cache, weights, names, epoch), epoch, close=False)
    view = model.log_view() if hasattr(model, "log_view") else {}
    arch = str(next(iter(view.values()), ""))
    if arch and arch != cache.get("arch"):
        dags = derived_arch_dags(model)
        if dags:
            fig = drawing.figure_of(dags)
            fig.set_dpi(DPI)
            with drawing.plain_text():
                writer.add_figure("arch/cell", fig, epoch, close=True)
        cache["arch"] = arch
    writer.flush()


def _heatmap(cache: dict[str, Any], weights: Mapping[str, Sequence[Sequence[float]]], names, epoch: int) -> Any:
    """The heatmap figure of this epoch: the cached one with new data when the tables kept their shapes."""
    from archsearch.report import plots

    shapes = {key: (len(table), len(table[0])) for key, table in weights.items()}
    cached = cache.get("heatmap")
    if cached is None or cached[0] != shapes:
        fig = plots.epoch_heatmap(weights, names, epoch)
        fig.set_dpi(DPI)
        cache["heatmap"] = (shapes, fig)
        return fig
    fig = cached[1]
    for ax, (key, table) in zip([a for a in fig.axes if a.images], weights.items(), strict=True):
        low, high = min(min(r) for r in table), max(max(r) for r in table)
        ax.images[0].set_data(table)
        ax.images[0].set_clim(low, max(high, low + 1e-6))
        ax.set_title(f"{key}, epoch {epoch}", fontsize=9)
    return fig
