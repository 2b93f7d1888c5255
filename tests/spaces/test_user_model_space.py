"""A user's model as a search space: the SearchSpace protocol (choice JSON round trips, seeded samples,
one-decision mutations, build, final_arch.json save/load/eval), its DARTS and ENAS supernets, the model
reference, and the MNIST example searched by each strategy through the real CLI."""

from __future__ import annotations

import itertools
import json
import random
import re

import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn

import archsearch
from archsearch.common.errors import ArchitectureError, UserError
from archsearch.model.load import CodeAllowed
from archsearch.search.space import SPACES
from archsearch.spaces.mutables import InputChoice, LayerChoice, Mutable, MutableSpace
from archsearch.spaces.user_model import UserModelArch, UserModelRef
from archsearch.spaces.user_model_supernets import DartsSupernet, EnasChildren
from archsearch.strategies.enas.controller import Controller
from examples.mnist_space import Net
from tests.conftest import REPO, assert_user_error


class Toy(nn.Module):
    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        self.linear = LayerChoice([nn.Linear(4, 4), nn.Linear(4, 4, bias=False), nn.Identity()], key="linear")
        self.again = LayerChoice([nn.Linear(4, 4), nn.Linear(4, 4), nn.Tanh()], key="linear")
        self.skip = InputChoice(2, n_chosen=None, key="skip")
        self.pick = InputChoice(3, n_chosen=2, reduction=reduction, key="pick")
        self.fixed = InputChoice(2, n_chosen=2, reduction="concat", key="fixed")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.linear(x)
        skip = self.skip([x, h])
        h = h if skip is None else h + skip
        h = self.again(self.pick([h, x, 2 * x]))
        return self.fixed([h, x])


X = torch.randn(3, 4, generator=torch.Generator().manual_seed(1))


def darts_toy(reduction: str = "mean") -> DartsSupernet:
    torch.manual_seed(0)
    model = Toy(reduction)
    supernet = DartsSupernet(model, MutableSpace(model))
    with torch.no_grad():
        for alpha in supernet.alphas:
            alpha.normal_()
    return supernet


def test_darts_layer_choice_is_the_softmax_weighted_sum_of_its_candidates():
    supernet = darts_toy()
    choice = supernet.model.linear
    weights = F.softmax(supernet.arch_tables["linear"][0], dim=-1)
    expected = sum(w * candidate(X) for w, candidate in zip(weights, choice.candidates))
    assert torch.allclose(choice(X), expected, atol=1e-6)
    # a shared key shares its alphas: the second choice mixes its own candidates with the same weights
    expected = sum(w * candidate(X) for w, candidate in zip(weights, supernet.model.again.candidates))
    assert torch.allclose(supernet.model.again(X), expected, atol=1e-6)


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_darts_input_choices_mix_their_inputs(reduction):
    supernet = darts_toy(reduction)
    inputs = [X, 2 * X, -X]
    weights = F.softmax(supernet.arch_tables["pick"][0], dim=-1)
    mixed = sum(w * x for w, x in zip(weights, inputs)) * (2 if reduction == "sum" else 1)  # k = 2 of 3
    assert torch.allclose(supernet.model.pick(inputs), mixed, atol=1e-6)
    keep = F.softmax(supernet.arch_tables["skip"], dim=-1)[:, 1]  # (n, 2): a [drop, keep] softmax per input
    assert torch.allclose(supernet.model.skip([X, -2 * X]), keep[0] * X - keep[1] * 2 * X, atol=1e-6)


def test_darts_alphas_are_one_table_per_searched_key_and_apart_from_weights():
    supernet = darts_toy()
    assert {k: tuple(t.shape) for k, t in supernet.arch_tables.items()} == {
        "linear": (1, 3),
        "skip": (2, 2),
        "pick": (1, 3),
    }  # "fixed" chooses every input: nothing to learn
    arch, weights = {id(p) for p in supernet.arch_params()}, {id(p) for p in supernet.nonarch_params()}
    assert not arch & weights and len(arch | weights) == len(list(supernet.parameters()))
    loss = supernet(X).square().mean()
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in supernet.arch_params())
    assert supernet.column_names() == {
        "linear": ["0", "1", "2"],
        "skip": ["drop", "keep"],
        "pick": ["input0", "input1", "input2"],
    }


def test_darts_final_choices_follow_the_alphas():
    supernet = darts_toy()
    with torch.no_grad():
        supernet.arch_tables["linear"].copy_(torch.tensor([[0.0, 2.0, 1.0]]))
        supernet.arch_tables["skip"].copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
        supernet.arch_tables["pick"].copy_(torch.tensor([[3.0, 0.0, 2.0]]))
    choices = supernet.current_choices()
    assert supernet.space.to_json(choices) == {"linear": "1", "skip": [1], "pick": [0, 2], "fixed": [0, 1]}


def test_darts_refuses_mixtures_without_a_fixed_shape():
    with pytest.raises(ArchitectureError, match="DARTS cannot mix InputChoice 'pick' with reduction 'concat'"):
        darts_toy("concat")


def test_enas_tokens_round_trip_every_architecture_and_drive_the_model():
    torch.manual_seed(0)
    model = Toy()
    supernet = EnasChildren(model, MutableSpace(model))
    space = supernet.space
    spec = space.token_spec()
    assert [(t.layer, t.n_choices) for t in spec] == [(0, 3), (1, 2), (1, 2), (2, 3)]  # 3 ops, 2 keep bits, C(3,2)
    arcs = list(itertools.product(*(range(t.n_choices) for t in spec)))
    decoded = [space.decode_arc(arc) for arc in arcs]
    assert len({json.dumps(space.to_json(c)) for c in decoded}) == len(arcs) == space.size()
    assert all(space.encode_arc(c) == list(arc) for c, arc in zip(decoded, arcs))
    controller = Controller(spec, generator=torch.Generator().manual_seed(0))
    for _ in range(5):
        arc = controller.sample_arc()
        choices = space.decode_arc(arc)
        supernet.set_arch(space.to_json(choices))
        assert model.linear.decision == model.again.decision == choices["linear"]
        assert model.pick.decision == choices["pick"] and len(choices["pick"]) == 2
    with pytest.raises(ArchitectureError, match="out of range"):
        space.decode_arc([3, 0, 0, 0])


def test_enas_needs_something_to_search():
    model = nn.Sequential(LayerChoice([nn.ReLU()]), InputChoice(1))
    with pytest.raises(ArchitectureError, match="nothing to search"):
        EnasChildren(model, MutableSpace(model))


MNIST = {"model": "examples.mnist_space:Net", "model_kwargs": {"in_channels": 1, "n_classes": 10, "width": 4}}


def mnist_space():
    return SPACES.get("user_model")(MNIST, {}, {"channels": 1, "n_classes": 10})


def test_the_space_round_trips_samples_reproducibly_and_mutates_one_decision():
    space = mnist_space()
    assert space.capabilities() >= {"sample", "mutate", "differentiable", "sampled"} and space.size() == 8
    arch = space.sample(random.Random(2))
    assert arch == space.sample(random.Random(2)) and space.from_json(space.to_json(arch)) == arch
    assert len({json.dumps(space.sample(random.Random(s)), sort_keys=True) for s in range(40)}) == 8
    rng = random.Random(0)
    for _ in range(10):
        neighbour = space.mutate(arch, rng)
        changed = [k for k in arch if arch[k] != neighbour[k]]
        assert len(changed) == 1 and space.from_json(neighbour) == neighbour
    with pytest.raises(ArchitectureError, match="trial 3: key 'conv1': 'conv7x7' is not a candidate"):
        space.from_json({**arch, "conv1": "conv7x7"}, "trial 3")


def test_every_combination_of_the_named_choices_is_one_architecture_and_round_trips():
    space = mnist_space()
    decisions = space.choices()
    archs = [space.arch_from_choices(dict(zip([n for n, _ in decisions], pick)))
             for pick in itertools.product(*(options for _, options in decisions))]  # fmt: skip
    assert len({json.dumps(a, sort_keys=True) for a in archs}) == len(archs) == space.size()
    assert all(space.choices_of(a) == dict(zip([n for n, _ in decisions], p)) for a, p in
               zip(archs, itertools.product(*(o for _, o in decisions))))  # fmt: skip


def test_the_space_builds_saves_loads_and_evaluates_the_fixed_model(tmp_path):
    space = mnist_space()
    arch = {"conv1": "conv5x5", "conv2": "conv3x3", "skip": [0]}
    model = space.build(arch)
    assert not any(isinstance(m, Mutable) for m in model.modules()) and model.conv1.kernel_size == (5, 5)
    path = space.save_arch(arch, tmp_path, {"algo": "random"})
    assert path.name == space.final_file == "final_arch.json" and space.load_arch(path) == arch
    built = space.eval_model(path, {}, tmp_path / "eval")
    assert built.arch_format == "user_model_json" and built.model(torch.randn(2, 1, 8, 8)).shape == (2, 10)
    assert json.loads((tmp_path / "eval" / "final_arch.json").read_text())["choices"] == arch


def test_the_supernets_run_and_speak_choice_json():
    space = mnist_space()
    darts = space.differentiable_supernet()
    assert set(darts.derive_arch()) == {"conv1", "conv2", "skip"} and darts.log_view() == {
        "choices": darts.derive_arch()
    }
    sampled = space.sampled_supernet()
    tokens = [t.n_choices - 1 for t in space.token_spec()]
    arch = space.arch_from_tokens(tokens)
    sampled.set_arch(arch)
    assert sampled.model.conv1.decision == 1 and sampled(torch.randn(2, 1, 8, 8)).shape == (2, 10)


def test_the_space_needs_a_model():
    with pytest.raises(UserError, match="set --nas.search.space.model"):
        SPACES.get("user_model")({"model": None, "model_kwargs": {}}, {}, {})


@pytest.mark.parametrize(
    "path, message",
    [
        ("nope:Net", "cannot import module 'nope'"),
        ("examples.mnist_space:Nett", "has no attribute 'Nett' (did you mean Net?)"),
        ("examples.mnist_space", "write the path as module:Class"),
        ("Net", "is not an import path"),
        ("torch.nn.functional:relu", "cannot build torch.nn.functional:relu"),
    ],
)
def test_bad_model_references_are_user_errors(path, message):
    with pytest.raises(UserError, match=re.escape(message)):
        UserModelRef(path, {"in_channels": 1}).build_space()


def test_final_arch_json_rebuilds_the_fixed_model(tmp_path):
    ref = UserModelRef("examples.mnist_space:Net", {"width": 8})
    arch = UserModelArch(ref, {"conv1": "conv5x5", "conv2": "conv3x3", "skip": []}, {"algo": "darts"})
    path = arch.save(tmp_path / "final_arch.json")
    loaded = UserModelArch.load(path)
    assert loaded == arch
    model = loaded.build_fixed(CodeAllowed(ref.path))
    assert model.conv1.kernel_size == (5, 5) and model.conv1.out_channels == 8
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 10)
    bare = tmp_path / "choices.json"
    bare.write_text(json.dumps(arch.choices))
    assert UserModelArch.load(bare, ref).choices == arch.choices  # a bare choice JSON, for a configured model
    with pytest.raises(ArchitectureError, match="expected an object with 'model' and 'choices'"):
        UserModelArch.load(bare)


def test_the_example_trains_under_darts_with_a_bilevel_step():
    from archsearch.strategies.darts.bilevel import BilevelOptimizer

    torch.manual_seed(0)
    model = Net()
    supernet = DartsSupernet(model, MutableSpace(model))
    weights = supernet.nonarch_params()
    w_opt = torch.optim.SGD(weights, lr=0.1, momentum=0.9)
    conf = dict(type="adam", lr=0.1, betas=[0.5, 0.999], weight_decay=0.0, momentum=0.0, nesterov=False)
    bilevel = BilevelOptimizer(conf, supernet.arch_params(), weights, w_opt, supernet, order="second")
    x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,))
    before = [a.detach().clone() for a in supernet.arch_params()]
    bilevel.step(lambda a, b: F.cross_entropy(supernet(a), b), x, y, x, y, lr=0.1)
    assert all(not torch.equal(a, b) for a, b in zip(supernet.arch_params(), before))


# ---- through the CLI ----------------------------------------------------------------------------

EXAMPLE = str(REPO / "examples" / "mnist_space.yaml")
TINY = {
    "nas": {
        "search": {
            "loader": {"limit_batches": 3},
            "trainer": {"epochs": 2, "controller": {"train_steps": 2, "n_samples": 2}},
            "final": {"n_samples": 2, "eval_batches": 1},
            "random": {"n_candidates": 2},
        },
        "eval": {"loader": {"limit_batches": 3}, "trainer": {"epochs": 1}},
    }
}


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return str(path)


@pytest.mark.parametrize("algo", ["darts", "enas", "random"])
def test_each_strategy_searches_the_example_exports_its_choices_and_trains_the_fixed_model(cli, tiny, algo):
    proc = cli("--algos", algo, "--config", EXAMPLE, "--config", tiny)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = cli.logdir / "archsearch_digits_toy" / algo
    final = json.loads((out / "search" / "final_arch.json").read_text())
    assert final["model"] == "examples.mnist_space:Net" and final["model_kwargs"] == {"in_channels": 1, "n_classes": 10}
    choices = MutableSpace(Net()).parse(final["choices"])  # a complete, valid choice JSON
    assert yaml.safe_load((out / "search" / "metrics.yaml").read_text())
    model = archsearch.load_model(out / "eval" / "model.pt", model=final["model"])  # the class, named by us
    assert not any(isinstance(m, Mutable) for m in model.modules())
    assert model.conv1.kernel_size == ((3, 3), (5, 5))[choices["conv1"]]
    assert list(model.skipconnect.indices) == list(choices["skip"])
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 10)
    summary = yaml.safe_load((out / "summary.yaml").read_text())
    assert summary["eval"]["params"] == sum(p.numel() for p in model.parameters())
    if algo == "darts":
        records = yaml.safe_load((out / "log.yaml").read_text())
        tables = [r["softmax"] for r in records if r["event"] == "arch_weights"]
        assert len(tables) == 2 and set(tables[0]) == {"conv1", "conv2", "skip"}
        assert [r["choices"] for r in records if r["event"] == "choices"][-1] == final["choices"]


def test_eval_only_of_a_bad_choice_json_is_a_user_error(cli, tiny, tmp_path):
    bad = tmp_path / "choices.json"
    bad.write_text(json.dumps({"conv1": "conv7x7", "conv2": "conv3x3", "skip": []}))
    proc = cli(
        "--algos", "darts", "--config", EXAMPLE, "--config", tiny, "--eval-only", "--nas.eval.final_desc", str(bad)
    )
    assert_user_error(proc, "choices.json: key 'conv1': 'conv7x7' is not a candidate", "conv5x5")


@pytest.mark.parametrize(
    "model, message",
    [
        ("nope:Net", "cannot import module 'nope'"),
        ("torch.nn:Identity", "has no LayerChoice or InputChoice"),
    ],
)
def test_bad_user_models_are_user_errors(cli, tiny, model, message):
    proc = cli("--algos", "enas", "--config", EXAMPLE, "--config", tiny, "--nas.search.space.model", model)
    assert_user_error(proc, message)


def test_dry_run_describes_the_space_and_trains_nothing(cli):
    proc = cli("--algos", "darts", "--config", EXAMPLE, "--dry-run")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "3 choices" in proc.stdout and "8 architectures" in proc.stdout
    assert "search: epochs" in proc.stdout  # no cell model_desc: a user model is not cell-based
    assert not cli.logdir.exists()
