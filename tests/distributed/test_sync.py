"""Synchronization under torch.distributed, in-process (two gloo ranks started by torch.multiprocessing).

The property that proves the gradient averaging right: one DARTS search step (architecture step, then weight
step), first and second order, on 2 ranks at per-rank batch b gives the same weights and architecture
parameters as one process at batch 2b, within 1e-5, on a supernet without batch-statistics coupling. Also:
the loaders' rank slices add up to the single-process batches (augmentation included), an uneven split is
weighted exactly, and ranks that diverged are caught. The same things through the CLI, under torchrun, are in
test_torchrun_cli.py.
"""

from __future__ import annotations

import traceback
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

from archsearch.common import distributed
from archsearch.common.errors import ConfigError
from archsearch.common.logging import RunLog
from archsearch.data.loaders import Augment, TensorLoader
from archsearch.data.providers import TensorImages
from archsearch.strategies.darts.bilevel import BilevelOptimizer
from archsearch.train.trainer import Trainer

WORLD = 2
B = 6  # per-rank batch; the single process takes 2 * B
TRAINER = {
    "epochs": 1,
    "optimizer": {"type": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 3e-4, "nesterov": False,
                  "betas": [0.9, 0.999]},
    "lr_schedule": {"type": "constant", "min_lr": 0.0, "step_size": 1, "gamma": 1.0, "t0": 1, "t_mul": 1},
    "grad_clip": 5.0,
    "drop_path_prob": 0.0,
    "label_smoothing": 0.0,
    "amp": False,
    "channels_last": False,
}  # fmt: skip
ARCH_OPTIMIZER = {"type": "adam", "lr": 3e-2, "betas": [0.5, 0.999], "weight_decay": 1e-3}


class TinySupernet(nn.Module):
    """Two mixed layers of three candidate ops each, softmax(alpha)-weighted, no BatchNorm (no coupling of
    the samples of a batch, so a split batch has exactly the gradient of the whole one)."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            nn.ModuleList([nn.Linear(8, 8), nn.Sequential(nn.Linear(8, 8), nn.Tanh()), nn.Identity()]) for _ in "ab"
        )
        self.head = nn.Linear(8, 4)
        self.alphas = nn.Parameter(1e-3 * torch.randn(2, 3))

    def arch_params(self) -> list[nn.Parameter]:
        return [self.alphas]

    def nonarch_params(self) -> list[nn.Parameter]:
        return [p for n, p in self.named_parameters() if n != "alphas"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for ops, weights in zip(self.layers, F.softmax(self.alphas, dim=-1)):
            x = sum(w * op(x) for w, op in zip(weights, ops))
        return self.head(x)


def search_steps(order: str, batches: list[tuple[torch.Tensor, ...]]) -> dict[str, torch.Tensor]:
    """Two DARTS steps (the second with momentum buffers in the virtual step) on the given batches."""
    torch.manual_seed(0)
    model = TinySupernet()
    trainer = Trainer(TRAINER, model, RunLog(None, verbose=False), torch.device("cpu"), "search")
    bilevel = BilevelOptimizer(
        ARCH_OPTIMIZER, model.arch_params(), trainer.weight_params(), trainer.optimizer, model, order
    )

    def loss_fn(x, y):
        return F.cross_entropy(model(x), y)

    for x, y, xv, yv in batches:
        bilevel.step(loss_fn, x, y, xv, yv, trainer.optimizer.param_groups[0]["lr"])
        trainer.train_step(x, y)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def global_batches(steps: int = 2) -> list[tuple[torch.Tensor, ...]]:
    g = torch.Generator().manual_seed(1)
    return [
        (torch.randn(2 * B, 8, generator=g), torch.randint(0, 4, (2 * B,), generator=g),
         torch.randn(2 * B, 8, generator=g), torch.randint(0, 4, (2 * B,), generator=g))
        for _ in range(steps)
    ]  # fmt: skip


def images() -> TensorImages:
    g = torch.Generator().manual_seed(2)
    return TensorImages(torch.randint(0, 256, (23, 3, 8, 8), generator=g, dtype=torch.uint8), torch.arange(23) % 5)


def loader(train: bool) -> TensorLoader:
    aug = Augment(crop_padding=2, hflip=True, cutout=3) if train else None
    return TensorLoader(
        images(), torch.arange(23), 2 * B, shuffle=train, augment=aug, mean=[0.5] * 3, std=[0.25] * 3,
        device=torch.device("cpu"), seed=5,
    )  # fmt: skip


def worker(rank: int, init_file: str, out_dir: str) -> None:
    try:
        torch.set_num_threads(1)
        dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
        results: dict = {}
        for order in ("first", "second"):
            mine = [tuple(t[rank * B : (rank + 1) * B] for t in batch) for batch in global_batches()]
            results[order] = search_steps(order, mine)
        # the rank slices of every loader batch, train (augmented as one global batch) and eval
        for train in (True, False):
            results[f"loader_{train}"] = [(x, y) for x, y in loader(train)]
        # an uneven split: rank 0 holds 1 sample, rank 1 holds 3; the weighted average is the 4-sample mean
        grad = torch.full((2,), float(rank + 1))
        distributed.average_gradients([grad], n_local=1 if rank == 0 else 3)
        results["uneven"] = grad
        # ranks that disagree are named
        try:
            distributed.check_identical("test state", distributed.tensors_digest([torch.tensor([rank])]))
            results["diverged"] = ""
        except distributed.RanksDiverged as e:
            results["diverged"] = str(e)
        results["same"] = distributed.check_identical("equal", distributed.tensors_digest([torch.ones(3)]))
        try:  # SyncBatchNorm is GPU-only in torch: asking for it on CPU ranks is one line, not a crash mid-run
            Trainer(
                {**TRAINER, "sync_bn": True}, nn.BatchNorm1d(3), RunLog(None, verbose=False), torch.device("cpu"), "t"
            )
            results["sync_bn"] = ""
        except ConfigError as e:
            results["sync_bn"] = str(e)
        torch.save(results, Path(out_dir) / f"rank{rank}.pt")
        dist.destroy_process_group()
    except Exception:  # the parent sees the failure in the file, not a hang
        (Path(out_dir) / f"rank{rank}.error").write_text(traceback.format_exc())
        raise


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("ranks")
    mp.spawn(worker, args=(str(out / "init"), str(out)), nprocs=WORLD, join=True)
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]


@pytest.mark.parametrize("order", ["first", "second"])
def test_two_ranks_at_batch_b_step_like_one_process_at_batch_2b(ranks, order):
    single = search_steps(order, global_batches())
    for result in ranks:
        assert result[order].keys() == single.keys()
        for key, value in single.items():
            torch.testing.assert_close(result[order][key], value, atol=1e-5, rtol=0, msg=f"{order} order: {key}")
    for key in single:  # and the two ranks are bit-identical, not only close
        assert torch.equal(ranks[0][order][key], ranks[1][order][key]), key
    start = TinySupernet()  # the steps moved the alphas: the comparison is not of untouched values
    assert not torch.allclose(single["alphas"], torch.zeros_like(start.alphas), atol=1e-3)


@pytest.mark.parametrize("train", [True, False])
def test_rank_slices_of_every_batch_add_up_to_the_single_process_batch(ranks, train):
    single = list(loader(train))
    batches = [r[f"loader_{train}"] for r in ranks]
    assert len(batches[0]) == len(batches[1]) == len(single)
    for (x0, y0), (x1, y1), (x, y) in zip(*batches, single):
        assert torch.equal(torch.cat([x0, x1]), x) and torch.equal(torch.cat([y0, y1]), y)
    # 23 images at a global batch of 12: the last batch has 11, split 6 + 5; eval keeps every image once
    assert sum(len(y) for r in batches for _, y in r) == 23


def test_uneven_split_is_weighted_by_sample_count(ranks):
    expected = (1 * 1.0 + 3 * 2.0) / 4
    for r in ranks:
        assert torch.allclose(r["uneven"], torch.full((2,), expected))


def test_diverged_ranks_are_named_and_equal_ones_pass(ranks):
    for r in ranks:
        assert "test state differ between ranks" in r["diverged"] and "ranks 1 have" in r["diverged"]
        assert len(r["same"]) == WORLD and len(set(r["same"])) == 1


def test_sync_bn_on_cpu_ranks_is_refused_in_one_line(ranks):
    for r in ranks:
        assert "sync_bn: true needs CUDA devices" in r["sync_bn"]


def test_without_torchrun_everything_is_a_no_op(monkeypatch):
    for key in distributed.ENV_KEYS:
        monkeypatch.delenv(key, raising=False)
    assert distributed.launch_env() is None and distributed.world_size() == 1 and distributed.is_writer()
    grad = torch.ones(3)
    distributed.average_gradients([grad], n_local=5)
    assert torch.equal(grad, torch.ones(3))
    assert distributed.per_rank_batch(7, "x") == 7


def test_a_batch_the_ranks_cannot_split_is_one_line(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "1")
    with pytest.raises(ConfigError, match=r"nas.search.loader.batch_size: 64 does not divide among 3 ranks"):
        distributed.per_rank_batch(64, "nas.search.loader.batch_size")
    assert distributed.per_rank_batch(96, "k") == 32
    assert not distributed.is_writer()  # rank 1 of a launched job writes nothing, even before the group exists


def test_a_partial_torchrun_environment_is_one_line(monkeypatch):
    from archsearch.common.errors import UserError

    for key in distributed.ENV_KEYS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(UserError, match="LOCAL_RANK, MASTER_ADDR, MASTER_PORT not set; start the run with torchrun"):
        distributed.launch_env()
    for key, value in {"LOCAL_RANK": "0", "MASTER_ADDR": "h", "MASTER_PORT": "1", "RANK": "2"}.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(UserError, match=r"RANK=2 is not in 0..WORLD_SIZE-1"):
        distributed.launch_env()
