"""The ENAS controller and its REINFORCE trainer."""

from __future__ import annotations

import math

import pytest
import torch

from archsearch.common.errors import ArchitectureError, ConfigError
from archsearch.spaces.enas_spaces import MacroSpace, MicroSpace
from archsearch.spaces.token_space import ModelSpace, Operation
from archsearch.strategies.enas.controller import Controller, ControllerConfig
from archsearch.strategies.enas.reinforce import ReinforceTrainer


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # tiny tensors: OpenMP threads only add contention on a shared 2-core box (100x slower when busy)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


SPACES = {
    "micro": MicroSpace(n_nodes=5),
    "macro": MacroSpace(n_layers=12),
    "amber": ModelSpace([[Operation(f"op{i}") for i in range(3)] for _ in range(4)], skip_connections=False),
}


@pytest.mark.parametrize("name", sorted(SPACES))
def test_samples_are_valid_and_forced_arc_scores_the_same(name):
    space = SPACES[name]
    controller = Controller(space.token_spec(), generator=torch.Generator().manual_seed(0))
    for _ in range(5):
        sample = controller.sample()
        assert space.check(sample.arc) == sample.arc
        assert sample.log_prob.requires_grad and not sample.entropy.requires_grad
        assert sample.log_prob.item() < 0 < sample.entropy.item()
        forced = controller.sample(forced_arc=sample.arc)
        assert forced.arc == sample.arc
        assert forced.log_prob.item() == pytest.approx(sample.log_prob.item(), abs=1e-5)
        assert forced.entropy.item() == pytest.approx(sample.entropy.item(), abs=1e-5)
        assert forced.skip_penalty.item() == pytest.approx(sample.skip_penalty.item(), abs=1e-6)


def test_log_prob_is_exact_on_a_tiny_space():
    # one layer: the probabilities of all arcs sum to one
    space = ModelSpace([[Operation(f"op{i}") for i in range(4)]], skip_connections=False)
    controller = Controller(space.token_spec())
    total = sum(math.exp(controller.sample(forced_arc=[i]).log_prob.item()) for i in range(4))
    assert total == pytest.approx(1.0, abs=1e-6)


def test_seeded_sampling_is_reproducible():
    spec = MicroSpace().token_spec()
    torch.manual_seed(1)
    controller = Controller(spec)
    arcs = [controller.sample(generator=torch.Generator().manual_seed(7)).arc for _ in range(2)]
    assert arcs[0] == arcs[1]
    torch.manual_seed(3)
    a = controller.sample().arc
    torch.manual_seed(3)
    assert controller.sample_arc() == a


def test_presets_follow_the_original():
    micro = Controller(MicroSpace().token_spec()).config
    assert (micro.lstm_size, micro.temperature, micro.tanh_constant, micro.op_tanh_reduce, micro.lr) == (
        64,
        5.0,
        1.10,
        2.5,
        3.5e-3,
    )
    macro = Controller(MacroSpace().token_spec()).config
    assert (macro.tanh_constant, macro.temperature, macro.skip_target, macro.skip_weight) == (1.5, None, 0.4, 0.8)
    assert ControllerConfig.from_conf({"lstm_size": 32, "n_samples": 10}, "macro").lstm_size == 32
    with pytest.raises(ConfigError, match="controller preset 'rnn'"):
        ControllerConfig.enas("rnn")


def test_micro_controller_favors_separable_convs_at_start():
    # ENAS biases the first two ops (sep convs); with its squashing the effect is mild but visible
    controller = Controller(MicroSpace().token_spec(), generator=torch.Generator().manual_seed(0))
    ops = [arc[p] for arc in (controller.sample().arc for _ in range(100)) for p in range(1, 20, 2)]
    assert sum(o < 2 for o in ops) / len(ops) > 0.5


def test_macro_skip_outputs():
    controller = Controller(MacroSpace(n_layers=6).token_spec(), generator=torch.Generator().manual_seed(0))
    sample = controller.sample()
    assert sample.n_skip_tokens == 15 and 0.0 <= sample.skip_rate <= 1.0
    assert sample.skip_penalty.requires_grad and torch.isfinite(sample.skip_penalty)
    assert sample.skip_count == sum(sample.arc[p] for p, t in enumerate(controller.spec) if t.kind == "skip")


def test_forced_arc_is_validated():
    controller = Controller(MicroSpace(n_nodes=2).token_spec())
    with pytest.raises(ArchitectureError, match="arc_seq has 3 tokens, the space needs 16"):
        controller.sample(forced_arc=[0, 0, 0])


# ---- REINFORCE ----------------------------------------------------------------------------------


def test_reinforce_raises_the_probability_of_a_rewarded_sequence():
    space = ModelSpace([[Operation(f"op{i}") for i in range(4)] for _ in range(2)], skip_connections=True)
    torch.manual_seed(0)
    controller = Controller(space.token_spec(), ControllerConfig.enas("macro", lr=0.05))
    trainer = ReinforceTrainer(controller)
    arcs = [[a, b, s] for a in range(4) for b in range(4) for s in range(2)]

    def probability_of_first_token(token: int) -> float:
        # exact marginal: sum over every completion of the forced arc's probability
        with torch.no_grad():
            return sum(math.exp(controller.sample(forced_arc=arc).log_prob.item()) for arc in arcs if arc[0] == token)

    assert sum(probability_of_first_token(t) for t in range(4)) == pytest.approx(1.0, abs=1e-5)
    before = probability_of_first_token(2)
    for _ in range(30):
        trainer.step(lambda arc: float(arc[0] == 2), n_samples=4)
    assert before < 0.4 and probability_of_first_token(2) > 0.6


def test_baseline_moves_with_decay():
    controller = Controller(MicroSpace(n_nodes=2).token_spec())
    trainer = ReinforceTrainer(controller, entropy_weight=0.0)
    assert trainer.baseline == 0.0 and trainer.lr == 3.5e-3 and trainer.baseline_decay == 0.99
    stats = trainer.step(lambda arc: 1.0)
    assert trainer.baseline == pytest.approx(0.01)
    assert stats["baseline"] == pytest.approx(0.01) and stats["reward"] == 1.0
    trainer.step(lambda arc: 1.0, n_samples=2)
    assert trainer.baseline == pytest.approx(1 - 0.99**3)


def test_entropy_bonus_enters_the_reward():
    controller = Controller(MicroSpace(n_nodes=2).token_spec())
    trainer = ReinforceTrainer(controller, entropy_weight=0.5, baseline_decay=0.0)
    stats = trainer.step(lambda arc: 0.0)
    # with decay 0 the baseline is the last total reward: 0.5 * entropy
    assert stats["baseline"] == pytest.approx(0.5 * stats["entropy"], rel=1e-5)
    assert stats["loss"] == pytest.approx(0.0, abs=1e-5)


def test_skip_penalty_and_clipping():
    controller = Controller(MacroSpace(n_layers=4).token_spec())
    trainer = ReinforceTrainer(controller, grad_clip=1e-3)
    assert trainer.skip_weight == 0.8 and trainer.lr == 1e-3
    stats = trainer.step(lambda arc: 0.5, n_samples=3)
    assert set(stats) == {"reward", "baseline", "entropy", "loss", "skip_rate", "grad_norm"}
    total = torch.linalg.vector_norm(
        torch.stack([p.grad.norm() for p in controller.parameters() if p.grad is not None])
    )
    assert total.item() <= 1e-3 + 1e-6
    assert len(trainer.last_samples) == 3


def test_state_dict_round_trip_keeps_the_baseline():
    spec = MacroSpace(n_layers=3).token_spec()
    trainer = ReinforceTrainer(Controller(spec))
    trainer.step(lambda arc: 0.7, n_samples=2)
    state = trainer.state_dict()
    fresh = ReinforceTrainer(Controller(spec))
    fresh.load_state_dict(state)
    assert fresh.baseline == trainer.baseline and fresh.steps == 1
    arc = trainer.controller.sample().arc
    assert fresh.controller.sample(forced_arc=arc).log_prob.item() == pytest.approx(
        trainer.controller.sample(forced_arc=arc).log_prob.item()
    )
    assert fresh.optimizer.state_dict()["state"].keys() == trainer.optimizer.state_dict()["state"].keys()


def test_best_of_picks_the_highest_reward():
    trainer = ReinforceTrainer(Controller(MacroSpace(n_layers=3).token_spec()))
    arc, reward = trainer.best_of(8, lambda arc: float(sum(arc)))
    assert reward == float(sum(arc))
