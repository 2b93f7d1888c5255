"""The DARTS cell space: genotype encoding, sampling, mutation, networks, the final file, both supernets;
manual on it through the CLI."""

from __future__ import annotations

import random

import pytest
import torch
import yaml

import archsearch.plugins  # noqa: F401 - the plugin bootstrap registers the spaces
from archsearch.common.errors import ArchitectureError
from archsearch.model.genotype import DARTS_V2, parse_genotype
from archsearch.model.model_desc import ModelDesc
from archsearch.model.network import count_params
from archsearch.model.ops import DARTS_PRIMITIVES
from archsearch.search.space import SPACES
from archsearch.spaces.darts_cells import DartsCellSpace, DartsCellSupernet

DATASET = {"channels": 3, "n_classes": 4}
SEARCH = {"n_cells": 3, "init_channels": 4, "n_nodes": 2, "stem_multiplier": 3, "n_reductions": 2}
SEARCH.update(aux_weight=0.0, affine=False, primitives=DARTS_PRIMITIVES)


def space(**model_desc) -> DartsCellSpace:
    return SPACES.get("darts")({}, {**SEARCH, **model_desc}, DATASET)


def decisions(arch: str) -> list:
    g = parse_genotype(arch)
    return [*g.normal, *g.reduce]


def test_registered_with_every_capability_but_a_benchmark():
    assert SPACES.get("darts") is DartsCellSpace
    assert DartsCellSpace.capabilities() == {"sample", "mutate", "differentiable", "mixed_op", "sampled", "cost",
                                             "choices", "encode"}  # fmt: skip
    assert space().size() is None


def test_choices_are_an_input_pair_and_two_ops_per_node_and_round_trip():
    s = space(n_nodes=3)
    choices = dict(s.choices())
    assert len(choices) == 2 * 3 * 3 and choices["normal_node2_inputs"] == ["0,1", "0,2", "0,3", "1,2", "1,3", "2,3"]
    assert choices["reduce_node0_op1"] == s.ops
    for seed in range(10):
        arch = s.sample(random.Random(seed))
        assert s.arch_from_choices(s.choices_of(arch)) == arch
    values = s.choices_of(s.sample(random.Random(0)))
    with pytest.raises(ArchitectureError, match="decision 'normal_node0_inputs' has no option '1,1'"):
        s.arch_from_choices({**values, "normal_node0_inputs": "1,1"})  # a node reads two distinct states
    with pytest.raises(ArchitectureError, match="not 3 nodes"):
        s.choices_of(str(DARTS_V2))  # 4 nodes


def test_json_round_trip_normalizes_names_and_names_the_source_of_a_bad_one():
    s = space(n_nodes=4)
    arch = s.from_json("DARTS_V2")
    assert arch == str(DARTS_V2) and s.from_json(s.to_json(arch)) == arch
    with pytest.raises(ArchitectureError, match="nas.search.manual.genotype: genotype .* is not valid syntax"):
        s.from_json("Genotype(normal=[('x', 0)", "nas.search.manual.genotype")


def test_sample_is_reproducible_from_the_rng_and_uses_only_the_non_none_ops():
    s = space()
    a, b = s.sample(random.Random(3)), s.sample(random.Random(3))
    assert a == b and a != s.sample(random.Random(4))
    g = parse_genotype(a)
    assert len(g.normal) == 2 * SEARCH["n_nodes"] and g.normal_concat == [2, 3]
    assert all(op in DARTS_PRIMITIVES[1:] for op, _ in decisions(a))


def test_mutate_changes_exactly_one_op_or_input():
    s = space(n_nodes=4)
    kinds = set()
    for seed in range(40):
        rng = random.Random(seed)
        arch = s.sample(rng)
        child = s.mutate(arch, rng)
        changed = [(x, y) for x, y in zip(decisions(arch), decisions(child)) if x != y]
        assert len(changed) == 1, (arch, child)
        (op, i), (op2, i2) = changed[0]
        assert (op != op2) != (i != i2)  # one decision: the op or the input, never both
        kinds.add("op" if op != op2 else "input")
        for node in range(0, len(decisions(child)), 2):  # a node's two inputs stay distinct
            assert decisions(child)[node][1] != decisions(child)[node + 1][1]
    assert kinds == {"op", "input"}


def test_build_forward_shape_and_darts_v2_has_the_papers_parameter_count():
    assert space().build(space().sample(random.Random(0)))(torch.randn(2, 3, 8, 8)).shape == (2, 4)
    conf = {**SEARCH, "n_cells": 20, "init_channels": 36, "n_nodes": 4, "aux_weight": 0.4, "affine": True}
    paper = DartsCellSpace({}, conf, {"channels": 3, "n_classes": 10})
    assert count_params(paper.build(paper.from_json("DARTS_V2"))) == 3_349_342  # DARTS' "param size = 3.349342MB"


def test_save_load_and_eval_model_round_trip(tmp_path):
    s = space()
    arch = s.sample(random.Random(1))
    path = s.save_arch(arch, tmp_path, {"algo": "darts"})
    assert path.name == "final_model_desc.yaml" and (tmp_path / "genotype.txt").read_text() == arch + "\n"
    meta = yaml.safe_load(path.read_text())["meta"]
    assert meta["space"] == "darts" and meta["genotype"] == arch and meta["algo"] == "darts"
    assert s.load_arch(path) == arch
    built = s.eval_model(path, {**SEARCH, "n_cells": 5, "init_channels": 6, "affine": True}, tmp_path)
    scaled = ModelDesc.load(tmp_path / "model_desc.yaml")
    assert len(scaled.cells) == 5 and built.arch_format == "model_desc"
    assert s.load_arch(tmp_path / "model_desc.yaml") == arch  # the same cells at eval size
    assert built.model(torch.randn(2, 3, 8, 8)).shape == (2, 4)


def test_load_arch_refuses_a_network_of_other_cells(tmp_path):
    nb201 = SPACES.get("nasbench201")({}, {**SEARCH, "n_cells_per_stage": 1}, DATASET)
    path = nb201.save_arch(nb201.sample(random.Random(0)), tmp_path, {})
    with pytest.raises(ArchitectureError, match="not a DARTS cell network"):
        space().load_arch(path)


def test_differentiable_supernet_forward_and_derive_arch_on_hand_set_alphas():
    supernet = space().differentiable_supernet()
    assert isinstance(supernet, DartsCellSupernet) and supernet(torch.randn(2, 3, 8, 8)).shape == (2, 4)
    assert supernet.column_names() == {"regular": DARTS_PRIMITIVES, "reduction": DARTS_PRIMITIVES}
    col = {name: i for i, name in enumerate(DARTS_PRIMITIVES)}
    with torch.no_grad():
        for table in supernet.arch_params():
            table.zero_()
            table[:, col["sep_conv_5x5"]] = 1.0
        supernet.arch_tables["regular"][2:, col["none"]] = 5.0  # node 1's edges: `none` never wins an edge
        supernet.arch_tables["regular"][4, col["dil_conv_3x3"]] = 3.0
    genotype = parse_genotype(supernet.derive_arch())
    assert genotype.normal == [("sep_conv_5x5", 0), ("sep_conv_5x5", 1), ("dil_conv_3x3", 2), ("sep_conv_5x5", 0)]
    assert supernet.log_view() == {"genotype": supernet.derive_arch()}


def test_tokens_give_a_genotype_the_sampled_supernet_runs():
    s = space()
    spec = s.token_spec()
    assert len(spec) == 2 * 4 * SEARCH["n_nodes"] and all(
        t.choices == tuple(DARTS_PRIMITIVES[1:]) for t in spec if t.kind == "op"
    )
    tokens = [random.Random(5).randrange(t.n_choices) for t in spec]
    arch = s.arch_from_tokens(tokens)
    assert s.from_json(arch) == arch and s.micro_space().encode(parse_genotype(arch)) == tokens
    supernet = s.sampled_supernet()
    supernet.set_arch(arch)
    assert supernet(torch.randn(2, 3, 8, 8)).shape == (2, 4)
    assert s.build(arch)(torch.randn(2, 3, 8, 8)).shape == (2, 4)  # the genotype is a network of this space


def test_manual_evaluates_a_desc_file_on_the_darts_space(cli, tmp_path):
    s = space()
    arch = s.sample(random.Random(2))
    given = s.save_arch(arch, tmp_path, {})
    tiny = ["--datasets", "synthetic", "--dataset.synthetic_train", "32", "--dataset.synthetic_test", "16"]
    proc = cli("--algos", "manual", *tiny, "--search-only", "--nas.search.manual.genotype", "null",
               "--nas.search.manual.desc_file", str(given))  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = cli.logdir / "archsearch_synthetic_toy" / "manual" / "search"
    assert (out / "genotype.txt").read_text().strip() == arch
