"""Exact resume, or a clear refusal, through the real CLI.

Every algorithm is killed (SIGKILL, at an exact point named by ARCHSEARCH_TEST_KILL_AT) once during search
and once during eval, resumed with --common.resume true, and must end with the same architecture file
(byte for byte), the same weights and the same metrics as an uninterrupted run. Resuming anything else
(other settings, another architecture, a corrupt or foreign checkpoint) is one line and exit status 2.
"""

from __future__ import annotations

import shutil
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
import yaml

from archsearch.common.checkpoint import KILL_AT_ENV, checksum_path, load_checkpoint, save_checkpoint
from tests.conftest import REPO, assert_user_error, run_cli

SYNTHETIC = {"synthetic_train": 96, "synthetic_test": 32}
CELLS = {"n_cells": 3, "init_channels": 4, "n_nodes": 2}
SMALL_LOADER = {"batch_size": 32, "limit_batches": 2}
# drop path on: the resumed epoch draws its masks from the restored RNG (epoch 1 of 2 drops with p 0.1)
EVAL = {
    "model_desc": {"n_cells": 3, "init_channels": 4},
    "loader": SMALL_LOADER,
    "trainer": {"epochs": 2, "drop_path_prob": 0.2},
}
CONTROLLER = {"train_steps": 2, "n_samples": 2}
FINAL = {"n_samples": 2, "eval_batches": 1}
USER_MODEL = {
    "search": {
        "loader": {"limit_batches": 2},
        "trainer": {"epochs": 2, "controller": CONTROLLER},
        "final": FINAL,
        "random": {"n_candidates": 2},
    },
    "eval": {"loader": {"limit_batches": 2}, "trainer": {"epochs": 2}},
}
EXAMPLE = str(REPO / "examples" / "mnist_space.yaml")

# algorithm -> (its tiny config, extra CLI arguments, where its search is killed)
CASES = {
    "darts": (
        {"search": {"model_desc": CELLS, "loader": SMALL_LOADER, "trainer": {"epochs": 2}}},
        [],
        "search:epoch:1",
    ),
    "enas": (
        {
            "search": {
                "space": {"n_nodes": 2, "n_layers": 4},
                "model_desc": CELLS,
                "loader": {"batch_size": 16, "limit_batches": 2},
                "trainer": {"epochs": 2, "controller": CONTROLLER},
                "final": FINAL,
            }
        },
        [],
        "search:epoch:1",
    ),
    # trial 2 is trained but not yet recorded: resume redoes it, proposing it again from the saved generator
    "morphism": (
        {
            "search": {
                "morphism": {"n_trials": 3, "model_width": 8, "model_len": 2},
                "loader": SMALL_LOADER,
                "trainer": {"epochs": 1},
            },
            "eval": {"loader": SMALL_LOADER, "trainer": {"epochs": 2}},
        },
        [],
        "trial 2:epoch:1",
    ),
    # between trial 0's index record and the deletion of its checkpoint
    "random": (
        {
            "search": {
                "model_desc": CELLS,
                "loader": SMALL_LOADER,
                "trainer": {"epochs": 1},
                "random": {"n_candidates": 2},
            }
        },
        [],
        "trial:recorded:0",
    ),
    "naswot": (
        {
            "search": {
                "naswot": {"n_samples": 4, "batch_size": 16},
                "model_desc": {"init_channels": 4, "n_cells_per_stage": 1},
            },
            "eval": {
                "model_desc": {"init_channels": 4, "n_cells_per_stage": 1},
                "loader": SMALL_LOADER,
                "trainer": {"epochs": 2},
            },
        },
        [],
        "trial:recorded:2",
    ),
    "manual": ({"search": {"model_desc": CELLS}}, [], "search:before-result"),
    "user-darts": (USER_MODEL, ["--config", EXAMPLE], "search:epoch:1"),
    "user-enas": (USER_MODEL, ["--config", EXAMPLE], "search:epoch:1"),
    "user-random": (USER_MODEL, ["--config", EXAMPLE], "trial 2:epoch:1"),
}
EVAL_KILL = "eval:epoch:1"
KILLED = -signal.SIGKILL


class Chain:
    """One algorithm run straight, and the same run killed in search, resumed and killed in eval, resumed."""

    def __init__(self, root: Path, case: str) -> None:
        conf, extra, self.search_kill = CASES[case]
        self.algo = case.removeprefix("user-")
        self.user_model = case.startswith("user-")
        self.logdir = root / "logdir"
        self.mid_eval = root / "mid_eval"  # a logdir holding a copy of the killed run as it was killed in eval
        path = root / "tiny.yaml"
        data = {"nas": {"eval": EVAL, **conf}} if not self.user_model else {"nas": conf}
        if not self.user_model:
            data["dataset"] = SYNTHETIC
        path.write_text(yaml.safe_dump(data))
        self.args = ["--algos", self.algo, *extra, "--config", str(path)]
        if not self.user_model:
            self.args[2:2] = ["--datasets", "synthetic"]

    def run(self, prefix: str, *more: str, kill: str | None = None, logdir: Path | None = None):
        env = {KILL_AT_ENV: kill} if kill else None
        return run_cli(*self.args, "--exp-prefix", prefix, *more, logdir=logdir or self.logdir, env=env)

    def out(self, prefix: str, logdir: Path | None = None) -> Path:
        found = list((logdir or self.logdir).glob(f"{prefix}_*_toy/{self.algo}"))
        assert len(found) == 1, found
        return found[0]


def final_arch(out: Path) -> Path:
    return out / yaml.safe_load((out / "search" / "result.yaml").read_text())["final_arch"]


def results(out: Path) -> dict:
    """What must not change with a kill: the architecture's bytes, the eval metrics, the trained weights."""
    metrics = yaml.safe_load((out / "eval" / "metrics.yaml").read_text())
    metrics.pop("train_time_s")
    weights = torch.load(out / "eval" / "model.pt", weights_only=True)["state_dict"]
    return {"arch": final_arch(out).read_bytes(), "metrics": metrics, "weights": weights}


def assert_same_results(a: Path, b: Path) -> None:
    ra, rb = results(a), results(b)
    assert ra["arch"] == rb["arch"]
    assert ra["metrics"] == rb["metrics"]
    assert ra["weights"].keys() == rb["weights"].keys()
    assert all(torch.equal(ra["weights"][k], rb["weights"][k]) for k in ra["weights"])


def straight_and_killed(chain: Chain) -> tuple[Path, Path]:
    """The uninterrupted run (in a thread, beside the killed chain: two one-thread processes) and the killed one."""
    with ThreadPoolExecutor(1) as pool:
        straight = pool.submit(chain.run, "straight")
        killed = killed_in_search_and_eval(chain)
        proc = straight.result()
    assert proc.returncode == 0, proc.stderr[-3000:]
    return chain.out("straight"), killed


def killed_in_search_and_eval(chain: Chain, prefix: str = "killed") -> Path:
    """Kill in search, resume and kill in eval (a copy of that state is kept in chain.mid_eval), resume."""
    first = chain.run(prefix, kill=chain.search_kill)
    assert first.returncode == KILLED, first.stderr[-3000:]
    out = chain.out(prefix)
    assert not (out / "search" / "result.yaml").exists()
    second = chain.run(prefix, "--common.resume", "true", kill=EVAL_KILL)
    assert second.returncode == KILLED, second.stderr[-3000:]
    assert (out / "eval" / "checkpoint.pt").exists() and not (out / "eval" / "metrics.yaml").exists()
    shutil.copytree(chain.logdir, chain.mid_eval)
    third = chain.run(prefix, "--common.resume", "true")
    assert third.returncode == 0, third.stderr[-3000:]
    assert "[eval] resumed from" in third.stdout
    return out


@pytest.fixture(scope="module")
def manual(tmp_path_factory) -> Chain:
    """The manual chain, shared by the refusal tests: "straight" finished, "killed" (in mid_eval) killed in eval."""
    chain = Chain(tmp_path_factory.mktemp("manual"), "manual")
    straight_and_killed(chain)
    return chain


@pytest.mark.parametrize("case", [c for c in CASES if c != "manual"])
def test_kill_in_search_and_in_eval_then_resume_equals_the_uninterrupted_run(tmp_path, case):
    straight, out = straight_and_killed(Chain(tmp_path, case))
    assert_same_results(straight, out)
    if case == "random":  # the checkpoint left by the kill after indexing candidate 0 was cleaned up
        assert not list((out / "search").glob("trial_*_checkpoint.pt*"))


def test_manual_killed_in_search_and_in_eval_equals_the_uninterrupted_run(manual):
    assert_same_results(manual.out("straight"), manual.out("killed"))


def test_a_copied_experiment_folder_resumes_where_it_is(manual, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(manual.mid_eval, elsewhere)
    proc = manual.run("killed", "--common.resume", "true", logdir=elsewhere)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = manual.out("killed", elsewhere)
    assert f"reusing {out / 'search' / 'final_model_desc.yaml'}" in proc.stdout
    assert_same_results(manual.out("straight"), out)


@pytest.mark.parametrize(
    "more, fragments",
    [
        (["--nas.eval.trainer.epochs", "3"], ["cannot resume eval", "nas.eval.trainer.epochs: 2 -> 3"]),
        (["--common.seed", "5"], ["cannot resume search", "common.seed: 2 -> 5"]),
        # a changed model shape is refused by name, not by a state-dict traceback
        (["--nas.eval.model_desc.init_channels", "6"], ["nas.eval.model_desc.init_channels: 4 -> 6"]),
    ],
)
def test_resuming_a_finished_run_with_other_settings_names_what_changed(manual, more, fragments):
    proc = manual.run("straight", "--common.resume", "true", *more)
    assert_user_error(proc, *fragments, "rerun without --common.resume true")


def test_eval_only_resumed_with_another_architecture_is_refused(manual, tmp_path):
    other = tmp_path / "other.yaml"
    other.write_text(final_arch(manual.out("straight")).read_text() + "# another architecture\n")
    proc = manual.run("straight", "--eval-only", "--nas.eval.final_desc", str(other), "--common.resume", "true")
    assert_user_error(proc, "cannot resume eval", "architecture.sha256")


def _bit_flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _model_pt_in_its_place(path: Path, model: Path) -> None:
    shutil.copy(model, path)
    shutil.copy(checksum_path(model), checksum_path(path))


CORRUPTIONS = {
    "bit flip": (lambda path, model: _bit_flip(path), "checksum mismatch"),
    "zero bytes": (lambda path, model: path.write_bytes(b""), "checksum mismatch"),
    "wrong keys": (lambda path, model: save_checkpoint({"weights": torch.zeros(2)}, path), "not a eval checkpoint"),
    "model.pt in its place": (_model_pt_in_its_place, "missing epoch"),  # with its sha256: checksum passes
}


@pytest.mark.parametrize("corruption", CORRUPTIONS)
def test_a_corrupt_checkpoint_is_one_line(manual, tmp_path, corruption):
    corrupt, fragment = CORRUPTIONS[corruption]
    copy = tmp_path / "copy"
    shutil.copytree(manual.mid_eval, copy)
    checkpoint = manual.out("killed", copy) / "eval" / "checkpoint.pt"
    corrupt(checkpoint, manual.out("straight") / "eval" / "model.pt")
    proc = manual.run("killed", "--common.resume", "true", logdir=copy)
    assert_user_error(proc, f"{checkpoint}: ", fragment)


class NanWhenEvaluated(torch.nn.Module):
    """Trains finitely, but its test outputs are NaN (as a model whose eval-mode statistics overflowed)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(3 * 8 * 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.linear(x.flatten(1))
        return out if self.training else out * float("nan")


def test_a_nan_test_loss_fails_the_run_and_writes_no_metrics(tmp_path):
    from archsearch.common.errors import TrainingDiverged
    from archsearch.common.logging import RunLog
    from archsearch.config import load_config
    from archsearch.experiment.run import config_files
    from archsearch.model.load import BuiltModel
    from archsearch.train.context import RunContext
    from archsearch.train.final import train_final

    tiny = tmp_path / "tiny.yaml"
    tiny.write_text(yaml.safe_dump({"nas": {"eval": EVAL}, "dataset": SYNTHETIC}))
    conf = load_config(config_files("manual", "synthetic", False, [tiny]))
    ctx = RunContext(conf, RunLog(None, verbose=False), torch.device("cpu"), tmp_path / "out", False, 2, "manual")
    with pytest.raises(TrainingDiverged, match=r"\[eval\] test loss is nan after 2 epochs: no model or metrics"):
        train_final(ctx, conf["nas"]["eval"], BuiltModel(NanWhenEvaluated(), "model_desc", ""))
    assert not (ctx.eval_dir / "metrics.yaml").exists() and not (ctx.eval_dir / "model.pt").exists()


def test_the_morphism_generator_state_round_trips_through_yaml():
    from archsearch.strategies.morphism.optimizer import MorphismSearchStrategy

    a, b = MorphismSearchStrategy(seed=3), MorphismSearchStrategy(seed=4)
    a.rng.uniform(size=5)
    b.set_rng_state(yaml.safe_load(yaml.safe_dump(a.rng_state())))
    assert b.optimizer.rng is b.rng and b.rng.uniform() == a.rng.uniform()


def test_a_resumed_morphism_search_proposes_what_the_uninterrupted_one_does(tmp_path):
    """In process, so more trials than the CLI test can afford: on the trial loop, a fresh queue rebuilt from
    the index and the trial files, proposing from each trial's own seed, makes the same children."""
    from archsearch.search.trial_loop import Budget, TrialLoop
    from archsearch.strategies.morphism import MorphismLimits, MorphismSearchStrategy, MorphismTrials

    def queue() -> MorphismSearchStrategy:
        return MorphismSearchStrategy(
            n_output_node=4, input_shape=(8, 8, 3), model_len=2, model_width=4, seed=0, max_candidates=8,
            limits=MorphismLimits(n_neighbours=4),
        )  # fmt: skip

    def score(graph, trial) -> dict[str, float]:
        torch.manual_seed(trial.seed)  # the layers a child adds start from the trial's seed, as in training
        graph.set_weights_from_model(graph.produce_torch_model())  # stands in for the trained weights
        return {"val_top1": -float(graph.size())}

    def trials(folder: Path, *budgets: int) -> list[tuple[int, str, list]]:
        for n_trials in budgets:  # each budget is one process's worth: a fresh queue resuming the files
            morphism = MorphismTrials(queue(), folder, score, log=lambda line: None)
            TrialLoop(folder, 0, Budget(n_trials), resume=True, log=lambda line: None).run(
                morphism.propose, morphism.evaluate
            )
        records = yaml.safe_load((folder / "trials.yaml").read_text())
        weights = [load_checkpoint(folder / "trials" / f"trial_{r['index']:03d}.pt") for r in records]
        return [
            (r["father_id"], (folder / r["arch"]).read_text(), [t.tolist() for t in w.values()])
            for r, w in zip(records, weights)
        ]

    assert trials(tmp_path / "straight", 6) == trials(tmp_path / "resumed", 2, 4, 6)
