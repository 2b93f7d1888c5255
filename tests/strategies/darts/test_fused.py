"""FusedDartsCell: the same function, gradients, BN statistics and finalization as the naive Cell + MixedOp."""

import copy

import pytest
import torch
import torch.nn.functional as F

from archsearch.model.network import Model
from archsearch.model.ops import DARTS_PRIMITIVES
from archsearch.spaces.darts_cells import DartsCellSpace, DartsCellSupernet
from archsearch.strategies.darts import BilevelOptimizer, Darts, DartsModelDescBuilder, MixedOp
from archsearch.strategies.darts import fused as fused_module
from archsearch.strategies.darts.fused import FusedDartsCell, fuse_cells

DATASET = dict(channels=3, n_classes=4)


def supernet(affine=False, primitives=DARTS_PRIMITIVES, c=4, n_nodes=4) -> Model:
    """Three cells: regular, reduction, reduction (so both cell types and a reduction after a reduction)."""
    conf = dict(
        n_cells=3,
        init_channels=c,
        n_nodes=n_nodes,
        stem_multiplier=3,
        n_reductions=2,
        aux_weight=0.0,
        affine=affine,
        primitives=list(primitives),
    )
    torch.manual_seed(0)
    model = DartsCellSupernet(DartsModelDescBuilder(conf, DATASET).build()).double()
    with torch.no_grad():
        for table in model.arch_params():
            table.normal_()  # far from uniform, so a wrong weight-to-op pairing shows
        for name, buffer in model.named_buffers():  # non-trivial running statistics for eval mode
            if "running_mean" in name:
                buffer.normal_()
            elif "running_var" in name:
                buffer.uniform_(0.5, 2.0)
    return model


def naive_and_fused(**kwargs) -> tuple[Model, Model]:
    naive = supernet(**kwargs)
    return naive, fuse_cells(copy.deepcopy(naive))


def batch(seed, n=4, size=8):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, size, size, generator=g, dtype=torch.float64), torch.randint(0, 4, (n,), generator=g)


def assert_same_grads_and_buffers(naive: Model, fused: Model) -> None:
    for (name, p), (_, q) in zip(naive.named_parameters(), fused.named_parameters(), strict=True):
        assert (p.grad is None) == (q.grad is None), name
        if p.grad is not None:
            assert torch.allclose(p.grad, q.grad, rtol=1e-9, atol=1e-12), (name, (p.grad - q.grad).abs().max())
    for (name, b), (_, c) in zip(naive.named_buffers(), fused.named_buffers(), strict=True):
        assert torch.allclose(b, c, rtol=1e-9, atol=1e-12), name


# size 8: even maps (the polyphase path for dilated convs); 7: odd maps (plain dilated convs, padded reduce);
# cpu_tuning False: the layout-preserving path other devices take, in NCHW and in channels_last
@pytest.mark.parametrize(
    "affine,size,cpu_tuning,channels_last",
    [
        (False, 8, True, False),
        (True, 8, True, False),
        (False, 7, True, False),
        (True, 8, False, False),
        (False, 8, False, True),
    ],
)
def test_output_gradients_and_bn_statistics_match_the_naive_path(monkeypatch, affine, size, cpu_tuning, channels_last):
    monkeypatch.setattr(fused_module, "CPU_TUNING", cpu_tuning)
    naive, fused = naive_and_fused(affine=affine)
    assert all(isinstance(c, FusedDartsCell) for c in fused.cells)
    assert [c.desc.cell_type for c in fused.cells] == ["regular", "reduction", "reduction"]
    x, y = batch(1, size=size)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
        fused.to(memory_format=torch.channels_last)
    for _ in range(2):  # twice: the second step starts from updated running statistics
        outputs = []
        for model in (naive, fused):
            model.zero_grad(set_to_none=True)
            out = model(x)
            F.cross_entropy(out, y).backward()
            outputs.append(out)
        assert torch.allclose(*outputs, rtol=1e-9, atol=1e-12)
        assert_same_grads_and_buffers(naive, fused)
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in fused.arch_params())
    naive.eval(), fused.eval()
    with torch.no_grad():  # eval: every edge's BNs normalize with their own running statistics
        assert torch.allclose(naive(x), fused(x), rtol=1e-9, atol=1e-12)


def test_a_subset_of_primitives_and_two_node_cells():
    naive, fused = naive_and_fused(primitives=["none", "max_pool_3x3", "skip_connect", "dil_conv_3x3"], n_nodes=2)
    x, y = batch(2)
    for model in (naive, fused):
        F.cross_entropy(model(x), y).backward()
    assert_same_grads_and_buffers(naive, fused)


def test_fusing_keeps_modules_parameters_state_dict_and_finalization():
    model = supernet()
    params = {name: p for name, p in model.named_parameters()}
    keys = list(model.state_dict())
    before = model.derive_arch()
    fuse_cells(model)
    assert all(p is params[name] for name, p in model.named_parameters())  # optimizers keep working
    assert list(model.state_dict()) == keys  # checkpoints load either way
    assert model.derive_arch() == before
    op = next(m for m in model.modules() if isinstance(m, MixedOp))
    assert op.strongest()[0] in op.candidates and op.finalize().name == op.strongest()[0]
    naive = supernet()
    naive.load_state_dict(copy.deepcopy(model).state_dict())  # a fused checkpoint into a naive model
    x, _ = batch(3)
    model.eval(), naive.eval()
    assert torch.allclose(model(x), naive(x), rtol=1e-9, atol=1e-12)


def test_second_order_bilevel_step_matches():
    naive, fused = naive_and_fused()
    (xt, yt), (xv, yv) = batch(4), batch(5)
    results = []
    for model in (naive, fused):
        weights = model.nonarch_params()
        w_opt = torch.optim.SGD(weights, lr=0.1, momentum=0.9, weight_decay=3e-4)
        F.cross_entropy(model(xt), yt).backward()  # a real weight step first: the virtual step uses momentum
        w_opt.step()
        w_opt.zero_grad()
        conf = dict(type="adam", lr=3e-4, betas=[0.5, 0.999], weight_decay=1e-3, momentum=0.0, nesterov=False)
        bilevel = BilevelOptimizer(conf, model.arch_params(), weights, w_opt, model, order="second")
        saved = [w.detach().clone() for w in weights]
        loss = bilevel.step(lambda x, y, m=model: F.cross_entropy(m(x), y), xt, yt, xv, yv, lr=0.1)
        assert all(torch.equal(w, s) for w, s in zip(weights, saved))  # the virtual step is undone
        results.append((loss, [t.grad for t in model.arch_params()], [t.detach() for t in model.arch_params()]))
    (loss_n, grads_n, alphas_n), (loss_f, grads_f, alphas_f) = results
    assert torch.allclose(loss_n, loss_f, rtol=1e-9)
    for a, b in zip(grads_n + alphas_n, grads_f + alphas_f):
        assert torch.allclose(a, b, rtol=1e-6, atol=1e-10), (a - b).abs().max()
    assert_same_grads_and_buffers(naive, fused)


def test_bf16_autocast_is_as_accurate_as_the_naive_path():
    conf = dict(
        n_cells=3,
        init_channels=8,
        n_nodes=4,
        stem_multiplier=3,
        n_reductions=2,
        aux_weight=0.0,
        affine=False,
        primitives=DARTS_PRIMITIVES,
    )
    torch.manual_seed(0)
    naive = Model(DartsModelDescBuilder(conf, DATASET).build())
    fused = fuse_cells(copy.deepcopy(naive))
    x, y = batch(6, n=16, size=16)
    x = x.float()

    def grads(model, amp):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            loss = F.cross_entropy(model(x), y)
        return torch.cat([g.flatten() for g in torch.autograd.grad(loss, model.arch_params())])

    exact = grads(naive, amp=False)
    errors = [((grads(model, amp=True) - exact).norm() / exact.norm()).item() for model in (naive, fused)]
    assert errors[1] < 1.5 * errors[0] + 0.02, errors  # bf16 alpha gradients are coarse on either path


def test_drop_path_falls_back_to_the_naive_forward():
    naive, fused = naive_and_fused()
    x, _ = batch(7)
    outputs = []
    for model in (naive, fused):
        model.drop_path_prob = 0.3
        torch.manual_seed(1)
        outputs.append(model(x))
    assert torch.allclose(*outputs, rtol=1e-9, atol=1e-12)


def test_an_in_place_weight_change_before_backward_is_an_error():
    _, fused = naive_and_fused()
    x, y = batch(8)
    loss = F.cross_entropy(fused(x), y)
    op = next(m for m in fused.modules() if isinstance(m, MixedOp))
    sep_conv = op.ops[op.columns.index(op.candidates.index("sep_conv_3x3"))]
    with torch.no_grad():
        sep_conv[1][1].weight.add_(1)  # the second depthwise conv, whose output is recomputed in backward
    with pytest.raises(RuntimeError, match="modified"):
        loss.backward()


def test_strategy_fuses_when_the_config_says_so(tmp_path):
    class Ctx:
        conf = {"dataset": DATASET, "nas": {"search": {"model_desc": None}, "eval": {}}}

    conf_md = dict(
        n_cells=3,
        init_channels=4,
        n_nodes=2,
        stem_multiplier=3,
        n_reductions=2,
        aux_weight=0.0,
        affine=False,
        primitives=DARTS_PRIMITIVES,
    )
    for fused in (True, False):
        Ctx.conf["nas"]["search"]["model_desc"] = {**conf_md, "fused": fused}
        ctx = Ctx()
        strategy = Darts(ctx, DartsCellSpace({}, ctx.conf["nas"]["search"]["model_desc"], DATASET))
        assert all(isinstance(c, FusedDartsCell) == fused for c in strategy.search_model().cells)


def test_higher_order_gradients_through_the_fused_cell_match():
    """create_graph backward (an exact unrolled step) must see through the tensors recomputed in backward."""
    naive, fused = naive_and_fused(c=2, n_nodes=2)
    (xt, yt), (xv, yv) = batch(9), batch(10)
    results = []
    for model in (naive, fused):
        names = [n for n, _ in model.named_parameters() if not n.startswith("arch_tables")]
        weights = [dict(model.named_parameters())[n] for n in names]
        grads = torch.autograd.grad(F.cross_entropy(model(xt), yt), weights, create_graph=True)
        unrolled = {n: w - 0.1 * g for n, w, g in zip(names, weights, grads)}
        val_loss = F.cross_entropy(torch.func.functional_call(model, unrolled, (xv,)), yv)
        results.append(torch.autograd.grad(val_loss, model.arch_params()))
    for a, b in zip(*results):
        assert torch.allclose(a, b, rtol=1e-8, atol=1e-12), (a - b).abs().max()


def test_cells_without_mixed_ops_are_left_alone():
    conf = dict(n_cells=3, init_channels=4, n_nodes=4, stem_multiplier=3, n_reductions=2, aux_weight=0.0, affine=False)
    final = DartsCellSpace({}, conf, DATASET).build(supernet().derive_arch())
    fuse_cells(final)
    assert not any(isinstance(c, FusedDartsCell) for c in final.cells)
