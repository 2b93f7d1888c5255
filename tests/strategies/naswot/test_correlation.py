import csv
import math

import numpy as np
import pytest

from archsearch.common.errors import UserError
from archsearch.search.benchmark_table import load_benchmark_table
from archsearch.strategies.naswot.correlation import correlation_report, save_scatter

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def write_table(path, rows, columns=("arch", "acc")):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["uid", *columns])
        for i, row in enumerate(rows):
            writer.writerow([i, *row])
    return path


@pytest.fixture
def synthetic(tmp_path):
    """40 architectures whose accuracy is a strictly increasing function of a known score."""
    rng = np.random.default_rng(0)
    scores = rng.normal(size=40) * 50 + 1500
    names = [f"cell-{i}" for i in range(40)]
    accuracy = 60 + 30 / (1 + np.exp(-(scores - 1500) / 40))  # monotone in score
    # the table lists more architectures than were sampled, in another order
    rows = [(n, a) for n, a in zip(names, accuracy)] + [("other", 99.0)]
    table = load_benchmark_table(write_table(tmp_path / "bench.csv", rows[::-1]), ("arch", "acc"))
    assert table.percent and table.best() == ("other", 0.99)  # percentages are stored as fractions
    return names, scores, accuracy / 100, table


def test_monotone_accuracy_gives_perfect_rank_correlation(synthetic, tmp_path):
    names, scores, accuracy, table = synthetic
    report = correlation_report(names, list(scores), table, plot_path=tmp_path / "plots" / "scatter.png")
    assert report.kendall_tau == pytest.approx(1.0) and report.spearman_rho == pytest.approx(1.0)
    best = int(np.argmax(scores))
    assert report.chosen == names[best] and report.chosen_score == scores[best]
    assert report.chosen_accuracy == pytest.approx(accuracy[best])
    assert report.chosen_rank == 1 and report.best_accuracy == pytest.approx(accuracy.max())
    assert report.n_candidates == report.n_matched == 40
    png = tmp_path / "plots" / "scatter.png"
    assert report.plot_path == str(png) and png.read_bytes().startswith(PNG_MAGIC)
    assert "kendall tau 1.000" in report.summary()
    assert report.to_dict()["kendall_tau"] == pytest.approx(1.0)


def test_reversed_scores_give_minus_one_and_last_rank(synthetic):
    names, scores, _, table = synthetic
    report = correlation_report(names, list(-scores), table)
    assert report.kendall_tau == pytest.approx(-1.0) and report.spearman_rho == pytest.approx(-1.0)
    assert report.chosen_rank == 40 and report.plot_path is None


def test_nan_scores_are_left_out_and_minus_inf_ranks_last(synthetic):
    names, scores, _, table = synthetic
    scores = list(scores)
    worst = int(np.argmin(scores))
    scores[worst] = -math.inf  # still the lowest: order unchanged
    scores[(worst + 1) % 40] = math.nan
    report = correlation_report(names, scores, table)
    assert report.n_matched == 39 and report.kendall_tau == pytest.approx(1.0)


def test_without_a_table_only_scores_are_reported():
    report = correlation_report(["a", "b", "c"], [1.0, 3.0, 2.0])
    assert report.chosen == "b" and report.chosen_score == 3.0
    assert report.kendall_tau is None and report.chosen_accuracy is None and report.n_matched == 0


def test_candidates_missing_from_the_table_are_a_user_error(synthetic):
    _, _, _, table = synthetic
    with pytest.raises(UserError, match="none of the 2 candidates is in benchmark table.*'arch'"):
        correlation_report(["x", "y"], [1.0, 2.0], table)


def test_bad_tables_and_missing_keys_are_user_errors_naming_the_file_column_or_key(tmp_path):
    path = write_table(tmp_path / "t.csv", [("a", 0.5)])
    with pytest.raises(UserError, match="no column 'accuracy' .*benchmark_columns.*uid, arch, acc"):
        load_benchmark_table(path, ("arch", "accuracy"))
    with pytest.raises(UserError, match="no column 'architecture'"):
        load_benchmark_table(path, ("architecture", "acc"))
    table = load_benchmark_table(path, ("arch", "acc"))
    assert not table.percent and table.lookup("a") == 0.5  # fractions stay as they are
    with pytest.raises(UserError, match="t.csv has no row 'b' in column 'arch'.*for this search space"):
        table.lookup("b")
    with pytest.raises(UserError, match="missing.csv does not exist"):
        load_benchmark_table(tmp_path / "missing.csv")
    bad = write_table(tmp_path / "bad.csv", [("a", "n/a")])
    with pytest.raises(UserError, match="line 2: acc 'n/a' is not a number"):
        load_benchmark_table(bad, ("arch", "acc"))
    (tmp_path / "binary.csv").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(UserError, match="binary.csv"):
        load_benchmark_table(tmp_path / "binary.csv", ("arch", "acc"))


def test_scatter_plot_skips_non_finite_scores(tmp_path):
    path = save_scatter([1.0, -math.inf, 2.0], [10.0, 5.0, 20.0], tmp_path / "s.png", title="t", chosen=(2.0, 20.0))
    assert path.read_bytes().startswith(PNG_MAGIC)
