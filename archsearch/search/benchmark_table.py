"""A benchmark table: the trained accuracy of every architecture of a space, read from a CSV.

The CSV has one row per architecture: a key column (how `SearchSpace.benchmark_key` names the arch; for
NAS-Bench-201 the cell string, `architecture`) and an accuracy column (`accuracy`), named by
`nas.search.benchmark_columns`. Accuracies are stored as fractions in [0, 1]: a table whose values exceed 1
holds percentages (NAS-Bench-201's CSV does: 91.52 for its best cell) and is divided by 100 on load, so
`benchmark_top1` reads like `val_top1` whatever the file's convention.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from archsearch.common.errors import UserError
from archsearch.common.readers import MAX_TEXT_BYTES, read_text

DEFAULT_COLUMNS = ("architecture", "accuracy")


@dataclass
class BenchmarkTable:
    path: str
    key_column: str
    accuracy_column: str
    accuracies: dict[str, float]  # benchmark key -> trained accuracy as a fraction
    percent: bool = False  # the file held percentages (divided by 100 on load)

    def __len__(self) -> int:
        return len(self.accuracies)

    def get(self, key: str) -> float | None:
        return self.accuracies.get(key)

    def lookup(self, key: str) -> float:
        """The accuracy of `key`; a one-line UserError when the table does not hold it."""
        accuracy = self.accuracies.get(key)
        if accuracy is None:
            raise UserError(
                f"benchmark table {self.path} has no row {key[:120]!r} in column {self.key_column!r}; "
                "is the table (--nas.search.benchmark) for this search space?"
            )
        return accuracy

    def best(self) -> tuple[str, float]:
        """The most accurate architecture's key and accuracy (the scale a search result is read against)."""
        key = max(self.accuracies, key=self.accuracies.__getitem__)
        return key, self.accuracies[key]


def load_benchmark_table(path: str | Path, columns: Sequence[str] = DEFAULT_COLUMNS) -> BenchmarkTable:
    """Read the CSV at `path` with (key column, accuracy column); a one-line UserError naming the file,
    column or line at fault."""
    key_column, accuracy_column = columns
    path = Path(path).expanduser()
    if not path.exists():
        raise UserError(
            f"benchmark table {path} does not exist; set --nas.search.benchmark to a CSV file or null"
        )
    text = read_text(path, "benchmark table", UserError, max_bytes=MAX_TEXT_BYTES)
    reader = csv.DictReader(io.StringIO(text))
    found = reader.fieldnames or []
    for column in (key_column, accuracy_column):
        if column not in found:
            raise UserError(
                f"benchmark table {path} has no column {column!r} (nas.search.benchmark_columns); "
                f"its columns: {', '.join(found) or 'none'}"
            )
    accuracies: dict[str, float] = {}
    for line, row in enumerate(reader, start=2):
        value = row.get(accuracy_column)
        try:
            accuracies[row[key_column]] = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise UserError(
                f"benchmark table {path} line {line}: {accuracy_column} {value!r} is not a number"
            ) from None
    if not accuracies:
        raise UserError(f"benchmark table {path} has no rows")
    percent = max(accuracies.values()) > 1.0
    if percent:
        accuracies = {k: v / 100.0 for k, v in accuracies.items()}
    return BenchmarkTable(str(path), key_column, accuracy_column, accuracies, percent)


def table_from_conf(conf_search: Mapping) -> BenchmarkTable | None:
    """The table `nas.search.benchmark` names (None when it is null)."""
    if not conf_search["benchmark"]:
        return None
    return load_benchmark_table(conf_search["benchmark"], conf_search["benchmark_columns"])
