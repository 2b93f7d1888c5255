"""The current zero-cost proxies (zero_cost.py) against hand computations and their papers' code's formulas on
tiny networks, the shared passes, the proxy ensemble's rank aggregation, and their one-line errors."""

import math
import random
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from archsearch.common.errors import ArchitectureError, ConfigError
from archsearch.model.network import Model, count_params
from archsearch.spaces.nasbench201 import arch_to_desc
from archsearch.strategies.naswot.ensemble import aggregate, check_members, ranks
from archsearch.strategies.naswot.proxies import PROXIES
from archsearch.strategies.naswot.zero_cost import (
    AZ_NAS,
    SHARED,
    ProxyOptions,
    measure,
    stage_modules,
    swap_regulariser,
)

ARCH = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
NEW = ["zico", "meco", "meco_opt", "swap", *AZ_NAS, "params", "macs"]


def tiny_nb201(seed: int = 0) -> Model:
    torch.manual_seed(seed)
    return Model(arch_to_desc(ARCH, C=4, N=1, ch_in=3, n_classes=5))


def batch(n: int = 12, seed: int = 1, size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, size, size, generator=g), torch.randint(0, 5, (n,), generator=g)


def conv_net(seed: int = 0) -> nn.Module:
    """No BatchNorm: a half batch's gradient is the same in the whole batch's forward as in its own."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.ReLU(), nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 5),
    )  # fmt: skip


# ---- ZiCo -----------------------------------------------------------------------------------------


def test_zico_is_the_original_formula_on_two_half_batches():
    model, (x, y) = conv_net(), batch()
    # the original: one forward+backward per batch, the gradients kept per layer, then caculate_zico in numpy
    grads: dict[str, list[np.ndarray]] = {}
    for half in (slice(0, 6), slice(6, 12)):
        model.zero_grad()
        F.cross_entropy(model(x[half]), y[half]).backward()
        for name, m in model.named_modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                grads.setdefault(name, []).append(m.weight.grad.detach().reshape(-1).numpy().astype(np.float64))
    model.zero_grad(set_to_none=True)
    expected = 0.0
    for g in grads.values():
        g = np.array(g)
        std, mean_abs = np.std(g, axis=0), np.mean(np.abs(g), axis=0)
        nz = np.nonzero(std)[0]
        tmpsum = np.sum(mean_abs[nz] / std[nz])
        if tmpsum != 0:
            expected += np.log(tmpsum)
    assert measure(model, x, y, F.cross_entropy, ["zico"])["zico"] == pytest.approx(expected, rel=1e-5)


def test_zico_by_hand_on_one_weight():
    # one weight w, loss = w * mean(x) per half: gradients are the halves' means, 1 and 3:
    # mean|g| = 2, std = 1, the layer adds log(2)
    model = nn.Linear(1, 1, bias=False)
    x = torch.tensor([[1.0], [1.0], [3.0], [3.0]])
    score = measure(model, x, torch.zeros(4), lambda out, _: out.mean(), ["zico"])["zico"]
    assert score == pytest.approx(math.log(2.0))


# ---- MeCo -----------------------------------------------------------------------------------------


def meco_by_numpy(model: nn.Module, sample: torch.Tensor) -> float:
    """MeCo's code: a hook on every module, the first sample's channel correlation, NaN/inf -> 0, min eig."""
    values = []

    def hook(module, inputs, output):
        fea = output[0].detach().numpy().astype(np.float64)
        fea = fea.reshape(fea.shape[0], -1)
        with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)  # one position: no correlation (NaN, set to 0)
            corr = np.corrcoef(fea)
        corr = np.atleast_2d(corr)
        corr[~np.isfinite(corr)] = 0
        values.append(np.min(np.real(np.linalg.eig(corr)[0])))

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    model.train()
    with torch.no_grad():
        model(sample)
    for h in handles:
        h.remove()
    return float(np.nansum(values))


def test_meco_is_the_original_formula():
    model, (x, y) = conv_net(), batch()
    expected = meco_by_numpy(conv_net(), x[:1])
    assert measure(model, x, y, None, ["meco"])["meco"] == pytest.approx(expected, abs=1e-9)
    # 8 channels or fewer everywhere: MeCo_opt samples them all, the same score
    assert measure(model, x, y, None, ["meco_opt"])["meco_opt"] == pytest.approx(expected, abs=1e-9)


def test_meco_by_hand_two_channels():
    # one module, two channels over 3 positions: (1, 2, 3) and (3, 2, 1) correlate -1: eigenvalues 0 and 2
    model = nn.Sequential(nn.Identity())
    x = torch.tensor([[[[1.0, 2.0, 3.0]], [[3.0, 2.0, 1.0]]]])
    # the Sequential and the Identity both output it: 0 + 0
    assert measure(model, x, None, None, ["meco"])["meco"] == pytest.approx(0.0, abs=1e-12)
    x = torch.tensor([[[[1.0, 2.0, 4.0]], [[1.0, 0.0, 0.0]]]])
    r = np.corrcoef([[1, 2, 4], [1, 0, 0]])[0, 1]
    assert measure(model, x, None, None, ["meco"])["meco"] == pytest.approx(2 * (1 - abs(r)))


def test_meco_opt_samples_eight_channels_and_scales():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1))
    x, _ = batch(2)
    opt = measure(model, x, None, None, ["meco_opt"], ProxyOptions(seed=3))["meco_opt"]
    assert measure(model, x, None, None, ["meco_opt"], ProxyOptions(seed=3))["meco_opt"] == opt  # seeded
    fea = model(x[:1])[0].detach().reshape(32, -1).double()
    g = torch.Generator().manual_seed(3)
    terms = []
    for _ in range(2):  # the Sequential and the Conv2d output the same map: two draws, in hook order
        pick = torch.randperm(32, generator=g)[:8]
        terms.append(float(torch.linalg.eigvalsh(torch.corrcoef(fea[pick])).min()) * 32 / 8)
    assert opt == pytest.approx(sum(terms))


# ---- SWAP -----------------------------------------------------------------------------------------


def test_swap_counts_distinct_unit_patterns_by_hand():
    # 3 samples x 4 units (1 channel, 2x2): unit patterns over the samples (on = input > 0)
    x = torch.tensor([[1.0, -1.0, 2.0, 0.5], [1.0, 1.0, -2.0, 0.5], [-1.0, -1.0, 1.0, -0.5]]).reshape(3, 1, 2, 2)
    # unit 0: (1,1,0), unit 1: (0,1,0), unit 2: (1,0,1), unit 3: (1,1,0) = unit 0  -> 3 distinct
    model = nn.Sequential(nn.ReLU(), nn.Flatten())
    assert measure(model, x, None, None, ["swap"])["swap"] == 3


def test_swap_is_the_original_formula_and_regularised():
    model, (x, y) = conv_net(), batch(20)
    acts = []
    handles = [m.register_forward_hook(lambda m, i, o: acts.append(o.detach().reshape(16, -1))) for m in model
               if isinstance(m, nn.ReLU)]  # fmt: skip
    with torch.no_grad():
        model(x[:16])  # no BatchNorm: the first 16 of a larger batch code the same
    for h in handles:
        h.remove()
    signs = torch.sign(torch.cat(acts, dim=1)).numpy()
    expected = np.unique(signs.T, axis=0).shape[0]
    assert measure(model, x, y, None, ["swap"])["swap"] == expected
    options = ProxyOptions(swap_mu=0.3, swap_sigma=0.5)
    factor = math.exp(-((count_params(model) / 1e3 - 0.3) ** 2) / 0.5)
    assert swap_regulariser(count_params(model), 0.3, 0.5) == pytest.approx(factor)
    assert measure(model, x, y, None, ["swap"], options)["swap"] == pytest.approx(expected * factor)
    # more than 62 samples: patterns span two words
    wide = measure(model, batch(100)[0], None, None, ["swap"], ProxyOptions(swap_samples=100))["swap"]
    assert 1 <= wide <= sum(a.shape[1] for a in acts)


# ---- AZ-NAS ---------------------------------------------------------------------------------------


def test_az_trainability_by_hand_and_identity_is_minus_inf():
    # two 1-channel stages: f1 = 2 * f0, so the probe's Jacobian is 2: s = 2, score -2 - 1/2 + 2
    first, second = nn.Conv2d(1, 1, 1, bias=False), nn.Conv2d(1, 1, 1, bias=False)
    with torch.no_grad():
        first.weight.fill_(1.0)
        second.weight.fill_(2.0)
    x = torch.randn(4, 1, 3, 3)
    score = measure(nn.Sequential(first, second), x, None, None, ["az_trainability"])["az_trainability"]
    assert score == pytest.approx(-2.0 - 1.0 / (2.0 + 1e-6) + 2.0, rel=1e-6)
    with torch.no_grad():
        second.weight.fill_(1.0)
    assert measure(nn.Sequential(first, second), x, None, None, ["az_trainability"])["az_trainability"] == -math.inf


def test_az_expressivity_and_progressivity_are_the_original_formulas():
    model, (x, y) = tiny_nb201(), batch()
    feats = []
    handles = [m.register_forward_hook(lambda m, i, o: feats.append(o.detach())) for m in stage_modules(model)]
    model.train()
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    model = tiny_nb201()  # a fresh copy: the hooked forward changed the BN running stats
    entropies = []
    for f in feats:
        b, c, h, w = f.shape
        feat = f.permute(0, 2, 3, 1).reshape(b * h * w, c).double().numpy()
        feat = feat - feat.mean(axis=0, keepdims=True)
        s = np.linalg.eigvalsh(feat.T @ feat / feat.shape[0])
        p = s / s.sum()
        entropies.append(float(np.sum(-p * np.log(p + 1e-8))))
    assert len(feats) == 1 + 5  # stem, cell, block, cell, block, cell (N=1 cell per stage)
    got = measure(model, x, y, F.cross_entropy, ["az_expressivity", "az_progressivity"])
    assert got["az_expressivity"] == pytest.approx(sum(entropies), rel=1e-4)
    assert got["az_progressivity"] == pytest.approx(min(np.diff(entropies)), abs=1e-4)


def test_az_complexity_is_macs_and_params_counts():
    model, (x, y) = tiny_nb201(), batch()
    got = measure(model, x, y, None, ["az_complexity", "macs", "params"])
    assert got["az_complexity"] == got["macs"] > 0
    assert got["params"] == count_params(model)


# ---- the shared passes and the contract ------------------------------------------------------------


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("training", [True, False])
def test_every_proxy_alone_and_together_leaves_the_model_alone(training):
    model, (x, y) = tiny_nb201(), batch()
    model.train(training)
    before = snapshot(model)
    names = [n for n in PROXIES.names()]
    together = measure(model, x, y, F.cross_entropy, names)
    for name in NEW:
        alone = PROXIES.get(name)(model, x, y, F.cross_entropy)
        assert isinstance(alone, float) and not math.isnan(alone), name
        # the same network and batch: the same score alone and among the others (one forward either way)
        assert together[name] == pytest.approx(alone, rel=1e-6, abs=1e-9), name
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "weights or BN buffers changed"
    assert model.training == training
    assert all(p.grad is None for p in model.parameters())


def test_proxies_run_on_every_space_that_builds_a_network():
    from archsearch.experiment.run import RunOptions, override_pairs, resolve_config
    from archsearch.search.space import SPACES
    from tests.test_contract import COMMON, SPACE_SETTINGS

    x, y = batch(8, size=16)
    y = y % 10
    for space in ("darts", "enas_micro", "user_model"):
        settings = {**COMMON, **SPACE_SETTINGS[space], "nas.search.space.name": space}
        conf = resolve_config("random", "synthetic", RunOptions(), override_pairs(settings))
        search = conf["nas"]["search"]
        built = SPACES.get(space)(search["space"], search["model_desc"], conf["dataset"])
        torch.manual_seed(0)
        model = built.build(built.sample(random.Random(0)))
        scores = measure(model, x, y, F.cross_entropy, sorted(SHARED))
        assert all(isinstance(v, float) and not math.isnan(v) for v in scores.values()), (space, scores)


def test_a_proxy_a_network_cannot_compute_is_one_line():
    class FunctionalRelu(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 2, 1)

        def forward(self, x):
            return torch.relu(self.conv(x)).flatten(1)

    x, y = batch(4)
    with pytest.raises(ArchitectureError, match=r"naswot codes the inputs of ReLU modules") as err:
        measure(FunctionalRelu(), x, y, None, ["swap", "naswot"])
    assert "\n" not in str(err.value)
    with pytest.raises(ArchitectureError, match="zico needs a batch of at least 2"):
        measure(conv_net(), x[:1], y[:1], F.cross_entropy, ["zico"])


# ---- the ensemble's aggregation -----------------------------------------------------------------


def test_log_rank_and_mean_rank_by_hand():
    columns = {"a": [1.0, 2.0, 3.0], "b": [30.0, 10.0, 20.0]}  # ranks a: 1 2 3, b: 3 1 2 (of m = 3)
    log_rank = aggregate(columns, "log_rank")
    np.testing.assert_allclose(log_rank, [math.log(1 / 3) + math.log(1), math.log(2 / 3) + math.log(1 / 3),
                                          math.log(1) + math.log(2 / 3)])  # fmt: skip
    np.testing.assert_allclose(aggregate(columns, "mean_rank"), [(1 / 3 + 1) / 2, (2 / 3 + 1 / 3) / 2, (1 + 2 / 3) / 2])
    # a last place costs log(1/3) in log-rank: the 2nd network (ranks 2 and 1) is behind the 1st (1 and 3)
    assert np.argmax(log_rank) == 2 and log_rank[1] < log_rank[0]


def test_ranks_ties_and_failures():
    np.testing.assert_array_equal(ranks([5.0, 5.0, 7.0]), [1.5, 1.5, 3.0])
    np.testing.assert_array_equal(ranks([1.0, math.nan, -math.inf, 2.0]), [3.0, 1.5, 1.5, 4.0])
    # a resumed search reads non-finite scores back from trials.yaml as strings ('nan', '-inf')
    np.testing.assert_array_equal(ranks([1.0, "nan", "-inf", 2.0]), [3.0, 1.5, 1.5, 4.0])


def test_bad_ensembles_are_one_line():
    with pytest.raises(ConfigError, match="at least one member proxy"):
        check_members([])
    with pytest.raises(ConfigError, match="unknown member proxy .magic.; known: .*naswot"):
        check_members(["naswot", "magic"])
    with pytest.raises(ConfigError, match="listed twice"):
        check_members(["naswot", "naswot"])
    with pytest.raises(ConfigError, match="not one of log_rank, mean_rank"):
        aggregate({"a": [1.0]}, "median")
