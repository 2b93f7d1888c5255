"""Bayesian optimization over architectures (NNI/Autokeras ``bayesian.py``), made robust and fast.

A Gaussian process whose kernel is an RBF over a Bourgain embedding of the edit-distance matrix; an upper
confidence bound acquisition (``mean +- beta * std``) maximized by simulated annealing over morphism
children of the observed networks. Differences from NNI, all deliberate:
- the pairwise distance matrix grows by one row per observation and distances are vectorized;
- new points are embedded with the same landmark sets as the fitted ones, so train and test kernels agree
  (NNI scored candidates with exp(-d^2) on raw distances against an embedding-based training kernel);
- a failed Cholesky factorization is retried with growing jitter, then falls back to the prior, instead
  of dropping the data (NNI) or raising; one observation works (NNI's kernel was the 0 distance there);
- metrics are standardized before fitting, so ``beta`` means the same for accuracies and losses;
- annealing stops after ``max_candidates`` scored children (NNI scored up to ~700, at 20-90 s a proposal);
- all randomness comes from a ``numpy.random.Generator``.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import math
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any, TypeVar

import numpy as np
from scipy.linalg import LinAlgError, cho_solve, cholesky

from archsearch.spaces.morphism.constants import BETA, COOLING, GP_ALPHA, KERNEL_LAMBDA, T_INIT, T_MIN
from archsearch.spaces.morphism.descriptor import NetworkDescriptor
from archsearch.spaces.morphism.graph import Graph
from archsearch.strategies.morphism.distance import (
    batch_edit_distances,
    bourgain_embed,
    bourgain_landmarks,
    edit_distance_matrix,
    stack_ids,
)
from archsearch.strategies.morphism.transformer import MorphismLimits, transform

OPTIMIZE_MODES = ("maximize", "minimize")
DEFAULT_MAX_CANDIDATES = 128


_Fn = TypeVar("_Fn", bound=Callable[..., Any])
_blas_controller: Any = None


def _one_blas_thread() -> AbstractContextManager:
    """The GP's matrices are small (n <= a few hundred), where one BLAS thread is fastest; worse, OpenBLAS
    threads on an oversubscribed machine are pathological (a 200x200 Cholesky took 43 ms with 2 threads
    and 0.14 ms with 1 on the 2-core dev VM). threadpoolctl comes with scikit-learn."""
    global _blas_controller
    if _blas_controller is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:  # pragma: no cover - scikit-learn depends on it
            return nullcontext()
        _blas_controller = ThreadpoolController()
    return _blas_controller.limit(limits=1, user_api="blas")


def _single_blas_thread(fn: _Fn) -> _Fn:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with _one_blas_thread():
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _sq_dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.maximum((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T, 0.0)


class IncrementalGaussianProcess:
    """GP regressor over NetworkDescriptors; ``fit`` adds observations (it is always incremental)."""

    def __init__(
        self,
        alpha: float = GP_ALPHA,
        kernel_lambda: float = KERNEL_LAMBDA,
        normalize_y: bool = True,
        max_jitter: float = 1.0,
        embedding_seed: int = 123,
    ) -> None:
        self.alpha = alpha
        self.kernel_lambda = kernel_lambda
        self.normalize_y = normalize_y
        self.max_jitter = max_jitter
        self.embedding_seed = embedding_seed
        self._x: list[NetworkDescriptor] = []
        self._stacked: tuple[np.ndarray, np.ndarray] | None = None
        self._y = np.zeros(0)
        self._distance_matrix = np.zeros((0, 0))
        self._kernel = np.zeros((0, 0))
        self.jitter = alpha  # the diagonal noise the last successful factorization needed
        self.prior_only = False  # True when even the largest jitter failed: predictions are the prior
        self._y_mean, self._y_scale = 0.0, 1.0

    @property
    def first_fitted(self) -> bool:
        return bool(self._x)

    @property
    def distance_matrix(self) -> np.ndarray:
        return self._distance_matrix

    @property
    def kernel_matrix(self) -> np.ndarray:
        return self._kernel

    @_single_blas_thread
    def fit(self, train_x: Sequence[NetworkDescriptor], train_y: Sequence[float]) -> IncrementalGaussianProcess:
        """Add observations; only the new rows of the distance matrix are computed."""
        new_x, new_y = list(train_x), np.asarray(train_y, dtype=np.float64).reshape(-1)
        if len(new_x) != len(new_y):
            raise ValueError(f"fit got {len(new_x)} architectures but {len(new_y)} metrics")
        if not np.all(np.isfinite(new_y)):
            raise ValueError(f"fit got a non-finite metric {new_y.tolist()}; report failed trials as failures")
        if not new_x:
            return self
        old = len(self._x)
        cross = batch_edit_distances(new_x, self._x, self.kernel_lambda, self._stacked_x() if old else None)
        within = edit_distance_matrix(new_x, kernel_lambda=self.kernel_lambda)
        matrix = np.zeros((old + len(new_x),) * 2)
        matrix[:old, :old] = self._distance_matrix
        matrix[old:, :old] = cross
        matrix[:old, old:] = cross.T
        matrix[old:, old:] = within
        self._distance_matrix = matrix
        self._x.extend(new_x)
        self._stacked = None
        self._y = np.concatenate([self._y, new_y])
        self._refit()
        return self

    first_fit = incremental_fit = fit  # NNI's names

    def _stacked_x(self) -> tuple[np.ndarray, np.ndarray]:
        if self._stacked is None:
            self._stacked = stack_ids(self._x)
        return self._stacked

    def _refit(self) -> None:
        n = len(self._x)
        self._landmarks = bourgain_landmarks(n, self.embedding_seed)
        self._embedding = bourgain_embed(self._distance_matrix, self._landmarks)
        self._gamma = 1.0 / self._embedding.shape[1]  # sklearn rbf_kernel's default, as NNI used
        self._kernel = np.exp(-self._gamma * _sq_dists(self._embedding, self._embedding))
        if self.normalize_y:
            self._y_mean = float(self._y.mean())
            spread = float(self._y.std())
            self._y_scale = spread if spread > 1e-12 else 1.0
        target = (self._y - self._y_mean) / self._y_scale
        jitter = self.alpha
        while True:
            try:
                lower = cholesky(self._kernel + jitter * np.eye(n), lower=True)
                if np.all(np.isfinite(lower)):
                    break
            except LinAlgError:
                pass
            jitter = max(jitter * 100.0, 1e-8)
            if jitter > self.max_jitter:
                self.prior_only = True  # never hang and never fail: predict the prior until more data comes
                return
        self.prior_only = False
        self.jitter = jitter
        self._alpha_vector = cho_solve((lower, True), target)
        self._kernel_inv = cho_solve((lower, True), np.eye(n))

    @_single_blas_thread
    def predict(self, train_x: Sequence[NetworkDescriptor]) -> tuple[np.ndarray, np.ndarray]:
        """Predicted mean and standard deviation for each descriptor."""
        train_x = list(train_x)
        if not self._x or self.prior_only:
            return np.full(len(train_x), self._y_mean), np.full(len(train_x), self._y_scale)
        distances = batch_edit_distances(train_x, self._x, self.kernel_lambda, self._stacked_x())
        return self.predict_from_distances(distances)

    def predict_from_distances(self, distances: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Prediction from the (M, n_observed) edit distances of M new architectures."""
        if not self._x or self.prior_only:
            m = len(distances)
            return np.full(m, self._y_mean), np.full(m, self._y_scale)
        embedded = bourgain_embed(distances, self._landmarks)
        k_trans = np.exp(-self._gamma * _sq_dists(embedded, self._embedding))
        mean = k_trans @ self._alpha_vector
        variance = 1.0 - np.einsum("ij,ij->i", k_trans @ self._kernel_inv, k_trans)
        std = np.sqrt(np.maximum(variance, 0.0))
        return mean * self._y_scale + self._y_mean, std * self._y_scale


class SearchTree:
    """Father -> children links between model ids (NNI's SearchTree)."""

    def __init__(self) -> None:
        self.root: int | None = None
        self.adj_list: dict[int, list[int]] = {}

    def add_child(self, u: int, v: int) -> None:
        """Record v as a child of u; u == -1 marks v as the root (a seed network)."""
        if u == -1:
            self.root = v
        else:
            children = self.adj_list.setdefault(u, [])  # a father may be reported after its child
            if v not in children:
                children.append(v)
        self.adj_list.setdefault(v, [])

    def get_dict(self, u: int | None = None) -> dict:
        u = self.root if u is None else u
        return {"name": u, "children": [self.get_dict(v) for v in self.adj_list.get(u, [])]}


class BayesianOptimizer:
    """Proposes the next architecture: the morphism child of an observed model with the best acquisition.

    ``fit`` observed graphs (or descriptors) with their metrics; ``generate`` returns ``(graph, father_id)``
    where ``graph`` is an unweighted copy of the father with the new morphisms applied and recorded in its
    ``operation_history`` (replay them on the weighted father with ``Graph.apply_operations``), or
    ``(None, None)`` when annealing found no architecture that is not already in ``descriptors``.
    """

    def __init__(
        self,
        t_min: float = T_MIN,
        optimize_mode: str = "maximize",
        beta: float = BETA,
        *,
        t_init: float = T_INIT,
        cooling: float = COOLING,
        limits: MorphismLimits | None = None,
        max_candidates: int = DEFAULT_MAX_CANDIDATES,
        kernel_lambda: float = KERNEL_LAMBDA,
        rng: np.random.Generator | None = None,
        gpr: IncrementalGaussianProcess | None = None,
    ) -> None:
        if optimize_mode not in OPTIMIZE_MODES:
            raise ValueError(f"optimize_mode must be 'maximize' or 'minimize', got {optimize_mode!r}")
        if not 0 < t_min < t_init:
            raise ValueError(f"need 0 < t_min < t_init, got t_min={t_min}, t_init={t_init}")
        if not 0 < cooling < 1:
            raise ValueError(f"cooling must be in (0, 1), got {cooling}")
        if max_candidates < 1:
            raise ValueError(f"max_candidates must be >= 1, got {max_candidates}")
        self.t_min, self.t_init, self.cooling = t_min, t_init, cooling
        self.optimize_mode = optimize_mode
        self.beta = beta
        self.limits = limits or MorphismLimits()
        self.max_candidates = max_candidates
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self.gpr = gpr or IncrementalGaussianProcess(kernel_lambda=kernel_lambda)
        self.search_tree = SearchTree()
        self._models: dict[int, tuple[float, Graph]] = {}
        self._observed_keys: set = set()
        self.last_n_scored = 0  # children scored by the last generate(), for benchmarks and logs

    @property
    def _sign(self) -> float:
        return 1.0 if self.optimize_mode == "maximize" else -1.0

    def fit(
        self,
        x_queue: Sequence[Graph | NetworkDescriptor],
        y_queue: Sequence[float],
        model_ids: Sequence[int] | None = None,
    ) -> None:
        """Add observations. Graphs (with ``model_ids``, or numbered in order) also become starting points
        of the annealing; bare descriptors (NNI's API) only inform the GP."""
        descriptors = []
        for index, (item, metric) in enumerate(zip(x_queue, y_queue)):
            if isinstance(item, Graph):
                model_id = model_ids[index] if model_ids is not None else len(self._models)
                start = item.copy()
                start.clear_weights()
                start.clear_operation_history()
                self._models[model_id] = (float(metric), start)
                descriptor = start.extract_descriptor()
            else:
                descriptor = item
            self._observed_keys.add(descriptor.key)
            descriptors.append(descriptor)
        self.gpr.fit(descriptors, y_queue)

    def add_child(self, father_id: int, model_id: int) -> None:
        self.search_tree.add_child(father_id, model_id)

    def acq(self, graph: Graph) -> float:
        """Upper (maximize) or lower (minimize) confidence bound of one graph."""
        mean, std = self.gpr.predict([graph.extract_descriptor()])
        return float(mean[0] + self._sign * self.beta * std[0])

    def _acq_scores(self, descriptors: list[NetworkDescriptor]) -> np.ndarray:
        """Acquisition in 'higher is better' units for both modes."""
        mean, std = self.gpr.predict(descriptors)
        return self._sign * mean + self.beta * std

    @_single_blas_thread
    def generate(self, descriptors: Sequence[NetworkDescriptor] = ()) -> tuple[Graph | None, int | None]:
        seen = {d.key for d in descriptors} | self._observed_keys
        counter = itertools.count()
        queue = [
            (-self._sign * metric, next(counter), model_id, graph)
            for model_id, (metric, graph) in sorted(self._models.items())
        ]
        heapq.heapify(queue)
        best_score, best_graph, best_father = -math.inf, None, None
        temperature, scored = self.t_init, 0
        while queue and temperature > self.t_min and scored < self.max_candidates:
            negative_score, _, father_id, graph = heapq.heappop(queue)
            # NNI's acceptance: always take the first element, then the better ones more often while hot.
            exponent = min((-negative_score - best_score) / temperature, 1.0)
            if math.exp(exponent) >= self.rng.uniform():
                fresh = []
                for child in transform(graph, self.limits, self.rng):
                    descriptor = child.extract_descriptor()
                    if descriptor.key not in seen:
                        seen.add(descriptor.key)
                        fresh.append((child, descriptor))
                if fresh:
                    scores = self._acq_scores([d for _, d in fresh])
                    scored += len(fresh)
                    for (child, _), score in zip(fresh, scores):
                        heapq.heappush(queue, (-float(score), next(counter), father_id, child))
                        if score > best_score:
                            best_score, best_graph, best_father = float(score), child, father_id
            temperature *= self.cooling
        self.last_n_scored = scored
        if best_graph is None:
            return None, None
        return best_graph, best_father
