"""The NAS-Bench-201 search space: cell strings and indices, sampling, mutation, networks, the final file,
both supernets; manual on it through the CLI."""

from __future__ import annotations

import random

import pytest
import torch
import yaml

import archsearch.plugins  # noqa: F401 - the plugin bootstrap registers the spaces
from archsearch.common.errors import ArchitectureError
from archsearch.model.model_desc import ModelDesc
from archsearch.model.network import count_params
from archsearch.search.space import SPACES
from archsearch.spaces.nasbench201 import (
    NB201_OPS,
    NasBench201Space,
    arch_to_desc,
    arch_to_index,
    index_to_arch,
    parse_arch,
)
from tests.conftest import assert_user_error

DATASET = {"channels": 3, "n_classes": 4}
SEARCH = {"init_channels": 4, "n_cells_per_stage": 1, "affine": False}
RESNET = "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|none~2|"


def space(**model_desc) -> NasBench201Space:
    return SPACES.get("nasbench201")({}, {**SEARCH, **model_desc}, DATASET)


def test_registered_with_every_capability_and_its_size():
    assert SPACES.get("nasbench201") is NasBench201Space
    assert NasBench201Space.capabilities() == {
        "sample",
        "mutate",
        "benchmark",
        "differentiable",
        "mixed_op",
        "sampled",
        "cost",
        "choices",
        "encode",
    }
    assert space().size() == 15_625 and "15,625" in space().describe()


def test_choices_are_one_op_per_edge_and_round_trip():
    s = space()
    assert [name for name, _ in s.choices()] == ["node1_in0", "node2_in0", "node2_in1", "node3_in0", "node3_in1",
                                                 "node3_in2"]  # fmt: skip
    for seed in range(10):
        arch = s.sample(random.Random(seed))
        assert s.arch_from_choices(s.choices_of(arch)) == arch
    values = s.choices_of(s.sample(random.Random(0)))
    with pytest.raises(ArchitectureError, match="decision 'node1_in0' has no option 'conv'"):
        s.arch_from_choices({**values, "node1_in0": "conv"})
    with pytest.raises(ArchitectureError, match="no option for decision 'node3_in2'"):
        s.arch_from_choices({k: v for k, v in values.items() if k != "node3_in2"})


def test_json_round_trip_index_and_benchmark_key():
    s = space()
    assert s.from_json(s.to_json(RESNET)) == RESNET == s.benchmark_key(RESNET)
    assert s.from_json(arch_to_index(RESNET)) == RESNET  # a benchmark index reads as its cell
    with pytest.raises(ArchitectureError, match="nas.search.manual.index: NAS-Bench-201 index 15625"):
        s.from_json(15625, "nas.search.manual.index")
    with pytest.raises(ArchitectureError, match="final.yaml: NAS-Bench-201 arch"):
        s.from_json("|conv~0|", "final.yaml")


def test_sample_is_reproducible_and_mutate_changes_exactly_one_edge():
    s = space()
    assert s.sample(random.Random(7)) == s.sample(random.Random(7)) != s.sample(random.Random(8))
    for seed in range(20):
        rng = random.Random(seed)
        arch = s.sample(rng)
        child = s.mutate(arch, rng)
        assert sum(a != b for a, b in zip(parse_arch(arch), parse_arch(child))) == 1


def test_build_forward_shape_and_the_benchmarks_parameter_count():
    net = space().build(RESNET)
    assert net(torch.randn(2, 3, 8, 8)).shape == (2, 4)
    full = space(init_channels=16, n_cells_per_stage=5)
    assert count_params(full.build(RESNET)) == count_params(type(net)(arch_to_desc(RESNET, n_classes=4)))


def test_save_load_and_eval_model_round_trip(tmp_path):
    s = space()
    path = s.save_arch(RESNET, tmp_path, {"algo": "rea"})
    meta = yaml.safe_load(path.read_text())["meta"]
    assert meta["space"] == "nasbench201" and meta["arch"] == RESNET and meta["algo"] == "rea"
    assert s.load_arch(path) == RESNET
    built = s.eval_model(path, {"init_channels": 8, "n_cells_per_stage": 2}, tmp_path)
    scaled = ModelDesc.load(tmp_path / "model_desc.yaml")
    assert len(scaled.cells) == 3 * 2 + 2 and scaled.stems[0].ch_out == 8
    assert s.load_arch(tmp_path / "model_desc.yaml") == RESNET
    assert built.model(torch.randn(2, 3, 8, 8)).shape == (2, 4)


def test_differentiable_supernet_shares_one_table_and_derives_the_argmax_none_included():
    supernet = space().differentiable_supernet()
    assert supernet(torch.randn(2, 3, 8, 8)).shape == (2, 4)
    assert [tuple(t.shape) for t in supernet.arch_params()] == [(6, 5)]
    assert supernet.column_names() == {"cell": list(NB201_OPS)}
    with torch.no_grad():
        table = supernet.arch_params()[0]
        table.zero_()
        for edge, op in enumerate(parse_arch(RESNET)):
            table[edge, NB201_OPS.index(op)] = 1.0
    assert supernet.derive_arch() == RESNET  # `none` wins edges too, as in the benchmark's DARTS
    assert supernet.log_view() == {"cell": RESNET}


def test_tokens_and_the_sampled_supernet_run_the_chosen_op_on_each_edge():
    s = space()
    spec = s.token_spec()
    assert len(spec) == 6 and all(t.kind == "op" and t.choices == NB201_OPS for t in spec)
    tokens = [NB201_OPS.index(op) for op in parse_arch(RESNET)]
    assert s.arch_from_tokens(tokens) == RESNET
    with pytest.raises(ArchitectureError):
        s.arch_from_tokens([5, 0, 0, 0, 0, 0])
    supernet = s.sampled_supernet()
    supernet.set_arch(RESNET)
    cell = next(c for c in supernet.cells if c.desc.cell_type == "regular")
    assert [op.selected for node in cell.nodes for op in node] == [(0, t) for t in tokens]
    assert supernet(torch.randn(2, 3, 8, 8)).shape == (2, 4)


def test_manual_on_nasbench201_takes_a_benchmark_index(cli):
    # (a cell string goes through the same from_json; on the command line it is quoted YAML, see docs/darts.md)
    tiny = ["--datasets", "synthetic", "--dataset.synthetic_train", "32", "--dataset.synthetic_test", "16"]
    given = ["--nas.search.manual.genotype", "null", "--nas.search.manual.index", "42"]
    proc = cli("--algos", "manual", "--nas.search.space", "nasbench201", *tiny, "--search-only", *given)
    assert proc.returncode == 0, proc.stderr[-2000:]
    final = cli.logdir / "archsearch_synthetic_toy" / "manual" / "search" / "final_model_desc.yaml"
    assert yaml.safe_load(final.read_text())["meta"]["arch"] == index_to_arch(42)


def test_manual_needs_exactly_one_architecture(cli_in_process):
    cli = cli_in_process
    proc = cli("--algos", "manual", "--nas.search.space", "nasbench201", "--nas.search.manual.index", "42", "--dry-run")
    assert_user_error(proc, "exactly one of", "got genotype, index")
