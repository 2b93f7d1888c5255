import itertools

import pytest
import torch

from archsearch.common.errors import ArchitectureError
from archsearch.model.model_desc import ModelDesc
from archsearch.model.network import Model, count_params
from archsearch.spaces.nasbench201 import (
    N_CELLS,
    NB201_OPS,
    NB201DescBuilder,
    all_archs,
    arch_to_desc,
    arch_to_index,
    desc_to_arch,
    format_arch,
    index_to_arch,
    parse_arch,
)

# (uid, architecture) rows of the published NAS-Bench-201 table (CIFAR-10, C=16, N=5), checked against
# the real table; 1459 is the benchmark's best cell on CIFAR-10 (91.52% test accuracy).
KNOWN = [
    (0, "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|"),
    (1, "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"),
    (9, "|avg_pool_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|nor_conv_3x3~2|"),
    (123, "|avg_pool_3x3~0|+|avg_pool_3x3~0|nor_conv_1x1~1|+|none~0|avg_pool_3x3~1|nor_conv_3x3~2|"),
    (1459, "|nor_conv_3x3~0|+|nor_conv_1x1~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_1x1~1|nor_conv_3x3~2|"),
    (5000, "|nor_conv_3x3~0|+|nor_conv_3x3~0|none~1|+|avg_pool_3x3~0|nor_conv_1x1~1|nor_conv_3x3~2|"),
    (
        10000,
        "|nor_conv_1x1~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_1x1~1|nor_conv_3x3~2|",
    ),
    (15624, "|nor_conv_1x1~0|+|none~0|nor_conv_1x1~1|+|none~0|nor_conv_1x1~1|nor_conv_1x1~2|"),
]


def uniform(op: str) -> str:
    return format_arch([op] * 6)


@pytest.mark.parametrize("index, arch", KNOWN)
def test_known_benchmark_indices(index, arch):
    assert index_to_arch(index) == arch
    assert arch_to_index(arch) == index


def test_index_string_round_trip_for_all_cells():
    archs = all_archs()
    assert len(archs) == N_CELLS == 15_625
    assert [arch_to_index(a) for a in archs] == list(range(N_CELLS))
    # every cell of the product space appears exactly once
    product = {format_arch(c) for c in itertools.product(NB201_OPS, repeat=6)}
    assert set(archs) == product


@pytest.mark.parametrize("arch", [a for _, a in KNOWN] + [uniform("none"), uniform("nor_conv_3x3")])
def test_parse_and_format_are_exact_inverses(arch):
    cell = parse_arch(arch)
    assert len(cell) == 6 and all(op in NB201_OPS for op in cell)
    assert format_arch(cell) == arch


def test_parse_gives_ops_in_edge_order():
    cell = parse_arch(KNOWN[1][1])
    # edges (1<-0), (2<-0), (2<-1), (3<-0), (3<-1), (3<-2)
    expected = (
        "nor_conv_3x3",
        "nor_conv_3x3",
        "avg_pool_3x3",
        "skip_connect",
        "nor_conv_3x3",
        "skip_connect",
    )
    assert cell == expected


GOOD = KNOWN[1][1]


@pytest.mark.parametrize(
    "bad, fragment",
    [
        (GOOD.replace("avg_pool_3x3", "max_pool_3x3"), "unknown op 'max_pool_3x3'"),
        ("|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|", "2 node group(s)"),
        (GOOD + "+|none~0|", "4 node group(s)"),
        (GOOD.replace("avg_pool_3x3~1", "avg_pool_3x3~2"), "input '2', expected 1"),
        (GOOD.replace("|nor_conv_3x3~0|+", "|nor_conv_3x3~1|+", 1), "input '1', expected 0"),
        (GOOD.replace("avg_pool_3x3~1", "avg_pool_3x3~x"), "input 'x'"),
        (GOOD.replace("avg_pool_3x3~1", "avg_pool_3x3"), "must be op~input"),
        (GOOD.replace("|avg_pool_3x3~1|", "|"), "has 1 edge(s), expected 2"),
        (GOOD[1:], "bars at both ends"),
        ("", "empty"),
    ],
)
def test_bad_strings_raise_architecture_error(bad, fragment):
    with pytest.raises(ArchitectureError) as info:
        parse_arch(bad)
    message = str(info.value)
    assert fragment in message and "\n" not in message


@pytest.mark.parametrize("bad", [-1, N_CELLS, 1.5, "3", True, None])
def test_bad_indices_raise_architecture_error(bad):
    with pytest.raises(ArchitectureError, match="out of range"):
        index_to_arch(bad)


def test_numpy_integer_index_is_accepted():
    np = pytest.importorskip("numpy")
    assert index_to_arch(np.int64(1459)) == KNOWN[4][1]


@pytest.mark.parametrize(
    "arch, params",
    [
        # the benchmark reports 0.073306 MB for cells without convolutions and 1.531546 MB for the
        # all-3x3 cell (the largest network): the macro skeleton alone is 73,306 parameters
        (uniform("none"), 73_306),
        (uniform("skip_connect"), 73_306),
        (uniform("avg_pool_3x3"), 73_306),
        (KNOWN[2][1].replace("nor_conv_3x3", "avg_pool_3x3"), 73_306),
        (uniform("nor_conv_1x1"), 241_306),
        (uniform("nor_conv_3x3"), 1_531_546),
    ],
)
def test_parameter_counts_match_the_benchmark(arch, params):
    model = Model(arch_to_desc(arch, C=16, N=5))
    assert count_params(model) == params


def test_network_layout_and_forward_shape():
    desc = arch_to_desc(GOOD, C=16, N=5, ch_in=3, n_classes=10)
    assert len(desc.cells) == 17  # 3 stages of 5 cells and 2 residual blocks
    assert [c.cell_type for c in desc.cells].count("reduction") == 2
    assert desc.cells[5].stems[0].name == "nb201_resblock" and desc.cells[5].c_node == 32
    assert desc.cells[0].input_states == [-1] and desc.cells[0].concat == [3]
    assert desc.meta["arch"] == GOOD and desc.meta["arch_index"] == 1
    model = Model(desc)
    model.eval()
    with torch.no_grad():
        logits = model(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 10)


def test_desc_yaml_round_trip():
    desc = arch_to_desc(KNOWN[4][1], C=8, N=2, ch_in=3, n_classes=100)
    loaded = ModelDesc.from_yaml(desc.to_yaml())
    assert loaded == desc
    assert desc_to_arch(loaded) == KNOWN[4][1]


def test_builder_builds_and_scales():
    small = NB201DescBuilder({"init_channels": 4, "n_cells_per_stage": 1}, {"channels": 3, "n_classes": 10}, GOOD)
    found = small.build(meta={"algorithm": "naswot", "score": 1.0})
    assert found.meta["algorithm"] == "naswot" and found.meta["arch"] == GOOD
    big = NB201DescBuilder({"init_channels": 16, "n_cells_per_stage": 5}, {"channels": 3, "n_classes": 10})
    scaled = big.scale(found)
    reference = arch_to_desc(GOOD, C=16, N=5)
    assert scaled.cells == reference.cells and scaled.pool_op == reference.pool_op
    assert scaled.meta["algorithm"] == "naswot"
    with pytest.raises(ArchitectureError, match="no NAS-Bench-201 cell"):
        big.build()


def test_desc_to_arch_rejects_other_networks():
    desc = arch_to_desc(GOOD, C=4, N=1)
    desc.cells[0].nodes[2].edges.pop()
    with pytest.raises(ArchitectureError, match="not a NAS-Bench-201 network"):
        desc_to_arch(desc)
