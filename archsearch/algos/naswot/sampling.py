"""Candidates for NASWOT: sample architectures, build each at initialization, score it on one batch.

A `Candidate` names one architecture of a space: a NAS-Bench-201 cell string (plus its benchmark index)
or a DARTS genotype string (plus the cell templates ModelDescBuilder stamps into the network). The
searcher samples candidates, scores them with `score_candidates` and keeps the best.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from archsearch.algos.naswot.proxies import LossFn, ProxyFn, get_proxy
from archsearch.common.errors import ArchitectureError
from archsearch.nas.genotype import CellTemplate, random_templates, templates_to_genotype
from archsearch.nas.model import Model
from archsearch.nas.ops import DARTS_PRIMITIVES
from archsearch.spaces import nasbench201 as nb201

Rng = np.random.Generator | torch.Generator

# The DARTS cell space without `none`, as DARTS' own random-search baseline samples it.
DARTS_SAMPLE_OPS: tuple[str, ...] = tuple(op for op in DARTS_PRIMITIVES if op != "none")
DARTS_SPACE_NAME = "darts"


@dataclass
class Candidate:
    space: str  # "nasbench201" or "darts"
    name: str  # the architecture's string: how logs, results and benchmark tables name it
    index: int | None = None  # NAS-Bench-201 benchmark index
    templates: dict[str, CellTemplate] | None = None  # DARTS: {"regular": ..., "reduction": ...}


# ---- random numbers from either kind of generator -----------------------------------------------


def _below(rng: Rng, high: int) -> int:
    """A uniform int in 0..high-1."""
    if isinstance(rng, torch.Generator):
        return int(torch.randint(high, (), generator=rng))
    return int(rng.integers(high))


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


# ---- DARTS ---------------------------------------------------------------------------------------


def random_darts_templates(
    rng: Rng, n_nodes: int = 4, ops: Sequence[str] = DARTS_SAMPLE_OPS
) -> dict[str, CellTemplate]:
    """A random DARTS genotype (the framework's sampler, seeded from `rng`)."""
    _check_rng(rng)
    return random_templates(random.Random(_below(rng, 2**62)), n_nodes, ops)


def sample_darts(n: int, rng: Rng, n_nodes: int = 4, ops: Sequence[str] = DARTS_SAMPLE_OPS) -> list[Candidate]:
    """n distinct random DARTS genotypes (the space is ~1e18 cells; duplicates are redrawn)."""
    if n <= 0:
        raise ArchitectureError(f"DARTS sample size {n} must be positive")
    candidates: dict[str, Candidate] = {}
    for _ in range(100 * n):  # a bound for tiny custom spaces that hold fewer than n genotypes
        templates = random_darts_templates(rng, n_nodes, ops)
        name = str(templates_to_genotype(templates))
        candidates.setdefault(name, Candidate(DARTS_SPACE_NAME, name, templates=templates))
        if len(candidates) == n:
            return list(candidates.values())
    raise ArchitectureError(f"could not draw {n} distinct DARTS genotypes from ops {list(ops)}; lower n_samples")


def darts_model_builder(conf_model_desc: Mapping, conf_dataset: Mapping) -> Callable[[Candidate], nn.Module]:
    """A `build_model` for DARTS candidates through the shared ModelDescBuilder (same conf keys)."""
    from archsearch.nas.model_desc_builder import ModelDescBuilder

    def build(candidate: Candidate) -> nn.Module:
        if candidate.templates is None:
            raise ArchitectureError(f"candidate {candidate.name[:60]!r} has no cell templates to build")
        builder = ModelDescBuilder(conf_model_desc, conf_dataset, templates=candidate.templates)
        return Model(builder.build(meta={"genotype": candidate.name}))

    return build


# ---- scoring -------------------------------------------------------------------------------------


def score_candidates(
    candidates: Sequence[Candidate],
    build_model: Callable[[Candidate], nn.Module],
    batch: tuple[torch.Tensor, torch.Tensor],
    proxy: str | ProxyFn,
    device: str | torch.device,
    seed: int = 0,
    loss_fn: LossFn = F.cross_entropy,
    on_score: Callable[[int, Candidate, float], None] | None = None,
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
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)
            model = build_model(candidate)
        model.to(device)
        try:
            score = float(fn(model, inputs, targets, loss_fn))
        finally:
            del model  # free it before the next one is built
        scores.append(score)
        if on_score is not None:
            on_score(i, candidate, score)
    return scores


def best_candidate(candidates: Sequence[Candidate], scores: Sequence[float]) -> tuple[int, Candidate]:
    """The highest-scoring candidate (NaN scores ignored, as the original's np.nanargmax)."""
    values = np.asarray(scores, dtype=float)
    if len(values) != len(candidates):
        raise ValueError(f"{len(candidates)} candidates but {len(values)} scores")
    if not len(values) or np.isnan(values).all():
        raise ArchitectureError("no candidate has a score: every proxy value was NaN (or nothing was sampled)")
    index = int(np.nanargmax(values))
    return index, candidates[index]


__all__ = [
    "Candidate",
    "DARTS_SAMPLE_OPS",
    "nb201_candidates",
    "sample_nb201",
    "nb201_model_builder",
    "random_darts_templates",
    "sample_darts",
    "darts_model_builder",
    "score_candidates",
    "best_candidate",
]
