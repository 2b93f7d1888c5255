"""The hardware metrics: registered, computed on a tiny network, and one-line errors where the prediction
has no table or the space no cost items."""

from __future__ import annotations

import random

import pytest

from archsearch.common.errors import UserError
from archsearch.model.latency import LatencyTable
from archsearch.report.profile import make_space
from archsearch.search import hardware_metrics  # noqa: F401 - registers the metrics
from archsearch.search.metrics import METRICS, MetricContext
from archsearch.search.space import SPACES

NAMES = ("latency_ms", "onnx_latency_ms", "peak_memory_mb", "predicted_latency_ms")
CONF = {"batch_size": 1, "threads": 1, "warmup": 0, "repeats": 1, "device": "cpu", "latency_table": None}


@pytest.fixture(scope="module")
def nb201():
    space = make_space("nasbench201", init_channels=4, cells=1, image_size=8)
    arch = space.sample(random.Random(0))
    return space, arch, space.build(arch)


def test_metrics_are_registered_cheap_and_minimized():
    for name in NAMES:
        metric = METRICS.get(name)
        assert metric.cheap and metric.goal == "min" and metric.compute is not None and metric.summary


def test_measured_metrics_on_a_tiny_network(nb201):
    space, arch, model = nb201
    ctx = MetricContext(model, (3, 8, 8), space, arch, CONF)
    for name in ("latency_ms", "onnx_latency_ms", "peak_memory_mb"):
        assert METRICS.get(name).compute(ctx) > 0


def test_predicted_latency_reads_the_given_table(nb201, tmp_path):
    space, arch, model = nb201
    table = LatencyTable({item.key: 0.5 for item in space.profile_items()}, overhead_ms=1.0, meta={"batch_size": 1})
    path = table.save(tmp_path / "t.json")
    ctx = MetricContext(model, (3, 8, 8), space, arch, {**CONF, "latency_table": str(path)})
    assert METRICS.get("predicted_latency_ms").compute(ctx) == pytest.approx(0.5 * len(space.cost_items(arch)) + 1.0)
    ctx = MetricContext(model, (3, 8, 8), space, arch, {**CONF, "latency_table": str(path), "batch_size": 8})
    with pytest.raises(UserError, match="--batch-size 8"):
        METRICS.get("predicted_latency_ms").compute(ctx)


def test_predicted_latency_without_a_table_says_run_profile(nb201, tmp_path, monkeypatch):
    monkeypatch.setenv("ARCHSEARCH_CACHE", str(tmp_path))
    space, arch, model = nb201
    with pytest.raises(UserError, match="run `archsearch profile --space nasbench201`") as e:
        METRICS.get("predicted_latency_ms").compute(MetricContext(model, (3, 8, 8), space, arch, CONF))
    assert "\n" not in str(e.value)


def test_predicted_latency_on_a_space_without_cost_items(nb201):
    _, _, model = nb201
    space = SPACES.get("enas_macro").__new__(SPACES.get("enas_macro"))  # capabilities are class-level
    with pytest.raises(UserError, match="spaces that do: darts, nasbench201"):
        METRICS.get("predicted_latency_ms").compute(MetricContext(model, (3, 8, 8), space, None, CONF))
