"""The expected-cost term of the DARTS family (strategies/darts/cost.py): the per-edge cost tables, the gradient of
E[cost] against torch.autograd, a hand formula and finite differences, each loss form's gradient, the term inside
both orders of the architecture step, GDAS' sampled-op cost, that off (and log-only) leaves a search bit-identical,
that a heavy weight makes the found architecture cheaper, and its one-line config errors."""

from __future__ import annotations

import math
import time

import pytest
import torch
import torch.nn.functional as F
import yaml

import archsearch
from archsearch.common.errors import ConfigError, UserError
from archsearch.experiment.run import RunOptions
from archsearch.model.mixed_op import MixedOp, MixedOpOptions
from archsearch.spaces.darts_cells import DartsCellSpace
from archsearch.spaces.nasbench201 import NasBench201Space
from archsearch.strategies.darts import BilevelOptimizer
from archsearch.strategies.darts.cost import CostTerm, OpCoster, SupernetCosts, apply_form
from archsearch.strategies.darts.fused import fuse_cells

IMAGE = (3, 8, 8)
DATASET = {"channels": 3, "n_classes": 4}
ADAM = dict(type="adam", lr=3e-4, betas=[0.5, 0.999], weight_decay=1e-3, momentum=0.0, nesterov=False)


def nb201(options: MixedOpOptions | None = None, seed: int = 0):
    space = NasBench201Space({}, {"init_channels": 4, "n_cells_per_stage": 1, "affine": False}, DATASET)
    torch.manual_seed(seed)
    return space.mixed_op_supernet(options or MixedOpOptions())


def darts_cells(options: MixedOpOptions | None = None):
    conf = {"n_cells": 3, "init_channels": 4, "n_nodes": 2, "affine": False, "stem_multiplier": 3, "n_reductions": 2,
            "aux_weight": 0.0,
            "primitives": ["none", "max_pool_3x3", "skip_connect", "sep_conv_3x3", "dil_conv_3x3"]}  # fmt: skip
    space = DartsCellSpace({}, conf, DATASET)
    torch.manual_seed(0)
    return space.mixed_op_supernet(options or MixedOpOptions())


def costs_of(model, source: str = "params") -> SupernetCosts:
    return SupernetCosts(model, OpCoster(source), IMAGE)


def randomize(model, scale: float = 1.0, seed: int = 3) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.arch_params():
            p.copy_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))


# ---- the cost tables -----------------------------------------------------------------------------------
def test_candidate_costs_are_the_ops_own_params_and_macs_at_the_edge_shape():
    model = nb201()
    params, macs = costs_of(model, "params").tables["cell"], costs_of(model, "macs").tables["cell"]
    ops = [m for m in model.modules() if isinstance(m, MixedOp)]
    columns = {name: c for c, name in enumerate(ops[0].candidates)}
    assert params.costs.shape == (6, 5) and not params.sampled and params.edge_keys == [None] * 6
    # NB201: 5 cells of 6 edges per stage x 3 stages at 1 cell per stage: C = 4, 8, 16 at 8x8, 4x4, 2x2
    n_conv3 = sum(9 * c * c for c in (4, 8, 16)) * 6 / 1e6  # ReLU-conv3x3-BN(affine false): 9 C^2 weights
    assert params.costs[:, columns["nor_conv_3x3"]].sum().item() == pytest.approx(n_conv3)
    assert params.costs[:, columns["nor_conv_1x1"]].sum().item() == pytest.approx(n_conv3 / 9)
    for free in ("none", "skip_connect", "avg_pool_3x3"):
        assert params.costs[:, columns[free]].abs().sum().item() == 0.0
    conv3_macs = sum(9 * c * c * hw * hw for c, hw in ((4, 8), (8, 4), (16, 2))) * 6 / 1e6
    assert macs.costs[:, columns["nor_conv_3x3"]].sum().item() == pytest.approx(conv3_macs)


def test_pc_darts_candidates_are_costed_at_the_full_width_and_fused_cells_read_the_same_shapes():
    plain = costs_of(darts_cells())
    partial = costs_of(darts_cells(MixedOpOptions(partial_channels=2, edge_normalization=True)))
    for key in plain.tables:
        assert torch.equal(plain.tables[key].costs, partial.tables[key].costs)
    assert all(k is not None for t in partial.tables.values() for k in t.edge_keys)
    fused = darts_cells()
    fuse_cells(fused)
    fused_costs = costs_of(fused)
    assert all(torch.equal(plain.tables[k].costs, fused_costs.tables[k].costs) for k in plain.tables)
    assert fused_costs.fixed == plain.fixed > 0


def test_reading_the_costs_leaves_rng_buffers_and_the_gumbel_draw_alone():
    model = nb201(MixedOpOptions(sampling="gumbel"))
    model(torch.randn(2, *IMAGE))
    drawn = {k: (v[0].clone(), list(v[1])) for k, v in model.sampler.drawn.items()}
    buffers = [b.clone() for b in model.buffers()]
    state = torch.random.get_rng_state()
    costs_of(model, "macs")
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(a, b) for a, b in zip(buffers, model.buffers()))
    assert all(torch.equal(drawn[k][0], model.sampler.drawn[k][0]) and drawn[k][1] == model.sampler.drawn[k][1]
               for k in drawn)  # fmt: skip
    assert model.training


# ---- the gradient ---------------------------------------------------------------------------------------
def finite_difference(f, params, eps: float = 1e-6) -> list[torch.Tensor]:
    grads = []
    for p in params:
        g = torch.zeros_like(p)
        for i in range(p.numel()):
            with torch.no_grad():
                flat = p.view(-1)
                old = flat[i].item()
                flat[i] = old + eps
                up = f().item()
                flat[i] = old - eps
                down = f().item()
                flat[i] = old
            g.view(-1)[i] = (up - down) / (2 * eps)
        grads.append(g)
    return grads


@pytest.mark.parametrize("options", [MixedOpOptions(), MixedOpOptions(partial_channels=2, edge_normalization=True)])
def test_the_expected_cost_gradient_matches_autograd_the_softmax_formula_and_finite_differences(options):
    model = darts_cells(options).double()
    randomize(model)
    costs = costs_of(model, "macs")
    params = model.arch_params()
    autograd = torch.autograd.grad(costs.expected(), params)
    numeric = finite_difference(costs.expected, params)
    for a, n in zip(autograd, numeric):
        assert torch.allclose(a, n, rtol=1e-6, atol=1e-9)
    if not options.edge_normalization:  # dE/dalpha_ej = p_ej (c_ej - sum_k p_ek c_ek), rows summed over the cells
        for key, table in costs.tables.items():
            p = F.softmax(model.arch_tables[key], dim=-1)
            c = table.costs.double()
            formula = p * (c - (p * c).sum(-1, keepdim=True))
            assert torch.allclose(autograd[list(model.arch_tables).index(key)], formula, rtol=1e-10, atol=1e-14)
    else:  # the betas get a gradient too: they steer the cost as they weigh the edges
        betas = [g for k, g in zip(model.arch_tables, autograd) if "edges" in k]
        assert betas and all(g.abs().sum() > 0 for g in betas)


def test_uniform_betas_give_the_plain_expected_cost():
    plain = darts_cells()
    normalized = darts_cells(MixedOpOptions(partial_channels=2, edge_normalization=True))
    with torch.no_grad():
        for model in (plain, normalized):
            for p in model.arch_params():
                p.zero_()
    assert costs_of(normalized).expected().item() == pytest.approx(costs_of(plain).expected().item(), rel=1e-6)


@pytest.mark.parametrize(
    "form, target, weight, exponent",
    [("additive", None, 0.1, 0.6), ("additive", 0.5, 0.1, 0.6), ("fbnet", None, 0.2, 0.6), ("fbnet", 3.0, 0.2, 0.3),
     ("tunas_abs", 0.5, 0.07, 0.6)],
)  # fmt: skip
def test_each_forms_gradient_matches_finite_differences(form, target, weight, exponent):
    model = nb201().double()
    randomize(model)
    costs = costs_of(model, "macs")
    costs.fixed += 3.0  # this tiny network costs < 1 M MACs, where fbnet's log is negative
    loss = torch.tensor(2.3, dtype=torch.float64, requires_grad=True)
    params = [loss, *model.arch_params()]

    def objective() -> torch.Tensor:
        return apply_form(form, loss, costs.expected(), weight, target, exponent)

    value = objective().item()
    e, lv = costs.expected().item(), loss.item()
    by_hand = {
        "additive": lv + weight * (e if target is None else (e - target) / target),
        "fbnet": lv * weight * (math.log(e) / (1.0 if target is None else math.log(target))) ** exponent,
        "tunas_abs": lv + weight * abs(e / (target or 1.0) - 1),
    }[form]
    assert value == pytest.approx(by_hand, rel=1e-12)
    for a, n in zip(torch.autograd.grad(objective(), params), finite_difference(objective, params)):
        assert torch.allclose(a, n, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("order", ["first", "second"])
@pytest.mark.parametrize("form", ["additive", "fbnet"])
def test_the_term_joins_both_orders_of_the_architecture_step_by_the_chain_rule(order, form):
    model = nb201()
    term = CostTerm({"source": "macs", "weight": 0.5, "target": 2.0 if form == "fbnet" else None, "form": form,
                     "exponent": 0.6})  # fmt: skip
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(4, *IMAGE, generator=g), torch.randint(0, 4, (4,), generator=g)
    term.open()
    term.costs = costs_of(model, "macs")
    term.costs.fixed += 3.0  # this tiny network costs < 1 M MACs, where fbnet's log is negative
    weights = model.nonarch_params()
    w_opt = torch.optim.SGD(weights, lr=0.1, momentum=0.9)
    loss_fn = lambda xb, yb: F.cross_entropy(model(xb), yb)  # noqa: E731
    bilevel = BilevelOptimizer(ADAM, model.arch_params(), weights, w_opt, model, order=order)
    bilevel.optimizer.step = lambda: None  # look at the gradients the step would use
    loss = bilevel.step(loss_fn, x, y, x, y, lr=0.1)
    plain = model.arch_params()[0].grad.clone()
    bilevel.step(loss_fn, x, y, x, y, lr=0.1, objective=term.objective)
    with_term = model.arch_params()[0].grad
    expected = term.expected()
    d_cost = torch.autograd.grad(expected, model.arch_params())[0]
    if form == "additive":  # L + w E: the plain gradient plus w dE
        assert torch.allclose(with_term, plain + 0.5 * d_cost, atol=1e-7)
    else:  # L * w * r^b, r = log E / log T: m dL + L dm
        r = torch.log(expected.detach()) / math.log(2.0)
        m = 0.5 * r**0.6
        dm = 0.5 * 0.6 * r ** (0.6 - 1) / (expected.detach() * math.log(2.0)) * d_cost
        assert torch.allclose(with_term, m * plain + loss * dm, rtol=1e-4, atol=1e-7)


# ---- GDAS ----------------------------------------------------------------------------------------------
def test_gdas_uses_the_sampled_ops_cost_with_the_straight_through_gradient():
    model = nb201(MixedOpOptions(sampling="gumbel"))
    randomize(model)
    term = CostTerm({"source": "params", "weight": 1.0, "form": "additive"})
    term.prepare(model, torch.zeros(1, *IMAGE))
    table = term.costs.tables["cell"]
    assert table.sampled
    model.set_tau(1.0)
    seen = []

    def loss_fn(xb, yb):
        loss = F.cross_entropy(model(xb), yb)
        seen.append(list(model.sampler.drawn["cell"][1]))  # the draw of this forward
        return loss

    def objective(loss):
        cost = term.expected()
        seen.append(cost)
        return term.objective(loss)

    g = torch.Generator().manual_seed(4)
    x, y = torch.randn(4, *IMAGE, generator=g), torch.randint(0, 4, (4,), generator=g)
    weights = model.nonarch_params()
    bilevel = BilevelOptimizer(ADAM, model.arch_params(), weights, torch.optim.SGD(weights, lr=0.1), model, "first")
    bilevel.optimizer.step = lambda: None
    bilevel.step(loss_fn, x, y, x, y, lr=0.1, objective=objective)
    chosen, cost = seen
    # the value: the sampled architecture's cost (each edge's drawn op), not the softmax expectation
    assert cost.item() == pytest.approx(term.costs.fixed + sum(table.costs[r, c].item() for r, c in enumerate(chosen)))
    assert cost.item() != pytest.approx(term.expected(sampled=False).item())
    # the gradient: the straight-through one of softmax((log_softmax(alpha) + g) / tau) (a fresh draw: the step
    # freed the last one's graph), reaching every alpha
    model(x)
    hard = model.sampler.drawn["cell"][0]
    d_cost = torch.autograd.grad(term.expected(), model.arch_params(), retain_graph=True)[0]
    assert torch.allclose(d_cost, torch.autograd.grad((hard * table.costs.float()).sum(), model.arch_params())[0])
    assert (d_cost != 0).all()


# ---- whole searches ------------------------------------------------------------------------------------
SEARCH = {
    "nas.search.space.name": "nasbench201", "nas.search.model_desc.init_channels": 4,
    "nas.search.loader.batch_size": 16, "nas.search.loader.limit_batches": 2, "nas.search.trainer.epochs": 2,
    "dataset.synthetic_train": 96, "dataset.synthetic_test": 32,
}  # fmt: skip


def search(tmp_path, algo: str = "darts", **overrides) -> tuple[dict, list[dict]]:
    summary = archsearch.run(
        algo, "synthetic", RunOptions(phases="search", exp_prefix=f"r{time.monotonic_ns()}"),
        {**SEARCH, "common.logdir": str(tmp_path), **overrides},
    )  # fmt: skip
    out = summary["output_dir"]
    records = yaml.safe_load((out / "log.yaml").read_text())
    final = (out / "search" / "final_model_desc.yaml").read_text()
    untimed = {k: v for k, v in summary["search"].items() if not k.endswith("_time") and k != "search_time_s"}
    return {"metrics": untimed, "final": final}, records


def test_off_and_log_only_searches_are_identical_and_log_only_records_the_costs(tmp_path):
    off, off_records = search(tmp_path)
    assert "expected_cost" not in off["metrics"] and not [r for r in off_records if r["event"] == "cost"]
    logged, records = search(tmp_path, **{"nas.search.trainer.cost.source": "macs"})  # weight 0: logged only
    costs = {k: logged["metrics"].pop(k) for k in ("expected_cost", "arch_cost")}
    assert logged == off  # same losses, same architecture, to the bit
    events = [r for r in records if r["event"] == "cost"]
    assert [e["epoch"] for e in events] == [1, 2] and events[-1]["arch"] == costs["arch_cost"] > 0
    assert all(e["unit"] == "M MACs" for e in events)
    lines = [r for r in records if r["event"] == "collapse"]
    assert len(lines) == 2


@pytest.mark.parametrize("algo", ["darts", "gdas", "pcdarts"])
def test_a_heavy_cost_weight_finds_a_cheaper_architecture(tmp_path, algo):
    fast = {"nas.search.trainer.bilevel.optimizer.lr": 0.05, "nas.search.trainer.epochs": 3,
            "nas.search.trainer.cost.source": "params", "nas.search.trainer.bilevel.arch_start_epoch": 0}  # fmt: skip
    if algo == "pcdarts":
        fast["nas.search.model_desc.partial_channels"] = 2
    plain, _ = search(tmp_path, algo, **fast)
    heavy, _ = search(tmp_path, algo, **fast, **{"nas.search.trainer.cost.weight": 1000.0})
    assert heavy["metrics"]["arch_cost"] < plain["metrics"]["arch_cost"]
    assert heavy["metrics"]["expected_cost"] < plain["metrics"]["expected_cost"]


# ---- config errors -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"weight": 0.1}, r"cost\.weight .*: 0\.1 needs a cost to weigh: set source"),
        ({"source": "params", "weight": 0.1, "form": "tunas_abs"}, r"cost\.target .*: null: form tunas_abs"),
        ({"source": "macs", "weight": 0.1, "form": "fbnet", "target": 0.5}, r"cost\.target .*: 0\.5 must be above 1"),
        ({"source": "flops"}, r"cost\.source.*'flops'"),
        ({"form": "mnas"}, r"cost\.form.*'mnas'"),
        ({"weight": -1.0}, r"cost\.weight"),
    ],
)
def test_bad_cost_settings_are_one_config_line(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message) as raised:
        archsearch.run("darts", "synthetic", RunOptions(phases="search", dry_run=True),
                       {"common.logdir": str(tmp_path), **{f"nas.search.trainer.cost.{k}": v
                                                            for k, v in overrides.items()}})  # fmt: skip
    assert "\n" not in str(raised.value)


def test_a_latency_source_without_a_table_is_one_line_before_any_training(tmp_path):
    with pytest.raises(ConfigError, match=r"cost\.source latency needs a latency table: set .*cost\.table") as raised:
        CostTerm({"source": "latency", "weight": 0.1}).open()
    assert "\n" not in str(raised.value)
    with pytest.raises(UserError) as raised:  # a missing file (or, until it lands, no latency model): one line
        CostTerm({"source": "latency", "weight": 0.1, "table": str(tmp_path / "missing.yaml")}).open()
    assert "\n" not in str(raised.value) and "latency" in str(raised.value)


def test_fbnet_on_costs_below_one_unit_is_one_line():
    term = CostTerm({"source": "params", "weight": 0.2, "form": "fbnet"})
    with pytest.raises(ConfigError, match=r"fbnet takes log\(E\[cost\]\), but E\[cost\] can fall to .* M params"):
        term.prepare(nb201(), torch.zeros(1, *IMAGE))
