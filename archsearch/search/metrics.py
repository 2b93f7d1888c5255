"""Metrics as first-class objects: every figure a trial can produce, with its direction, unit and cost.

A metric is *cheap* when it is known from the built network without training (parameters, MACs, measured
or predicted latency, peak memory): `compute(ctx)` gives it from a `MetricContext`, and the trial loop
computes it before the candidate is evaluated, so a constraint on it rejects an infeasible architecture
without spending a training run or a table query. A metric is *expensive* when only the evaluator gives
it (val_top1, benchmark_top1, a proxy's score): it is registered by name, with `compute` None.

Objectives and constraints (archsearch/search/objectives.py) name metrics of this registry; the
hardware metrics (latency, memory) register themselves in archsearch/search/hardware_metrics.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from archsearch.common.errors import ConfigError
from archsearch.common.registry import Registry
from archsearch.model.network import count_params
from archsearch.model.stats import count_macs

GOALS = ("max", "min")


@dataclass(frozen=True)
class MetricContext:
    """What a cheap metric may use."""

    model: nn.Module  # the candidate at search size, freshly built (space.build(arch)); eval mode not assumed
    input_shape: tuple[int, int, int]  # (C, H, W) of the dataset
    space: Any  # the SearchSpace
    arch: Any  # the space's architecture
    conf: Mapping[str, Any]  # nas.search.metrics: batch_size, threads, warmup, repeats, device, latency_table


@dataclass(frozen=True)
class Metric:
    name: str
    goal: str  # "max" or "min": the better direction
    unit: str  # "", "ms", "MB", "M" ...
    cheap: bool  # True: computed from the built network before any evaluation
    compute: Callable[[MetricContext], float] | None = None  # cheap metrics only
    summary: str = ""

    def __post_init__(self) -> None:
        if self.goal not in GOALS:
            raise ValueError(f"metric {self.name!r}: goal must be max or min, not {self.goal!r}")
        if self.cheap != (self.compute is not None):
            raise ValueError(f"metric {self.name!r}: a cheap metric has a compute function, an expensive one none")


METRICS: Registry[Metric] = Registry("metric")


def register_metric(metric: Metric) -> Metric:
    METRICS.add(metric.name, metric)
    return metric


def get_metric(name: str, where: str = "metric") -> Metric:
    """The registered metric `name`, or one ConfigError line naming `where` and the valid names."""
    if name not in METRICS:
        raise ConfigError(f"{where}: {METRICS.unknown_message(name)}")
    return METRICS.get(name)


def cheap_metrics(names: Iterable[str], ctx: MetricContext) -> dict[str, float]:
    """The named cheap metrics of the candidate in `ctx`, in the order named."""
    out: dict[str, float] = {}
    for name in names:
        metric = get_metric(name)
        if not metric.cheap or metric.compute is None:
            raise ValueError(f"metric {name!r} is not cheap: only its evaluator gives it")
        out[name] = float(metric.compute(ctx))
    return out


def _params(ctx: MetricContext) -> float:
    return float(count_params(ctx.model))


def _macs(ctx: MetricContext) -> float:
    return float(count_macs(ctx.model, tuple(ctx.input_shape)))


register_metric(Metric("params", "min", "", True, _params, "weight parameters (DARTS' count: no aux tower)"))
register_metric(Metric("macs", "min", "", True, _macs, "multiply-accumulates of one image (conv and linear)"))
for _name, _goal, _summary in (
    ("val_top1", "max", "top-1 accuracy on the arch split after the trial's training (a fraction)"),
    ("val_loss", "min", "loss on the arch split after the trial's training"),
    ("train_top1", "max", "top-1 accuracy on the weights split during the trial's training"),
    ("train_loss", "min", "loss on the weights split during the trial's training"),
    ("benchmark_top1", "max", "accuracy in the benchmark table (nas.search.benchmark; percent as the table)"),
    ("score", "max", "the zero-cost proxy's score of the untrained network (nas.search.naswot.proxy)"),
    ("supernet_top1", "max", "top-1 on the arch split with weights inherited from a supernet (evaluate_by supernet)"),
    ("supernet_loss", "min", "loss on the arch split with weights inherited from a supernet (evaluate_by supernet)"),
):
    register_metric(Metric(_name, _goal, "", False, None, _summary))
