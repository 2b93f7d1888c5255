"""The latency model: cost items cover what networks run, prediction is the calibrated sum of the table's
entries, tables round-trip, the profile CLI's errors are one line, show prints the prediction. No timing
assertions: only structure."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest
import torch

from archsearch.model.latency import (
    LatencyTable,
    LatencyTableError,
    default_table_path,
    device_name,
    item_module,
    load_table_for,
)
from archsearch.model.stats import measure_latency_ms, measure_onnx_latency_ms, peak_memory_mb
from archsearch.report.profile import make_space, profile_space, write_table
from archsearch.report.show import render, show
from tests.conftest import REPO, cli_env

TINY = {"init_channels": 4, "cells": 1, "image_size": 8}


@pytest.fixture(scope="module")
def spaces():
    return {
        "nasbench201": make_space("nasbench201", **TINY),
        "darts": make_space("darts", init_channels=4, cells=3, nodes=2, image_size=8),
    }


@pytest.mark.parametrize("name", ["nasbench201", "darts"])
def test_profile_items_cover_every_cost_item_of_random_archs(spaces, name):
    space = spaces[name]
    assert "cost" in space.capabilities()
    profiled = {item.key for item in space.profile_items()}
    assert len(profiled) == len(space.profile_items())  # distinct
    rng = random.Random(0)
    for _ in range(30):
        items = space.cost_items(space.sample(rng))
        assert {item.key for item in items} <= profiled
        assert any(item.fixed for item in items) and any(not item.fixed for item in items)


@pytest.mark.parametrize("name", ["nasbench201", "darts"])
def test_every_profile_item_runs_at_its_shape(spaces, name):
    for item in spaces[name].profile_items():
        with torch.no_grad():
            out = item_module(item)(torch.zeros(1, *item.input_shape))
        assert out.shape[1] == item.c_out


def test_cost_items_follow_the_network(spaces):
    """An NB201 network of N=1: stem, the cell's identity stem, 6 edges, 3 adds (nodes 2 and 3), per stage;
    two residual blocks; pool and linear."""
    space = spaces["nasbench201"]
    items = space.cost_items(space.sample(random.Random(3)))
    names = [item.op for item in items]
    assert names[0] == "stem_conv3x3" and names[-2:] == ["bn_relu_global_avg_pool", "linear"]
    assert names.count("nb201_resblock") == 2 and names.count("add") == 3 * 3
    assert sum(not item.fixed for item in items) == 3 * 6
    assert {(item.c_in, item.h) for item in items if not item.fixed} == {(4, 8), (8, 4), (16, 2)}


def test_prediction_is_scale_times_sum_plus_overhead(spaces):
    space = spaces["nasbench201"]
    table = LatencyTable({item.key: 0.01 * (i + 1) for i, item in enumerate(space.profile_items())})
    arch = space.sample(random.Random(1))
    items = space.cost_items(arch)
    total = sum(table.entries[item.key] for item in items)
    assert table.predict(items) == pytest.approx(total)
    table.scale, table.overhead_ms = 2.0, 0.5
    assert table.predict(items) == pytest.approx(2.0 * total + 0.5)
    item = items[0]
    assert table.op_ms(item.op, (item.c_in, item.c_out, item.stride, item.h, item.w)) == table.entries[item.key]
    with pytest.raises(LatencyTableError, match="no entry for sep_conv_3x3"):
        table.op_ms("sep_conv_3x3", (4, 4, 1, 8, 8))


def test_calibration_fits_a_line():
    table = LatencyTable()
    table.calibrate([1.0, 2.0, 3.0, 4.0], [2.5, 4.5, 6.5, 8.5])
    assert table.scale == pytest.approx(2.0) and table.overhead_ms == pytest.approx(0.5)
    table.calibrate([1.0, 2.0], [3.0, 5.0])  # too few networks for a line: offset only
    assert table.scale == 1.0 and table.overhead_ms == pytest.approx(2.5)


def test_profile_save_load_round_trip(spaces, tmp_path):
    space = spaces["nasbench201"]
    table = profile_space(space, warmup=0, repeats=1, calibrate=3)
    assert set(table.entries) == {item.key for item in space.profile_items()}
    assert all(v >= 0 for v in table.entries.values())
    assert table.meta["device_name"] == device_name("cpu") and table.meta["batch_size"] == 1
    path = write_table(table, tmp_path / "t.json")
    loaded = LatencyTable.load(path)
    assert loaded.entries == table.entries and loaded.scale == table.scale
    assert loaded.overhead_ms == table.overhead_ms and loaded.meta["space"] == "nasbench201"
    arch = space.sample(random.Random(5))
    assert loaded.predict(space.cost_items(arch)) == pytest.approx(table.predict(space.cost_items(arch)))
    # another size of the space, measured the same way, merges into the same file
    other = LatencyTable({"x|1|1|1|1x1": 1.0}, meta=dict(table.meta))
    write_table(other, path)
    assert set(LatencyTable.load(path).entries) == set(table.entries) | {"x|1|1|1|1x1"}


@pytest.mark.parametrize(
    "text, match",
    [
        ("{", "not valid JSON"),
        ('{"format": "other"}', "not a latency table"),
        ('{"format": "archsearch-latency-table", "version": 1, "entries": {"a": "fast"}}', "finite number"),
    ],
)
def test_bad_tables_are_one_line(tmp_path, text, match):
    path = tmp_path / "t.json"
    path.write_text(text)
    with pytest.raises(LatencyTableError, match=match) as e:
        LatencyTable.load(path)
    assert "\n" not in str(e.value)


def test_missing_default_table_says_how_to_make_it(tmp_path, monkeypatch):
    monkeypatch.setenv("ARCHSEARCH_CACHE", str(tmp_path))
    assert default_table_path("darts").parent.name == device_name("cpu")
    assert device_name("cpu").startswith("cpu-")
    with pytest.raises(LatencyTableError, match="run `archsearch profile --space darts`"):
        load_table_for("darts", None)


def test_measurements_on_a_tiny_model():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 8, 3))
    assert measure_latency_ms(model, (3, 8, 8), batch_size=2, warmup=0, repeats=2, threads=1) > 0
    assert measure_onnx_latency_ms(model, (3, 8, 8), warmup=0, repeats=2) > 0
    params = sum(p.numel() * 4 for p in model.parameters())
    # parameters, the 3x8x8 input, and at the peak the first conv's output beside the ReLU's (8x8x8 each)
    expected = params + 4 * (3 * 64 + 2 * 8 * 64)
    assert peak_memory_mb(model, (3, 8, 8)) * 2**20 == pytest.approx(expected)
    assert model.training  # mode restored


def test_onnx_latency_without_onnxruntime_is_one_line(monkeypatch):
    from archsearch.common.errors import UserError

    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(UserError, match="pip install onnxruntime"):
        measure_onnx_latency_ms(torch.nn.Identity(), (3, 4, 4))


def _profile_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(REPO / "scripts" / "main.py"), "profile", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=cli_env(env), cwd=REPO)


@pytest.mark.parametrize(
    "args, match",
    [
        (["--space", "enas_macro"], "spaces that can: darts, nasbench201"),
        (["--space", "nasbench21"], "unknown search space 'nasbench21'"),
        (["--space", "darts", "--runtime", "tvm"], "tvm"),
    ],
)
def test_profile_cli_errors_are_one_line(args, match):
    result = _profile_cli(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and match in lines[0], result.stderr


def test_profile_cli_writes_the_default_table_and_show_predicts(tmp_path, spaces):
    result = _profile_cli(
        "--space", "nasbench201", "--init-channels", "4", "--cells", "1", "--image-size", "8",
        "--repeats", "1", "--warmup", "0", "--calibrate", "2", "--quiet", env={"ARCHSEARCH_CACHE": str(tmp_path)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    path = tmp_path / "latency" / device_name("cpu") / "nasbench201.json"
    assert str(path) in result.stdout
    assert json.loads(path.read_text())["meta"]["runtime"] == "torch"

    space = spaces["nasbench201"]
    desc_path = space.builder(space.conf_model_desc, space.sample(random.Random(2))).build().save(tmp_path / "d.yaml")
    info = show(desc_path, input_shape=(3, 8, 8), runs=1, warmup=0, device="cpu", latency_table=path,
                picture=tmp_path / "cells.png")  # fmt: skip
    assert info["predicted_latency"]["batch"] == 1 and info["predicted_latency"]["ms"] > 0
    predicted = [line for line in render(info).splitlines() if line.strip().startswith("predicted")]
    assert len(predicted) == 1 and "measured" in predicted[0] and str(path) in predicted[0]
    # a table of other sizes: the prediction says what is missing instead of failing show
    bigger = make_space("nasbench201", init_channels=8, cells=1, image_size=8)
    other = bigger.builder(bigger.conf_model_desc, bigger.sample(random.Random(2))).build().save(tmp_path / "o.yaml")
    info = show(other, input_shape=(3, 8, 8), runs=1, warmup=0, device="cpu", latency_table=path,
                picture=tmp_path / "cells2.png")  # fmt: skip
    assert "no entry" in info["predicted_latency"]["error"] and "n/a" in render(info)
