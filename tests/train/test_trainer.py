"""The shared training loop: hooks, divergence handling, checkpoints, CUDA-only switches."""

import hashlib
import os
import shutil

import pytest
import torch
from torch import nn

from archsearch.common import checkpoint as checkpoint_module
from archsearch.common.checkpoint import (
    WAIT_AT_ENV,
    WAIT_FILE_ENV,
    CheckpointError,
    checksum_path,
    load_checkpoint,
    save_checkpoint,
)
from archsearch.common.errors import TrainingDiverged
from archsearch.common.logging import RunLog
from archsearch.train.trainer import Trainer

CONF = {
    "epochs": 3,
    "grad_clip": 5.0,
    "drop_path_prob": 0.0,
    "label_smoothing": 0.0,
    "amp": True,
    "channels_last": True,
    "optimizer": {
        "type": "sgd",
        "lr": 0.1,
        "momentum": 0.9,
        "weight_decay": 0.0,
        "nesterov": False,
        "betas": [0.9, 0.999],
    },
    "lr_schedule": {"type": "cosine", "min_lr": 0.0, "step_size": 1, "gamma": 0.1, "t0": 1, "t_mul": 2},
}


def batches(n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(8, 5, generator=g), torch.randint(0, 3, (8,), generator=g)) for _ in range(n)]


class Recorder(Trainer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls = []

    def pre_fit(self, *a):
        self.calls.append("pre_fit")

    def pre_epoch(self, epoch, *a):
        self.calls.append(f"pre_epoch{epoch}")

    def pre_step(self, step, x, y):
        self.calls.append("pre_step")

    def post_step(self, step, x, y, logits, loss):
        self.calls.append("post_step")

    def post_epoch(self, epoch, metrics):
        self.calls.append(f"post_epoch{epoch}")

    def post_fit(self, *a):
        self.calls.append("post_fit")


def test_hooks_run_in_order_and_cuda_switches_are_off_on_cpu(tmp_path):
    trainer = Recorder({**CONF, "epochs": 2}, nn.Linear(5, 3), RunLog(None, verbose=False), torch.device("cpu"), "t")
    assert not trainer.amp and not trainer.channels_last
    trainer.fit(batches(2), batches(1))
    step = ["pre_step", "post_step"] * 2
    assert trainer.calls == [
        "pre_fit",
        "pre_epoch0",
        *step,
        "post_epoch0",
        "pre_epoch1",
        *step,
        "post_epoch1",
        "post_fit",
    ]
    assert [h["epoch"] for h in trainer.history] == [1, 2] and "val_top1" in trainer.history[0]


class BlowsUp(nn.Module):
    """A model whose output becomes NaN once it has seen `after` training batches."""

    def __init__(self, after: int):
        super().__init__()
        self.linear, self.after, self.seen = nn.Linear(5, 3), after, 0

    def forward(self, x):
        if self.training:
            self.seen += 1
        out = self.linear(x)
        return out * float("nan") if self.seen > self.after else out


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(tmp_path):
    checkpoint = tmp_path / "checkpoint.pt"
    trainer = Trainer(CONF, BlowsUp(after=5), RunLog(None, verbose=False), torch.device("cpu"), "search", checkpoint)
    with pytest.raises(
        TrainingDiverged, match=rf"loss became nan in epoch 2; the last good checkpoint is {checkpoint}"
    ):
        trainer.fit(batches(4))
    state = load_checkpoint(checkpoint)
    assert state["epoch"] == 1 and all(torch.isfinite(v).all() for v in state["model"].values())


def test_checkpoint_resume_continues_where_it_stopped(tmp_path):
    checkpoint = tmp_path / "checkpoint.pt"
    torch.manual_seed(0)
    straight = Trainer(CONF, nn.Linear(5, 3), RunLog(None, verbose=False), torch.device("cpu"), "t")
    straight.fit(batches())
    torch.manual_seed(0)
    first = Trainer(
        {**CONF, "epochs": 3}, nn.Linear(5, 3), RunLog(None, verbose=False), torch.device("cpu"), "t", checkpoint
    )
    first.epochs = 1  # stop after one epoch, as a killed run would
    first.fit(batches())
    resumed = Trainer(CONF, nn.Linear(5, 3), RunLog(None, verbose=False), torch.device("cpu"), "t", checkpoint)
    resumed.fit(batches(), resume=True)
    assert resumed.epoch == 3 and len(resumed.history) == 3
    for a, b in zip(straight.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)


def test_nan_in_epoch_1_names_no_checkpoint_and_says_how_to_retry(tmp_path):
    checkpoint = tmp_path / "checkpoint.pt"
    trainer = Trainer(CONF, BlowsUp(after=0), RunLog(None, verbose=False), torch.device("cpu"), "search", checkpoint)
    with pytest.raises(TrainingDiverged) as err:
        trainer.fit(batches(4))
    message = str(err.value)
    assert "in epoch 1" in message and "checkpoint" not in message and not checkpoint.exists()
    assert "optimizer.lr" in message and "rerun without --common.resume true" in message


def _one_epoch_checkpoint(tmp_path, model: nn.Module):
    checkpoint = tmp_path / "checkpoint.pt"
    Trainer({**CONF, "epochs": 1}, model, RunLog(None, verbose=False), torch.device("cpu"), "eval", checkpoint).fit(
        batches(2)
    )
    return checkpoint


def _resume(checkpoint, model: nn.Module) -> None:
    Trainer(CONF, model, RunLog(None, verbose=False), torch.device("cpu"), "eval", checkpoint).fit(
        batches(2), resume=True
    )


def _assert_one_line(err, *fragments: str) -> None:
    message = str(err.value)
    assert "\n" not in message and all(f in message for f in fragments), message


def test_a_checkpoint_of_another_model_shape_is_one_line(tmp_path):
    checkpoint = _one_epoch_checkpoint(tmp_path, nn.Linear(5, 3))
    with pytest.raises(CheckpointError) as err:
        _resume(checkpoint, nn.Sequential(nn.Linear(5, 3)))
    _assert_one_line(err, f"{checkpoint}: does not fit this eval model")


def test_a_checkpoint_without_its_checksum_or_replaced_is_one_line(tmp_path):
    checkpoint = _one_epoch_checkpoint(tmp_path, nn.Linear(5, 3))
    shutil.copy(checkpoint, tmp_path / "saved.pt")
    save_checkpoint({"model": {}}, tmp_path / "other.pt")
    shutil.copy(tmp_path / "other.pt", checkpoint)  # another file in its place: the checksum does not match
    with pytest.raises(CheckpointError) as err:
        _resume(checkpoint, nn.Linear(5, 3))
    _assert_one_line(err, f"{checkpoint}: checksum mismatch")
    checksum_path(checkpoint).unlink()
    with pytest.raises(CheckpointError) as err:
        _resume(checkpoint, nn.Linear(5, 3))
    _assert_one_line(err, f"{checkpoint}: no checksum file")


def test_a_kill_between_checkpoint_and_checksum_writes_still_verifies(tmp_path):
    path = tmp_path / "state.pt"
    save_checkpoint({"x": torch.zeros(1)}, path)
    old = path.read_bytes()
    save_checkpoint({"x": torch.ones(1)}, path)
    # killed after the checksum file listed the new and old digests, before the new file replaced the old
    new_digest = checksum_path(path).read_text().split()[0]
    path.write_bytes(old)
    checksum_path(path).write_text(f"{new_digest}\n{hashlib.sha256(old).hexdigest()}\n")
    assert torch.equal(load_checkpoint(path, require_checksum=True)["x"], torch.zeros(1))


def test_a_wait_fault_point_stops_after_its_checkpoint_and_says_so(tmp_path, monkeypatch):
    """ARCHSEARCH_TEST_WAIT_AT: the marker names the process and the point, written after that epoch's
    checkpoint; without a signal the wait ends with an error at its limit (shortened here)."""
    marker, checkpoint = tmp_path / "waiting", tmp_path / "checkpoint.pt"
    monkeypatch.setenv(WAIT_AT_ENV, "search:epoch:2")
    monkeypatch.setenv(WAIT_FILE_ENV, str(marker))
    monkeypatch.setattr(checkpoint_module, "WAIT_LIMIT_S", 0.01)
    trainer = Trainer(CONF, nn.Linear(5, 3), RunLog(None, verbose=False), torch.device("cpu"), "search", checkpoint)
    with pytest.raises(RuntimeError, match="test fault at search:epoch:2: no signal came within"):
        trainer.fit(batches())
    assert marker.read_text() == f"{os.getpid()} waiting at search:epoch:2\n"
    assert load_checkpoint(checkpoint)["epoch"] == 2


def test_a_malicious_pickle_is_one_line_and_runs_nothing(tmp_path):
    class Boom:
        def __reduce__(self):
            return (exec, ("raise SystemExit('ran code')",))

    path = tmp_path / "evil.pt"
    torch.save({"x": Boom()}, path)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    # read as a model file (no checksum asked for); torch's advice to load it with weights_only=False is dropped
    _assert_one_line(err, f"{path}: model file cannot be read", "beyond tensors")
    assert "weights_only" not in str(err.value) and "can still be loaded" not in str(err.value)
