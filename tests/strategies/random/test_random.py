"""Random search through the CLI: tabular mode on NAS-Bench-201 (a table the test writes), trained trials on
DARTS cells and on a user model, and the one-line errors of impossible settings."""

from __future__ import annotations

import signal

import yaml

from archsearch.common.checkpoint import KILL_AT_ENV
from tests.conftest import REPO, assert_user_error
from tests.strategies.rea.test_rea import nb201_table  # noqa: F401 - the fixture

TABLE = ["--datasets", "synthetic", "--search-only", "--nas.search.evaluate_by", "table"]
TINY_TRAIN = [
    "--datasets",
    "synthetic",
    "--search-only",
    "--nas.search.random.n_candidates",
    "2",
    "--nas.search.trainer.epochs",
    "1",
    "--nas.search.loader.limit_batches",
    "2",
]


def test_random_in_tabular_mode_draws_no_cell_twice_and_resumes_without_rerunning(cli, nb201_table):  # noqa: F811
    args = [
        "--algos",
        "random",
        "--nas.search.space",
        "nasbench201",
        *TABLE,
        "--nas.search.benchmark",
        str(nb201_table),
    ]
    args += ["--nas.search.random.n_candidates", "40"]
    assert cli(*args, env={KILL_AT_ENV: "trial:recorded:4"}).returncode == -signal.SIGKILL
    proc = cli(*args, "--common.resume", "true")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resuming after 5 finished trials" in proc.stdout and "trial 5/40" not in proc.stdout
    out = cli.logdir / "archsearch_synthetic_toy" / "random"
    trials = yaml.safe_load((out / "search" / "trials.yaml").read_text())
    assert len({t["arch"] for t in trials}) == len(trials) == 40
    summary = yaml.safe_load((out / "summary.yaml").read_text())["search"]
    assert summary["benchmark_top1"] == max(t["metrics"]["benchmark_top1"] for t in trials)


def test_impossible_settings_are_one_line(cli_in_process, nb201_table, tmp_path):  # noqa: F811
    cli = cli_in_process
    base = ["--algos", "random", "--nas.search.space", "nasbench201", *TABLE]
    assert_user_error(cli(*base), "--nas.search.benchmark PATH")
    assert_user_error(cli(*base, "--nas.search.benchmark", str(tmp_path / "none.csv")), "none.csv", "does not exist")
    bad_columns = ["--nas.search.benchmark", str(nb201_table), "--nas.search.benchmark_columns", "[arch, accuracy]"]
    assert_user_error(cli(*base, *bad_columns), "no column 'arch'", "benchmark_columns")
    other = tmp_path / "other.csv"
    other.write_text("architecture,accuracy\nnot-a-cell,50\n")
    assert_user_error(cli(*base, "--nas.search.benchmark", str(other)), "has no row", "for this search space")
    assert_user_error(
        cli("--algos", "random", "--nas.search.random.primitives", "[skip_connect]"), "model_desc.primitives"
    )
    darts = ["--algos", "random", "--nas.search.space", "darts", *TABLE, "--nas.search.benchmark", str(nb201_table)]
    assert_user_error(cli(*darts), "evaluate_by table needs a search space with a benchmark table")


def test_random_trains_darts_cells(cli):
    cells = ["--nas.search.model_desc.n_cells", "3", "--nas.search.model_desc.init_channels", "4"]
    proc = cli("--algos", "random", *TINY_TRAIN, *cells, "--nas.search.model_desc.n_nodes", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = cli.logdir / "archsearch_synthetic_toy" / "random" / "search"
    trials = yaml.safe_load((out / "trials.yaml").read_text())
    assert len(trials) == 2 and all(0 <= t["metrics"]["val_top1"] <= 1 for t in trials)
    assert not list(out.glob("trial_*_checkpoint.pt*"))  # deleted once each trial was in the index
    assert (out / "final_model_desc.yaml").exists()


def test_random_trains_a_user_model(cli):
    example = str(REPO / "examples" / "mnist_space.yaml")
    proc = cli("--algos", "random", "--config", example, *TINY_TRAIN[2:])
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = next(cli.logdir.glob("*/random/search"))
    assert len(yaml.safe_load((out / "trials.yaml").read_text())) == 2


def test_random_scored_by_a_proxy_and_its_dry_run(cli):
    args = ["--algos", "random", "--nas.search.space", "nasbench201", "--datasets", "synthetic"]
    proc = cli(*args, "--dry-run", "--nas.search.evaluate_by", "proxy")
    assert proc.returncode == 0 and "random: 3 trials, evaluated by proxy" in proc.stdout
    proxy = ["--nas.search.evaluate_by", "proxy", "--nas.search.naswot.batch_size", "8"]
    proc = cli(*args, "--search-only", *proxy, "--nas.search.random.n_candidates", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    trials = yaml.safe_load(next(cli.logdir.glob("*/random/search/trials.yaml")).read_text())
    assert [sorted(t["metrics"]) for t in trials] == [["score"], ["score"]]
