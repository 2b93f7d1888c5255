"""Edit distance, the Gaussian process and the Bayesian optimizer."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.linalg import LinAlgError

from archsearch.strategies.morphism import (
    BayesianOptimizer,
    CnnGenerator,
    IncrementalGaussianProcess,
    MlpGenerator,
    MorphismLimits,
    NetworkDescriptor,
    edit_distance,
    transform,
)
from archsearch.strategies.morphism import bayesian as bayesian_module
from archsearch.strategies.morphism.distance import (
    batch_edit_distances,
    edit_distance_matrix,
    layer_distance,
    layers_distance,
    skip_connections_distance,
)


def random_family(n: int, seed: int = 0) -> list:
    """Distinct graphs: two seeds and a random tree of their morphism children."""
    rng = np.random.default_rng(seed)
    graphs = [CnnGenerator(10, (16, 16, 3)).generate(3, 8), MlpGenerator(3, (10,)).generate(2, 6)]
    seen = {g.extract_descriptor().key for g in graphs}
    while len(graphs) < n:
        for child in transform(graphs[int(rng.integers(len(graphs)))], rng=rng):
            if child.extract_descriptor().key not in seen:
                seen.add(child.extract_descriptor().key)
                graphs.append(child)
                break
    return graphs


@pytest.fixture(scope="module")
def family():
    return random_family(24)


# ------------------------------------------------------------------------------------------- distance
def test_edit_distance_is_zero_for_identical_graphs_and_symmetric(family):
    descriptors = [g.extract_descriptor() for g in family]
    for a in descriptors[:8]:
        assert edit_distance(a, a) == 0.0
        for b in descriptors[:8]:
            assert edit_distance(a, b) == pytest.approx(edit_distance(b, a))
    copy = family[3].copy().extract_descriptor()
    assert edit_distance(copy, descriptors[3]) == 0.0 and copy.key == descriptors[3].key
    assert edit_distance(descriptors[0], descriptors[1]) > 0


def test_vectorized_distances_match_the_scalar_reference(family):
    descriptors = [g.extract_descriptor() for g in family]
    reference = np.array([[edit_distance(a, b) for b in descriptors] for a in descriptors])
    np.testing.assert_allclose(batch_edit_distances(descriptors, descriptors), reference, atol=1e-9)
    matrix = edit_distance_matrix(descriptors)
    np.testing.assert_array_equal(matrix, matrix.T)
    assert np.all(np.diag(matrix) == 0)


def test_layer_and_skip_distances_follow_nni():
    conv_a, conv_b = ("StubConv2d", 64, 3, 1), ("StubConv2d", 32, 3, 1)
    assert layer_distance(conv_a, conv_b) == pytest.approx((32 / 64) / 3)
    assert layer_distance(conv_a, ("StubReLU", 0, 0, 0)) == 1.0
    assert layers_distance([conv_a], [conv_a, ("StubReLU", 0, 0, 0)]) == 1.0
    assert skip_connections_distance([(1, 4, "add")], [(1, 4, "concat")]) == 1.0
    assert skip_connections_distance([(1, 4, "add")], []) == 1.0
    assert skip_connections_distance([(1, 4, "add"), (2, 5, "add")], [(2, 5, "add"), (1, 4, "add")]) == 0.0


# ------------------------------------------------------------------------------------------------- GP
def test_gp_variance_is_lower_at_observed_points(family):
    descriptors = [g.extract_descriptor() for g in family]
    gp = IncrementalGaussianProcess().fit(descriptors[:12], np.linspace(0.1, 0.9, 12))
    _, std_seen = gp.predict(descriptors[:12])
    far = NetworkDescriptor.from_layers(MlpGenerator(2, (3,)).generate(9, 3).layer_list, [])
    _, std_far = gp.predict([far])
    assert std_seen.max() < std_far[0]
    mean, _ = gp.predict(descriptors[:12])
    np.testing.assert_allclose(mean, np.linspace(0.1, 0.9, 12), atol=0.05)


def test_gp_fits_incrementally_like_a_batch(family):
    descriptors = [g.extract_descriptor() for g in family[:10]]
    metrics = np.arange(10) / 10
    batch = IncrementalGaussianProcess().fit(descriptors, metrics)
    incremental = IncrementalGaussianProcess()
    for d, m in zip(descriptors, metrics):
        incremental.fit([d], [m])
    np.testing.assert_allclose(incremental.distance_matrix, batch.distance_matrix, atol=1e-12)
    probe = [g.extract_descriptor() for g in family[10:14]]
    np.testing.assert_allclose(incremental.predict(probe)[0], batch.predict(probe)[0], atol=1e-9)


def test_gp_with_one_observation(family):
    d = family[0].extract_descriptor()
    gp = IncrementalGaussianProcess().fit([d], [0.7])
    mean, std = gp.predict([d, family[5].extract_descriptor()])
    assert mean[0] == pytest.approx(0.7) and std[0] < 1e-3
    assert np.all(np.isfinite(mean)) and std[1] > std[0]


def test_gp_with_a_duplicated_observation(family):
    d = family[0].extract_descriptor()
    gp = IncrementalGaussianProcess().fit([d, d, family[1].extract_descriptor()], [0.5, 0.7, 0.2])
    mean, std = gp.predict([d])
    assert mean[0] == pytest.approx(0.6, abs=1e-3) and np.isfinite(std[0])
    assert not gp.prior_only


def test_gp_retries_a_failed_cholesky_with_more_jitter(family, monkeypatch):
    real, calls = bayesian_module.cholesky, []

    def flaky(matrix, lower):
        calls.append(1)
        if len(calls) <= 2:
            raise LinAlgError("not positive definite")
        return real(matrix, lower=lower)

    monkeypatch.setattr(bayesian_module, "cholesky", flaky)
    gp = IncrementalGaussianProcess().fit([g.extract_descriptor() for g in family[:5]], [1, 2, 3, 4, 5])
    assert len(calls) == 3 and gp.jitter > gp.alpha and not gp.prior_only
    assert np.all(np.isfinite(gp.predict([family[6].extract_descriptor()])[0]))


def test_gp_falls_back_to_the_prior_when_factorization_keeps_failing(family, monkeypatch):
    def broken(matrix, lower):
        raise LinAlgError("not positive definite")

    monkeypatch.setattr(bayesian_module, "cholesky", broken)
    gp = IncrementalGaussianProcess().fit([g.extract_descriptor() for g in family[:4]], [1.0, 2.0, 3.0, 4.0])
    assert gp.prior_only
    mean, std = gp.predict([family[7].extract_descriptor()])
    assert mean[0] == pytest.approx(2.5) and std[0] == pytest.approx(np.std([1.0, 2.0, 3.0, 4.0]))


def test_gp_rejects_non_finite_metrics(family):
    with pytest.raises(ValueError, match="non-finite"):
        IncrementalGaussianProcess().fit([family[0].extract_descriptor()], [float("nan")])


# ---------------------------------------------------------------------------------------- optimizer
@pytest.mark.parametrize("mode", ["maximize", "minimize"])
def test_optimizer_proposes_an_unseen_child_of_an_observed_model(family, mode):
    optimizer = BayesianOptimizer(
        optimize_mode=mode, rng=np.random.default_rng(0), max_candidates=40, limits=MorphismLimits(n_neighbours=4)
    )
    cnns = [g for g in family if len(g.input_shape) == 3][:6]
    optimizer.fit(cnns, [0.1 * i for i in range(len(cnns))], model_ids=list(range(len(cnns))))
    child, father = optimizer.generate([g.extract_descriptor() for g in cnns])
    assert father in range(len(cnns)) and child is not None
    assert child.extract_descriptor().key not in {g.extract_descriptor().key for g in cnns}
    assert not child.has_weights() and child.operation_history  # only the new morphisms
    replay = cnns[father].copy()
    replay.apply_operations(child.operation_history)
    assert replay.extract_descriptor() == child.extract_descriptor()
    assert 0 < optimizer.last_n_scored <= 40 + 4


def test_optimizer_is_reproducible(family):
    def run():
        optimizer = BayesianOptimizer(rng=np.random.default_rng(7), max_candidates=30)
        optimizer.fit(family[:6], [0.3, 0.1, 0.5, 0.2, 0.4, 0.6])
        child, father = optimizer.generate()
        return father, child.operation_history

    assert run() == run()


def test_optimizer_arguments_are_checked():
    with pytest.raises(ValueError, match="optimize_mode"):
        BayesianOptimizer(optimize_mode="max")
    with pytest.raises(ValueError, match="t_min"):
        BayesianOptimizer(t_min=2.0)
    assert BayesianOptimizer().generate() == (None, None)  # nothing observed: nothing to morph
