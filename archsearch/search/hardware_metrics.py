"""Hardware cost metrics of an architecture, registered in METRICS: latency with torch on the run's device,
latency with ONNX Runtime on the CPU, peak memory of one inference batch, and the latency a profiled table
predicts (model/latency.py) without running the network.

Settings come from `nas.search.metrics` (MetricContext.conf): batch_size (1), threads (1), warmup (3),
repeats (10), device ("cpu"), latency_table (null: this device's default table of the space, written by
`archsearch profile --space NAME`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from archsearch.common.errors import UserError
from archsearch.model.latency import load_table_for
from archsearch.model.stats import measure_latency_ms, measure_onnx_latency_ms, peak_memory_mb
from archsearch.search.metrics import Metric, MetricContext, register_metric
from archsearch.search.space import spaces_with

DEFAULTS: dict[str, Any] = {
    "batch_size": 1,
    "threads": 1,
    "warmup": 3,
    "repeats": 10,
    "device": "cpu",
    "latency_table": None,
}


def _setting(conf: Mapping[str, Any], key: str) -> Any:
    return conf[key] if key in list(conf) else DEFAULTS[key]  # Config's `in`/get raise for a missing key


def latency_ms(ctx: MetricContext) -> float:
    conf = ctx.conf
    device = _setting(conf, "device")
    return measure_latency_ms(
        ctx.model.to(device),
        ctx.input_shape,
        _setting(conf, "batch_size"),
        _setting(conf, "warmup"),
        _setting(conf, "repeats"),
        device,
        _setting(conf, "threads"),
    )


def onnx_latency_ms(ctx: MetricContext) -> float:
    conf = ctx.conf
    return measure_onnx_latency_ms(
        ctx.model,
        ctx.input_shape,
        _setting(conf, "batch_size"),
        _setting(conf, "warmup"),
        _setting(conf, "repeats"),
        _setting(conf, "threads"),
    )


def peak_memory(ctx: MetricContext) -> float:
    device = _setting(ctx.conf, "device")
    return peak_memory_mb(ctx.model.to(device), ctx.input_shape, _setting(ctx.conf, "batch_size"), device)


def predicted_latency_ms(ctx: MetricContext) -> float:
    space = ctx.space
    if "cost" not in space.capabilities():
        raise UserError(
            f"predicted_latency_ms needs a space with cost items; {space.name} has none; spaces that do: "
            f"{', '.join(spaces_with('cost'))}"
        )
    table = load_table_for(space.name, _setting(ctx.conf, "latency_table"), _setting(ctx.conf, "device"))
    batch = _setting(ctx.conf, "batch_size")
    if table.meta.get("batch_size", batch) != batch:
        raise UserError(
            f"latency table {table.meta.get('path')} was measured at batch size {table.meta['batch_size']}, "
            f"the metric asks for {batch}; profile with --batch-size {batch}"
        )
    return table.predict(space.cost_items(ctx.arch))


LATENCY = register_metric(
    Metric("latency_ms", "min", "ms", True, latency_ms, "median forward time of one batch with torch")
)
ONNX_LATENCY = register_metric(
    Metric("onnx_latency_ms", "min", "ms", True, onnx_latency_ms, "median time of one batch in ONNX Runtime (CPU)")
)
PEAK_MEMORY = register_metric(
    Metric("peak_memory_mb", "min", "MiB", True, peak_memory, "tensors alive at the peak of one inference batch")
)
PREDICTED_LATENCY = register_metric(
    Metric(
        "predicted_latency_ms",
        "min",
        "ms",
        True,
        predicted_latency_ms,
        "sum of the profiled ops' latencies (archsearch profile)",
    )
)
