"""Token spaces: AMBER's layout, encode/decode inverses, clear errors, and the ENAS spaces' conversions."""

from __future__ import annotations

import random

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archsearch.common.errors import ArchitectureError, ConfigError
from archsearch.model.builder import desc_genotype
from archsearch.model.genotype import parse_genotype
from archsearch.model.model_desc import ModelDesc
from archsearch.model.network import Model
from archsearch.spaces.enas_spaces import MacroSpace, MicroSpace, loose_ends
from archsearch.spaces.token_space import ModelSpace, Operation, check_arc

CONF_MICRO = dict(n_cells=5, init_channels=8, n_nodes=5, stem_multiplier=3, n_reductions=2, aux_weight=0.4, affine=True)
CONF_MACRO = dict(init_channels=8, affine=True)
DATASET = dict(channels=3, n_classes=10)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # tiny tensors: OpenMP threads only add contention on a shared 2-core box (100x slower when busy)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def amber_space(n_layers: int = 4, n_ops: int = 4, skips: bool = True) -> ModelSpace:
    return ModelSpace([[Operation(f"op{i}") for i in range(n_ops)] for _ in range(n_layers)], skips)


# ---- ModelSpace ---------------------------------------------------------------------------------


def test_amber_residual_layout_example():
    space = amber_space()
    ops, skips = space.decode([0, 1, 1, 2, 0, 1, 3, 1, 0, 1])
    assert ops == [0, 1, 2, 3]
    assert skips == [[1], [0, 1], [1, 0, 1]]
    assert space.encode(ops, skips) == [0, 1, 1, 2, 0, 1, 3, 1, 0, 1]
    kinds = [(t.kind, t.layer, t.slot) for t in space.token_spec()]
    assert kinds[:4] == [("op", 0, 0), ("op", 1, 0), ("skip", 1, 0), ("op", 2, 0)]
    assert space.arc_length() == 10 and space.size() == 4**4 * 2**6


@st.composite
def space_and_arc(draw):
    n_layers = draw(st.integers(1, 6))
    op_counts = draw(st.lists(st.integers(1, 5), min_size=n_layers, max_size=n_layers))
    space = ModelSpace([[Operation(f"op{j}") for j in range(n)] for n in op_counts], draw(st.booleans()))
    arc = [draw(st.integers(0, t.n_choices - 1)) for t in space.token_spec()]
    return space, arc


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(space_and_arc())
def test_decode_encode_are_inverses(case):
    space, arc = case
    ops, skips = space.decode(arc)
    assert len(ops) == len(space)
    assert all(len(bits) == i for i, bits in enumerate(skips, start=1))
    assert space.encode(ops, skips) == arc
    assert space.decode(space.encode(ops, skips)) == (ops, skips)


def test_wrong_length_names_the_space():
    with pytest.raises(ArchitectureError) as err:
        amber_space().decode([0] * 9)
    assert str(err.value) == "arc_seq has 9 tokens, the space needs 10 (4 layers with skip connections)"
    with pytest.raises(ArchitectureError, match="needs 4 \\(4 layers without skip connections\\)"):
        amber_space(skips=False).decode([0] * 10)


@pytest.mark.parametrize(
    ("arc", "fragment"),
    [
        ([0, 1, 1, 2, 0, 1, 4, 1, 0, 1], "arc_seq[6] = 4 is out of range for layer 3's operation: expected 0..3"),
        ([0, 1, 2, 2, 0, 1, 3, 1, 0, 1], "arc_seq[2] = 2 is out of range for layer 1's skip bit from layer 0"),
        ([-1, 1, 1, 2, 0, 1, 3, 1, 0, 1], "arc_seq[0] = -1 is out of range"),
        ([0, 1.5, 1, 2, 0, 1, 3, 1, 0, 1], "arc_seq[1] = 1.5 must be an int"),
        ([0, True, 1, 2, 0, 1, 3, 1, 0, 1], "arc_seq[1] = True must be an int"),
    ],
)
def test_bad_tokens_are_one_line_errors(arc, fragment):
    with pytest.raises(ArchitectureError) as err:
        amber_space().decode(arc)
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_numpy_and_tensor_ints_are_accepted():
    import numpy as np

    arc = np.array([0, 1, 1, 2, 0, 1, 3, 1, 0, 1])
    assert amber_space().check(arc) == arc.tolist()
    assert amber_space().check(torch.tensor(arc)) == arc.tolist()


def test_encode_rejects_wrong_skip_lists():
    with pytest.raises(ArchitectureError, match="layer 2 needs 2 skip bits"):
        amber_space().encode([0, 1, 2, 3], [[1], [0], [1, 0, 1]])
    with pytest.raises(ArchitectureError, match="expected 3"):
        amber_space().encode([0, 1, 2, 3], [[1]])


def test_from_list_and_short_names():
    space = ModelSpace.from_list([[{"name": "conv", "k": 3}, {"name": "pool"}], [{"name": "identity"}]])
    assert space[0][0] == Operation("conv", {"k": 3})
    assert [t.choices for t in space.token_spec() if t.kind == "op"] == [("conv(k=3)", "pool"), ("identity",)]
    assert space.chosen_operations([1, 0, 1]) == [Operation("pool"), Operation("identity")]
    with pytest.raises(ArchitectureError, match="layer 0 op 0"):
        ModelSpace.from_list([[{"kind": "conv"}]])


# ---- ENAS micro space ---------------------------------------------------------------------------


def test_micro_layout_follows_the_original():
    space = MicroSpace(n_nodes=5)
    spec = space.token_spec()
    assert len(spec) == space.arc_length() == 40
    # per node [input_1, op_1, input_2, op_2]; node j chooses among the 2 cell inputs and j earlier nodes
    assert [t.kind for t in spec[:4]] == ["input", "op", "input", "op"]
    assert [t.n_choices for t in spec[4:8]] == [3, 5, 3, 5]
    assert {t.group for t in spec[:20]} == {0} and {t.group for t in spec[20:]} == {1}
    with pytest.raises(
        ArchitectureError, match=r"arc_seq\[20\] = 2 is out of range for reduction cell node 0's input 0"
    ):
        space.check([0] * 20 + [2] + [0] * 19)


def test_loose_ends_are_unread_nodes():
    nodes = [[("a", 0), ("a", 1)], [("a", 2), ("a", 0)], [("a", 1), ("a", 1)]]
    assert loose_ends(nodes) == [3, 4]


def test_micro_arc_to_genotype_and_desc():
    space = MicroSpace()
    # node0 = sep3(in0) + sep5(in1); node1 = avg(node0) + identity(in1); nodes 2..4 read node1 only
    normal = [0, 0, 1, 1, 2, 2, 1, 4, 3, 3, 3, 3, 3, 0, 3, 1, 3, 4, 3, 2]
    reduce = [1, 3, 0, 2, 2, 0, 2, 1, 0, 4, 1, 4, 4, 0, 3, 1, 1, 1, 0, 0]
    genotype = space.to_genotype(normal + reduce)
    assert genotype.normal[:4] == [("sep_conv_3x3", 0), ("sep_conv_5x5", 1), ("avg_pool_3x3", 2), ("skip_connect", 1)]
    assert genotype.normal_concat == [4, 5, 6]
    assert parse_genotype(str(genotype)) == genotype
    assert space.encode(genotype) == normal + reduce

    desc = space.to_desc(normal + reduce, CONF_MICRO, DATASET)
    assert desc.meta["arc_seq"] == normal + reduce and desc.meta["genotype"] == str(genotype)
    assert desc_genotype(desc) == str(genotype)
    assert ModelDesc.from_yaml(desc.to_yaml()) == desc
    # reduction cells stride only the edges that read the cell inputs
    reduction = desc.cells[desc.cell_types().index("reduction")]
    assert [[e.op.stride for e in n.edges] for n in reduction.nodes][:3] == [[2, 2], [1, 1], [2, 2]]
    model = Model(desc).eval()
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 10)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.randoms(use_true_random=False))
def test_any_micro_arc_builds_a_valid_desc(rng):
    space = MicroSpace(n_nodes=3)
    arc = space.random_arc(rng)
    desc = space.to_desc(arc, {**CONF_MICRO, "n_nodes": 3}, DATASET)
    desc.validate()
    assert space.encode(space.to_genotype(arc)) == arc


def test_micro_conf_must_agree():
    with pytest.raises(ConfigError, match="n_nodes=4 disagrees"):
        MicroSpace(n_nodes=5).to_desc([0] * 40, {**CONF_MICRO, "n_nodes": 4}, DATASET)
    with pytest.raises(ConfigError, match="unknown op"):
        MicroSpace(ops=("sep_conv_3x3", "no_such_op"))


# ---- ENAS macro space ---------------------------------------------------------------------------


def test_macro_defaults_follow_the_original():
    space = MacroSpace()
    assert space.n_layers == 12 and space.resolved_pool_layers() == [3, 7]
    assert space.arc_length() == 12 + 66
    assert space.ops[:2] == ("enas_conv_3x3", "enas_sep_conv_3x3")


def test_macro_skip_bits_read_the_inputs_of_earlier_layers():
    space = MacroSpace(n_layers=4, pool_layers=())
    # layer 2 skips from source 0 (the stem); layer 3 from source 1 (layer 0's output)
    arc = space.encode([0, 1, 2, 3], [[0], [1, 0], [0, 1, 0]])
    desc = space.to_desc(arc, CONF_MACRO, DATASET)
    # states: [stem, stem, layer0, layer1, layer2, layer3]
    assert [c.input_states for c in desc.cells] == [[-1], [-1], [-1, -3], [-1, -3]]
    assert desc.meta["enas_cells"] == ["layer 0", "layer 1", "layer 2", "layer 3"]
    assert [len(n.edges) for n in desc.cells[2].nodes] == [1, 2, 1]  # op, op + skip, batch norm
    assert Model(desc).eval()(torch.randn(2, 3, 8, 8)).shape == (2, 10)


def test_macro_pooling_reduces_only_states_read_later():
    space = MacroSpace(n_layers=4, pool_layers=(1,))
    arc = space.encode([5, 4, 3, 2], [[0], [0, 0], [1, 0, 0]])  # layer 3 reads the stem across the pool
    desc = space.to_desc(arc, CONF_MACRO, DATASET)
    assert desc.meta["enas_cells"] == ["layer 0", "layer 1", "pool 1 source 0", "pool 1 source 2", "layer 2", "layer 3"]
    widths = [c.c_node for c in desc.cells]
    assert widths == [8, 8, 16, 16, 16, 16]  # the fixed-arc child doubles the channels at a pool
    assert Model(desc).eval()(torch.randn(2, 3, 8, 8)).shape == (2, 10)


@pytest.mark.parametrize("combine", ["sum", "concat"])
def test_any_macro_arc_runs(combine):
    space = MacroSpace(n_layers=6, skip_combine=combine)
    rng = random.Random(3)
    for _ in range(3):
        desc = space.to_desc(space.random_arc(rng), CONF_MACRO, DATASET)
        assert ModelDesc.from_yaml(desc.to_yaml()) == desc
        model = Model(desc).train()
        model(torch.randn(2, 3, 8, 8)).sum().backward()


def test_macro_pool_layers_must_leave_the_last_layer():
    with pytest.raises(ConfigError, match="pool_layers: 5 must be in 0..4"):
        MacroSpace(n_layers=6, pool_layers=(5,))


def test_check_arc_rejects_non_sequences():
    with pytest.raises(ArchitectureError, match="must be a sequence of ints"):
        check_arc(3, amber_space().token_spec(), "x")  # type: ignore[arg-type]
