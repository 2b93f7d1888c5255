"""beta-DARTS' beta-decay regularization and the bilevel trainer's switches shared by the DARTS family
(beta_decay, arch_start_epoch): the loss against a hand computation, its gradient inside the architecture step,
the lambda schedule, and that it decays the op alphas only (not PC-DARTS' edge betas)."""

import math

import pytest
import torch
import torch.nn.functional as F

from archsearch.common.logging import RunLog
from archsearch.config import load_config
from archsearch.model.mixed_op import MixedOpOptions
from archsearch.spaces.nasbench201 import NasBench201Space
from archsearch.strategies.darts import BilevelOptimizer
from archsearch.strategies.darts.trainer import BilevelArchTrainer, beta_decay_loss

REPO_CONFS = __import__("pathlib").Path(__file__).resolve().parents[3] / "confs" / "algos"


def test_beta_decay_loss_matches_a_hand_computation():
    a = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]])  # rows: logsumexp = log 2, log 4
    b = torch.tensor([[1.0, 1.0, 1.0]])  # log(3 e) = 1 + log 3
    expected = (math.log(2) + math.log(4) + 1 + math.log(3)) / 3  # the mean over the three edges
    assert beta_decay_loss([a, b]).item() == pytest.approx(expected, abs=1e-6)
    # its gradient is softmax(alpha) / number of edges: it pulls every edge's alphas down together
    a.requires_grad_(True)
    b.requires_grad_(True)
    beta_decay_loss([a, b]).backward()
    assert torch.allclose(a.grad, torch.tensor([[0.5, 0.5], [0.75, 0.25]]) / 3)
    assert torch.allclose(b.grad, torch.full((1, 3), 1 / 9))


def nb201(options: MixedOpOptions | None = None):
    space = NasBench201Space({}, {"init_channels": 4, "n_cells_per_stage": 1, "affine": False},
                             {"channels": 3, "n_classes": 4})  # fmt: skip
    torch.manual_seed(0)
    return space.mixed_op_supernet(options or MixedOpOptions())


def test_the_penalty_gradient_joins_the_architecture_step_in_both_orders():
    model = nb201()
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(4, 3, 8, 8, generator=g), torch.randint(0, 4, (4,), generator=g)
    weights = model.nonarch_params()
    w_opt = torch.optim.SGD(weights, lr=0.1, momentum=0.9)
    conf = dict(type="adam", lr=3e-4, betas=[0.5, 0.999], weight_decay=1e-3, momentum=0.0, nesterov=False)
    loss_fn = lambda xb, yb: F.cross_entropy(model(xb), yb)  # noqa: E731
    for order in ("first", "second"):
        bilevel = BilevelOptimizer(conf, model.arch_params(), weights, w_opt, model, order=order)
        bilevel.optimizer.step = lambda: None  # look at the gradients the step would use
        bilevel.step(loss_fn, x, y, x, y, lr=0.1)
        plain = [p.grad.clone() for p in model.arch_params()]
        lam = 7.0
        bilevel.step(loss_fn, x, y, x, y, lr=0.1, penalty=lam * beta_decay_loss(model.op_arch_params()))
        table = model.arch_tables["cell"]
        extra = lam * F.softmax(table.detach(), dim=-1) / table.shape[0]
        assert torch.allclose(model.arch_params()[0].grad, plain[0] + extra, atol=1e-6), order


def trainer_for(model, **bilevel):
    conf = load_config([REPO_CONFS / "betadarts.yaml"], [])["nas"]["search"]["trainer"]
    conf = {**conf, "bilevel": {**conf["bilevel"], **bilevel}}
    return BilevelArchTrainer(conf, model, RunLog(None, verbose=False), torch.device("cpu"), "search")


def test_lambda_grows_linearly_and_decays_the_op_alphas_only():
    model = nb201(MixedOpOptions(partial_channels=2, edge_normalization=True))
    trainer = trainer_for(model)
    assert [trainer.beta_decay_lambda(e) for e in (0, 1, 50, 99)] == [0.0, 0.5, 25.0, 49.5]  # 50 * epoch / 100
    assert [id(t) for t in trainer.decayed_params] == [id(model.arch_tables["cell"])]
    trainer.epoch = 0
    assert trainer.arch_penalty() is None  # lambda(0) = 0
    trainer.epoch = 10
    penalty = trainer.arch_penalty()
    assert penalty.item() == pytest.approx(5.0 * beta_decay_loss([model.arch_tables["cell"]]).item())
    off = trainer_for(nb201(), beta_decay={"weight": 0.0, "ramp_epochs": 100})
    off.epoch = 10
    assert off.arch_penalty() is None


def test_no_architecture_step_before_arch_start_epoch():
    model = nb201()
    trainer = trainer_for(model, arch_start_epoch=2, beta_decay={"weight": 0.0, "ramp_epochs": 100})
    g = torch.Generator().manual_seed(2)
    batch = (torch.randn(4, 3, 8, 8, generator=g), torch.randint(0, 4, (4,), generator=g))
    trainer.pre_epoch(0, None, [batch])
    before = model.arch_tables["cell"].detach().clone()
    for epoch in (0, 1):
        trainer.epoch = epoch
        trainer.pre_step(0, *batch)
    assert torch.equal(model.arch_tables["cell"], before) and trainer.arch_steps == 0
    trainer.epoch = 2
    trainer.pre_step(0, *batch)
    assert trainer.arch_steps == 1 and not torch.equal(model.arch_tables["cell"], before)
