"""GDAS: one Gumbel-sampled op per edge (the same draw for every cell of a type), a nonzero straight-through
architecture gradient for every alpha, the temperature schedule, and a search through the CLI."""

import pytest
import torch
import torch.nn.functional as F
import yaml

from archsearch.model.mixed_op import GumbelSampler, MixedOpOptions
from archsearch.model.ops import DARTS_PRIMITIVES
from archsearch.spaces.darts_cells import DartsCellSupernet, DartsModelDescBuilder
from archsearch.spaces.nasbench201 import NB201_OPS, NasBench201Space
from archsearch.strategies.gdas import GdasTrainer
from tests.conftest import config_fixture

GUMBEL = MixedOpOptions(sampling="gumbel")


def nb201_supernet():
    space = NasBench201Space({}, {"init_channels": 4, "n_cells_per_stage": 2, "affine": False},
                             {"channels": 3, "n_classes": 4})  # fmt: skip
    torch.manual_seed(0)
    return space.mixed_op_supernet(GUMBEL)


def darts_supernet():
    conf = dict(n_cells=3, init_channels=4, n_nodes=2, stem_multiplier=3, n_reductions=2, aux_weight=0.0,
                affine=False, primitives=DARTS_PRIMITIVES)  # fmt: skip
    torch.manual_seed(0)
    return DartsCellSupernet(DartsModelDescBuilder(conf, dict(channels=3, n_classes=4), options=GUMBEL).build())


def record_calls(model):
    """Per MixedOp (by id), the candidate columns run during the next forward."""
    calls: dict[int, list[int]] = {}
    hooks = []
    for op in model.mixed_ops():
        calls[id(op)] = []
        for module, column in zip(op.ops, op.columns):
            hooks.append(module.register_forward_hook(lambda m, i, o, op=op, c=column: calls[id(op)].append(c)))
    return calls, hooks


def never_none(model):
    with torch.no_grad():
        for table in model.arch_params():
            table.normal_()
            table[:, 0] = -30.0  # `none` (column 0 in both spaces) is never drawn: every edge runs an op


@pytest.mark.parametrize("build", [nb201_supernet, darts_supernet])
def test_forward_runs_exactly_the_one_sampled_op_per_edge(build):
    model = build()
    never_none(model)
    x = torch.randn(4, 3, 8, 8)
    for _ in range(3):  # each forward draws anew
        calls, hooks = record_calls(model)
        model(x)
        for h in hooks:
            h.remove()
        ops = model.mixed_ops()
        assert all(len(calls[id(op)]) == 1 for op in ops)
        hard, chosen = model.sampler.draw_for(ops[0].arch_key)
        for op in ops:  # the op each edge ran is the draw for its (table, row): shared by all cells of a type
            assert calls[id(op)] == [model.sampler.drawn[op.arch_key][1][op.arch_row]]
        assert torch.allclose(hard.sum(dim=-1), torch.ones(hard.shape[0]), atol=1e-5)
        assert set(hard.detach().round().flatten().tolist()) <= {0.0, 1.0}


@pytest.mark.parametrize("build", [nb201_supernet, darts_supernet])
def test_architecture_gradient_is_nonzero_for_every_alpha(build):
    model = build()
    never_none(model)  # a drawn none would cut the edges behind it off the loss (their gradient is then 0)
    x, y = torch.randn(4, 3, 8, 8), torch.randint(0, 4, (4,))
    F.cross_entropy(model(x), y).backward()
    for table in model.arch_params():
        assert table.grad is not None and torch.isfinite(table.grad).all()
        # straight-through: the drawn op's hard weight and, through the zero-valued others, every column moves
        assert (table.grad.abs() > 0).all(), table.grad


def test_a_drawn_none_gives_zeros_without_running_an_op():
    model = nb201_supernet()
    with torch.no_grad():
        model.arch_tables["cell"].fill_(-30.0)
        model.arch_tables["cell"][:, 0] = 30.0  # none everywhere
    calls, hooks = record_calls(model)
    out = model(torch.randn(2, 3, 8, 8))
    assert all(not c for c in calls.values()) and torch.isfinite(out).all()
    assert model.derive_arch().count("none") == 6


def test_sampling_follows_the_softmax_of_the_alphas():
    alpha = torch.log(torch.tensor([[0.1, 0.2, 0.7]]))
    sampler = GumbelSampler({"a": alpha}, ["a"], tau=1.0)
    torch.manual_seed(0)
    counts = torch.zeros(3)
    for _ in range(3000):
        sampler.draw()
        counts[sampler.drawn["a"][1][0]] += 1
    assert torch.allclose(counts / counts.sum(), torch.tensor([0.1, 0.2, 0.7]), atol=0.03)  # Gumbel-max is exact


def test_temperature_falls_linearly_from_tau_max_to_tau_min():
    trainer = GdasTrainer.__new__(GdasTrainer)  # only the schedule: no model or loaders needed
    trainer.epochs, trainer.tau_max, trainer.tau_min = 5, 10.0, 0.1
    assert [round(trainer.tau(e), 6) for e in range(5)] == [10.0, 7.525, 5.05, 2.575, 0.1]


TINY = {
    "nas": {
        "search": {
            "space": {"name": "nasbench201"},
            "model_desc": {"init_channels": 4, "n_cells_per_stage": 1},
            "loader": {"batch_size": 16, "limit_batches": 2},
            "trainer": {"epochs": 3},
        },
    },
    "dataset": {"synthetic_train": 96, "synthetic_test": 32},
}
tiny = config_fixture(TINY)


def test_gdas_search_through_the_cli_anneals_tau(cli, tiny):
    proc = cli("--algos", "gdas", "--datasets", "synthetic", "--config", tiny, "--search-only")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = cli.logdir / "archsearch_synthetic_toy" / "gdas"
    records = yaml.safe_load((out / "log.yaml").read_text())
    epochs = [r for r in records if r["event"] == "search_epoch"]
    assert [round(r["tau"], 4) for r in epochs] == [10.0, 5.05, 0.1]
    found = yaml.safe_load((out / "search" / "final_model_desc.yaml").read_text())["meta"]["arch"]
    assert all(op.split("~")[0] in NB201_OPS for group in found.split("+") for op in group.strip("|").split("|"))


@pytest.mark.parametrize("algo", ["gdas", "pcdarts"])
def test_a_search_stopped_after_an_epoch_resumes_to_the_same_result(algo, tmp_path, monkeypatch):
    """The Gumbel draws come from the checkpointed torch RNG and tau from the epoch, PC-DARTS' warm-up from the
    epoch too: a search stopped after epoch 2 and resumed ends exactly as one that ran through."""
    import archsearch
    from archsearch.common.checkpoint import RAISE_AT_ENV
    from archsearch.experiment.run import RunOptions

    settings = {"common.num_threads": 1, "common.logdir": str(tmp_path), "dataset.synthetic_train": 64,
                "dataset.synthetic_test": 16, "nas.search.space.name": "nasbench201",
                "nas.search.model_desc.init_channels": 4, "nas.search.model_desc.n_cells_per_stage": 1,
                "nas.search.loader.batch_size": 16, "nas.search.loader.limit_batches": 2,
                "nas.search.trainer.epochs": 3, "nas.search.trainer.bilevel.arch_start_epoch": 1}  # fmt: skip

    def search(prefix: str, resume: bool = False):
        options = RunOptions(phases="search", exp_prefix=prefix)
        return archsearch.run(algo, "synthetic", options, {**settings, "common.resume": resume})

    straight = search("straight")
    monkeypatch.setenv(RAISE_AT_ENV, "search:epoch:2")
    with pytest.raises(RuntimeError, match="test fault"):
        search("stopped")
    monkeypatch.delenv(RAISE_AT_ENV)
    resumed = search("stopped", resume=True)
    assert resumed["final_arch"].read_text().replace("stopped", "straight") == straight["final_arch"].read_text()
    runs = [yaml.safe_load((s["final_arch"].parent / "metrics.yaml").read_text()) for s in (straight, resumed)]
    keys = ("val_loss", "train_loss", "arch_loss")
    assert {k: runs[0][k] for k in keys} == {k: runs[1][k] for k in keys}
