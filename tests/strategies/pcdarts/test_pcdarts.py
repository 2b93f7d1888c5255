"""PC-DARTS: partial channel connections (1/K through the ops, channel shuffle, max-pooled bypass on reduction
edges), edge normalization, the alpha*beta genotype, K=1 against DARTS, the paper-size parameter count, CLI."""

import copy

import pytest
import torch
import torch.nn.functional as F
import yaml

from archsearch.model.genotype import parse_genotype
from archsearch.model.mixed_op import MixedOp, MixedOpOptions, channel_shuffle
from archsearch.model.model_desc import OpDesc
from archsearch.model.network import count_params
from archsearch.model.ops import DARTS_PRIMITIVES
from archsearch.spaces.darts_cells import DartsCellSupernet, DartsModelDescBuilder
from archsearch.spaces.nasbench201 import NasBench201Space
from archsearch.strategies.darts.fused import fuse_cells
from tests.conftest import assert_user_error, config_fixture

DATASET = dict(channels=3, n_classes=4)


def supernet(options: MixedOpOptions, n_cells=3, c=8, n_nodes=2, n_classes=4, seed=0) -> DartsCellSupernet:
    conf = dict(n_cells=n_cells, init_channels=c, n_nodes=n_nodes, stem_multiplier=3, n_reductions=2,
                aux_weight=0.0, affine=False, primitives=DARTS_PRIMITIVES)  # fmt: skip
    torch.manual_seed(seed)
    desc = DartsModelDescBuilder(conf, dict(channels=3, n_classes=n_classes), options=options).build()
    return DartsCellSupernet(desc)


def randomize_arch(model, seed=1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for table in model.arch_params():
            table.copy_(torch.randn(table.shape, generator=g))


def batch(seed, n=4, size=8):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, size, size, generator=g), torch.randint(0, 4, (n,), generator=g)


def loss_and_grads(model, x, y):
    model.zero_grad(set_to_none=True)
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


def test_k1_without_edge_normalization_is_darts_same_loss_and_gradients():
    """PC-DARTS' supernet at K=1 against the DARTS strategy's (fused) supernet with the same weights."""
    darts = fuse_cells(supernet(MixedOpOptions()))
    pc = supernet(MixedOpOptions(partial_channels=1, edge_normalization=False), seed=5)
    randomize_arch(darts)
    pc.load_state_dict(darts.state_dict())
    assert not any(type(c).__name__ == "FusedDartsCell" for c in pc.cells)  # a different code path
    x, y = batch(3)
    loss_d, grads_d = loss_and_grads(darts, x, y)
    loss_p, grads_p = loss_and_grads(pc, x, y)
    assert torch.allclose(loss_d, loss_p, atol=1e-6)
    assert grads_d.keys() == grads_p.keys()
    for name in grads_d:
        assert torch.allclose(grads_d[name], grads_p[name], atol=1e-5, rtol=1e-4), name


@pytest.mark.parametrize("stride", [1, 2])
def test_partial_edge_passes_exactly_c_over_k_channels_through_its_ops(stride):
    c, k = 16, 4
    desc = OpDesc.of("mixed_op", c, c, stride, False, candidates=list(DARTS_PRIMITIVES), arch_key="regular",
                     arch_row=0, partial_channels=k)  # fmt: skip
    op = MixedOp(desc)
    op.bind_arch(torch.nn.Parameter(torch.randn(1, len(DARTS_PRIMITIVES))))
    seen = []
    hooks = [m.register_forward_hook(lambda m, i, o: seen.append((i[0].shape, o.shape))) for m in op.ops]
    x = torch.randn(2, c, 8, 8)
    out = op(x)
    for h in hooks:
        h.remove()
    assert len(seen) == len(DARTS_PRIMITIVES) - 1  # every built candidate (none is never run)
    assert {shape_in for shape_in, _ in seen} == {torch.Size([2, c // k, 8, 8])}
    assert {shape_out for _, shape_out in seen} == {torch.Size([2, c // k, 8 // stride, 8 // stride])}
    assert out.shape == (2, c, 8 // stride, 8 // stride)
    # the ops are built at C/K: every conv maps C/K channels
    convs = [m for m in op.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(m.in_channels in (c // k, 1) and m.out_channels in (c // k, c // (2 * k)) for m in convs)

    # the same edge is DARTS' mixed op over the first C/K channels, the rest passed by (max-pooled when
    # striding), then shuffled in K groups (PC-DARTS model_search.py)
    reference = MixedOp(OpDesc.of("mixed_op", c // k, c // k, stride, False, candidates=list(DARTS_PRIMITIVES),
                                  arch_key="regular", arch_row=0))  # fmt: skip
    reference.bind_arch(op.arch_table)
    reference.load_state_dict(op.state_dict())
    bypass = x[:, c // k :] if stride == 1 else F.max_pool2d(x[:, c // k :], 2, 2)
    expected = channel_shuffle(torch.cat([reference(x[:, : c // k]), bypass], 1), k)
    assert torch.allclose(out, expected, atol=1e-6)


def test_channel_shuffle_interleaves_the_groups():
    x = torch.arange(8.0).view(1, 8, 1, 1)
    assert channel_shuffle(x, 4).flatten().tolist() == [0, 2, 4, 6, 1, 3, 5, 7]
    assert torch.equal(channel_shuffle(x, 1), x)


def test_edge_normalization_weights_each_edge_by_the_softmax_of_its_nodes_betas():
    model = supernet(MixedOpOptions(partial_channels=2, edge_normalization=True))
    randomize_arch(model)
    n_nodes = 2
    assert {f"{t}_edges{i}" for t in ("regular", "reduction") for i in range(n_nodes)} <= set(model.arch_tables)
    assert model.arch_tables["regular_edges1"].shape == (1, 3)  # node 1 reads 2 cell inputs + node 0
    cell = next(c for c in model.cells if c.desc.cell_type == "regular")
    node = cell.nodes[1]
    x = torch.randn(2, node[0].desc.ch_in, 8, 8)
    betas = F.softmax(model.arch_tables["regular_edges1"][0], dim=-1)
    for j, op in enumerate(node):
        plain = copy.deepcopy(op)
        plain.edge_key = None  # the same edge without its beta
        assert torch.allclose(op(x), betas[j] * plain(x), atol=1e-6)
    # betas are architecture parameters, trained by the arch optimizer, never by the weight optimizer
    arch_ids = {id(p) for p in model.arch_params()}
    assert id(model.arch_tables["regular_edges1"]) in arch_ids
    assert not arch_ids & {id(p) for p in model.nonarch_params()}
    assert [id(p) for p in model.op_arch_params()] == [id(model.arch_tables[k]) for k in ("regular", "reduction")]
    x, y = batch(4)
    F.cross_entropy(model(x), y).backward()
    assert model.arch_tables["regular_edges1"].grad.abs().sum() > 0


def test_genotype_ranks_edges_by_alpha_times_beta():
    model = supernet(MixedOpOptions(partial_channels=2, edge_normalization=True), n_nodes=2)
    sep = DARTS_PRIMITIVES.index("sep_conv_3x3")
    with torch.no_grad():
        for key in ("regular", "reduction"):
            table = model.arch_tables[key]
            table.zero_()
            table[2:5, sep] = torch.tensor([3.0, 2.0, 0.0])  # node 1's edges: by alpha alone, inputs 0 and 1 win
            model.arch_tables[f"{key}_edges1"].copy_(torch.tensor([[-5.0, 0.0, 0.0]]))  # the beta of input 0 is tiny
    genotype = parse_genotype(model.derive_arch())
    node1 = genotype.normal[2:4]
    assert sorted(j for _, j in node1) == [1, 2]  # alpha * beta: input 0 drops out, node 0 (state 2) comes in


def darts_pc_search_params(c=16, layers=8, k=4, n_classes=10, stem_multiplier=3, multiplier=4, steps=4) -> int:
    """PC-DARTS' search network (model_search.py) counted from the paper's description: DARTS' network whose
    every mixed op holds the 7 candidates at C/K channels (BatchNorm affine=False, so BN adds nothing)."""

    def mixed(ch: int, stride: int) -> int:
        w = ch // k
        sep = lambda kernel: 2 * (kernel * kernel * w + w * w)  # noqa: E731 - two (depthwise + pointwise) blocks
        dil = lambda kernel: kernel * kernel * w + w * w  # noqa: E731
        skip = w * w if stride == 2 else 0  # FactorizedReduce: two 1x1 convs w -> w/2
        return sep(3) + sep(5) + dil(3) + dil(5) + skip  # max/avg pool, none: no weights

    c_curr = stem_multiplier * c
    total = 3 * c_curr * 9 + 2 * c_curr  # stem conv + its affine BN
    c_pp, c_prev, c_curr = c_curr, c_curr, c
    for i in range(layers):
        reduction = i in (layers // 3, 2 * layers // 3)
        if reduction:
            c_curr *= 2
        total += (c_pp + c_prev) * c_curr  # preprocess0 (ReLUConvBN or FactorizedReduce) + preprocess1
        for node in range(steps):
            for j in range(node + 2):
                total += mixed(c_curr, 2 if reduction and j < 2 else 1)
        c_pp, c_prev = c_prev, multiplier * c_curr
    return total + c_prev * n_classes + n_classes  # classifier


def test_paper_size_supernet_has_the_pc_darts_parameter_count():
    model = supernet(MixedOpOptions(partial_channels=4, edge_normalization=True), n_cells=8, c=16, n_nodes=4,
                     n_classes=10)  # fmt: skip
    expected = darts_pc_search_params()
    assert count_params(model) == expected == 299_578
    assert darts_pc_search_params(k=1) == 1_930_618  # the same count at K=1 is DARTS' (tests/strategies/darts)
    # alphas: 2 x 14 x 8; betas: 2 cell types x nodes of 2..5 inputs
    assert sum(p.numel() for p in model.arch_params()) == 2 * 14 * 8 + 2 * (2 + 3 + 4 + 5)


def test_nasbench201_partial_supernet():
    space = NasBench201Space({}, {"init_channels": 8, "n_cells_per_stage": 1, "affine": False},
                             {"channels": 3, "n_classes": 4})  # fmt: skip
    model = space.mixed_op_supernet(MixedOpOptions(partial_channels=4, edge_normalization=True))
    assert {"cell", "cell_edges1", "cell_edges2", "cell_edges3"} == set(model.arch_tables)
    assert [model.arch_tables[f"cell_edges{j}"].shape[1] for j in (1, 2, 3)] == [1, 2, 3]
    ops = model.mixed_ops()
    assert ops and all(op.partial == 4 for op in ops)
    x, y = batch(5)
    F.cross_entropy(model(x), y).backward()
    assert all(t.grad is not None for t in model.arch_params())
    assert len(model.derive_arch().split("+")) == 3


TINY = {
    "nas": {
        "search": {
            "model_desc": {"n_cells": 3, "init_channels": 4, "n_nodes": 2},
            "loader": {"batch_size": 16, "limit_batches": 2},
            "trainer": {"epochs": 2, "bilevel": {"arch_start_epoch": 1}},
        },
    },
    "dataset": {"synthetic_train": 96, "synthetic_test": 32},
}
tiny = config_fixture(TINY)


def test_pcdarts_search_through_the_cli_warms_up_then_logs_edge_betas(cli, tiny):
    proc = cli("--algos", "pcdarts", "--datasets", "synthetic", "--config", tiny, "--search-only")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = cli.logdir / "archsearch_synthetic_toy" / "pcdarts"
    assert parse_genotype((out / "search" / "genotype.txt").read_text().strip())
    records = yaml.safe_load((out / "log.yaml").read_text())
    epochs = [r for r in records if r["event"] == "search_epoch"]
    assert ["arch_loss" in r for r in epochs] == [False, True]  # epoch 1 is the weights-only warm-up
    tables = [r for r in records if r["event"] == "arch_weights"]
    assert len(tables) == 2 and len(tables[0]["softmax"]["regular_edges1"][0]) == 3
    assert tables[0]["softmax"]["regular"] != tables[1]["softmax"]["regular"]


def test_partial_channels_that_do_not_divide_the_width_is_one_line(cli_in_process, tiny):
    cli = cli_in_process
    proc = cli("--algos", "pcdarts", "--datasets", "synthetic", "--config", tiny, "--dry-run",
               "--nas.search.model_desc.init_channels", "6")  # fmt: skip
    assert_user_error(proc, "partial_channels 4 must divide init_channels 6")


def test_collapse_entropy_counts_the_op_alphas_not_the_edge_betas():
    from archsearch.strategies.darts.collapse import mean_entropy, op_weight_tables

    model = supernet(MixedOpOptions(partial_channels=2, edge_normalization=True))
    randomize_arch(model)
    tables = op_weight_tables(model)
    assert {id(t) for t in tables.values()} == {id(p) for p in model.op_arch_params()}
    assert len(tables) < len(model.arch_tables)  # the beta tables are left out
    assert mean_entropy(tables) != mean_entropy(model.arch_tables)
