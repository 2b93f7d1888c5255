"""Scoring candidates at initialization: `score_candidates` (what the `proxy` trial evaluator calls for any
space), and NAS-Bench-201 candidates for scripts/bench_naswot.py, which scores cells outside a search.

A `Candidate` names one NAS-Bench-201 cell: its string and its benchmark index. Sampling inside a search
is the space's own (`SearchSpace.sample`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from archsearch.common.errors import ArchitectureError
from archsearch.model.network import Model
from archsearch.spaces import nasbench201 as nb201
from archsearch.strategies.naswot.proxies import LossFn, ProxyFn, get_proxy
from archsearch.strategies.naswot.zero_cost import DEFAULT_OPTIONS, ProxyOptions, measure

Rng = np.random.Generator | torch.Generator


@dataclass
class Candidate:
    space: str  # "nasbench201"
    name: str  # the cell string: how logs, results and benchmark tables name it
    index: int | None = None  # NAS-Bench-201 benchmark index


# ---- random numbers from either kind of generator -----------------------------------------------


def _sample_without_replacement(rng: Rng, total: int, n: int) -> list[int]:
    if isinstance(rng, torch.Generator):
        return torch.randperm(total, generator=rng)[:n].tolist()
    return rng.choice(total, size=n, replace=False).tolist()


def _check_rng(rng: object) -> None:
    if not isinstance(rng, (np.random.Generator, torch.Generator)):
        raise TypeError(f"rng must be a numpy.random.Generator or torch.Generator, got {type(rng).__name__}")


# ---- NAS-Bench-201 -------------------------------------------------------------------------------


def nb201_candidates(indices: Iterable[int] | None = None) -> list[Candidate]:
    """Candidates for the given benchmark indices (all 15,625 when None), in the given order."""
    indices = range(nb201.N_CELLS) if indices is None else indices
    return [Candidate(nb201.SPACE_NAME, nb201.index_to_arch(i), index=int(i)) for i in indices]


def sample_nb201(n: int, rng: Rng) -> list[Candidate]:
    """n distinct NAS-Bench-201 cells, uniformly at random.

    The NASWOT code draws with replacement (np.random.randint); without replacement no candidate is
    scored twice, which matters little for n=100 out of 15,625 but is what a user expects.
    """
    _check_rng(rng)
    if not 0 < n <= nb201.N_CELLS:
        raise ArchitectureError(f"NAS-Bench-201 sample size {n} must be in 1..{nb201.N_CELLS}")
    return nb201_candidates(_sample_without_replacement(rng, nb201.N_CELLS, n))


def nb201_model_builder(
    C: int = 16, N: int = 5, ch_in: int = 3, n_classes: int = 10
) -> Callable[[Candidate], nn.Module]:
    """A `build_model` for `score_candidates`: the benchmark's network for a NAS-Bench-201 candidate."""

    def build(candidate: Candidate) -> nn.Module:
        return Model(nb201.arch_to_desc(candidate.name, C=C, N=N, ch_in=ch_in, n_classes=n_classes))

    return build


# ---- scoring -------------------------------------------------------------------------------------


def score_candidates(
    candidates: Sequence[Any],
    build_model: Callable[[Any], nn.Module],
    batch: tuple[torch.Tensor, torch.Tensor],
    proxy: str | ProxyFn,
    device: str | torch.device,
    seed: int = 0,
    loss_fn: LossFn = F.cross_entropy,
    on_score: Callable[[int, Any, float], None] | None = None,
) -> list[float]:
    """Score every candidate at initialization on the same batch; one model in memory at a time.

    Each model is built on the CPU right after seeding the CPU generator with `seed` (inside a forked
    RNG state, so the caller's random stream is untouched), then moved to `device`: the same candidate
    gets the same initial weights on every device. `on_score(i, candidate, score)` is called after each.
    """
    fn = get_proxy(proxy)
    device = torch.device(device)
    inputs, targets = batch[0].to(device), batch[1].to(device)
    scores: list[float] = []
    for i, candidate in enumerate(candidates):
        model = build_seeded(build_model, candidate, seed, device)
        try:
            score = float(fn(model, inputs, targets, loss_fn))
        finally:
            del model  # free it before the next one is built
        scores.append(score)
        if on_score is not None:
            on_score(i, candidate, score)
    return scores


def build_seeded(build_model: Callable[[Any], nn.Module], candidate: Any, seed: int, device: torch.device) -> nn.Module:
    """The candidate's network built on the CPU right after seeding the CPU generator with `seed` (inside a
    forked RNG state: the caller's stream is untouched), then moved to `device`."""
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        model = build_model(candidate)
    return model.to(device)


def measure_candidates(
    candidates: Sequence[Any],
    build_model: Callable[[Any], nn.Module],
    batch: tuple[torch.Tensor, torch.Tensor],
    names: Sequence[str],
    device: str | torch.device,
    seed: int = 0,
    loss_fn: LossFn = F.cross_entropy,
    options: ProxyOptions = DEFAULT_OPTIONS,
) -> list[dict[str, float]]:
    """Several proxies of every candidate, {name: score} each, from shared passes (zero_cost.measure); each
    network is built as in `score_candidates`, so a proxy scores it the same alone or among others."""
    device = torch.device(device)
    inputs, targets = batch[0].to(device), batch[1].to(device)
    out = []
    for candidate in candidates:
        model = build_seeded(build_model, candidate, seed, device)
        try:
            out.append(measure(model, inputs, targets, loss_fn, names, options))
        finally:
            del model
    return out


__all__ = [
    "Candidate",
    "nb201_candidates",
    "sample_nb201",
    "nb201_model_builder",
    "score_candidates",
    "measure_candidates",
    "build_seeded",
]
