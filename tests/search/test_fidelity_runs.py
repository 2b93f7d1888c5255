"""Successive halving with trained trials (the issue's toy command, small): a promoted candidate continues
from its checkpoint (no epoch trained twice, and its result equals training straight to the rung's
epochs), checkpoints are gone at the end, and kill -9 inside a promoted trial's training, then resume,
gives the uninterrupted search's trial index."""

from __future__ import annotations

import signal

import pytest
import yaml

from archsearch.common.checkpoint import KILL_AT_ENV
from archsearch.experiment.run import RunOptions, run_experiment

ARGS = {
    "nas.search.space.name": "nasbench201",
    "nas.search.random.n_candidates": 3,
    "nas.search.loader.limit_batches": 2,
    "common.num_threads": 1,
}
SH = "{resource: epochs, min: 1, max: 3, eta: 3}"


def search(logdir, name, fidelity):
    conf = {**ARGS, "common.logdir": str(logdir), "common.experiment_name": name, "nas.search.fidelity": fidelity}
    run_experiment("random", "synthetic", RunOptions(phases="search"), conf)
    return logdir / name / "random"


def timeless(records):
    return [{k: v for k, v in r.items() if k != "time_s"} for r in records]


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    return search(tmp_path_factory.mktemp("fidelity"), "straight", yaml.safe_load(SH))


def test_a_promoted_candidate_continues_from_its_checkpoint(straight, tmp_path):
    records = yaml.safe_load((straight / "search" / "trials.yaml").read_text())
    assert [(r["candidate"], r["rung"], r["resource"]) for r in records][:3] == [(0, 0, 1), (1, 0, 1), (2, 0, 1)]
    promoted = records[3]
    assert (promoted["rung"], promoted["resource"]) == (1, 3)
    events = yaml.safe_load((straight / "log.yaml").read_text())
    epochs = {}
    for e in events:
        if isinstance(e, dict) and str(e.get("event", "")).endswith("_epoch") and e["event"].startswith("trial "):
            epochs.setdefault(e["event"], []).append(e["epoch"])
    # rung 0 trains epoch 1 of a 3-epoch schedule; the promotion trains epochs 2 and 3 only
    assert epochs["trial 4_epoch"] == [2, 3] and all(epochs[f"trial {i}_epoch"] == [1] for i in (1, 2, 3))
    assert not list((straight / "search").glob("trial_*_checkpoint.pt*"))  # gone once no promotion can come
    # continuing 1 -> 3 epochs is the same computation as training the candidate straight for 3
    once = search(tmp_path, "once", {"resource": "epochs", "min": 3, "max": 3, "eta": 3})
    direct = yaml.safe_load((once / "search" / "trials.yaml").read_text())
    first = next(r for r in direct if r["candidate"] == promoted["candidate"])
    assert first["arch"] == promoted["arch"] and first["resource"] == 3
    assert first["metrics"]["val_top1"] == promoted["metrics"]["val_top1"]


def test_the_report_draws_each_candidate_across_rungs(straight):
    from archsearch.report.plots import fidelity_curves
    from archsearch.report.run_data import load_run

    fig = fidelity_curves(load_run(straight))
    lines = [line for line in fig.axes[0].get_lines() if len(line.get_xdata()) > 1]
    assert len(lines) == 1 and list(lines[0].get_xdata()) == [1, 3]  # the promoted candidate: rung 0, then 1
    assert "3 candidates, 1 promoted" in fig.axes[0].get_title()


def test_kill_inside_a_promotion_then_resume_gives_the_uninterrupted_index(straight, cli):
    args = ["--algos", "random", "--datasets", "synthetic", "--search-only", "--common.experiment_name", "killed",
            "--nas.search.fidelity", SH, *[x for k, v in ARGS.items() if k != "common.num_threads"
                                           for x in (f"--{k}", str(v))]]  # fmt: skip
    # inside the promoted trial's training, after its first epoch of rung 1 (the candidate's epoch 2); a kill
    # between trials of any rung is tests/search/test_fidelity.py's resume test (each a subprocess costs ~7 s)
    assert cli(*args, env={KILL_AT_ENV: "trial 4:epoch:2"}).returncode == -signal.SIGKILL
    out = cli.logdir / "killed" / "random" / "search"
    assert (out / "trial_000_checkpoint.pt").exists()  # the candidate's checkpoint survived the kill
    proc = cli(*args, "--common.resume", "true")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resumed from" in proc.stdout and "at epoch 2/3" in proc.stdout
    resumed = yaml.safe_load((out / "trials.yaml").read_text())
    expected = yaml.safe_load((straight / "search" / "trials.yaml").read_text())
    assert timeless(resumed) == timeless(expected)
    assert not list(out.glob("trial_*_checkpoint.pt*"))
