"""SPOS: uniform single-path sampling, weights inherited by a path, BatchNorm recalibration, the supernet file,
exact resume after kill -9, searching a saved supernet again, and the one-line errors of bad values."""

from __future__ import annotations

import random
import re
import signal
from collections import Counter

import pytest
import torch
import yaml

import archsearch
from archsearch.common.checkpoint import KILL_AT_ENV, safe_torch_load
from archsearch.common.errors import CheckpointError, ConfigError
from archsearch.experiment.run import RunOptions, override_pairs, resolve_config
from archsearch.search.space import SPACES
from archsearch.spaces.enas_supernet import extract_child
from archsearch.spaces.nasbench201 import EDGES, NB201_OPS, parse_arch
from archsearch.strategies.spos.evaluator import recalibrate_bn, score
from archsearch.strategies.spos.supernet_file import load_supernet, save_supernet
from archsearch.strategies.spos.trainer import uniform_tokens
from tests.test_contract import SPACE_SETTINGS

TINY = {
    "common.num_threads": 1,
    "dataset.synthetic_train": 48,
    "dataset.synthetic_test": 16,
    "nas.search.loader.batch_size": 8,
    "nas.search.loader.limit_batches": 2,
    "nas.search.trainer.epochs": 3,
    "nas.search.rea.n_trials": 4,
    "nas.search.rea.population_size": 2,
    "nas.search.rea.sample_size": 2,
    "nas.search.spos.bn_batches": 2,
    "report.auto": False,
}
NB201 = {**TINY, **SPACE_SETTINGS["nasbench201"], "nas.search.space.name": "nasbench201"}


def make_space(name: str = "nasbench201", **settings):
    overrides = {**TINY, **SPACE_SETTINGS[name], "nas.search.space.name": name, **settings}
    conf = resolve_config("spos", "synthetic", RunOptions(), override_pairs(overrides))
    search = conf["nas"]["search"]
    return SPACES.get(name)(search["space"], search["model_desc"], conf["dataset"])


def batches(n: int, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(8, 3, 8, 8, generator=g), torch.randint(0, 10, (8,), generator=g)) for _ in range(n)]


@pytest.mark.parametrize("name", ["nasbench201", "darts", "enas_macro"])
def test_uniform_sampling_covers_every_choice_uniformly_and_is_seeded(name):
    space = make_space(name)
    spec = list(space.token_spec())
    draws = 3000
    rng = random.Random(7)
    paths = [uniform_tokens(spec, rng) for _ in range(draws)]
    for position, token in enumerate(spec):
        counts = Counter(p[position] for p in paths)
        assert set(counts) == set(range(token.n_choices)), (position, counts)  # every choice is drawn
        expected = draws / token.n_choices
        sigma = (draws * (1 / token.n_choices) * (1 - 1 / token.n_choices)) ** 0.5
        assert all(abs(c - expected) < 5 * sigma for c in counts.values()), (position, counts)
    again = random.Random(7)
    assert [uniform_tokens(spec, again) for _ in range(draws)] == paths  # seeded: the same stream
    assert [uniform_tokens(spec, random.Random(8)) for _ in range(5)] != paths[:5]
    for tokens in paths[:20]:  # every draw is a child the supernet runs
        space.arch_from_tokens(tokens)


def _randomize_bn(model: torch.nn.Module, arch, space) -> None:
    """Running statistics that are not (0, 1) and affine parameters that are not (1, 0)."""
    g = torch.Generator().manual_seed(3)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
            if m.affine:
                m.weight.data.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)


def test_a_path_of_the_nb201_supernet_is_the_standalone_network_with_the_same_weights():
    space = make_space("nasbench201", **{"nas.search.model_desc.affine": True})
    torch.manual_seed(0)
    supernet = space.sampled_supernet()
    arch = "|nor_conv_3x3~0|+|skip_connect~0|none~1|+|nor_conv_1x1~0|avg_pool_3x3~1|nor_conv_3x3~2|"
    supernet.set_arch(arch)
    _randomize_bn(supernet, arch, space)
    child = space.build(arch)
    # the supernet's edge j<-i holds candidate o at nodes.<j>.<i>.candidates.0.<o>; the child's edge is the op
    ops = parse_arch(arch)
    chosen = {f"nodes.{j - 1}.{i}": NB201_OPS.index(op) for (j, i), op in zip(EDGES, ops)}
    state = {}
    pattern = re.compile(r"(.*nodes\.\d+\.\d+)\.candidates\.0\.(\d+)\.(.*)")
    for key, value in supernet.state_dict().items():
        m = pattern.match(key)
        if m is None:
            state[key] = value
        elif chosen[m.group(1).split("cells.")[1].split(".", 1)[1]] == int(m.group(2)):
            state[f"{m.group(1)}.{m.group(3)}"] = value
    missing, unexpected = child.load_state_dict(state, strict=False)
    assert not missing and not unexpected, (missing, unexpected)
    x = torch.randn(4, 3, 8, 8)
    supernet.eval(), child.eval()
    torch.testing.assert_close(supernet(x), child(x))
    # and after the same BatchNorm recalibration, still the same network
    data = batches(2)
    recalibrate_bn(supernet, data, torch.device("cpu")), recalibrate_bn(child, data, torch.device("cpu"))
    torch.testing.assert_close(supernet(x), child(x))
    assert score(supernet, data, torch.device("cpu")) == score(child, data, torch.device("cpu"))


def test_a_path_of_the_enas_macro_supernet_is_its_standalone_child():
    space = make_space("enas_macro")
    torch.manual_seed(0)
    supernet = space.sampled_supernet()
    arch = space.sample(random.Random(1))
    supernet.set_arch(arch)
    _randomize_bn(supernet, arch, space)
    supernet.eval()
    child = extract_child(supernet, arch)
    x = torch.randn(4, 3, 8, 8)
    torch.testing.assert_close(supernet(x), child(x))


def test_bn_recalibration_changes_running_statistics_and_no_weight():
    space = make_space()
    torch.manual_seed(0)
    supernet = space.sampled_supernet()
    supernet.set_arch(space.sample(random.Random(2)))
    weights = {k: v.clone() for k, v in supernet.named_parameters()}
    before = {k: v.clone() for k, v in supernet.named_buffers() if "running" in k}
    momenta = [m.momentum for m in supernet.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    supernet.eval()
    assert recalibrate_bn(supernet, batches(3), torch.device("cpu")) > 0
    assert not supernet.training  # the mode is given back
    assert all(torch.equal(weights[k], v) for k, v in supernet.named_parameters())
    after = {k: v.clone() for k, v in supernet.named_buffers() if "running" in k}
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert momenta == [m.momentum for m in supernet.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    # a cumulative average of the same batches: whatever ran before, the statistics are the same
    supernet.train()
    supernet(torch.randn(8, 3, 8, 8) * 5)
    recalibrate_bn(supernet, batches(3), torch.device("cpu"))
    again = {k: v for k, v in supernet.named_buffers() if "running" in k}
    chosen = [k for k in before if not torch.equal(before[k], after[k])]
    assert all(torch.allclose(after[k], again[k]) for k in chosen)


def test_supernet_file_round_trip_and_refusals(tmp_path):
    space = make_space()
    torch.manual_seed(0)
    supernet = space.sampled_supernet()
    history = [{"epoch": 1, "train_top1": 0.25, "val_top1": 0.5}]
    path = save_supernet(tmp_path / "supernet.pt", supernet, space, history)
    safe_torch_load(path)  # weights_only
    loaded, read_history = load_supernet(path, space)
    assert read_history == history
    for (k, a), (k2, b) in zip(supernet.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(a, b)

    def refused(error, other_space, *fragments):
        with pytest.raises(error) as caught:
            load_supernet(path, other_space)
        assert "\n" not in str(caught.value) and all(f in str(caught.value) for f in fragments), str(caught.value)

    wider = make_space(**{"nas.search.model_desc.init_channels": 8})
    refused(ConfigError, wider, "nas.search.model_desc.init_channels", "= 4", "8")
    refused(ConfigError, make_space("enas_macro"), "space 'nasbench201'", "enas_macro")
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(CheckpointError, match="not a supernet file"):
        load_supernet(other, space)
    with pytest.raises(ConfigError, match="no such file"):
        load_supernet(tmp_path / "absent.pt", space)


def _read(folder):
    trials = yaml.safe_load((folder / "search" / "trials.yaml").read_text())
    state = safe_torch_load(folder / "search" / "supernet.pt")
    return [(t["arch"], t["metrics"]) for t in trials], state["state"], state["history"]


def test_kill_during_supernet_training_then_resume_equals_the_uninterrupted_run(cli):
    settings = {**NB201, "common.logdir": str(cli.logdir)}
    archsearch.run("spos", "synthetic", RunOptions(phases="search", exp_prefix="straight"), settings)
    args = ["--algos", "spos", "--datasets", "synthetic", "--search-only", "--exp-prefix", "killed"]
    for key, value in NB201.items():
        args += [f"--{key}", str(value)]
    assert cli(*args, env={KILL_AT_ENV: "search:epoch:2"}).returncode == -signal.SIGKILL
    killed = cli.logdir / "killed_synthetic_toy" / "spos"
    assert (killed / "search" / "checkpoint.pt").exists() and not (killed / "search" / "supernet.pt").exists()
    resume = {**settings, "common.resume": True}
    archsearch.run("spos", "synthetic", RunOptions(phases="search", exp_prefix="killed"), resume)
    log = (killed / "log.log").read_text()
    assert "resumed from" in log and log.count("epoch=1 ") == 1  # epoch 1 ran before the kill only
    a, b = _read(cli.logdir / "straight_synthetic_toy" / "spos"), _read(killed)
    assert a[0] == b[0] and len(a[0]) == 4  # the same candidates with the same scores
    assert all(torch.equal(a[1][k], b[1][k]) for k in a[1])  # the same supernet, bit for bit
    assert [r["train_loss"] for r in a[2]] == [r["train_loss"] for r in b[2]]


def test_a_saved_supernet_is_searched_again_without_training_and_bad_values_are_one_line(tmp_path):
    settings = {**NB201, "common.logdir": str(tmp_path)}
    first = archsearch.run("spos", "synthetic", RunOptions(phases="search", exp_prefix="first"), settings)
    supernet = tmp_path / "first_synthetic_toy" / "spos" / "search" / "supernet.pt"
    assert supernet.is_file() and first["search"]["searcher"] == "rea"
    again = {**settings, "nas.search.supernet": str(supernet), "nas.search.constraints": {"params": {"max": 400000}},
             "nas.search.spos.searcher": "random", "nas.search.random.n_candidates": 3}  # fmt: skip
    second = archsearch.run("spos", "synthetic", RunOptions(phases="search", exp_prefix="second"), again)
    out = tmp_path / "second_synthetic_toy" / "spos"
    log = (out / "log.log").read_text()
    assert "no training" in log and "epoch=1 " not in log and not (out / "search" / "checkpoint.pt").exists()
    assert second["search"]["n_trials"] == 3 and (out / "search" / "pareto.yaml").exists()
    # its training curve is in the second run's log for the report
    assert len([e for e in yaml.safe_load((out / "log.yaml").read_text()) if e.get("event") == "search_epoch"]) == 3
    # any black-box strategy scores by the supernet
    by_supernet = {**settings, "nas.search.supernet": str(supernet), "nas.search.evaluate_by": "supernet"}
    rea = archsearch.run("rea", "synthetic", RunOptions(phases="search", exp_prefix="rea"), by_supernet)
    assert rea["search"]["n_trials"] == 4 and 0 <= rea["search"]["best_supernet_top1"] <= 1

    def one_line(overrides, *fragments, algo="spos"):
        with pytest.raises(ConfigError) as caught:
            archsearch.run(algo, "synthetic", RunOptions(phases="search", exp_prefix="bad"), {**settings, **overrides})
        message = str(caught.value)
        assert "\n" not in message and all(f in message for f in fragments), message

    one_line({"nas.search.spos.searcher": "naswot"}, "nas.search.spos.searcher", "rea")
    one_line({"nas.search.spos.searcher": "darts"}, "nas.search.spos.searcher")
    one_line({"nas.search.evaluate_by": "train"}, "nas.search.evaluate_by", "supernet")
    one_line({"nas.search.spos.bn_batches": -1}, "bn_batches")
    macro = {
        **TINY,
        **SPACE_SETTINGS["enas_macro"],
        "nas.search.space.name": "enas_macro",
        "common.logdir": str(tmp_path),
    }
    with pytest.raises(ConfigError, match="a supernet of space 'nasbench201', and this run searches 'enas_macro'"):
        archsearch.run(
            "spos", "synthetic", RunOptions(phases="search"), {**macro, "nas.search.supernet": str(supernet)}
        )
    one_line({"nas.search.supernet": str(tmp_path / "none.pt")}, "no such file")
    one_line({"nas.search.evaluate_by": "supernet"}, "--nas.search.supernet PATH", algo="rea")


def test_the_linear_schedule_decays_to_zero():
    from archsearch.train.trainer import build_scheduler

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.5)
    scheduler = build_scheduler({"type": "linear"}, optimizer, 4)
    lrs = []
    for _ in range(5):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step(), scheduler.step()
    assert lrs == pytest.approx([0.5, 0.375, 0.25, 0.125, 0.0])


def test_the_darts_sampled_supernet_runs_what_the_space_samples_and_mutates():
    space = make_space("darts")
    supernet = space.sampled_supernet()
    n = space.micro_space().n_nodes

    def gates():
        return [[cell.nodes[n + j][0].active for j in range(n)] for cell in supernet.cells]

    rng = random.Random(0)
    for arch in (space.sample(rng), space.mutate(space.sample(rng), rng)):  # DARTS genotypes: every node concatenated
        supernet.set_arch(arch)
        assert all(all(g) for g in gates())
        assert supernet(torch.randn(2, 3, 8, 8)).shape == (2, 10)
    enas = space.arch_from_tokens(uniform_tokens(space.token_spec(), rng))  # an ENAS genotype: its loose ends
    supernet.set_arch(enas)
    assert not all(all(g) for g in gates())
