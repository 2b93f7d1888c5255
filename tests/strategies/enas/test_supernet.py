"""ENAS weight sharing: a child of the supernet equals the standalone model of its arc."""

from __future__ import annotations

import random

import pytest
import torch

from archsearch.common.errors import ArchitectureError
from archsearch.model.builder import templates_from_desc
from archsearch.model.choice_ops import EnasChoice, EnasGate, batch_statistics
from archsearch.model.network import Model
from archsearch.spaces.enas_spaces import MacroSpace, MicroSpace
from archsearch.spaces.enas_supernet import build_supernet, extract_child

CONF_MICRO = dict(n_cells=5, init_channels=8, n_nodes=4, stem_multiplier=3, n_reductions=2, aux_weight=0.4, affine=True)
CONF_MACRO = dict(init_channels=8, affine=True)
DATASET = dict(channels=3, n_classes=10)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # tiny tensors: OpenMP threads only add contention on a shared 2-core box (100x slower when busy)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


SPACES = {
    "micro": (MicroSpace(n_nodes=4), CONF_MICRO),
    "micro_darts_head": (MicroSpace(n_nodes=4, final_conv=False), CONF_MICRO),
    "macro_sum": (MacroSpace(n_layers=6), CONF_MACRO),
    "macro_concat": (MacroSpace(n_layers=6, skip_combine="concat", double_channels=False), CONF_MACRO),
}


def logits(output):
    return output[0] if isinstance(output, tuple) else output


@pytest.fixture(scope="module", params=sorted(SPACES))
def supernet_case(request):
    space, conf = SPACES[request.param]
    torch.manual_seed(0)
    supernet = build_supernet(space, conf, DATASET)
    # randomize BN statistics and affine weights so a wrong mapping cannot pass by accident
    with torch.no_grad():
        for module in supernet.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 1.5)
                if module.affine:
                    module.weight.uniform_(0.5, 1.5)
                    module.bias.uniform_(-0.5, 0.5)
    return space, supernet


def test_child_forward_equals_the_standalone_model(supernet_case):
    space, supernet = supernet_case
    x = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    rng = random.Random(0)
    for _ in range(3):
        arc = space.random_arc(rng)
        supernet.set_arc(arc)
        supernet.eval()
        child = extract_child(supernet, arc)
        assert isinstance(child, Model) and not child.training
        assert child.desc == space.to_desc(arc, supernet.conf_model_desc, DATASET)  # what evaluation would build
        with torch.no_grad():
            torch.testing.assert_close(supernet(x), child(x), rtol=1e-5, atol=1e-5)
        # train mode uses batch statistics: still the same function (and aux logits where present)
        supernet.train()
        child.train()
        with torch.no_grad():
            out_super, out_child = supernet(x), child(x)
        if isinstance(out_super, tuple):
            torch.testing.assert_close(out_super[1], out_child[1], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(logits(out_super), logits(out_child), rtol=1e-5, atol=1e-5)
        # the child holds copies: training it leaves the supernet untouched
        before = [p.clone() for p in supernet.parameters()]
        with torch.no_grad():
            for p in child.parameters():
                p.add_(1.0)
        assert all(torch.equal(a, b) for a, b in zip(before, supernet.parameters()))


def test_only_chosen_ops_compute(supernet_case):
    space, supernet = supernet_case
    calls: dict[int, int] = {}
    handles = []
    choices = [m for m in supernet.modules() if isinstance(m, EnasChoice)]
    for choice in choices:
        for row in choice.candidates:
            for candidate in row:
                handles.append(
                    candidate.register_forward_hook(
                        lambda mod, inp, out: calls.__setitem__(id(mod), calls.get(id(mod), 0) + 1)
                    )
                )
    gates = [m for m in supernet.modules() if isinstance(m, EnasGate)]
    for gate in gates:
        handles.append(gate.inner.register_forward_hook(lambda mod, inp, out: calls.__setitem__(id(mod), 1)))
    try:
        arc = space.random_arc(random.Random(5))
        supernet.set_arc(arc)
        supernet.eval()
        with torch.no_grad():
            supernet(torch.randn(2, 3, 8, 8))
    finally:
        for handle in handles:
            handle.remove()
    chosen = {id(choice.chosen()) for choice in choices}
    active = {id(gate.inner) for gate in gates if gate.active}
    assert set(calls) == chosen | active
    assert all(calls[i] == 1 for i in chosen)


def test_gradients_reach_only_the_chosen_candidates():
    space, conf = SPACES["micro"]
    torch.manual_seed(0)
    supernet = build_supernet(space, conf, DATASET).train()
    arc = space.random_arc(random.Random(2))
    supernet.set_arc(arc)
    logits(supernet(torch.randn(2, 3, 8, 8))).sum().backward()
    for choice in (m for m in supernet.modules() if isinstance(m, EnasChoice)):
        for i, row in enumerate(choice.candidates):
            for o, candidate in enumerate(row):
                has_grad = any(p.grad is not None for p in candidate.parameters())
                if (i, o) != choice.selected:
                    assert not has_grad


def test_supernet_is_a_plain_model_without_arch_params():
    space, conf = SPACES["macro_sum"]
    supernet = build_supernet(space, conf, DATASET)
    assert supernet.arch_params() == []
    assert len(supernet.nonarch_params()) == len(list(supernet.parameters()))
    with pytest.raises(RuntimeError, match="call set_arc"):
        supernet(torch.randn(1, 3, 8, 8))
    with pytest.raises(ArchitectureError, match="arc_seq has 2 tokens"):
        supernet.set_arc([0, 1])


def test_supernet_desc_refuses_evaluation():
    space, conf = SPACES["micro"]
    supernet = build_supernet(space, conf, DATASET)
    with pytest.raises(ArchitectureError, match="searchable op 'enas_choice'"):
        templates_from_desc(supernet.desc)


def test_micro_supernet_holds_weights_per_possible_input():
    space, conf = SPACES["micro"]
    supernet = build_supernet(space, conf, DATASET)
    cell = supernet.cells[0]
    assert [len(node[0].candidates) for node in cell.nodes[: space.n_nodes]] == [2, 3, 4, 5]
    reduction = supernet.cells[supernet.desc.cell_types().index("reduction")]
    strides = [[d.stride for d in row] for row in reduction.nodes[1][0].candidate_descs]
    assert strides == [[2] * 5, [2] * 5, [1] * 5]  # only the cell inputs are strided


def test_micro_head_is_the_search_childs_final_conv():
    space, conf = SPACES["micro"]
    supernet = build_supernet(space, conf, DATASET)
    width, last_type = supernet.cells[-1].desc.c_node, supernet.cells[-1].desc.cell_type
    assert supernet.desc.pool_op.name == "enas_final_conv_pool"
    assert (supernet.desc.pool_op.ch_in, supernet.desc.pool_op.ch_out) == (space.n_nodes * width, width)
    # the classifier reads the same width whatever the arc; the final conv reads the arc's loose ends
    for arc in (space.random_arc(random.Random(seed)) for seed in range(3)):
        child = space.to_desc(arc, conf, DATASET)
        n_loose = len(space.to_templates(arc)[last_type].concat)
        assert (child.pool_op.ch_in, child.pool_op.ch_out) == (n_loose * width, width)
        assert child.logits_op.ch_in == width
    darts_head = MicroSpace(n_nodes=4, final_conv=False).to_desc(arc, conf, DATASET)
    assert darts_head.pool_op.name == "global_avg_pool" and darts_head.logits_op.ch_in == n_loose * width


def test_conv_candidates_start_as_no_ops():
    space, conf = SPACES["micro"]
    supernet = build_supernet(space, conf, DATASET)
    original = build_supernet(space, conf, DATASET, zero_init_convs=False)
    for net, conv_scale in ((supernet, 0.0), (original, 1.0)):
        reduction = net.cells[net.desc.cell_types().index("reduction")]
        choice = reduction.nodes[0][0]
        for name, candidate in zip(space.ops, choice.candidates[0]):
            norms = [m for m in candidate.modules() if isinstance(m, torch.nn.BatchNorm2d)]
            if name.startswith("sep_conv"):
                assert torch.all(norms[-1].weight == conv_scale) and torch.all(norms[0].weight == 1.0)
            elif name == "skip_connect":  # a factorized reduction on a reduction cell's input: a path, kept
                assert torch.all(norms[-1].weight == 1.0)
            else:
                assert norms == []
        assert torch.all(net.cells[0].stems[0][-1].weight == 1.0)  # only candidates change


def test_batch_statistics_in_eval_mode_leaves_running_statistics_alone():
    space, conf = SPACES["micro"]
    torch.manual_seed(0)
    supernet = build_supernet(space, conf, DATASET)
    supernet.set_arc(space.random_arc(random.Random(1)))
    x = torch.randn(8, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    before = {k: v.clone() for k, v in supernet.state_dict().items()}
    with torch.no_grad():
        supernet.eval()
        with batch_statistics(supernet):
            out = supernet(x)
        after = supernet.state_dict()
        assert after.keys() == before.keys() and all(torch.equal(before[k], after[k]) for k in before)
        stale = supernet(x)  # eval mode again: the (untouched, initial) running statistics
        supernet.train()
        batch = logits(supernet(x))
    torch.testing.assert_close(out, batch)
    assert not torch.allclose(out, stale)
