"""Mutables: LayerChoice/InputChoice before search, keys and shared decisions, export -> apply_fixed_arch, errors."""

from __future__ import annotations

import copy
import json
import random
from collections import OrderedDict

import pytest
import torch
from torch import nn

from archsearch.common.errors import ArchitectureError
from archsearch.spaces.mutables import (
    ChosenInputs,
    InputChoice,
    LayerChoice,
    Mutable,
    MutableSpace,
    apply_fixed_arch,
    reduce_inputs,
)
from examples.mnist_space import Net


def activations(key: str | None = None) -> LayerChoice:
    return LayerChoice(OrderedDict(relu=nn.ReLU(), tanh=nn.Tanh()), key=key)


class Toy(nn.Module):
    """Every kind of choice: an unkeyed LayerChoice, two sharing a key, any-of-2 and 2-of-3 InputChoices."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = LayerChoice([nn.Linear(4, 4), nn.Linear(4, 4, bias=False)])
        self.act_in = activations("act")
        self.act_out = activations("act")
        self.skip = InputChoice(2, n_chosen=None, key="skip")
        self.blocks = nn.ModuleList([InputChoice(3, n_chosen=2, reduction="mean")])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act_in(self.linear(x))
        skip = self.skip([x, h])
        if skip is not None:
            h = h + skip
        return self.act_out(self.blocks[0]([h, x, 2 * x]))


def toy() -> Toy:
    torch.manual_seed(0)
    return Toy()


X = torch.randn(3, 4, generator=torch.Generator().manual_seed(1))


def test_a_model_with_mutables_runs_before_search_on_the_first_candidates():
    model = toy()
    h = torch.relu(model.linear.candidates[0](X))
    h = h + (X + h)  # skip, n_chosen=None: by default every input
    expected = torch.relu((h + X) / 2)  # the first two of three inputs, mean
    assert torch.allclose(model(X), expected)
    assert model.act_in.names == ["relu", "tanh"] and model.linear.names == ["0", "1"]


def test_keys_default_to_module_paths_and_shared_keys_share_one_decision():
    model = toy()
    space = MutableSpace(model)
    assert space.keys() == ["linear", "act", "skip", "blocks.0"]
    assert space.groups["act"].mutables == [model.act_in, model.act_out]
    assert space.size() == 2 * 2 * 4 * 3
    space.set_choices({"linear": 1, "act": 1, "skip": (0,), "blocks.0": (1, 2)})
    h = torch.tanh(model.linear.candidates[1](X)) + X
    assert torch.allclose(model(X), torch.tanh((X + 2 * X) / 2))  # 2-of-3 reads inputs 1 and 2 only
    assert model.act_in.decision == model.act_out.decision == 1
    space.set_choices({"linear": 1, "act": 1, "skip": (0,), "blocks.0": (0, 1)})
    assert torch.allclose(model(X), torch.tanh((h + X) / 2))
    space.set_choices(None)
    assert torch.allclose(model(X), toy()(X))


@pytest.mark.parametrize(
    "second, message",
    [
        (LayerChoice([nn.ReLU(), nn.Tanh(), nn.Sigmoid()], key="k"), "same number of candidates, got 2 and 3"),
        (InputChoice(2, key="k"), "must be of one kind"),
    ],
)
def test_shared_keys_must_agree(second, message):
    model = nn.Sequential(LayerChoice([nn.ReLU(), nn.Tanh()], key="k"), second)
    with pytest.raises(ArchitectureError, match=message):
        MutableSpace(model)
    inputs = nn.Sequential(InputChoice(3, 1, key="k"), InputChoice(3, 2, key="k"))
    with pytest.raises(ArchitectureError, match="same n_chosen"):
        MutableSpace(inputs)


def test_a_default_key_may_not_collide_with_an_explicit_one():
    model = nn.Sequential(activations(), activations("0"))
    with pytest.raises(ArchitectureError, match="give it key="):
        MutableSpace(model)


def test_a_model_without_mutables_is_an_error():
    with pytest.raises(ArchitectureError, match="has no LayerChoice or InputChoice"):
        MutableSpace(nn.Linear(2, 2), "model torch.nn:Linear")


def test_input_choice_returns_none_when_nothing_is_chosen_and_the_example_handles_it():
    a, b = torch.ones(1, 2, 3, 3), 2 * torch.ones(1, 2, 3, 3)
    assert reduce_inputs([], "sum") is None and reduce_inputs([], "none") is None
    assert torch.equal(reduce_inputs([a, b], "sum"), 3 * a) and torch.equal(reduce_inputs([a, b], "mean"), 1.5 * a)
    assert reduce_inputs([a, b], "concat").shape == (1, 4, 3, 3) and reduce_inputs([a, b], "none") == [a, b]
    choice = InputChoice(2, n_chosen=None)
    choice.set_decision(())
    assert choice([a, b]) is None
    torch.manual_seed(0)
    net = Net().eval()
    space = MutableSpace(net)
    x = torch.randn(2, 1, 8, 8)
    space.set_choices({"conv1": 0, "conv2": 0, "skip": ()})
    without = net(x)
    space.set_choices({"conv1": 0, "conv2": 0, "skip": (0,)})
    assert without.shape == (2, 10) and not torch.allclose(without, net(x))
    assert Net()(torch.randn(2, 1, 28, 28)).shape == (2, 10)  # the example runs at MNIST's size too


def test_input_choice_checks_how_many_inputs_it_gets():
    with pytest.raises(ValueError, match="has 3 candidates but was called with 2 inputs"):
        InputChoice(3, key="x")([X, X])
    with pytest.raises(ValueError, match="n_chosen must be None or 1..2"):
        InputChoice(2, n_chosen=3)
    with pytest.raises(ValueError, match="reduction"):
        InputChoice(2, reduction="max")
    with pytest.raises(TypeError, match="not an nn.Module"):
        LayerChoice([nn.ReLU(), "conv"])


@pytest.mark.parametrize("seed", range(6))
def test_export_then_apply_fixed_arch_equals_the_searched_model_on_the_chosen_path(seed):
    model = toy()
    with torch.no_grad():  # weights as a search leaves them: not the initial ones
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    space = MutableSpace(model)
    choices = space.random_choices(random.Random(seed))
    space.set_choices(choices)
    searched = model(X)
    exported = json.loads(json.dumps(space.to_json(choices)))  # through real JSON
    fixed = apply_fixed_arch(copy.deepcopy(model), exported)
    assert torch.allclose(fixed(X), searched)
    assert not any(isinstance(m, Mutable) for m in fixed.modules())
    assert isinstance(fixed.skip, ChosenInputs) and type(fixed.act_in) is type(fixed.act_out)  # one decision
    kept = model.linear.candidates[choices["linear"]]
    assert sum(p.numel() for p in fixed.parameters()) == sum(p.numel() for p in kept.parameters())


def test_a_choice_used_at_two_places_becomes_one_module_at_both():
    shared = LayerChoice([nn.Linear(4, 4), nn.Linear(4, 4)], key="shared")
    model = nn.Sequential(shared, nn.ReLU(), shared)
    assert MutableSpace(model).keys() == ["shared"]
    fixed = apply_fixed_arch(model, {"shared": "1"})
    assert fixed[0] is fixed[2] is shared.candidates[1]


def test_a_fixed_model_saves_and_loads_like_any_model(tmp_path):
    choice_json = {"linear": "1", "act": "tanh", "skip": [], "blocks.0": [0, 2]}
    trained = apply_fixed_arch(toy(), choice_json)
    path = tmp_path / "arch.json"
    path.write_text(json.dumps({"model": "tests:Toy", "choices": choice_json}))  # a final_arch.json is unwrapped
    torch.save(trained.state_dict(), tmp_path / "w.pt")
    rebuilt = apply_fixed_arch(Toy(), path)
    rebuilt.load_state_dict(torch.load(tmp_path / "w.pt", weights_only=True))
    assert torch.equal(rebuilt(X), trained(X)) and isinstance(rebuilt.linear, nn.Linear)


GOOD = {"linear": "0", "act": "relu", "skip": [1], "blocks.0": [0, 1]}


@pytest.mark.parametrize(
    "change, message",
    [
        ({"act": "gelu"}, "key 'act': 'gelu' is not a candidate; choose one of ['relu', 'tanh']"),
        ({"linear": 2}, "key 'linear': 2 is not a candidate"),
        ({"act": True}, "True is not a candidate"),
        ({"skip": [2]}, "key 'skip': [2] must be distinct input indices in 0..1"),
        ({"skip": [0, 0]}, "must be distinct"),
        ({"skip": 1}, "expected a list of input indices"),
        ({"blocks.0": [1]}, "chooses 1 inputs, the choice takes n_chosen=2"),
        ({"nope": "relu"}, "has no choice 'nope'; its keys are ['linear', 'act', 'skip', 'blocks.0']"),
        ({"act": None}, "None is not a candidate"),
    ],
)
def test_bad_choice_json_is_a_clear_error(change, message):
    with pytest.raises(ArchitectureError) as err:
        apply_fixed_arch(toy(), {**GOOD, **change})
    assert message in str(err.value) and "\n" not in str(err.value)


def test_bad_choice_files_are_clear_errors(tmp_path):
    missing = {k: v for k, v in GOOD.items() if k != "skip"}
    with pytest.raises(ArchitectureError, match="no decision for key 'skip'"):
        apply_fixed_arch(toy(), missing)
    bad = tmp_path / "bad.json"
    bad.write_text("{conv1: 3x3}")
    with pytest.raises(ArchitectureError, match="bad.json is not valid JSON"):
        apply_fixed_arch(toy(), bad)
    with pytest.raises(ArchitectureError, match="does not exist"):
        apply_fixed_arch(toy(), tmp_path / "none.json")
    bad.write_text("[1, 2]")
    with pytest.raises(ArchitectureError, match="expected a JSON object"):
        apply_fixed_arch(toy(), bad)
