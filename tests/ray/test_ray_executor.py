"""`--common.executor ray`: the same results as the local executor, failures retried and skipped, a killed
driver resumed without rerunning a finished trial, Ctrl-C, and the one-line error without Ray.

One local Ray (2 CPUs, no dashboard) serves the whole module: searches run in this process through
run_experiment, and the CLI subprocesses join it with --common.ray.address (a driver killed with SIGKILL
then owns no Ray process that could be left behind)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from archsearch.common.checkpoint import KILL_AT_ENV, RAISE_AT_ENV
from archsearch.common.errors import ConfigError
from archsearch.experiment.run import RunOptions, run_experiment
from tests.conftest import REPO, assert_user_error, run_cli
from tests.strategies.rea.test_rea import nb201_table  # noqa: F401 - the fixture

if not os.environ.get("CI"):
    pytest.importorskip("ray")  # outside CI only: in CI Ray is installed (make test) and these tests must run
import ray  # noqa: E402

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
ONE_THREAD = {"common.num_threads": 1}
RAY = {"common.executor": "ray", **ONE_THREAD}


@pytest.fixture(scope="module")
def cluster():
    """The module's Ray: its GCS address, for subprocesses to join."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def search(tmp_path: Path, algo: str, name: str, **overrides) -> list[dict]:
    """Run `algo`'s search in this process; its trial index."""
    conf = {"common.logdir": str(tmp_path / "logdir"), "common.experiment_name": name, **overrides}
    run_experiment(algo, "synthetic", RunOptions(phases="search"), conf)
    return yaml.safe_load((tmp_path / "logdir" / name / algo / "search" / "trials.yaml").read_text())


def timeless(records: list[dict]) -> list[dict]:
    """The records without what measures wall time."""
    return [{**{k: v for k, v in r.items() if k != "time_s"},
             "metrics": {k: v for k, v in r["metrics"].items() if k != "epoch_time"}} for r in records]  # fmt: skip


def same_trials(a: list[dict], b: list[dict]) -> None:
    """The same trials with the same metrics, whatever order they finished in."""

    def key(records):
        return sorted(({k: v for k, v in r.items() if k != "best_so_far"} for r in timeless(records)),
                      key=lambda r: r["index"])  # fmt: skip

    assert key(a) == key(b)


TRAIN = {"nas.search.trainer.epochs": 1, "nas.search.loader.limit_batches": 2, "dataset.synthetic_train": 128}


def test_random_and_naswot_on_ray_equal_the_local_executor(cluster, tmp_path):
    random_search = {"nas.search.random.n_candidates": 4, **TRAIN}
    local = search(tmp_path, "random", "local", **random_search, **ONE_THREAD)
    on_ray = search(tmp_path, "random", "ray", **random_search, **RAY)  # 2 trials at once
    same_trials(local, on_ray)
    assert max(r["metrics"]["val_top1"] for r in on_ray) == max(r["metrics"]["val_top1"] for r in local)

    # a user's model (examples/mnist_space.py, imported by path): the workers find it from the driver's paths
    user = RunOptions(phases="search", config=(str(REPO / "examples" / "mnist_space.yaml"),))
    runs = []
    for name, executor in (("um_local", ONE_THREAD), ("um_ray", RAY)):
        conf = {"common.logdir": str(tmp_path / "logdir"), "common.experiment_name": name, **executor}
        run_experiment("random", None, user, {**conf, **TRAIN, "nas.search.random.n_candidates": 2})  # digits
        runs.append(yaml.safe_load((tmp_path / "logdir" / name / "random" / "search" / "trials.yaml").read_text()))
    same_trials(*runs)

    naswot = {
        "nas.search.naswot.n_samples": 6,
        "nas.search.naswot.batch_size": 16,
        "nas.search.model_desc.init_channels": 4,
        "nas.search.model_desc.n_cells_per_stage": 1,
    }
    local = search(tmp_path, "naswot", "nw_local", **naswot, **ONE_THREAD)
    on_ray = search(tmp_path, "naswot", "nw_ray", **naswot, **RAY, **{"common.ray.max_concurrent": 2})
    same_trials(local, on_ray)
    summary = [yaml.safe_load((tmp_path / "logdir" / n / "naswot" / "summary.yaml").read_text()) for n in
               ("nw_local", "nw_ray")]  # fmt: skip
    assert summary[0]["search"]["best_arch"] == summary[1]["search"]["best_arch"]
    assert summary[0]["search"]["best_score"] == summary[1]["search"]["best_score"]


def test_rea_in_tabular_mode_one_at_a_time_equals_local_and_runs_asynchronously(cluster, tmp_path, nb201_table):  # noqa: F811
    rea = {"nas.search.benchmark": str(nb201_table), "nas.search.evaluate_by": "table", "nas.search.rea.n_trials": 16}
    local = search(tmp_path, "rea", "local", **rea, **ONE_THREAD)
    serial = search(tmp_path, "rea", "serial", **rea, **RAY, **{"common.ray.max_concurrent": 1})
    assert timeless(serial) == timeless(local)
    parallel = search(tmp_path, "rea", "parallel", **rea, **RAY)  # reported, not compared: the order differs
    assert sorted(r["index"] for r in parallel) == list(range(16))
    # toy population 4: sampled until 4 trials finished (one more may be proposed while the 4th runs), then
    # each child is proposed as soon as a trial finishes, from a parent that had finished
    sampled = [r for r in parallel if "parent" not in r]
    assert 4 <= len(sampled) <= 5
    finished_before = {r["index"]: {q["index"] for q in parallel[:i]} for i, r in enumerate(parallel)}
    assert all(r["parent"] in finished_before[r["index"]] for r in parallel if "parent" in r)


def test_several_objectives_and_constraints_on_ray_give_the_local_front(cluster, tmp_path, nb201_table):  # noqa: F811
    """Two trials at once: the cheap metrics are measured and the constraint checked on the driver before a trial
    is submitted, so the same proposals are rejected, the same trials run and the front is the local one."""
    goals = {
        "nas.search.benchmark": str(nb201_table),
        "nas.search.evaluate_by": "table",
        "nas.search.space.name": "nasbench201",
        "nas.search.random.n_candidates": 12,
        "nas.search.objectives": [{"metric": "benchmark_top1", "goal": "max"}, {"metric": "params", "goal": "min"}],
        "nas.search.constraints": {"params": {"max": 40000}},
    }
    local = search(tmp_path, "random", "mo_local", **goals, **ONE_THREAD)
    on_ray = search(tmp_path, "random", "mo_ray", **goals, **RAY)

    def order_free(records):  # the running hypervolume and best-so-far depend on the order trials finished in
        return [{k: v for k, v in r.items() if k != "hypervolume"} for r in records]

    same_trials(order_free(local), order_free(on_ray))
    assert sum(r["rejected"] for r in local) > 0 and all(r["metrics"]["params"] <= 40000 for r in on_ray)
    fronts = [yaml.safe_load((tmp_path / "logdir" / n / "random" / "search" / "pareto.yaml").read_text())
              for n in ("mo_local", "mo_ray")]  # fmt: skip
    assert [m["index"] for m in fronts[0]["front"]] == [m["index"] for m in fronts[1]["front"]]
    assert fronts[0]["hypervolume"] == pytest.approx(fronts[1]["hypervolume"])
    assert fronts[0]["selected"] == fronts[1]["selected"]


def test_a_failing_or_dying_trial_is_retried_recorded_and_skipped(cluster, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(RAISE_AT_ENV, "trial:run:1")  # trial 1 raises in its worker, every attempt
    monkeypatch.setenv(KILL_AT_ENV, "trial:run:2")  # trial 2's worker dies (SIGKILL), every attempt
    retries = {"common.ray.max_retries": 1}
    records = search(tmp_path, "random", "faulty", **{"nas.search.random.n_candidates": 4}, **TRAIN, **RAY, **retries)
    by_index = {r["index"]: r for r in records}
    assert sorted(by_index) == [0, 1, 2, 3]  # the search finished
    assert by_index[1]["metrics"]["attempts"] == by_index[2]["metrics"]["attempts"] == 2
    assert "RuntimeError: test fault at trial:run:1" in by_index[1]["metrics"]["error"]
    assert "Worker" in by_index[2]["metrics"]["error"] or "died" in by_index[2]["metrics"]["error"]
    for r in (by_index[1], by_index[2]):
        assert r["metrics"]["val_top1"] == "nan"  # NaN, as the index stores it: never the best
    for r in (by_index[0], by_index[3]):
        assert 0 <= r["metrics"]["val_top1"] <= 1 and "error" not in r["metrics"]
    out = capsys.readouterr().out
    assert "trial 2 attempt 1 failed" in out and "trial 2 skipped" in out and "2 failed" in out


def cli_joining(cluster: str, *args: str, logdir: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return run_cli(*args, "--common.executor", "ray", "--common.ray.address", cluster, logdir=logdir, env=env)


def test_a_killed_driver_resumes_rerunning_only_unfinished_trials(cluster, tmp_path, nb201_table, capsys):  # noqa: F811
    table = ["--nas.search.evaluate_by", "table", "--nas.search.benchmark", str(nb201_table)]
    args = ["--algos", "random", "--datasets", "synthetic", "--search-only", "--nas.search.space", "nasbench201"]
    args += [*table, "--nas.search.random.n_candidates", "10", "--common.experiment_name", "killed"]
    killed = cli_joining(cluster, *args, logdir=tmp_path / "logdir", env={KILL_AT_ENV: "trial:recorded:4"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    folder = tmp_path / "logdir" / "killed" / "random" / "search"
    before = yaml.safe_load((folder / "trials.yaml").read_text())
    assert before[-1]["index"] == 4
    capsys.readouterr()

    overrides = {"nas.search.space.name": "nasbench201", "nas.search.evaluate_by": "table"}
    overrides.update({"nas.search.benchmark": str(nb201_table), "nas.search.random.n_candidates": 10})
    after = search(tmp_path, "random", "killed", **overrides, **RAY, **{"common.resume": True})
    assert after[: len(before)] == before and sorted(r["index"] for r in after) == list(range(10))
    out = capsys.readouterr().out
    rerun = sorted(int(line.split("trial ")[1].split("/")[0]) - 1 for line in out.splitlines()
                   if "[search] trial " in line and "/10:" in line)  # fmt: skip
    assert rerun == sorted(set(range(10)) - {r["index"] for r in before})  # finished trials are not rerun
    assert f"resuming after {len(before)} finished trials" in out


def test_ctrl_c_cancels_running_trials_and_leaves_a_resumable_index(cluster, tmp_path, monkeypatch, request):
    from archsearch.search.ray_executor import RayExecutor

    next_result = RayExecutor.next_result
    calls = []

    def interrupted(self):  # Ctrl-C while the driver waits for the second result, the first one recorded
        calls.append(1)
        if len(calls) == 2:
            signal.raise_signal(signal.SIGINT)
        return next_result(self)

    monkeypatch.setattr(RayExecutor, "next_result", interrupted)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # a terminal's Ctrl-C, also under xdist
    request.addfinalizer(lambda: signal.signal(signal.SIGINT, previous))
    slow = {"nas.search.random.n_candidates": 6, **TRAIN, "nas.search.trainer.epochs": 3}
    with pytest.raises(KeyboardInterrupt):
        search(tmp_path, "random", "interrupted", **slow, **RAY)
    deadline = time.time() + 300  # the cancelled trials give their CPUs back to the cluster (slowly when busy)
    while ray.available_resources().get("CPU", 0) < 2 and time.time() < deadline:
        time.sleep(0.2)
    assert ray.available_resources().get("CPU", 0) == 2
    index = tmp_path / "logdir" / "interrupted" / "random" / "search" / "trials.yaml"
    assert len(yaml.safe_load(index.read_text())) == 1
    monkeypatch.setattr(RayExecutor, "next_result", next_result)
    resumed = search(tmp_path, "random", "interrupted", **slow, **RAY, **{"common.resume": True})
    assert sorted(r["index"] for r in resumed) == list(range(6))


def test_without_ray_the_executor_is_a_one_line_error(tmp_path):
    shadow = tmp_path / "no_ray" / "ray"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('No module named ray')\n")
    env = {"PYTHONPATH": os.pathsep.join([str(shadow.parent), str(REPO)])}
    proc = run_cli("--algos", "random", "--common.executor", "ray", logdir=tmp_path / "logdir", env=env)
    assert_user_error(proc, "pip install 'archsearch[ray]'", "--common.executor")


def test_an_address_where_no_ray_listens_is_one_line(tmp_path):
    args = ["--algos", "random", "--search-only", "--common.executor", "ray", "--common.ray.address", "127.0.0.1:1"]
    proc = run_cli(*args, logdir=tmp_path / "logdir")
    assert_user_error(proc, "'127.0.0.1:1': cannot reach a Ray cluster", "ray start")


def test_bad_ray_settings_are_one_line(tmp_path):
    def settings(**overrides):
        run_experiment("random", "synthetic", RunOptions(dry_run=True), {"common.logdir": str(tmp_path), **overrides})

    with pytest.raises(ConfigError, match="common.executor: 'dask' is not one of local, ray"):
        settings(**{"common.executor": "dask"})
    with pytest.raises(ConfigError, match=r"common.ray.address: 'nowhere' is not allowed \(auto, ray://HOST:PORT"):
        settings(**{"common.ray.address": "nowhere"})
    with pytest.raises(ConfigError, match="common.ray.num_gpus"):
        settings(**{"common.ray.num_gpus": -1})


def test_more_gpus_than_the_cluster_has_is_one_line(cluster):
    from archsearch.search.ray_executor import RayExecutor

    with pytest.raises(ConfigError, match="num_gpus 0.5 per trial, but the Ray cluster has 0 GPUs"):
        RayExecutor(num_gpus=0.5, log=lambda _: None)


def test_morphism_trials_rebuild_their_graph_off_process_and_send_their_weights_back(cluster, tmp_path):
    from archsearch.common.checkpoint import load_checkpoint

    tiny = {"nas.search.morphism.n_trials": 4, "nas.search.morphism.model_width": 8, "nas.search.morphism.model_len": 2}
    tiny.update({"nas.search.loader.batch_size": 32, **TRAIN, "dataset.synthetic_train": 96})

    def weights(name):
        folder = tmp_path / "logdir" / name / "morphism" / "search" / "trials"
        return {p.name: {k: v.tolist() for k, v in load_checkpoint(p).items()} for p in sorted(folder.glob("*.pt"))}

    local = search(tmp_path, "morphism", "local", **tiny, **ONE_THREAD)
    serial = search(tmp_path, "morphism", "serial", **tiny, **RAY, **{"common.ray.max_concurrent": 1})
    assert timeless(serial) == timeless(local)
    assert weights("serial") == weights("local") and len(weights("local")) == 4  # written by the driver
    parallel = search(tmp_path, "morphism", "parallel", **tiny, **RAY)  # children proposed while others train
    assert sorted(r["index"] for r in parallel) == [0, 1, 2, 3] and len(weights("parallel")) == 4


def test_a_sweep_of_seeds_runs_whole_runs_on_ray_each_as_its_seed_alone(cluster, tmp_path, nb201_table, capsys):  # noqa: F811
    from archsearch.cli import main

    table = ["--nas.search.evaluate_by", "table", "--nas.search.benchmark", str(nb201_table)]
    args = ["--algos", "random", "--datasets", "synthetic", "--search-only", "--nas.search.space", "nasbench201"]
    args += [*table, "--nas.search.random.n_candidates", "5", "--common.logdir", str(tmp_path / "logdir")]
    assert main([*args, "--common.executor", "ray", "--common.seeds", "[0,1,2]"]) == 0
    assert capsys.readouterr().out.count("== random on synthetic ==") == 3
    assert main([*args, "--common.seed", "1", "--exp-prefix", "alone"]) == 0
    swept, alone = (yaml.safe_load((tmp_path / "logdir" / n / "random" / "search" / "trials.yaml").read_text())
                    for n in ("archsearch_seed1_synthetic_toy", "alone_synthetic_toy"))  # fmt: skip
    assert timeless(swept) == timeless(alone)
    assert main([*args, "--common.seeds", "[1,1]"]) == 2  # a repeated seed is one line
    assert "repeats a seed" in capsys.readouterr().err
