"""NASWOT through the real CLI: proxy scoring on the trial loop, correlation report against a table, eval
of the best, other spaces and proxies, and the one-line errors for the keys it had before."""

import signal

import numpy as np
import pytest
import yaml

from archsearch.common.checkpoint import KILL_AT_ENV
from archsearch.experiment.run import config_files
from archsearch.model.model_desc import ModelDesc
from archsearch.spaces.nasbench201 import desc_to_arch, index_to_arch
from tests.conftest import assert_config_error, assert_user_error, config_fixture

TINY = {
    "nas": {
        "search": {
            "naswot": {"n_samples": 6, "batch_size": 16},
            "model_desc": {"init_channels": 4, "n_cells_per_stage": 1},
        },
        "eval": {
            "model_desc": {"init_channels": 4, "n_cells_per_stage": 1},
            "loader": {"batch_size": 32, "limit_batches": 2},
            "trainer": {"epochs": 1},
        },
    },
    "dataset": {"synthetic_train": 64, "synthetic_test": 32},
}


tiny = config_fixture(TINY)


def test_exhaustive_scoring_with_a_benchmark_table(cli, tiny, tmp_path):
    indices = list(range(6))
    table = tmp_path / "bench.csv"
    table.write_text("uid,architecture,accuracy\n" + "".join(f"{i},{index_to_arch(i)},{50 + i}\n" for i in indices))
    args = ["--algos", "naswot", "--datasets", "synthetic", "--config", tiny, "--nas.search.benchmark", str(table)]
    proc = cli(*args, "--nas.search.naswot.indices", str(indices))
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = cli.logdir / "archsearch_synthetic_toy" / "naswot"
    scores = yaml.safe_load((out / "search" / "scores.yaml").read_text())
    assert [s["arch"] for s in scores] == [index_to_arch(i) for i in indices]
    trials = yaml.safe_load((out / "search" / "trials.yaml").read_text())
    assert [t["metrics"]["score"] for t in trials] == [s["score"] for s in scores]
    metrics = yaml.safe_load((out / "search" / "metrics.yaml").read_text())
    assert -1 <= metrics["kendall_tau"] <= 1 and 1 <= metrics["chosen_rank"] <= 6
    assert (out / "search" / "correlation.png").stat().st_size > 1000
    best = max(scores, key=lambda s: s["score"])["arch"]
    assert metrics["benchmark_top1"] == metrics["chosen_accuracy"] == (50 + index_to_arch_index(best, indices)) / 100
    assert desc_to_arch(ModelDesc.load(out / "search" / "final_model_desc.yaml")) == best
    assert desc_to_arch(ModelDesc.load(out / "eval" / "model_desc.yaml")) == best
    assert (out / "eval" / "model.pt").exists()


def index_to_arch_index(arch, indices):
    return next(i for i in indices if index_to_arch(i) == arch)


def test_darts_space_and_other_proxies(cli, tiny):
    proc = cli(
        "--algos",
        "naswot",
        "--datasets",
        "synthetic",
        "--config",
        tiny,
        "--nas.search.space",
        "darts",
        "--nas.search.naswot.proxy",
        "synflow",
        "--nas.search.naswot.n_samples",
        "3",
        "--nas.search.model_desc.n_cells",
        "3",
        "--search-only",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "found" in proc.stdout and "Genotype(normal=" in proc.stdout


def test_bad_proxy_and_the_old_keys_are_user_errors(cli_in_process, tiny, tmp_path):
    cli = cli_in_process
    base = ["--algos", "naswot", "--datasets", "synthetic", "--config", tiny]
    assert_user_error(cli(*base, "--nas.search.naswot.proxy", "magic"), "'magic' is not one of")
    assert_user_error(cli(*base, "--nas.search.naswot.benchmark_csv", "x.csv"), "renamed", "--nas.search.benchmark")
    assert_user_error(cli(*base, "--nas.search.naswot.space", "darts"), "renamed", "nas.search.space.name")
    old_file = tmp_path / "old.yaml"
    old_file.write_text(yaml.safe_dump({"nas": {"search": {"naswot": {"arch_column": "arch"}}}}))
    assert_user_error(cli(*base, "--config", str(old_file)), "old.yaml", "benchmark_columns")


def test_proxy_ensemble_end_to_end_with_kill_and_resume(cli, tiny, tmp_path):
    indices = list(range(5))
    table = tmp_path / "bench.csv"
    table.write_text("uid,architecture,accuracy\n" + "".join(f"{i},{index_to_arch(i)},{50 + i}\n" for i in indices))
    members = ["naswot", "zico", "az_trainability"]
    args = [
        "--algos", "naswot", "--datasets", "synthetic", "--config", tiny, "--search-only",
        "--nas.search.benchmark", str(table), "--nas.search.naswot.indices", str(indices),
        "--nas.search.naswot.proxy", "ensemble", "--nas.search.naswot.ensemble.members", str(members),
    ]  # fmt: skip
    # killed after 3 trials and resumed: the ranks are taken over all 5 records, the first 3 not rescored
    assert cli(*args, env={KILL_AT_ENV: "trial:recorded:2"}).returncode == -signal.SIGKILL
    proc = cli(*args, "--common.resume", "true")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resuming after 3 finished trials" in proc.stdout
    out = cli.logdir / "archsearch_synthetic_toy" / "naswot" / "search"
    trials = yaml.safe_load((out / "trials.yaml").read_text())
    rows = yaml.safe_load((out / "scores.yaml").read_text())
    # every trial keeps each member's raw score; the ensemble's score is their log-rank over all trials
    from archsearch.strategies.naswot.ensemble import aggregate

    columns = {m: [t["metrics"][f"zc_{m}"] for t in trials] for m in members}
    expected = aggregate(columns, "log_rank")
    assert [r["score"] for r in rows] == pytest.approx(list(expected))
    assert [r["naswot"] for r in rows] == columns["naswot"]
    metrics = yaml.safe_load((out / "metrics.yaml").read_text())
    best = int(np.argmax(expected))
    assert metrics["best_trial"] == trials[best]["index"] and metrics["best_score"] == pytest.approx(expected[best])
    assert metrics["ensemble_members"] == members and metrics["best_arch"] == rows[best]["arch"]
    chosen = yaml.safe_load((out / "best_trial.yaml").read_text())
    assert chosen["index"] == trials[best]["index"] and chosen["metrics"]["score"] == pytest.approx(expected[best])


def test_the_ensemble_under_a_constraint_chooses_and_fronts_by_its_aggregate(tiny, tmp_path):
    import archsearch
    from archsearch.experiment.run import RunOptions
    from archsearch.strategies.naswot.ensemble import aggregate

    members = ["meco", "synflow"]
    settings = {"nas.search.naswot.n_samples": 8, "nas.search.naswot.proxy": "ensemble",
                "nas.search.naswot.ensemble.members": members, "common.logdir": str(tmp_path),
                "report.auto": False}  # fmt: skip

    def run(prefix: str, max_params: float) -> tuple:
        options = RunOptions(config=(tiny,), phases="search", exp_prefix=prefix)
        constraint = {"nas.search.constraints": {"params": {"max": max_params}}}
        archsearch.run("naswot", "synthetic", options, {**settings, **constraint})
        out = tmp_path / f"{prefix}_synthetic_toy" / "naswot" / "search"
        return tuple(yaml.safe_load((out / f"{name}.yaml").read_text()) for name in ("trials", "pareto", "metrics"))

    trials, _, _ = run("loose", 1e12)
    bound = sorted(t["metrics"]["params"] for t in trials)[len(trials) // 2]
    trials, pareto, metrics = run("bounded", bound)  # the cells over the bound are redrawn, never scored
    assert pareto["rejected"] > 0 and all(t["metrics"]["params"] <= bound for t in trials)
    expected = aggregate({m: [t["metrics"][f"zc_{m}"] for t in trials] for m in members}, "log_rank")
    best = max(range(len(trials)), key=lambda i: (expected[i], -i))
    assert metrics["best_trial"] == trials[best]["index"] and metrics["best_score"] == pytest.approx(expected[best])
    # pareto.yaml shows the aggregate the choice was made by, not the trials' placeholder 0
    [member] = pareto["front"]
    assert pareto["selected"] == member["index"] == trials[best]["index"]
    assert member["metrics"]["score"] == pytest.approx(expected[best])
    assert all(t["metrics"]["score"] == 0 for t in trials)  # trials.yaml keeps what each trial gave


@pytest.mark.parametrize(
    "key, value, fragments",
    [
        ("nas.search.naswot.ensemble.members", "[]", ["a list of 1+ values"]),
        ("nas.search.naswot.ensemble.members", "[naswot, magic]", ["[naswot, magic]", "is not allowed", "zico"]),
        ("nas.search.naswot.ensemble.aggregate", "median", ["'median' is not one of", "log_rank"]),
    ],
)
def test_bad_ensemble_keys_are_one_line(key, value, fragments):
    assert_config_error(config_files("naswot", None, False), key, value, fragments)


def test_the_ensemble_outside_naswot_is_one_line(cli_in_process, tiny):
    cli = cli_in_process
    rea = ["--algos", "random", "--datasets", "synthetic", "--config", tiny, "--nas.search.evaluate_by", "proxy"]
    assert_user_error(cli(*rea, "--nas.search.naswot.proxy", "ensemble"), "ranks the whole population")
