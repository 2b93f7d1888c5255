"""Hostile and broken inputs (issue 19): every file the project reads outside report/ goes through
common/readers (a FIFO, /dev/zero, garbage or the wrong top-level type is one line naming the file, never a hang
or a traceback); config sections of the wrong type, out-of-range seeds, unsafe names, a user model that cannot
take the dataset's images; Ctrl-C at start-up and while a finished run writes its report."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from archsearch.common.errors import ArchitectureError, CheckpointError, ConfigError, UserError
from archsearch.config import load_config
from archsearch.config import schema as config_schema
from archsearch.experiment.run import RunOptions, checked_folder_name, config_files, resolve_config
from tests.conftest import MAIN, REPO, assert_user_error, config_fixture, default_sigint

# ---- planted files: one line naming the file, for every reader ----------------------------------------------


def _plant(path: Path, kind: str) -> Path:
    """`path` as a hostile file of `kind`: a FIFO nobody writes (reading it would hang), /dev/zero (endless),
    a directory, bytes that are not UTF-8, invalid YAML/JSON, or a document of the wrong top-level type."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "dev_zero":
        path.symlink_to("/dev/zero")
    elif kind == "directory":
        path.mkdir()
    elif kind == "binary":
        path.write_bytes(b"\xff\xfe\x00garbage")
    elif kind == "syntax":
        path.write_text("{[: unclosed\n")
    elif kind == "wrong_type":
        path.write_text("42\n")
    return path


KINDS = ["fifo", "dev_zero", "directory", "binary", "syntax", "wrong_type"]


def _read_trial_index(folder: Path) -> None:
    from archsearch.search.trial_loop import Budget, TrialLoop

    TrialLoop(folder, 0, Budget(n_trials=1), resume=True, log=lambda _: None).read_index()


def _read_pending(folder: Path) -> None:
    from archsearch.search.trial_loop import Budget, TrialLoop

    TrialLoop(folder, 0, Budget(n_trials=1), resume=True, log=lambda _: None)._unfinished([], 3)


def _read_fingerprint(folder: Path) -> None:
    from archsearch.common.fingerprint import check_fingerprint

    check_fingerprint(folder, {"format_version": 1}, True, "search")


def _read_search_result(folder: Path) -> None:
    from archsearch.experiment.phases import read_search_result

    read_search_result(folder / "result.yaml")


def _read_eval_metrics(folder: Path) -> None:
    from archsearch.train.final import read_eval_metrics

    (folder / "model.pt").write_bytes(b"")
    read_eval_metrics(folder)


def _read_model_desc(folder: Path) -> None:
    from archsearch.model.model_desc import ModelDesc

    ModelDesc.load(folder / "desc.yaml")


def _refuse_foreign(folder: Path) -> None:
    from archsearch.model.builder import refuse_foreign_architecture

    refuse_foreign_architecture(folder / "desc.yaml")


def _read_choice_json(folder: Path) -> None:
    from archsearch.spaces.mutables import read_choice_json

    read_choice_json(folder / "choices.json")


def _read_user_model_arch(folder: Path) -> None:
    from archsearch.spaces.user_model import UserModelArch

    UserModelArch.load(folder / "final_arch.json")


def _read_benchmark(folder: Path) -> None:
    from archsearch.search.benchmark_table import load_benchmark_table

    load_benchmark_table(folder / "table.csv")


def _hash_architecture(folder: Path) -> None:
    from archsearch.common.fingerprint import file_sha256

    file_sha256(folder / "desc.yaml")


# (reader, the file it reads inside the folder, its error class, kinds that are not an error for it)
READERS = [
    (_read_trial_index, "trials.yaml", ConfigError, ()),
    (_read_pending, "trials_pending.yaml", ConfigError, ()),
    (_read_fingerprint, "fingerprint.yaml", UserError, ()),
    (_read_search_result, "result.yaml", UserError, ()),
    (_read_eval_metrics, "metrics.yaml", UserError, ()),
    (_read_model_desc, "desc.yaml", ArchitectureError, ()),
    (_refuse_foreign, "desc.yaml", ArchitectureError, ("syntax", "wrong_type")),  # left to the desc loader
    (_read_choice_json, "choices.json", ArchitectureError, ()),
    (_read_user_model_arch, "final_arch.json", ArchitectureError, ()),
    (_read_benchmark, "table.csv", UserError, ("syntax", "wrong_type")),  # CSV: reported as columns or rows
    (_hash_architecture, "desc.yaml", ArchitectureError, ("binary", "syntax", "wrong_type")),  # any bytes hash
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("reader, name, error, fine", READERS, ids=[r[0].__name__.strip("_") for r in READERS])
def test_a_planted_file_is_one_line_naming_it_never_a_hang(tmp_path, reader, name, error, fine, kind):
    path = _plant(tmp_path / name, kind)
    if kind in fine:
        try:
            reader(tmp_path)
        except UserError as e:  # a one-line complaint of its own kind is fine too
            assert "\n" not in str(e)
        return
    with pytest.raises(error) as raised:
        reader(tmp_path)
    message = str(raised.value)
    assert "\n" not in message and str(path) in message, message


def test_a_trial_index_of_broken_records_is_one_line(tmp_path):
    for records, fragment in [
        ([1, 2], "entry 1 is not a trial record"),
        ([{"index": -1, "arch": "a", "seed": 0}], "entry 1 is not a trial record"),
        ([{"index": 0, "arch": "a", "seed": 0}] * 2, "trial 0 appears twice"),
        ([{"index": 0, "seed": 0}], "lacks its arch"),
        ([{"index": 0, "arch": "a", "seed": 0, "metrics": [], "time_s": 1}], "has no metrics.val_top1"),
        ([{"index": 0, "arch": "a", "seed": 0, "metrics": {"val_top1": 0.5}, "time_s": "x"}], "time_s"),
    ]:
        (tmp_path / "trials.yaml").write_text(yaml.safe_dump(records))
        with pytest.raises(ConfigError, match=fragment):
            _read_trial_index(tmp_path)


def test_a_morphism_index_entry_pointing_outside_its_trial_file_is_refused(tmp_path):
    from archsearch.strategies.morphism.strategy import MorphismTrials

    outside = tmp_path / "secret.json"
    outside.write_text("{}")
    trials = MorphismTrials.__new__(MorphismTrials)  # only its file reading is under test
    trials.folder = tmp_path / "search"
    for arch in ["../secret.json", str(outside), "trials/trial_001.json", 5]:
        with pytest.raises(ArchitectureError, match="is not its file trials/trial_000.json"):
            trials.read_arch(0, arch)
    _plant(trials.folder / "trials" / "trial_000.json", "fifo")
    with pytest.raises(ArchitectureError, match="not a regular file"):
        trials.load_arch(0, "trials/trial_000.json")


def test_a_lock_that_is_a_fifo_or_garbage_stops_the_run_without_hanging(tmp_path):
    from archsearch.common.lock import experiment_lock

    for kind in ["fifo", "dev_zero", "syntax", "wrong_type"]:
        folder = tmp_path / kind / "manual"
        _plant(folder.with_name("manual.lock"), kind)
        with pytest.raises(UserError, match="cannot be read"), experiment_lock(folder):
            pass
    folder = tmp_path / "badpid" / "manual"
    folder.parent.mkdir()
    import socket

    folder.with_name("manual.lock").write_text(f'{{"pid": -1, "host": "{socket.gethostname()}"}}')
    with pytest.raises(UserError, match="in use by another run"), experiment_lock(folder):
        pass


@pytest.mark.parametrize("kind", ["fifo", "dev_zero"])
def test_an_include_of_dev_zero_or_a_fifo_is_refused(tmp_path, kind):
    target = _plant(tmp_path / "target.yaml", kind)
    top = tmp_path / "top.yaml"
    top.write_text(f"__include__: {target if kind == 'fifo' else '/dev/zero'}\n")
    with pytest.raises(ConfigError, match="not a regular file"):
        load_config([top])


def test_an_oversized_config_is_refused_before_it_is_read(tmp_path):
    from archsearch.config import MAX_CONFIG_BYTES

    big = tmp_path / "big.yaml"
    with open(big, "wb") as f:
        f.truncate(MAX_CONFIG_BYTES + 1)  # sparse: no disk used
    with pytest.raises(ConfigError, match="over the"):
        load_config([big])


# ---- config sections of the wrong type, at every level, before the schema check --------------------------


def _nested(dotted: str, value) -> dict:
    data = value
    for part in reversed(dotted.split(".")):
        data = {part: data}
    return data


SECTIONS = sorted(p for p in config_schema.SECTIONS if p)


@pytest.mark.parametrize("value", [5, [1], "text", None])
def test_every_section_of_the_wrong_type_in_a_file_is_one_line_naming_the_file(tmp_path, value):
    for section in SECTIONS:
        user = tmp_path / "mine.yaml"
        user.write_text(yaml.safe_dump(_nested(section, value)))
        # random is a strategy over spaces: its search space is read from the files before the schema check
        with pytest.raises(ConfigError) as raised:
            resolve_config("random", None, RunOptions(config=(str(user),)), [("common.logdir", "x")])
        message = str(raised.value)
        assert f"config {section} (from {user})" in message and "a mapping of settings" in message, message


def test_a_common_section_that_is_a_list_blames_the_file_not_the_override(tmp_path):
    user = tmp_path / "mine.yaml"
    user.write_text("common: [1, 2]\n")
    with pytest.raises(ConfigError) as raised:
        load_config([*config_files("manual", None, False), user], [("common.logdir", "/tmp/x")])
    assert str(raised.value).startswith(f"config common (from {user})"), raised.value


# ---- seeds ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", ["99999999999999999999", str(2**32), "-1"])
def test_a_seed_outside_what_torch_and_numpy_take_is_one_line(seed):
    with pytest.raises(ConfigError, match=f"--common.seed: '{seed}' is not allowed \\(an integer from 0 to 4294967295"):
        load_config(config_files("manual", None, False), [("common.seed", seed)])


def test_the_largest_seed_seeds_every_generator_and_its_trials():
    from archsearch.common.seeding import seed_everything
    from archsearch.search.trial_loop import trial_seed

    conf = load_config(config_files("manual", None, False), [("common.seed", str(config_schema.SEED_MAX))])
    seed_everything(conf["common"]["seed"])
    torch.manual_seed(trial_seed(conf["common"]["seed"], 10_000))


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        ([("common.seeds", "[0, 99999999999999999999]")], "integers from 0 to 4294967295"),
        ([("common.seeds", "[-1]")], "integers from 0 to 4294967295"),
        ([("common.seeds", "[0]"), ("common.seed", "5")], "--common.seeds and --common.seed conflict"),
        ([("common.seed", "5"), ("common.seeds", "[0, 1]")], "--common.seeds and --common.seed conflict"),
        ([("common.seeds", "[0]"), ("common.seeds", "[1]")], "given twice"),
    ],
)
def test_seed_sweeps_refuse_bad_seeds_and_a_conflicting_seed(overrides, fragment):
    from archsearch.experiment.sweep import split_seeds

    with pytest.raises(UserError, match=fragment):
        split_seeds(overrides)


# ---- names that become folders ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a:b", "a(b)", "a b", ".hidden", "..", "a/b", "ü", "a;rm", "x" * 101, ""])
def test_experiment_names_are_restricted_to_a_safe_charset(name):
    with pytest.raises(ConfigError, match="folder name"):
        load_config(config_files("manual", None, False), [("common.experiment_name", repr(name))])
    with pytest.raises(UserError, match="not a plain folder name"):
        checked_folder_name(name, "--exp-prefix")


def test_a_safe_experiment_name_is_taken():
    conf = load_config(config_files("manual", None, False), [("common.experiment_name", "run-1.v2_A")])
    assert conf["common"]["experiment_name"] == "run-1.v2_A"
    assert checked_folder_name("run-1.v2_A", "--exp-prefix") == "run-1.v2_A"


# ---- a user model that cannot take the dataset's images --------------------------------------------------------


def _space(model_kwargs: dict, channels: int = 1):
    import archsearch.plugins  # noqa: F401 - registers the spaces
    from archsearch.spaces.user_model import UserModelSpace

    conf_space = {"model": "examples.mnist_space:Net", "model_kwargs": model_kwargs}
    return UserModelSpace(conf_space, {}, {"name": "digits", "channels": channels, "image_size": 8})


def test_a_user_model_with_other_input_channels_than_the_dataset_is_one_line():
    with pytest.raises(UserError) as raised:
        _space({"in_channels": 3}).size()
    message = str(raised.value)
    assert "takes 3 input channels" in message and "dataset digits has 1" in message, message
    with pytest.raises(UserError, match="takes 1 input channels"):
        _space({"in_channels": 1}, channels=3).differentiable_supernet()
    assert _space({"in_channels": 1}).size() > 1  # the matching one builds


def test_a_user_model_whose_first_layer_is_linear_names_its_features():
    from torch import nn

    from archsearch.spaces.user_model import check_model_inputs

    dataset = {"name": "digits", "channels": 1, "image_size": 8}
    with pytest.raises(UserError, match="takes 100 input features.*1x8x8 images give it 64"):
        check_model_inputs(nn.Sequential(nn.Flatten(), nn.Linear(100, 10)), dataset, "m:Net")
    check_model_inputs(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), dataset, "m:Net")


# ---- model files: no weights_only=False advice, resume advice only for a run's own checkpoints -----------------


class _Payload:
    def __reduce__(self):
        return (os.getcwd, ())


def test_a_model_file_with_code_names_the_reason_not_torchs_advice(tmp_path):
    from archsearch.common.checkpoint import load_checkpoint

    path = tmp_path / "model.pt"
    torch.save({"state_dict": _Payload()}, path)
    with pytest.raises(CheckpointError) as raised:
        load_checkpoint(path)
    message = str(raised.value)
    assert "weights_only" not in message and "--common.resume" not in message, message
    assert "\n" not in message and "posix.getcwd" in message and "never unpickles" in message, message
    path.with_name("model.pt.sha256").write_text("0" * 64 + "\n")
    with pytest.raises(CheckpointError) as raised:
        load_checkpoint(path)
    assert "checksum mismatch" in str(raised.value) and "--common.resume" not in str(raised.value)
    with pytest.raises(CheckpointError, match="checksum mismatch.*rerun without --common.resume true"):
        load_checkpoint(path, require_checksum=True)  # a resume reading its own checkpoint


# ---- Ctrl-C: at start-up, and while a finished run writes its report ----------------------------------------------


def _interrupt_at(point: str, tmp_path: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the CLI until it waits at interrupt point `point`, send it SIGINT there, and return the result."""
    ready = tmp_path / "ready"
    env = {
        **os.environ,
        "PYTHONHASHSEED": "0",
        "OMP_NUM_THREADS": "1",
        "ARCHSEARCH_TEST_SIGINT_AT": point,
        "ARCHSEARCH_TEST_SIGINT_READY": str(ready),
    }
    cmd = [sys.executable, str(MAIN), *args, "--common.logdir", str(tmp_path / "logdir"), "--common.num_threads", "1"]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO, preexec_fn=default_sigint
    )
    deadline = time.monotonic() + timeout
    while not ready.exists():  # the process touches it at the point and then waits for the signal there
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the run never reached the interrupt point"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _one_interrupted_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 130, (proc.returncode, proc.stderr[-3000:])
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("interrupted") and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


def test_ctrl_c_during_start_up_is_one_interrupted_line(tmp_path):
    line = _one_interrupted_line(_interrupt_at("startup", tmp_path, "--algos", "manual"))
    assert "before the run started" in line
    assert not (tmp_path / "logdir").exists()


TINY = {
    "nas": {
        "eval": {
            "model_desc": {"n_cells": 3, "init_channels": 4},
            "loader": {"batch_size": 32, "limit_batches": 2},
            "trainer": {"epochs": 1},
        },
    },
    "dataset": {"synthetic_train": 64, "synthetic_test": 32},
    "report": {"latency": False},
}
tiny = config_fixture(TINY)


def test_ctrl_c_while_a_finished_run_writes_its_report_says_how_to_write_it(tmp_path, tiny):
    proc = _interrupt_at("report", tmp_path, "--algos", "manual", "--datasets", "synthetic", "--config", tiny)
    line = _one_interrupted_line(proc)
    out = tmp_path / "logdir" / "archsearch_synthetic_toy" / "manual"
    assert "the run is finished" in line and f"archsearch report {out}" in line, line
    assert "--common.resume" not in line
    assert (out / "summary.yaml").exists() and not (out / "report.html").exists()
    assert not out.with_name("manual.lock").exists()  # the lock was released


def test_a_user_error_is_still_one_line_with_the_lazy_cli(cli):
    assert_user_error(cli("--algos", "nope"), "unknown algorithm in --algos")
