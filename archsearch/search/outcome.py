"""What a search hands the next phase: the final architecture file and the search's metrics."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archsearch.common.io import atomic_write_yaml
from archsearch.common.logging import plain
from archsearch.train.context import RunContext


@dataclass
class SearchResult:
    final_arch: Path  # the file evaluation reads
    metrics: dict[str, Any] = field(default_factory=dict)


def record_search_result(ctx: RunContext, final_arch: Path, metrics: dict[str, Any]) -> Path:
    """search/metrics.yaml plus a log record, for any kind of final architecture file."""
    atomic_write_yaml(ctx.search_dir / "metrics.yaml", plain(metrics))
    ctx.log.record("search_done", final_arch=final_arch, **metrics)
    ctx.log.info(f"[search] final architecture: {final_arch}")
    return final_arch
