"""The collapse monitor: parameter-free op counts and entropy, the Hessian's dominant eigenvalue by power
iteration (checked against exact Hessians), DARTS-ES' early-stop rule and its exact resume, and the
`collapse` events of a real search."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn

import archsearch
from archsearch.common.logging import RunLog
from archsearch.config import load_config
from archsearch.experiment.run import RunOptions, confs_dir
from archsearch.model.genotype import format_genotype, parse_genotype
from archsearch.spaces.nasbench201 import NB201_OPS
from archsearch.strategies.darts.collapse import (
    CollapseMonitor,
    EigenvalueEarlyStop,
    arch_op_names,
    dominant_eigenvalue,
    is_param_free,
    mean_entropy,
)
from archsearch.train.trainer import Trainer


def quadratic(eigenvalues: list[float]) -> tuple[Callable[[], torch.Tensor], list[torch.Tensor]]:
    """0.5 x'Hx + sum(x) over two parameter tensors (6 + 1 entries), H with the given spectrum."""
    g = torch.Generator().manual_seed(0)
    q = torch.linalg.qr(torch.randn(7, 7, generator=g, dtype=torch.float64))[0]
    hessian = q @ torch.diag(torch.tensor(eigenvalues, dtype=torch.float64)) @ q.T
    a = torch.randn(3, 2, generator=g, dtype=torch.float64).requires_grad_()
    b = torch.randn(1, generator=g, dtype=torch.float64).requires_grad_()

    def loss() -> torch.Tensor:
        x = torch.cat([a.flatten(), b])
        return 0.5 * x @ hessian @ x + x.sum()

    return loss, [a, b]


@pytest.mark.parametrize(
    "spectrum, largest",
    [
        ([5.0, 2.0, 1.5, 0.5, -0.3, -1.0, 0.1], 5.0),  # the largest is also the largest in magnitude
        ([2.0, -6.0, 1.5, 0.5, -0.3, -1.0, 0.1], 2.0),  # a larger negative one: the shifted second run
        ([-1.0, -6.0, -1.5, -0.5, -0.3, -2.0, -0.1], -0.1),  # all negative
    ],
)
def test_power_iteration_finds_the_largest_eigenvalue_of_a_quadratic(spectrum, largest):
    loss, params = quadratic(spectrum)
    assert dominant_eigenvalue(loss, params, iters=2000, tol=1e-13) == pytest.approx(largest, rel=1e-6)
    assert all(p.grad is None for p in params)  # autograd.grad only: no gradients left behind


def test_power_iteration_matches_the_exact_hessian_of_a_softmax_mixture():
    # a tiny supernet: 3 edges mixing 4 candidate maps by softmax(alpha), cross entropy on a batch
    g = torch.Generator().manual_seed(1)
    x = torch.randn(16, 5, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (16,), generator=g)
    candidates = torch.randn(3, 4, 5, 3, generator=g, dtype=torch.float64)  # edge, candidate, in, out
    alpha = (0.5 * torch.randn(3, 4, generator=g, dtype=torch.float64)).requires_grad_()

    def loss_of(alpha: torch.Tensor) -> torch.Tensor:
        weights = F.softmax(alpha, dim=-1)
        logits = sum(x @ (weights[e, :, None, None] * candidates[e]).sum(0) for e in range(3))
        return F.cross_entropy(logits, y)

    exact = torch.linalg.eigvalsh(torch.autograd.functional.hessian(loss_of, alpha).reshape(12, 12))
    estimate = dominant_eigenvalue(lambda: loss_of(alpha), [alpha], iters=3000, tol=1e-13)
    assert estimate == pytest.approx(exact.max().item(), rel=1e-5)
    assert abs(estimate) > 1e-3  # a real curvature, not a trivial zero


def test_a_loss_linear_in_the_parameters_has_eigenvalue_zero():
    p = torch.randn(4, requires_grad=True)
    assert dominant_eigenvalue(lambda: (3 * p).sum(), [p]) == 0.0


def test_param_free_ops_are_counted_in_any_architecture_encoding():
    darts = parse_genotype("DARTS_V2")
    names = arch_op_names(
        format_genotype(darts),
        {
            "none",
            "skip_connect",
            "sep_conv_3x3",
            "max_pool_3x3",
            "dil_conv_3x3",
            "dil_conv_5x5",
            "sep_conv_5x5",
            "avg_pool_3x3",
        },
    )
    assert len(names) == 16
    expected = sum(is_param_free(op) for op, _ in [*darts.normal, *darts.reduce])
    assert sum(map(is_param_free, names)) == expected == 10  # DARTS_V2: 2 skips normal; 5 max pools, 3 skips reduce
    cell = "|none~0|+|skip_connect~0|nor_conv_3x3~1|+|avg_pool_3x3~0|none~1|nor_conv_1x1~2|"
    names = arch_op_names(cell, set(NB201_OPS))
    assert names == ["none", "skip_connect", "nor_conv_3x3", "avg_pool_3x3", "none", "nor_conv_1x1"]
    assert sum(map(is_param_free, names)) == 4
    # a user model's choices: keys name choices (a key may look like an op), values are the picks
    choices = {"skip_connect": "conv3x3", "pool": "maxpool", "inputs": [0, 1]}
    assert arch_op_names(choices, {"conv3x3", "maxpool", "skip_connect"}) == ["conv3x3", "maxpool"]


def test_mean_entropy_is_log_n_for_uniform_rows_and_zero_for_decided_ones():
    uniform = torch.zeros(4, 8)
    decided = torch.full((2, 5), -1e4)
    decided[:, 0] = 0.0
    assert mean_entropy({"a": uniform}) == pytest.approx(math.log(8))
    assert mean_entropy({"b": decided}) == pytest.approx(0.0, abs=1e-9)
    assert mean_entropy({"a": uniform, "b": decided}) == pytest.approx(4 * math.log(8) / 6)


def first_stop(rule: EigenvalueEarlyStop, eigenvalues: list[float]) -> tuple[int, int, float] | None:
    """(epoch the rule stops after, epoch it returns, ratio), feeding the sequence epoch by epoch."""
    for epoch in range(len(eigenvalues)):
        found = rule.check(eigenvalues[: epoch + 1])
        if found is not None:
            return epoch, *found
    return None


def test_the_early_stop_rule_triggers_on_a_jump_and_not_on_flat_or_slowly_rising_eigenvalues():
    rule = EigenvalueEarlyStop(window=5, delta=4, factor=1.3, start_epoch=10)  # RobustDARTS' defaults
    assert first_stop(rule, [1.0] * 50) is None
    assert first_stop(rule, [1.0 + 0.01 * e for e in range(50)]) is None  # grows ~4% over 4 epochs
    # eigenvalue 1 up to epoch 13, 3 from 14: at epoch 16 the average centred on 14 is (1+1+3+3+3)/5 = 2.2,
    # 2.2x the one centred on 10; epoch 10 is the first the rule may return (start_epoch), so it stops there
    jump = [1.0] * 14 + [3.0] * 36
    assert first_stop(rule, jump) == (16, 10, pytest.approx(2.2))
    # the same jump before epoch 10 could be returned: by then both averages see it, so it never stops
    assert first_stop(rule, [1.0] * 4 + [3.0] * 46) is None
    assert first_stop(EigenvalueEarlyStop(5, 4, 1.3, start_epoch=0), [1.0] * 4 + [3.0] * 46)[:2] == (6, 0)
    assert first_stop(EigenvalueEarlyStop(5, 4, 3.0, 10), jump) is None  # a factor above the growth never stops


class TinySupernet(nn.Module):
    """Two architecture rows of three candidates mixing three linear maps."""

    def __init__(self) -> None:
        super().__init__()
        self.maps = nn.ModuleList(nn.Linear(4, 3) for _ in range(3))
        self.alpha = nn.Parameter(torch.zeros(2, 3))

    @property
    def arch_tables(self) -> dict[str, nn.Parameter]:
        return {"edges": self.alpha}

    def arch_params(self) -> list[nn.Parameter]:
        return [self.alpha]

    def nonarch_params(self) -> list[nn.Parameter]:
        return list(self.maps.parameters())

    def column_names(self) -> dict[str, list[str]]:
        return {"edges": ["skip_connect", "conv", "max_pool_3x3"]}

    def derive_arch(self) -> list[str]:
        return [self.column_names()["edges"][int(row.argmax())] for row in self.alpha]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = F.softmax(self.alpha, dim=-1).mean(0)
        return sum(w * m(x) for w, m in zip(weights, self.maps))


# an eigenvalue sequence that jumps at epoch 14 (0-based), so DARTS-ES stops after epoch 16 with epoch 10's arch
SCRIPTED = [1.0] * 14 + [3.0] * 10


class ScriptedTrainer(Trainer):
    """The base Trainer with the monitor wired as the bilevel trainer wires it; the architecture parameters
    are set to the epoch number each epoch (so the one early stop returns is visible) and the eigenvalue
    comes from SCRIPTED."""

    def configure(self) -> None:
        conf = dict(hessian=True, hessian_iters=1, hessian_tol=0.0, hessian_batches=1, early_stop=True,
                    window=5, delta=4, factor=1.3, start_epoch=10)  # fmt: skip
        self.collapse = CollapseMonitor(conf)
        self.collapse.eigenvalue = lambda trainer, epoch: SCRIPTED[epoch]

    def post_epoch(self, epoch: int, metrics: dict) -> None:
        with torch.no_grad():
            self.model.alpha.fill_(float(epoch))
        self.collapse.after_epoch(self, epoch, metrics)

    def extra_state(self) -> dict:
        return {"collapse": self.collapse.state_dict()}

    def load_extra_state(self, state: dict) -> None:
        self.collapse.load_state_dict(state["collapse"])


class Interrupted(Exception):
    pass


def trainer_conf() -> dict:
    """The shipped search trainer section (every key the Trainer reads), 24 epochs at a constant lr."""
    conf = load_config([confs_dir() / "common.yaml"])["nas"]["search"]["trainer"].to_dict()
    return {**conf, "epochs": 24, "amp": False, "lr_schedule": {**conf["lr_schedule"], "type": "constant"}}


def make_trainer(path, interrupt_at: int | None = None) -> ScriptedTrainer:
    torch.manual_seed(0)
    trainer = ScriptedTrainer(trainer_conf(), TinySupernet(), RunLog(None), torch.device("cpu"), "search", path)
    if interrupt_at is not None:

        def pre_epoch(epoch, *_):  # a kill after the checkpoint of epoch `interrupt_at`
            if epoch == interrupt_at:
                raise Interrupted

        trainer.pre_epoch = pre_epoch
    return trainer


def untimed(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in metrics.items() if k != "epoch_time"} for metrics in history]


def test_early_stop_returns_the_earlier_architecture_and_a_resumed_run_stops_at_the_same_epoch(tmp_path):
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(8, 4, generator=g), torch.randint(0, 3, (8,), generator=g)) for _ in range(3)]
    straight = make_trainer(tmp_path / "a.pt")
    last = straight.fit(batches)
    assert straight.epoch == 17 and straight.stop_requested  # stopped after epoch 17 (16 from 0) of 24
    assert last["early_stop_epoch"] == 17 and last["early_stop_arch_epoch"] == 11
    assert torch.all(straight.model.alpha == 10.0)  # the architecture parameters of epoch 11 (10 from 0)

    killed = make_trainer(tmp_path / "b.pt", interrupt_at=13)
    with pytest.raises(Interrupted):
        killed.fit(batches)
    resumed = make_trainer(tmp_path / "b.pt")
    resumed.fit(batches, resume=True)
    assert resumed.epoch == 17 and untimed(resumed.history) == untimed(straight.history)
    states = resumed.model.state_dict(), straight.model.state_dict()
    assert all(torch.equal(a, b) for a, b in zip(*(s.values() for s in states)))

    # resuming the stopped run trains nothing more: the stop is in its checkpoint
    again = make_trainer(tmp_path / "a.pt")
    assert again.fit(batches, resume=True) == last and again.epoch == 17  # the checkpoint's own history
    assert torch.all(again.model.alpha == 10.0)


SEARCH = {
    "nas.search.model_desc.n_cells": 3, "nas.search.model_desc.init_channels": 4, "nas.search.model_desc.n_nodes": 2,
    "nas.search.loader.batch_size": 16, "nas.search.loader.limit_batches": 2, "nas.search.trainer.epochs": 2,
    "dataset.synthetic_train": 96, "dataset.synthetic_test": 32,
}  # fmt: skip


@pytest.mark.parametrize("space, n_ops", [("darts", 8), ("nasbench201", 6)])
def test_a_search_records_collapse_events_and_measuring_the_hessian_does_not_change_it(tmp_path, space, n_ops):
    def search(prefix: str, **overrides) -> tuple[dict, list]:
        summary = archsearch.run(
            "darts", "synthetic", RunOptions(phases="search", exp_prefix=prefix),
            {**SEARCH, "common.logdir": str(tmp_path), "nas.search.space.name": space, **overrides},
        )  # fmt: skip
        records = yaml.safe_load((summary["output_dir"] / "log.yaml").read_text())
        return summary, [r for r in records if r["event"] == "collapse"]

    plain, events = search("plain")
    assert [e["epoch"] for e in events] == [1, 2]
    assert all(e["n_ops"] == n_ops and 0 <= e["param_free"] <= n_ops and "hessian_eigenvalue" not in e for e in events)
    assert all(0 < e["entropy"] <= math.log(8 if space == "darts" else 5) + 1e-9 for e in events)
    measured, with_hessian = search("hessian", **{"nas.search.trainer.collapse.hessian": True})
    assert all(math.isfinite(e["hessian_eigenvalue"]) and e["hessian_eigenvalue"] != 0 for e in with_hessian)
    # the eigenvalue is measured beside the search: same architectures, same losses, same counts
    assert [{k: e[k] for k in ("param_free", "entropy")} for e in with_hessian] == [
        {k: e[k] for k in ("param_free", "entropy")} for e in events
    ]
    timeless = [{k: v for k, v in s["search"].items() if not k.endswith("_time") and k != "search_time_s"}
                for s in (measured, plain)]  # fmt: skip
    assert timeless[0] == timeless[1] and "val_loss" in timeless[0]


def test_early_stop_without_the_hessian_is_one_config_line(tmp_path):
    with pytest.raises(archsearch.common.errors.ConfigError, match="early_stop.*also set hessian true"):
        archsearch.run("darts", "synthetic", RunOptions(phases="search", dry_run=True),
                       {"common.logdir": str(tmp_path), "nas.search.trainer.collapse.early_stop": True})  # fmt: skip


def test_a_search_that_stops_early_returns_and_records_the_earlier_architecture(tmp_path):
    # a rule that fires as soon as it can: window 1, 1 epoch back, any growth above a millionth
    rule = {"hessian": True, "early_stop": True, "window": 1, "delta": 1, "factor": 1e-6, "start_epoch": 0}
    summary = archsearch.run(
        "darts", "synthetic", RunOptions(phases="search", exp_prefix="stop"),
        {**SEARCH, "common.logdir": str(tmp_path), "nas.search.trainer.epochs": 3,
         **{f"nas.search.trainer.collapse.{k}": v for k, v in rule.items()}},
    )  # fmt: skip
    out = summary["output_dir"]
    metrics = yaml.safe_load((out / "search" / "metrics.yaml").read_text())
    assert (metrics["epoch"], metrics["early_stop_epoch"], metrics["early_stop_arch_epoch"]) == (2, 2, 1)
    records = yaml.safe_load((out / "log.yaml").read_text())
    genotypes = {r["epoch"]: r["genotype"] for r in records if r["event"] == "genotype"}
    assert sorted(genotypes) == [1, 2] and genotypes[1] != genotypes[2]  # no third epoch; the two differ
    assert (out / "search" / "genotype.txt").read_text().strip() == genotypes[1]
