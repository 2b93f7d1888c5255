"""NASWOT through the real CLI: proxy scoring on the trial loop, correlation report against a table, eval
of the best, other spaces and proxies, and the one-line errors for the keys it had before."""

import yaml

from archsearch.model.model_desc import ModelDesc
from archsearch.spaces.nasbench201 import desc_to_arch, index_to_arch
from tests.conftest import assert_user_error, config_fixture

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


def test_bad_proxy_and_the_old_keys_are_user_errors(cli, tiny, tmp_path):
    base = ["--algos", "naswot", "--datasets", "synthetic", "--config", tiny]
    assert_user_error(cli(*base, "--nas.search.naswot.proxy", "magic"), "'magic' is not one of")
    assert_user_error(cli(*base, "--nas.search.naswot.benchmark_csv", "x.csv"), "renamed", "--nas.search.benchmark")
    assert_user_error(cli(*base, "--nas.search.naswot.space", "darts"), "renamed", "nas.search.space.name")
    old_file = tmp_path / "old.yaml"
    old_file.write_text(yaml.safe_dump({"nas": {"search": {"naswot": {"arch_column": "arch"}}}}))
    assert_user_error(cli(*base, "--config", str(old_file)), "old.yaml", "benchmark_columns")
