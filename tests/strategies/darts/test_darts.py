"""DARTS: MixedOp, shared alphas, first/second-order architecture gradients, top-2 derivation, CLI (darts and
nasbench201 spaces, per-epoch architecture logs, resume)."""

import copy

import pytest
import torch
import torch.nn.functional as F
import yaml
from torch.func import functional_call

from archsearch.model.genotype import parse_genotype
from archsearch.model.ops import DARTS_PRIMITIVES
from archsearch.spaces.darts_cells import DartsCellSpace, DartsCellSupernet
from archsearch.strategies.darts import BilevelOptimizer, DartsModelDescBuilder, MixedOp
from tests.conftest import assert_user_error, config_fixture

DATASET = dict(channels=3, n_classes=4)


def supernet(n_cells=3, c=4, n_nodes=2, dtype=torch.float32) -> DartsCellSupernet:
    conf = dict(
        n_cells=n_cells,
        init_channels=c,
        n_nodes=n_nodes,
        stem_multiplier=3,
        n_reductions=2,
        aux_weight=0.0,
        affine=False,
        primitives=DARTS_PRIMITIVES,
    )
    torch.manual_seed(0)
    return DartsCellSupernet(DartsModelDescBuilder(conf, DATASET).build()).to(dtype)


def test_mixed_op_is_the_softmax_weighted_sum_and_skips_none():
    model = supernet()
    with torch.no_grad():
        for table in model.arch_params():
            table.normal_()
    op = next(m for m in model.modules() if isinstance(m, MixedOp))
    assert "none" in op.candidates and len(op.ops) == len(op.candidates) - 1  # none is never built
    x = torch.randn(2, 4, 8, 8)
    weights = F.softmax(model.arch_tables[op.arch_key][op.arch_row], dim=-1)
    expected = sum(weights[c] * m(x) for m, c in zip(op.ops, op.columns))
    assert torch.allclose(op(x), expected, atol=1e-6)
    assert abs(weights.sum().item() - 1) < 1e-6 and weights[0] > 0  # none still takes its share of the softmax


def test_alphas_are_shared_per_cell_type_and_kept_apart_from_weights():
    model = supernet(n_cells=5)
    assert set(model.arch_tables) == {"regular", "reduction"}
    n_edges = 2 + 3  # nodes 0 and 1 of a 2-node cell
    assert all(t.shape == (n_edges, len(DARTS_PRIMITIVES)) for t in model.arch_params())
    ops = [m for m in model.modules() if isinstance(m, MixedOp)]
    for key in ("regular", "reduction"):
        rows = [op.arch_row for op in ops if op.arch_key == key]
        n_cells = sum(c.desc.cell_type == key for c in model.cells)
        assert sorted(rows) == sorted(list(range(n_edges)) * n_cells)
        assert all(op.arch_table is model.arch_tables[key] for op in ops if op.arch_key == key)
    arch_ids = {id(p) for p in model.arch_params()}
    assert not arch_ids & {id(p) for p in model.nonarch_params()}
    assert len(model.nonarch_params()) + len(model.arch_params()) == len(list(model.parameters()))


def batch(seed, n=4, size=8, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, size, size, generator=g).to(dtype), torch.randint(0, 4, (n,), generator=g)


def make_bilevel(model, order, lr_momentum=0.9, wd=3e-4):
    weights = model.nonarch_params()
    w_opt = torch.optim.SGD(weights, lr=0.1, momentum=lr_momentum, weight_decay=wd)
    conf = dict(type="adam", lr=3e-4, betas=[0.5, 0.999], weight_decay=1e-3, momentum=0.0, nesterov=False)
    return BilevelOptimizer(conf, model.arch_params(), weights, w_opt, model, order=order), w_opt


def loss_fn_of(model):
    return lambda x, y: F.cross_entropy(model(x), y)


def test_first_order_arch_gradient_is_the_validation_gradient():
    model = supernet()
    bilevel, _ = make_bilevel(model, "first")
    (xt, yt), (xv, yv) = batch(1), batch(2)
    reference = copy.deepcopy(model)
    F.cross_entropy(reference(xv), yv).backward()
    bilevel.optimizer.step = lambda: None  # look at the gradient the step would use
    bilevel.step(loss_fn_of(model), xt, yt, xv, yv, lr=0.1)
    for p, q in zip(model.arch_params(), reference.arch_params()):
        assert torch.allclose(p.grad, q.grad, atol=1e-7)


def test_second_order_gradient_matches_exact_autograd():
    torch.manual_seed(0)
    model = supernet(n_cells=3, c=2, n_nodes=1, dtype=torch.float64)
    with torch.no_grad():
        for t in model.arch_params():
            t.normal_(0, 0.5)
    bilevel, w_opt = make_bilevel(model, "second")
    # DARTS' radius 0.01 is a finite difference across ReLU/max-pool kinks on a net this small; a tiny radius
    # in float64 checks the implementation of the formula against the exact derivative.
    bilevel.fd_radius = 1e-6
    (xt, yt), (xv, yv) = batch(3, dtype=torch.float64), batch(4, dtype=torch.float64)
    # one real weight step first so the virtual step includes a momentum buffer, as in a running search
    F.cross_entropy(model(xt), yt).backward()
    w_opt.step()
    w_opt.zero_grad()
    lr, wd, momentum = 0.1, 3e-4, 0.9
    names = [n for n, p in model.named_parameters() if not n.startswith("arch_tables")]
    weights = [dict(model.named_parameters())[n] for n in names]
    buffers = {n: b.clone() for n, b in model.named_buffers()}

    # exact: d/d alpha of L_val(w - lr * (grad_w L_train(w, alpha) + wd * w + momentum * buf), alpha)
    train_loss = F.cross_entropy(model(xt), yt)
    grads = torch.autograd.grad(train_loss, weights, create_graph=True)
    unrolled = {
        n: w - lr * (g + wd * w + momentum * w_opt.state[w]["momentum_buffer"])
        for n, w, g in zip(names, weights, grads)
    }
    val_loss = F.cross_entropy(functional_call(model, unrolled, (xv,)), yv)
    exact = torch.autograd.grad(val_loss, model.arch_params())
    for n, b in model.named_buffers():  # train-mode BN used batch statistics; put the running ones back
        b.copy_(buffers[n])

    before = [w.detach().clone() for w in weights]
    _, approx = bilevel.second_order_grads(loss_fn_of(model), xt, yt, xv, yv, lr)
    assert all(torch.equal(w, b) for w, b in zip(weights, before))  # the virtual step is undone
    assert all(torch.equal(b, buffers[n]) for n, b in model.named_buffers())  # BN statistics too
    for e, a in zip(exact, approx):
        assert torch.allclose(e, a, rtol=1e-5, atol=1e-9), (e - a).abs().max()
    first_order = torch.autograd.grad(F.cross_entropy(model(xv), yv), model.arch_params())
    assert any(not torch.allclose(f, a, atol=1e-6) for f, a in zip(first_order, approx))  # the unrolled term matters


def test_derive_arch_keeps_the_two_strongest_edges_and_their_best_non_none_op():
    model = supernet(n_cells=3, n_nodes=2)
    col = {name: i for i, name in enumerate(DARTS_PRIMITIVES)}
    with torch.no_grad():
        for table in model.arch_params():
            table.zero_()
        reg = model.arch_tables["regular"]
        # node 0 (edges 0, 1): both kept; node 1 (edges 2, 3, 4): inputs 0 and 2 win
        reg[0, col["sep_conv_3x3"]] = 2.0
        reg[1, col["max_pool_3x3"]] = 1.0
        reg[2, col["dil_conv_5x5"]] = 3.0
        reg[3, col["none"]] = 9.0  # a strong `none` never counts
        reg[3, col["skip_connect"]] = 0.5
        reg[4, col["skip_connect"]] = 2.5
        red = model.arch_tables["reduction"]
        red[:, col["avg_pool_3x3"]] = 1.0
    genotype = parse_genotype(model.derive_arch())
    assert genotype.normal == [("sep_conv_3x3", 0), ("max_pool_3x3", 1), ("dil_conv_5x5", 0), ("skip_connect", 2)]
    assert all(op == "avg_pool_3x3" for op, _ in genotype.reduce)
    assert genotype.normal_concat == [2, 3]
    conf = {"n_cells": 3, "init_channels": 4, "n_nodes": 2, "stem_multiplier": 3, "n_reductions": 2}
    space = DartsCellSpace({}, {**conf, "aux_weight": 0.0, "affine": False}, DATASET)
    assert space.build(model.derive_arch())(torch.randn(2, 3, 8, 8)).shape == (2, 4)


TINY = {
    "nas": {
        "search": {
            "model_desc": {"n_cells": 3, "init_channels": 4, "n_nodes": 2},
            "loader": {"batch_size": 16, "limit_batches": 2},
            "trainer": {"epochs": 2},
        },
        "eval": {
            "model_desc": {"n_cells": 3, "init_channels": 4},
            "loader": {"batch_size": 32, "limit_batches": 2},
            "trainer": {"epochs": 1},
        },
    },
    "dataset": {"synthetic_train": 96, "synthetic_test": 32},
}


tiny = config_fixture(TINY)


# darts.yaml's fused: true, so this is also the CLI test of the fused supernet in both orders
@pytest.mark.parametrize("order", ["first", "second"])
def test_search_then_eval_through_the_cli(cli, tiny, order):
    proc = cli(
        "--algos", "darts", "--datasets", "synthetic", "--config", tiny, "--nas.search.trainer.bilevel.order", order
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = cli.logdir / "archsearch_synthetic_toy" / "darts"
    genotype = (out / "search" / "genotype.txt").read_text().strip()
    assert genotype in proc.stdout and parse_genotype(genotype)
    records = yaml.safe_load((out / "log.yaml").read_text())
    tables = [r for r in records if r["event"] == "arch_weights"]
    assert [t["epoch"] for t in tables] == [1, 2]
    assert len(tables[0]["softmax"]["regular"]) == 5 and len(tables[0]["softmax"]["regular"][0]) == 8
    assert (out / "eval" / "model.pt").exists()


def test_search_only_then_eval_only_and_resume_of_a_finished_search(cli, tiny):
    assert cli("--algos", "darts", "--datasets", "synthetic", "--config", tiny, "--search-only").returncode == 0
    out = cli.logdir / "archsearch_synthetic_toy" / "darts"
    desc = out / "search" / "final_model_desc.yaml"
    proc = cli(
        "--algos",
        "darts",
        "--datasets",
        "synthetic",
        "--config",
        tiny,
        "--eval-only",
        "--nas.eval.final_desc",
        str(desc),
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (out / "eval" / "metrics.yaml").exists()
    resumed = cli("--algos", "darts", "--datasets", "synthetic", "--config", tiny, "--common.resume", "true")
    assert resumed.returncode == 0 and "already finished" in resumed.stdout
    # the combined run finds the same architecture and ends with the same metrics: splitting a run changes nothing
    combined = cli("--algos", "darts", "--datasets", "synthetic", "--config", tiny, "--exp-prefix", "combined")
    assert combined.returncode == 0, combined.stderr[-2000:]
    other = cli.logdir / "combined_synthetic_toy" / "darts"
    assert (other / "search" / "genotype.txt").read_text() == (out / "search" / "genotype.txt").read_text()
    split, both = (yaml.safe_load((d / "eval" / "metrics.yaml").read_text()) for d in (out, other))
    keys = ("test_top1", "test_loss", "params", "macs")
    assert {k: split[k] for k in keys} == {k: both[k] for k in keys}


def test_bad_primitive_list_is_a_user_error(cli_in_process, tiny):
    cli = cli_in_process
    proc = cli(
        "--algos",
        "darts",
        "--datasets",
        "synthetic",
        "--config",
        tiny,
        "--nas.search.model_desc.primitives",
        "[sep_conv_3x3, skip_connect]",
    )
    assert_user_error(proc, "primitives must start with none")


def test_darts_on_the_nasbench201_supernet_logs_cells_and_reports_the_benchmark_accuracy(cli, tiny, tmp_path):
    from archsearch.spaces.nasbench201 import NB201_OPS, all_archs, arch_to_index

    table = tmp_path / "table.csv"  # a made-up table: each cell's accuracy is a function of its index
    table.write_text("architecture,accuracy\n" + "".join(f"{a},{i / 15625:.6f}\n" for i, a in enumerate(all_archs())))
    proc = cli(
        "--algos", "darts", "--nas.search.space", "nasbench201", "--datasets", "synthetic", "--config", tiny,
        "--search-only", "--nas.search.trainer.bilevel.order", "first", "--nas.search.benchmark", str(table),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = cli.logdir / "archsearch_synthetic_toy" / "darts"
    records = yaml.safe_load((out / "log.yaml").read_text())
    tables = [r for r in records if r["event"] == "arch_weights"]
    assert [t["epoch"] for t in tables] == [1, 2] and len(tables[0]["softmax"]["cell"]) == 6
    assert all(len(row) == len(NB201_OPS) for row in tables[0]["softmax"]["cell"])
    cells = [r["cell"] for r in records if r["event"] == "cell"]
    found = yaml.safe_load((out / "search" / "final_model_desc.yaml").read_text())["meta"]["arch"]
    assert len(cells) == 2 and cells[-1] == found  # the last epoch's cell is the one search returns
    metrics = yaml.safe_load((out / "search" / "metrics.yaml").read_text())
    assert metrics["benchmark_top1"] == pytest.approx(arch_to_index(found) / 15625, abs=1e-6)
    assert f"found {found}; benchmark accuracy" in proc.stdout
