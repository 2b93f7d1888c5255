"""ASHA on Ray (`--common.executor ray` with nas.search.fidelity): a candidate's checkpoint travels to the worker
and back, so one trial at a time on Ray equals the local asynchronous search exactly; with two workers the
promotions are asynchronous (ASHA is the default there) and every promoted candidate came from its rung."""

from __future__ import annotations

import os

import pytest
import yaml

from archsearch.experiment.run import RunOptions, run_experiment

if not os.environ.get("CI"):
    pytest.importorskip("ray")
import ray  # noqa: E402

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
ASHA = {
    "nas.search.space.name": "nasbench201",
    "nas.search.random.n_candidates": 5,
    "nas.search.loader.limit_batches": 2,
    "dataset.synthetic_train": 128,
    "common.num_threads": 1,
    "nas.search.fidelity": {"resource": "epochs", "min": 1, "max": 3, "eta": 3},
}


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        yield
    finally:
        ray.shutdown()


def search(tmp_path, name, **overrides):
    conf = {"common.logdir": str(tmp_path), "common.experiment_name": name, **ASHA, **overrides}
    run_experiment("random", "synthetic", RunOptions(phases="search"), conf)
    folder = tmp_path / name / "random" / "search"
    assert not list(folder.glob("trial_*_checkpoint.pt*"))  # all gone once the search ended
    return yaml.safe_load((folder / "trials.yaml").read_text())


def timeless(records):
    return [{k: v for k, v in r.items() if k != "time_s"} for r in records]


def test_asha_on_ray_continues_candidates_from_their_shipped_checkpoints(cluster, tmp_path, capsys):
    asynchronous = {"nas.search.fidelity": {**ASHA["nas.search.fidelity"], "asynchronous": True}}
    local = search(tmp_path, "local", **asynchronous)
    one = search(tmp_path, "one", **asynchronous, **{"common.executor": "ray", "common.ray.max_concurrent": 1})
    assert timeless(one) == timeless(local)  # a promotion on a worker continued from the checkpoint it was sent
    assert any(r["rung"] == 1 for r in local)
    capsys.readouterr()
    two = search(tmp_path, "two", **{"common.executor": "ray"})  # 2 CPUs: 2 trials at once, ASHA by default
    assert "ASHA (asynchronous)" in capsys.readouterr().out
    assert sorted(r["index"] for r in two) == list(range(len(two)))
    bottom = {r["candidate"] for r in two if r["rung"] == 0}
    assert len(bottom) == 5 and all(r["candidate"] in bottom for r in two if r["rung"] == 1)
    assert all(r["resource"] == (1 if r["rung"] == 0 else 3) for r in two)
