import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from archsearch.common.errors import UserError
from archsearch.model.network import Model
from archsearch.model.ops import ReLUConvBN
from archsearch.search.trial_loop import Budget, TrialLoop
from archsearch.spaces.nasbench201 import arch_to_desc
from archsearch.strategies.naswot.proxies import (
    PROXIES,
    get_proxy,
    naswot,
    naswot_kernel,
    relu_activations_only,
    relu_by_class_name,
)
from archsearch.strategies.naswot.sampling import (
    nb201_candidates,
    nb201_model_builder,
    sample_nb201,
    score_candidates,
)

ARCH = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"


def tiny_model(arch: str = ARCH, seed: int = 0) -> Model:
    torch.manual_seed(seed)
    return Model(arch_to_desc(arch, C=4, N=1, ch_in=3, n_classes=5))


def batch(n: int = 12, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 8, 8, generator=g), torch.randint(0, 5, (n,), generator=g)


def numpy_kernel(model: nn.Module, x: torch.Tensor, match) -> np.ndarray:
    """The original's computation: capture each hooked module's input, code it, sum the two Gram terms."""
    codes = []
    hooks = [
        m.register_forward_hook(lambda m, inp, out: codes.append(inp[0].detach().numpy().reshape(len(x), -1) > 0))
        for m in model.modules()
        if match(m)
    ]
    model.train()
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    kernel = np.zeros((len(x), len(x)))
    for c in codes:
        c = c.astype(np.float64)
        kernel += c @ c.T + (1.0 - c) @ (1.0 - c).T
    return kernel


@pytest.mark.parametrize("match", [relu_by_class_name, relu_activations_only])
def test_naswot_kernel_equals_a_direct_numpy_computation(match):
    model, (x, _) = tiny_model(), batch()
    expected = numpy_kernel(tiny_model(), x, match)  # a second, identical model: nothing shared
    kernel = naswot_kernel(model, x, match)
    assert kernel.dtype == torch.float64
    np.testing.assert_array_equal(kernel.numpy(), expected)  # integer counts: exact
    _, logdet = np.linalg.slogdet(expected)
    if match is relu_by_class_name:
        assert naswot(model, x) == pytest.approx(logdet, rel=1e-12)
    else:
        assert PROXIES.get("naswot_relu")(model, x, None, None) == pytest.approx(logdet, rel=1e-12)


def test_original_rule_counts_relu_conv_bn_blocks_twice():
    # "ReLU" in the class name matches both the ReLUConvBN block and the nn.ReLU inside it
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), ReLUConvBN(4, 4, 3, 1, 1, affine=True))
    x, _ = batch()
    twice = naswot_kernel(model, x, relu_by_class_name)
    once = naswot_kernel(model, x, relu_activations_only)
    assert torch.equal(twice, 2 * once)


def test_naswot_score_is_invariant_to_batch_order():
    model, (x, _) = tiny_model(), batch(16)
    perm = torch.randperm(16, generator=torch.Generator().manual_seed(3))
    assert naswot(model, x[perm]) == pytest.approx(naswot(model, x), abs=1e-9)
    kernel, permuted = naswot_kernel(model, x), naswot_kernel(model, x[perm])
    assert torch.equal(permuted, kernel[perm][:, perm])


def test_naswot_of_identical_samples_is_minus_infinity():
    x, _ = batch(4)
    assert naswot(tiny_model(), torch.cat([x, x[:1]])) == -math.inf


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name", ["naswot", "naswot_relu", "synflow", "grad_norm", "snip", "jacob_cov"])
@pytest.mark.parametrize("training", [True, False])
def test_proxies_return_finite_floats_and_leave_the_model_alone(name, training):
    model, (x, y) = tiny_model(), batch()
    model.train(training)
    before = snapshot(model)
    value = PROXIES.get(name)(model, x, y, F.cross_entropy)
    assert isinstance(value, float) and math.isfinite(value), value
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "weights or BN buffers changed"
    assert model.training == training
    assert all(p.grad is None for p in model.parameters())
    # deterministic: the same model and batch give the same score
    assert PROXIES.get(name)(model, x, y, F.cross_entropy) == pytest.approx(value, rel=1e-9)


def test_proxy_lookup():
    assert {"naswot", "naswot_relu", "synflow", "grad_norm", "snip", "jacob_cov"} <= set(PROXIES.names())
    assert get_proxy("naswot") is naswot and get_proxy(naswot) is naswot
    with pytest.raises(UserError, match="unknown proxy 'naswott'.*did you mean naswot"):
        get_proxy("naswott")


# ---- sampling and scoring candidates ------------------------------------------------------------


def test_nb201_sampling_is_seeded_and_without_replacement():
    a = sample_nb201(50, np.random.default_rng(7))
    b = sample_nb201(50, np.random.default_rng(7))
    assert [c.name for c in a] == [c.name for c in b]
    assert len({c.index for c in a}) == 50
    t = sample_nb201(20, torch.Generator().manual_seed(7))
    assert len({c.index for c in t}) == 20
    assert nb201_candidates([1])[0].name == ARCH


def test_score_candidates_is_seeded_and_keeps_the_callers_rng():
    candidates = nb201_candidates([0, 1, 1459])
    build = nb201_model_builder(C=4, N=1, ch_in=3, n_classes=5)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    seen = []
    first = score_candidates(candidates, build, batch(), "naswot", "cpu", on_score=lambda i, c, s: seen.append(i))
    assert torch.equal(torch.get_rng_state(), state)
    assert seen == [0, 1, 2]
    assert score_candidates(candidates, build, batch(), naswot, torch.device("cpu")) == first
    assert score_candidates(candidates, build, batch(), "naswot", "cpu", seed=1) != first


def test_all_none_cell_scores_do_not_break_selection():
    # a cell of `none` ops outputs zeros: a singular kernel (-inf) and no input gradient (NaN)
    candidates = nb201_candidates([1651, 1])
    build = nb201_model_builder(C=4, N=1, ch_in=3, n_classes=5)
    scores = score_candidates(candidates, build, batch(), "naswot", "cpu")
    assert scores[0] == -math.inf and math.isfinite(scores[1])
    jc = score_candidates(candidates, build, batch(), "jacob_cov", "cpu")
    assert math.isnan(jc[0])
    records = [{"index": i, "metrics": {"score": v}} for i, v in enumerate(jc)]  # NaN first: never the best
    assert TrialLoop(None, 0, Budget(1), objective="score").best_of(records)["index"] == 1
