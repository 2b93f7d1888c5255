"""The metric registry (a minimal stand-in with the shared API; the full module is another part of issue 21).

A metric scores one architecture: `compute(ctx)` returns a float from what `MetricContext` carries (the
built network, one image's shape, the space and architecture, `nas.search.metrics` settings).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from archsearch.common.registry import Registry


@dataclass(frozen=True)
class MetricContext:
    model: nn.Module
    input_shape: tuple[int, int, int]
    space: Any
    arch: Any
    conf: Mapping[str, Any]  # nas.search.metrics: batch_size, threads, warmup, repeats, device, latency_table


@dataclass(frozen=True)
class Metric:
    name: str
    goal: str  # "min" or "max"
    unit: str
    cheap: bool  # computed without training
    compute: Callable[[MetricContext], float] | None = None
    summary: str = ""


METRICS: Registry[Metric] = Registry("metric")


def register_metric(metric: Metric) -> Metric:
    METRICS.add(metric.name, metric)
    return metric
