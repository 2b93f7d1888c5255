"""Edit distance between architectures (NNI/Autokeras ``bayesian.py``) and its vectorized form.

``edit_distance(x, y) = layers_distance(x.layers, y.layers) + lambda * skip_connections_distance(...)``:
a Levenshtein distance over main-chain layers whose substitution cost is ``layer_distance``, plus an
optimal matching of skip connections. The scalar functions are the reference; ``batch_edit_distances``
computes many against many at once (substitution costs are a table lookup and each DP row is a running
minimum over all pairs), which is what keeps proposals fast.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from scipy.optimize import linear_sum_assignment

from archsearch.spaces.morphism.constants import KERNEL_LAMBDA
from archsearch.spaces.morphism.descriptor import LayerCode, NetworkDescriptor, SkipConnection, sort_skips


def attribute_difference(att_diff: Sequence[tuple[float, float]]) -> float:
    total = 0.0
    for a, b in att_diff:
        if max(a, b) != 0:
            total += abs(a - b) / max(a, b)
    return total / len(att_diff)


def layer_distance(a: LayerCode, b: LayerCode) -> float:
    """1 for different layer types, else the mean relative difference of the compared attributes."""
    if a[0] != b[0]:
        return 1.0
    return attribute_difference(list(zip(a[1:], b[1:])))


def layers_distance(list_a: Sequence[LayerCode], list_b: Sequence[LayerCode]) -> float:
    """Levenshtein distance with insert/delete cost 1 and substitution cost ``layer_distance``."""
    prev = [float(j) for j in range(len(list_b) + 1)]
    for i, a in enumerate(list_a, start=1):
        cur = [float(i)]
        for j, b in enumerate(list_b, start=1):
            cur.append(min(cur[j - 1] + 1, prev[j] + 1, prev[j - 1] + layer_distance(a, b)))
        prev = cur
    return prev[-1]


def skip_connection_distance(a: SkipConnection, b: SkipConnection) -> float:
    if a[2] != b[2]:
        return 1.0
    len_a, len_b = abs(a[1] - a[0]), abs(b[1] - b[0])
    denominator = max(a[0], b[0]) + max(len_a, len_b)
    return (abs(a[0] - b[0]) + abs(len_a - len_b)) / denominator if denominator else 0.0


@lru_cache(maxsize=65536)
def _skip_keys_distance(list_a: tuple[SkipConnection, ...], list_b: tuple[SkipConnection, ...]) -> float:
    if not list_a or not list_b:
        return float(abs(len(list_a) - len(list_b)))
    matrix = np.array([[skip_connection_distance(a, b) for b in list_b] for a in list_a])
    matrix = matrix.reshape(len(list_a), -1)
    rows, cols = linear_sum_assignment(matrix)
    return float(matrix[rows, cols].sum()) + abs(len(list_a) - len(list_b))


def skip_connections_distance(list_a: Sequence[SkipConnection], list_b: Sequence[SkipConnection]) -> float:
    """Cost of the best one-to-one matching of skip connections plus 1 per unmatched one."""
    return _skip_keys_distance(sort_skips(list_a), sort_skips(list_b))


def edit_distance(x: NetworkDescriptor, y: NetworkDescriptor, kernel_lambda: float = KERNEL_LAMBDA) -> float:
    return layers_distance(x.layers, y.layers) + kernel_lambda * skip_connections_distance(
        x.skip_connections, y.skip_connections
    )


# ------------------------------------------------------------------------------------------ vectorized
class _LayerVocabulary:
    """Every distinct layer code seen so far gets a small integer id, and ``costs[i, j]`` is
    ``layer_distance`` between codes i and j. Architectures share few distinct codes, so a substitution
    cost lookup becomes one integer gather. Id 0 is padding (cost 1 to everything). Append-only, so ids
    stay valid for the life of the process; it holds no randomness."""

    def __init__(self) -> None:
        self.index: dict[LayerCode, int] = {}
        self.types: list[str] = [""]
        self.attrs = np.zeros((1, 3))
        self.costs = np.ones((1, 1))

    def ids(self, layers: Sequence[LayerCode]) -> np.ndarray:
        new = [code for code in dict.fromkeys(layers) if code not in self.index]
        if new:
            for code in new:
                self.index[code] = len(self.types)
                self.types.append(code[0])
            self.attrs = np.vstack([self.attrs, np.array([code[1:] for code in new], dtype=np.float64)])
            self._recompute_costs()
        return np.fromiter((self.index[code] for code in layers), dtype=np.intp, count=len(layers))

    def _recompute_costs(self) -> None:
        types = np.array(self.types)
        a, b = self.attrs[:, None, :], self.attrs[None, :, :]
        larger = np.maximum(a, b)
        with np.errstate(divide="ignore", invalid="ignore"):
            relative = np.where(larger > 0, np.abs(a - b) / larger, 0.0).mean(axis=-1)
        costs = np.where(types[:, None] == types[None, :], relative, 1.0)
        costs[0, :] = costs[:, 0] = 1.0
        self.costs = costs


_VOCABULARY = _LayerVocabulary()


def layer_ids(descriptor: NetworkDescriptor) -> np.ndarray:
    if descriptor._ids is None or len(descriptor._ids) != descriptor.n_layers:
        descriptor._ids = _VOCABULARY.ids(descriptor.layers)
    return descriptor._ids


def stack_ids(descriptors: Sequence[NetworkDescriptor]) -> tuple[np.ndarray, np.ndarray]:
    """Layer ids padded with 0 into (N, L_max), and the lengths (N,)."""
    lengths = np.array([d.n_layers for d in descriptors], dtype=np.intp)
    out = np.zeros((len(descriptors), int(lengths.max()) if len(lengths) else 0), dtype=np.intp)
    for i, d in enumerate(descriptors):
        out[i, : d.n_layers] = layer_ids(d)
    return out, lengths


def batch_layers_distance(xs: Sequence[NetworkDescriptor], others: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """(len(xs), N) ``layers_distance`` between each of ``xs`` and each stacked other.

    Row i of the DP is D_i[j] = min_k<=j (g[k] + j - k) with g[j] = min(D_{i-1}[j] + 1,
    D_{i-1}[j-1] + cost[i-1, j-1]); the min over k is a running minimum of g - j, so each row is a few
    numpy operations over all pairs at once."""
    other_ids, lengths = others
    n, width = other_ids.shape
    x_ids, x_lengths = stack_ids(xs)
    result = np.zeros((len(xs), n))
    result[x_lengths == 0] = lengths
    steps = np.arange(width + 1, dtype=np.float64)
    row = np.broadcast_to(steps, (len(xs), n, width + 1)).copy()
    g = np.empty_like(row)
    costs = _VOCABULARY.costs
    for i in range(1, x_ids.shape[1] + 1):
        substitution = costs[x_ids[:, i - 1][:, None, None], other_ids[None, :, :]]
        g[..., 0] = i
        np.minimum(row[..., 1:] + 1.0, row[..., :-1] + substitution, out=g[..., 1:])
        row = np.minimum.accumulate(g - steps, axis=-1) + steps
        finished = np.flatnonzero(x_lengths == i)
        if len(finished):
            result[finished] = row[finished][:, np.arange(n), lengths]
    return result


def batch_edit_distances(
    xs: Sequence[NetworkDescriptor],
    others: Sequence[NetworkDescriptor],
    kernel_lambda: float = KERNEL_LAMBDA,
    stacked: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """(len(xs), len(others)) edit distances; pass ``stacked=stack_ids(others)`` to reuse the padding."""
    if not xs or not others:
        return np.zeros((len(xs), len(others)))
    result = batch_layers_distance(xs, stacked if stacked is not None else stack_ids(others))
    if kernel_lambda:
        # Architectures share few distinct skip sets: compute one row per distinct set on each side.
        other_keys: dict[tuple, list[int]] = {}
        for j, y in enumerate(others):
            other_keys.setdefault(y.skip_key, []).append(j)
        rows: dict[tuple, np.ndarray] = {}
        for i, x in enumerate(xs):
            if x.skip_key not in rows:
                row = np.empty(len(others))
                for key, columns in other_keys.items():
                    row[columns] = _skip_keys_distance(x.skip_key, key)
                rows[x.skip_key] = kernel_lambda * row
            result[i] += rows[x.skip_key]
    return result


def edit_distance_matrix(
    train_x: Sequence[NetworkDescriptor],
    train_y: Sequence[NetworkDescriptor] | None = None,
    kernel_lambda: float = KERNEL_LAMBDA,
) -> np.ndarray:
    """Pairwise edit distances (symmetric with a zero diagonal when ``train_y`` is None)."""
    matrix = batch_edit_distances(list(train_x), list(train_x if train_y is None else train_y), kernel_lambda)
    if train_y is None:
        matrix = np.minimum(matrix, matrix.T)  # exact symmetry despite float summation order
        np.fill_diagonal(matrix, 0.0)
    return matrix


def bourgain_landmarks(n: int, seed: int = 123) -> list[np.ndarray]:
    """Random landmark sets for a Bourgain embedding of n points: for i in 0..k sets of size 2**i, each
    repeated ceil(ln n) times (k = ceil(log2 n) - 1), drawn with replacement as NNI does, with a fixed seed
    so refits are deterministic; at least one set, so a single observation embeds too (NNI returned the raw
    0 distance as its kernel there)."""
    rng = np.random.default_rng(seed)
    k = max(int(np.ceil(np.log2(n) - 1)), 0) if n > 1 else 0
    repeats = max(int(np.ceil(np.log(n))), 1) if n > 1 else 1
    return [rng.choice(n, size=2**i) for i in range(k + 1) for _ in range(repeats)]


def bourgain_embed(distances: np.ndarray, landmarks: Sequence[np.ndarray]) -> np.ndarray:
    """Coordinates = distance to the nearest member of each landmark set; ``distances`` is (M, n) against
    the n points the landmarks index, so new points embed consistently with the fitted ones."""
    distances = np.atleast_2d(distances)
    return np.stack([distances[:, s].min(axis=1) for s in landmarks], axis=1)
