"""The ENAS micro and macro spaces through the SearchSpace protocol: the arc_seq round-trips, sampling is
reproducible, a mutation changes one token, the network builds, the final file saves, loads and evaluates,
and the sampled supernet runs the child it is set to."""

from __future__ import annotations

import random

import pytest
import torch
import yaml

from archsearch.common.errors import ArchitectureError
from archsearch.model.choice_ops import EnasChoice
from archsearch.search.space import SPACES
from archsearch.spaces.enas_spaces import MacroSpace, MicroSpace

SPACE = {
    "name": None,
    "n_nodes": 2,
    "n_layers": 4,
    "pool_layers": None,
    "skip_combine": "sum",
    "double_channels": False,
}
MODEL_DESC = dict(n_cells=3, init_channels=4, n_nodes=2, stem_multiplier=3, n_reductions=2, aux_weight=0.0, affine=True)
EVAL_DESC = {**MODEL_DESC, "n_cells": 4, "init_channels": 6}
DATASET = dict(channels=3, n_classes=10)
EVAL = {"macro_space": {"skip_combine": "concat", "double_channels": True}}
X = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))


def make(name: str):
    space = SPACES.get(name)(SPACE, MODEL_DESC, DATASET)
    space.conf_eval = EVAL
    return space


@pytest.mark.parametrize("name, length", [("enas_micro", 2 * 2 * 4), ("enas_macro", 4 + 6)])
def test_arc_seq_round_trips_samples_reproducibly_and_mutates_one_token(name, length):
    space = make(name)
    assert space.capabilities() >= {"sample", "mutate", "sampled"}
    arch = space.sample(random.Random(3))
    assert arch == space.sample(random.Random(3)) and len(arch) == length
    assert space.from_json(space.to_json(arch)) == arch and space.arch_from_tokens(arch) == arch
    assert len(space.token_spec()) == length and space.size() > 100
    rng = random.Random(0)
    for _ in range(20):
        neighbour = space.mutate(arch, rng)
        assert sum(a != b for a, b in zip(arch, neighbour)) == 1 and space.from_json(neighbour) == neighbour
    with pytest.raises(ArchitectureError, match="results.json: arc_seq has 3 tokens"):
        space.from_json([0, 0, 0], "results.json")


@pytest.mark.parametrize("name", ["enas_micro", "enas_macro"])
def test_the_arc_as_named_choices_round_trips_and_a_bad_option_is_one_line(name):
    """The `choices` capability (Optuna, NSGA-II): one named decision per token, ops by name."""
    space = make(name)
    decisions = space.choices()
    assert "choices" in space.capabilities() and len(decisions) == len(space.token_spec())
    assert len({n for n, _ in decisions}) == len(decisions)
    rng = random.Random(4)
    for _ in range(30):
        arch = space.sample(rng)
        assert space.arch_from_choices(space.choices_of(arch)) == arch
    name0, options0 = decisions[1] if name == "enas_micro" else decisions[0]
    assert "operation" in name0 and all(isinstance(o, str) for o in options0)  # an op token offers op names
    values = space.choices_of(space.sample(rng))
    with pytest.raises(ArchitectureError, match=f"decision '{name0}' has no option 'conv9x9'"):
        space.arch_from_choices({**values, name0: "conv9x9"})


@pytest.mark.parametrize("name", ["enas_micro", "enas_macro"])
def test_build_save_load_and_eval_model(name, tmp_path):
    space = make(name)
    arch = space.sample(random.Random(1))
    assert space.build(arch)(X).shape == (2, 10)
    path = space.save_arch(arch, tmp_path, {"algo": "enas"})
    meta = yaml.safe_load(path.read_text())["meta"]
    assert meta["arc_seq"] == arch and meta["space"]["name"] == name and meta["algo"] == "enas"
    assert space.load_arch(path) == arch
    assert (tmp_path / "genotype.txt").exists() == (name == "enas_micro")
    built = space.eval_model(path, EVAL_DESC, tmp_path)
    assert built.arch_format == "model_desc" and built.model(X).shape == (2, 10)
    evaluated = yaml.safe_load((tmp_path / "model_desc.yaml").read_text())
    assert evaluated["meta"]["arc_seq"] == arch
    if name == "enas_macro":  # the chain is rebuilt with nas.eval.macro_space: concatenated skips
        assert "enas_relu_conv_1x1" in (tmp_path / "model_desc.yaml").read_text()
    else:  # micro cells scale like any desc: eval's cell count
        assert len(evaluated["cells"]) == EVAL_DESC["n_cells"]


def test_a_file_of_the_other_enas_space_names_the_space_to_use(tmp_path):
    path = make("enas_macro").save_arch(make("enas_macro").sample(random.Random(0)), tmp_path, {})
    with pytest.raises(ArchitectureError, match="is an enas_macro architecture; evaluate it with --nas.search.space"):
        make("enas_micro").eval_model(path, EVAL_DESC, None)


def test_a_file_written_before_spaces_had_names_still_evaluates(tmp_path):
    space = make("enas_macro")
    arch = space.sample(random.Random(2))
    path = space.save_arch(arch, tmp_path, {})
    data = yaml.safe_load(path.read_text())
    data["meta"]["space"] = {"type": "macro", **{k: SPACE[k] for k in space.space_keys}}  # today's meta
    path.write_text(yaml.safe_dump(data))
    assert space.load_arch(path) == arch and space.eval_model(path, EVAL_DESC, None).model(X).shape == (2, 10)


@pytest.mark.parametrize("name", ["enas_micro", "enas_macro"])
def test_sampled_supernet_runs_the_child_it_is_set_to(name):
    space = make(name)
    supernet = space.sampled_supernet()
    arch = space.arch_from_tokens(space.sample(random.Random(4)))
    supernet.set_arch(arch)
    out = supernet(X)
    assert (out[0] if isinstance(out, tuple) else out).shape == (2, 10)
    chosen = [m.selected for m in supernet.modules() if isinstance(m, EnasChoice)]
    assert chosen and all(s is not None for s in chosen)


def test_the_geometry_comes_from_the_space_keys():
    assert make("enas_micro").geometry == MicroSpace(n_nodes=2)
    macro = SPACES.get("enas_macro")({**SPACE, "n_layers": 6, "pool_layers": [1, 3]}, MODEL_DESC, DATASET)
    assert macro.geometry == MacroSpace(6, pool_layers=(1, 3), double_channels=False)
