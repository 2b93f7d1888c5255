"""How well a proxy ranks architectures: compare scores with a benchmark table of trained accuracies.

The table is archsearch.search.benchmark_table's (accuracies as fractions). The report gives Kendall's tau and
Spearman's rho between score and accuracy over the sampled candidates found in the table, where the
chosen (highest-scoring) candidate ranks among them by accuracy, and a score-vs-accuracy scatter plot.
Without a table the report holds the scores and the chosen candidate only.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy import stats

from archsearch.common.errors import UserError
from archsearch.common.io import atomic_write_bytes
from archsearch.search.benchmark_table import BenchmarkTable


@dataclass
class CorrelationReport:
    n_candidates: int
    chosen: str  # name of the highest-scoring candidate
    chosen_score: float
    n_matched: int = 0  # candidates found in the table with a non-NaN score
    kendall_tau: float | None = None
    spearman_rho: float | None = None
    chosen_accuracy: float | None = None
    chosen_rank: int | None = None  # 1 = the most accurate of the matched candidates
    best_accuracy: float | None = None  # the most accurate matched candidate's accuracy
    plot_path: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        """One line for the log."""
        text = f"chose {self.chosen} (score {self.chosen_score:.4g}) of {self.n_candidates}"
        if self.chosen_accuracy is not None:
            text += (
                f"; accuracy {self.chosen_accuracy:.2%} (rank {self.chosen_rank} of {self.n_matched}, "
                f"best {self.best_accuracy:.2%})"
            )
        if self.kendall_tau is not None:
            text += f"; kendall tau {self.kendall_tau:.3f}, spearman rho {self.spearman_rho:.3f}"
        return text


def correlation_report(
    names: Sequence[str],
    scores: Sequence[float],
    table: BenchmarkTable | None = None,
    plot_path: str | Path | None = None,
    title: str = "",
) -> CorrelationReport:
    """Rank correlation of scores with the table's accuracies; the chosen one is the top score.

    NaN scores are left out (the proxy failed on that network); -inf scores (a singular NASWOT kernel)
    stay in, ranked last, as the search would rank them.
    """
    if len(names) != len(scores):
        raise ValueError(f"{len(names)} names but {len(scores)} scores")
    values = np.asarray(scores, dtype=float)
    if not len(values) or np.isnan(values).all():
        raise UserError("no candidate has a score to report: every proxy value was NaN (or nothing was sampled)")
    chosen = int(np.nanargmax(values))
    report = CorrelationReport(len(names), names[chosen], float(values[chosen]))
    if table is None:
        return report
    matched = [(float(s), table.get(n), i) for i, (n, s) in enumerate(zip(names, values)) if not math.isnan(s)]
    matched = [(s, a, i) for s, a, i in matched if a is not None]
    if not matched:
        raise UserError(
            f"none of the {len(names)} candidates is in benchmark table {table.path} "
            f"(column {table.key_column!r}); check nas.search.benchmark_columns and that the table is for this space"
        )
    m_scores = np.array([s for s, _, _ in matched])
    m_accs = np.array([a for _, a, _ in matched])
    report.n_matched = len(matched)
    report.best_accuracy = float(m_accs.max())
    if len(matched) >= 2:
        report.kendall_tau = float(stats.kendalltau(m_scores, m_accs).statistic)
        report.spearman_rho = float(stats.spearmanr(m_scores, m_accs).statistic)
    chosen_acc = table.get(names[chosen])
    if chosen_acc is not None:
        report.chosen_accuracy = chosen_acc
        report.chosen_rank = 1 + int((m_accs > chosen_acc).sum())
    if plot_path is not None:
        report.plot_path = str(
            save_scatter(m_scores, m_accs, plot_path, title=title, chosen=(report.chosen_score, chosen_acc))
        )
    return report


def save_scatter(
    scores: Sequence[float],
    accuracies: Sequence[float],
    path: str | Path,
    title: str = "",
    chosen: tuple[float, float | None] | None = None,
) -> Path:
    """Score vs accuracy as a PNG. Uses the Agg canvas directly: no pyplot, no global backend switch."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    scores_arr = np.asarray(scores, dtype=float)
    accs_arr = np.asarray(accuracies, dtype=float)
    finite = np.isfinite(scores_arr)
    fig = Figure(figsize=(5, 4), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.scatter(scores_arr[finite], accs_arr[finite], s=12, alpha=0.7, label="sampled")
    if chosen is not None and chosen[1] is not None and math.isfinite(chosen[0]):
        ax.scatter([chosen[0]], [chosen[1]], s=60, marker="*", color="tab:red", label="chosen")
    ax.set_xlabel("score")
    ax.set_ylabel("accuracy")
    n_left_out = int((~finite).sum())
    note = f"\n{n_left_out} with a non-finite score not shown" if n_left_out else ""
    ax.set_title((title + note).strip(), fontsize=8)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return atomic_write_bytes(path, buffer.getvalue())


__all__ = [
    "CorrelationReport",
    "correlation_report",
    "save_scatter",
]
