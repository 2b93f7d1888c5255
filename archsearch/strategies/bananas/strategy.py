"""BANANAS (White, Neiswanger, Savani, "BANANAS: Bayesian Optimization with Neural Architectures for Neural
Architecture Search", AAAI 2021) as `--algos bananas`, on any space that can sample, mutate and encode.

The loop of the paper (naszilla `bananas()`; NASLib's `Bananas` optimizer):
1. evaluate `num_init` random architectures (10);
2. fit the predictor, an ensemble of 5 feed-forward networks (predictor.py), on the path encodings (or the
   adjacency encoding) of the evaluated architectures and their objective;
3. acquisition optimization by mutation: `num_candidates` (100) unevaluated architectures, mutations of the
   best `num_arches_to_mutate` evaluated ones (further ones while those run out of new mutations);
4. independent Thompson sampling (ITS): per candidate, one draw from N(mean, std) of the members' predictions;
   the `k` (10) best draws are evaluated; back to 2 until the budget is spent.

On the trial loop a proposal must be a function of (rng, history): trial i >= num_init belongs to batch
b = (i - num_init) // k, starting at s = num_init + b k, and takes place i - s of that batch's ranking. The
ranking is computed from the finished trials with index < s alone, with every random number (the networks'
weights and batches, the mutations, the Thompson draws) from the seed of trial s (`trial_seed`), so the k
trials of a batch share one fit, and a resumed search recomputes exactly the ranking the killed one used
(the last fit is kept in memory only to save refitting for the batch's other k - 1 trials). Under Ray, a
batch whose earlier trials are still running is ranked from those that finished.

Several objectives (nas.search.objectives) as Archai's MO-BANANAS (Guerrero-Viu et al., "Bag of baselines
for multi-objective joint neural architecture search and hyperparameter optimization", 2021): the predictor
models the expensive objectives only (benchmark_top1, val_top1: what the evaluator gives); the cheap ones
(params, macs, predicted latency) are computed exactly for every candidate; the parents are the first
`mo_num_arches_to_mutate` evaluated trials in non-dominated-sorting order; candidates are ranked by
non-dominated sorting of (Thompson draws of the expensive, exact cheap), in random order within a front
(`mo_acquisition: pareto_rank`, Archai's), or picked greedily by the hypervolume each adds to the front of
the evaluated trials and those already picked (`hypervolume`). A candidate that breaks a cheap constraint is
never proposed; expensive constraints mark trials infeasible (they rank after the feasible ones as parents).

Optionally (`screen_pool` > 0; not in the paper) the num_init first architectures are not random but the best
of `screen_pool` random ones by a zero-cost proxy or the proxy ensemble (`screen_proxy`), scored without a query:
the proxy-ensemble-first start that docs/bananas.md measures (the pool is drawn from its own seed, scored with the
run seed's weights, so a resumed search screens the same pool to the same ranking).

Optional extra predictor inputs (`proxy_features`): zero-cost proxy scores of the untrained network (naswot,
synflow, ... from NASWOT's registry) or cheap metrics (params, macs), computed for every candidate without a
query, as NAS-Bench-Suite-Zero's predictors with zero-cost features (Krishnakumar et al. 2022). Each feature is
sign(x) log(1 + |x|), standardized over the training set.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from archsearch.config.schema import Float, Int, List, Str, register_check, register_section
from archsearch.data.loaders import search_loaders
from archsearch.search import trial_eval
from archsearch.search.metrics import METRICS
from archsearch.search.objectives import Goals, reference_point
from archsearch.search.space import ENCODINGS, SearchSpace
from archsearch.search.strategy import SearchOutcome, register_strategy
from archsearch.search.trial_eval import TrialStrategy, make_evaluator, run_trials, search_goals
from archsearch.search.trial_loop import Budget, finite_number, trial_seed
from archsearch.strategies.bananas.predictor import MLPEnsemble, PredictorSettings
from archsearch.strategies.naswot.ensemble import ENSEMBLE, aggregate, check_members
from archsearch.strategies.naswot.proxies import PROXIES
from archsearch.strategies.naswot.sampling import measure_candidates, score_candidates
from archsearch.strategies.naswot.strategy import proxy_options
from archsearch.strategies.random.strategy import sample_untried

MAX_REDRAWS = 100  # random draws per wanted pool member before the screen's pool is taken as it is
PATIENCE = 5  # mutation tries per wanted candidate (naszilla's patience_factor)

register_section(
    "nas.search.bananas",
    {
        "n_trials": Int(ge=1),
        "time_budget_s": Float(null=True, gt=0),
        "num_init": Int(ge=1),
        "k": Int(ge=1),
        "num_candidates": Int(ge=1),
        "num_arches_to_mutate": Int(ge=1),
        "mo_num_arches_to_mutate": Int(ge=1),
        "max_mutations": Int(ge=1),
        "encoding": Str(*ENCODINGS),
        "path_cutoff": Int(null=True, ge=1),
        "acquisition": Str("its", "mean"),
        "mo_acquisition": Str("pareto_rank", "hypervolume"),
        "proxy_features": List(Str(pattern=r".+", allowed="a proxy or cheap metric name")),
        "proxy_batch_size": Int(ge=1),
        "screen_pool": Int(ge=0),
        "screen_proxy": Str(*PROXIES.names(), ENSEMBLE),
    },
)
register_section(
    "nas.search.bananas.predictor",
    {
        "members": Int(ge=1),
        "layers": Int(ge=1),
        "width": Int(ge=1),
        "lr": Float(gt=0),
        "epochs": Int(ge=1),
        "batch_size": Int(ge=1),
    },
)


def feature_names() -> list[str]:
    """What proxy_features may name: NASWOT's zero-cost proxies and the cheap metrics."""
    return sorted({*PROXIES.names(), *(n for n in METRICS.names() if METRICS.get(n).cheap)})


def _check_features(conf: Mapping[str, Any]) -> tuple[str, str] | None:
    names = conf.get("proxy_features") or []
    valid = feature_names()
    for name in names:
        if name not in valid:
            return "proxy_features", f"{name!r} is not a proxy or cheap metric; valid: {', '.join(valid)}"
    if len(set(names)) != len(names):
        return "proxy_features", f"{names} names a feature twice"
    return None


register_check("nas.search.bananas", _check_features)


@dataclass(frozen=True)
class Settings:
    """nas.search.bananas, as plain values (the planner also runs outside a run: scripts/bench_search.py)."""

    num_init: int = 10
    k: int = 10
    num_candidates: int = 100
    num_arches_to_mutate: int = 2
    mo_num_arches_to_mutate: int = 10
    max_mutations: int = 1
    encoding: str = "path"
    path_cutoff: int | None = None
    acquisition: str = "its"
    mo_acquisition: str = "pareto_rank"
    proxy_features: tuple[str, ...] = ()
    screen_pool: int = 0
    predictor: PredictorSettings = field(default_factory=PredictorSettings)

    @classmethod
    def from_conf(cls, conf: Mapping[str, Any]) -> Settings:
        p = conf["predictor"]
        predictor = PredictorSettings(p["members"], p["layers"], p["width"], p["lr"], p["epochs"], p["batch_size"])
        keys = (
            "num_init",
            "k",
            "num_candidates",
            "num_arches_to_mutate",
            "mo_num_arches_to_mutate",
            "max_mutations",
            "encoding",
            "path_cutoff",
            "acquisition",
            "mo_acquisition",
            "screen_pool",
        )
        return cls(
            **{key: conf[key] for key in keys}, proxy_features=tuple(conf["proxy_features"]), predictor=predictor
        )


# (arch JSON, feature names) -> their values: cheap metrics measured, zero-cost proxies scored (no query spent)
FeatureFn = Callable[[Any, Sequence[str]], dict[str, float]]
MeasureFn = Callable[[Any, list[str]], dict[str, float]]
# a seeded generator -> a pool of architectures drawn with it, best first by a zero-cost score (no query spent)
ScreenFn = Callable[[random.Random], list[Any]]
PROGRESS_EVERY_S = 30.0
SCREEN_SALT = 0x5C4EE7  # the pool's seed is the run seed's, salted: its draws are not the first trial's


def signed_log(x: np.ndarray) -> np.ndarray:
    """sign(x) log(1 + |x|): parameter counts (1e6) and synflow scores (1e30) become numbers a network can fit."""
    return np.sign(x) * np.log1p(np.abs(x))


def nondominated_fronts(vectors: np.ndarray) -> list[list[int]]:
    """Indices of `vectors` (n, objectives; all minimized) front by front (the first is the Pareto front),
    each in index order."""
    remaining = list(range(len(vectors)))
    fronts = []
    while remaining:
        front = [
            i
            for i in remaining
            if not any(np.all(vectors[j] <= vectors[i]) and np.any(vectors[j] < vectors[i]) for j in remaining)
        ]
        fronts.append(front)
        taken = set(front)
        remaining = [i for i in remaining if i not in taken]
    return fronts


class Planner:
    """BANANAS' proposals on the trial loop: `propose(index, rng, history)` (see the module's docstring)."""

    def __init__(
        self,
        space: SearchSpace,
        goals: Goals,
        settings: Settings,
        run_seed: int,
        measure: MeasureFn | None = None,
        features: FeatureFn | None = None,
        log: Callable[[str], None] | None = None,
        screen: ScreenFn | None = None,
    ) -> None:
        self.space, self.goals, self.settings, self.run_seed = space, goals, settings, run_seed
        self.measure, self.features, self.log, self.screen = measure, features, log, screen
        if settings.screen_pool and screen is None:
            raise ValueError("screen_pool needs a screen function")
        self._screened: list[Any] | None = None  # the screened pool, best first (computed on first use)
        cheap = {n for n in METRICS.names() if METRICS.get(n).cheap}
        self.expensive = [o for o in goals.objectives if o.metric not in cheap]
        self.cheap_objectives = [o for o in goals.objectives if o.metric in cheap]
        self.cheap_constraints = goals.cheap_constraints() if measure is not None else ()
        self.several = len(goals.objectives) > 1
        if self.cheap_objectives and measure is None:
            raise ValueError("cheap objectives need a measure function")
        self._ranked: tuple[tuple, list[Any]] | None = None  # (key, ranking) of the last batch
        self._calls: dict[int, int] = {}  # proposals asked per trial (a cheap-constraint rejection asks again)
        self._proposed: dict[int, Any] = {}  # trial index -> the ranked architecture proposed for it
        self._encodings: dict[str, np.ndarray] = {}
        self._cheap: dict[str, dict[str, float]] = {}
        self._proxies: dict[str, dict[str, float]] = {}
        self.fits: list[dict[str, Any]] = []  # per fitted batch: its start, training size, training error

    # ---- proposals ---------------------------------------------------------------------------------
    def propose(self, index: int, rng: random.Random, history: list[dict[str, Any]]) -> Any:
        s = self.settings
        attempt = self._calls[index] = self._calls.get(index, -1) + 1
        if index < s.num_init:
            if s.screen_pool:
                screened = self._from_screen(index, attempt, history)
                if screened is not None:
                    return screened
            return self._random(rng, history)
        start = s.num_init + (index - s.num_init) // s.k * s.k
        position = index - start
        fit_set = sorted((r for r in history if r["index"] < start), key=lambda r: r["index"])
        key = (start, tuple(r["index"] for r in fit_set))
        if self._ranked is None or self._ranked[0] != key:
            self._ranked = (key, self.rank(start, fit_set))
        ranked = self._ranked[1]
        # evaluated, or proposed for this batch and still running (a parallel search: those are in no history;
        # one at a time they are in the history, so this changes nothing a resumed search would not see)
        seen = {_key(r["arch"]) for r in history}
        seen |= {_key(a) for i, a in self._proposed.items() if start <= i < index}
        # this trial's place in the batch; then, should it be taken (a parallel search) or rejected, the
        # ranking's tail beyond the batch, in order
        order = ranked[position : position + 1] + ranked[s.k :]
        fresh = [a for a in order if _key(a) not in seen]
        if attempt < len(fresh):
            self._proposed[index] = fresh[attempt]
            return fresh[attempt], {"batch_start": start}
        return self._random(rng, history)

    def _from_screen(self, index: int, attempt: int, history: list[dict[str, Any]]) -> tuple[Any, dict] | None:
        """Trial `index` < num_init: the screened pool's architecture at that place; should it be evaluated
        already (a parallel search) or rejected, the pool's next ones beyond num_init; None once none is left."""
        if self._screened is None:
            self._screened = self.screen(random.Random(trial_seed(self.run_seed, 0) ^ SCREEN_SALT))
        ranked = self._screened
        seen = {_key(r["arch"]) for r in history}
        seen |= {_key(a) for i, a in self._proposed.items() if i < index}
        order = ranked[index : index + 1] + ranked[self.settings.num_init :]
        fresh = [a for a in order if _key(a) not in seen]
        if attempt >= len(fresh):
            return None
        arch = self._proposed[index] = fresh[attempt]
        return arch, {"screen_rank": 1 + [_key(a) for a in ranked].index(_key(arch))}

    def _random(self, rng: random.Random, history: list[dict[str, Any]]) -> Any:
        """A random architecture no trial has, while the space has untried ones (random search's own rule)."""
        return sample_untried(self.space, rng, history)

    # ---- one batch ---------------------------------------------------------------------------------
    def rank(self, start: int, fit_set: list[dict[str, Any]]) -> list[Any]:
        """The candidates of the batch starting at trial `start`, best first, from the trials in `fit_set`."""
        seed = trial_seed(self.run_seed, start)
        rng = random.Random(seed)
        gen = np.random.default_rng(seed)
        parents = self._parents(fit_set)
        if not parents:  # no trial with finite objectives yet: nothing to learn from
            return []
        candidates = self._candidates(parents, fit_set, rng)
        if not candidates:
            return []
        train = [r for r in fit_set if all(finite_number(r["metrics"].get(o.metric)) for o in self.expensive)]
        draws = np.zeros((len(candidates), 0))
        if self.expensive:
            draws = self._draws(train, candidates, seed, gen, start)
        columns = [draws[:, i] for i in range(draws.shape[1])]
        vectors = np.zeros((len(candidates), len(self.goals.objectives)))
        e = 0
        for i, o in enumerate(self.goals.objectives):
            if o in self.expensive:
                vectors[:, i] = columns[e]
                e += 1
            else:
                vectors[:, i] = [o.key(self._cheap_of(a)[o.metric]) for a in candidates]
        if not self.several:
            order = sorted(range(len(candidates)), key=lambda i: (vectors[i, 0], i))
        elif self.settings.mo_acquisition == "hypervolume":
            order = self._hypervolume_order(vectors, fit_set, gen)
        else:
            order = self._pareto_order(vectors, gen)
        return [candidates[i] for i in order]

    def _rank_key(self, record: dict[str, Any]) -> tuple:
        """A trial's place as a parent with one objective: feasible first, then the objective (minimized)."""
        o = self.goals.primary
        value = record["metrics"].get(o.metric)
        return (record.get("feasible") is False, o.key(value) if finite_number(value) else math.inf, record["index"])

    def _parents(self, fit_set: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The evaluated trials best first: by the objective, or by non-dominated sorting (feasible first)."""
        usable = [r for r in fit_set if self.goals.vector(r["metrics"]) is not None]
        if not self.several:
            return sorted(usable, key=self._rank_key)
        feasible = [r for r in usable if r.get("feasible") is not False]
        infeasible = sorted((r for r in usable if r.get("feasible") is False), key=lambda r: r["index"])
        vectors = np.array([self.goals.vector(r["metrics"]) for r in feasible], dtype=float).reshape(len(feasible), -1)
        ordered = [feasible[i] for front in nondominated_fronts(vectors) for i in front]
        return ordered + infeasible

    def _candidates(self, parents: list[dict[str, Any]], fit_set: list[dict[str, Any]], rng: random.Random) -> list:
        """BANANAS' mutation acquisition: up to num_candidates new architectures, mutations (1..max_mutations
        edits) of the best parents, num_candidates / num_arches_to_mutate of each, going down the ranking
        while the first ones run out of new neighbours; none breaks a cheap constraint."""
        s = self.settings
        n_parents = s.mo_num_arches_to_mutate if self.several else s.num_arches_to_mutate
        quota = max(1, math.ceil(s.num_candidates / n_parents))
        seen = {_key(r["arch"]) for r in fit_set}
        candidates: list[Any] = []
        for parent in parents:
            if len(candidates) >= s.num_candidates:
                break
            found = tries = 0
            while found < quota and tries < quota * PATIENCE and len(candidates) < s.num_candidates:
                tries += 1
                arch = self.space.from_json(parent["arch"])
                for _ in range(rng.randint(1, s.max_mutations)):
                    arch = self.space.mutate(arch, rng)
                data = self.space.to_json(arch)
                if _key(data) in seen:
                    continue
                seen.add(_key(data))
                if self.cheap_constraints:
                    values = self._cheap_of(data)
                    if any(c.violation(values.get(c.metric)) > 0 for c in self.cheap_constraints):
                        continue
                candidates.append(data)
                found += 1
        return candidates

    def _draws(
        self, train: list[dict], candidates: list, seed: int, gen: np.random.Generator, start: int
    ) -> np.ndarray:
        """Per candidate and expensive objective (minimized): one Thompson draw from N(mean, std) of the
        ensemble's predictions (acquisition its), or the mean (acquisition mean)."""
        if not train:
            return gen.standard_normal((len(candidates), len(self.expensive)))  # nothing fitted: random order
        archs = [r["arch"] for r in train]
        x_train, x_cand = self._inputs(archs, candidates)
        y = np.array([[o.key(float(r["metrics"][o.metric])) for o in self.expensive] for r in train])
        ensemble = MLPEnsemble(self.settings.predictor, seed)
        error = ensemble.fit(x_train, y)
        self.fits.append({"batch_start": start, "n_train": len(train), "train_mae": error})
        if self.log is not None:
            self.log(
                f"[search] bananas: predictor fitted on {len(train)} trials (training MAE {error:.4g}); "
                f"ranking {len(candidates)} candidates for trials {start + 1}-{start + self.settings.k}"
            )
        predictions = ensemble.predict(x_cand)  # (members, candidates, objectives)
        mean, std = predictions.mean(axis=0), predictions.std(axis=0)
        if self.settings.acquisition == "mean":
            return mean
        return gen.normal(mean, std)  # independent Thompson sampling: one draw per candidate

    def _pareto_order(self, vectors: np.ndarray, gen: np.random.Generator) -> list[int]:
        """Archai's MO-BANANAS: front by front, in random order within a front."""
        order: list[int] = []
        for front in nondominated_fronts(vectors):
            order += [front[i] for i in gen.permutation(len(front))]
        return order

    def _hypervolume_order(self, vectors: np.ndarray, fit_set: list[dict[str, Any]], gen: np.random.Generator) -> list:
        """The first k greedily by the hypervolume each adds to the evaluated front and those picked before it
        (reference point: the goals', from the evaluated trials); the rest, and candidates adding nothing, in
        the pareto_rank order."""
        from pymoo.indicators.hv import HV

        fallback = self._pareto_order(vectors, gen)
        reference = reference_point(self.goals, fit_set)
        if reference is None:
            return fallback
        ref = np.array([o.key(float(r)) for o, r in zip(self.goals.objectives, reference)])
        front = [
            self.goals.vector(r["metrics"])
            for r in fit_set
            if r.get("feasible") is not False and self.goals.vector(r["metrics"]) is not None
        ]
        points = [np.array(p) for p in front if np.all(np.array(p) < ref)]
        indicator = HV(ref_point=ref)

        def volume(pts: list[np.ndarray]) -> float:
            return float(indicator(np.array(pts))) if pts else 0.0

        picked: list[int] = []
        left = list(fallback)
        base = volume(points)
        while len(picked) < self.settings.k and left:
            gains = [
                (volume([*points, vectors[i]]) - base if np.all(vectors[i] < ref) else 0.0, -n)
                for n, i in enumerate(left)
            ]
            best = max(range(len(left)), key=lambda n: gains[n])
            if gains[best][0] <= 0:
                break
            i = left.pop(best)
            picked.append(i)
            points.append(vectors[i])
            base = volume(points)
        return picked + left

    # ---- predictor inputs --------------------------------------------------------------------------
    def _encoding(self, arch: Any) -> np.ndarray:
        k = _key(arch)
        if k not in self._encodings:
            vector = self.space.encode(self.space.from_json(arch), self.settings.encoding)
            if self.settings.path_cutoff is not None and self.settings.encoding == "path":
                vector = vector[: self.settings.path_cutoff]
            self._encodings[k] = np.asarray(vector, dtype=np.float32)
        return self._encodings[k]

    def _cheap_of(self, arch: Any) -> dict[str, float]:
        """The cheap metrics the goals name, of `arch` (measured once)."""
        k = _key(arch)
        if k not in self._cheap:
            names = [n for n in self.goals.cheap_names()]
            self._cheap[k] = self.measure(arch, names) if names and self.measure is not None else {}
        return self._cheap[k]

    def _proxy_of(self, arch: Any) -> dict[str, float]:
        k = _key(arch)
        if k not in self._proxies:
            assert self.features is not None
            self._proxies[k] = self.features(arch, list(self.settings.proxy_features))
        return self._proxies[k]

    def _inputs(self, train: list, candidates: list) -> tuple[np.ndarray, np.ndarray]:
        x_train = np.stack([self._encoding(a) for a in train])
        x_cand = np.stack([self._encoding(a) for a in candidates])
        names = self.settings.proxy_features
        if not names or self.features is None:
            return x_train, x_cand
        raw_train = np.array([[self._proxy_of(a)[n] for n in names] for a in train], dtype=float)
        raw_cand = np.array([[self._proxy_of(a)[n] for n in names] for a in candidates], dtype=float)
        f_train, f_cand = signed_log(raw_train), signed_log(raw_cand)
        for j in range(len(names)):  # a proxy that failed (NaN, -inf) scores as the worst finite training value
            finite = f_train[np.isfinite(f_train[:, j]), j]
            worst = finite.min() if len(finite) else 0.0
            f_train[~np.isfinite(f_train[:, j]), j] = worst
            f_cand[~np.isfinite(f_cand[:, j]), j] = worst
        mean, std = f_train.mean(axis=0), f_train.std(axis=0)
        std = np.where(std > 0, std, 1.0)
        f_train, f_cand = (f_train - mean) / std, (f_cand - mean) / std
        return (np.hstack([x_train, f_train]).astype(np.float32), np.hstack([x_cand, f_cand]).astype(np.float32))


def _key(arch: Any) -> str:
    """A hashable form of an architecture's JSON (a string for every space shipped; a list or dict for others)."""
    return arch if isinstance(arch, str) else repr(arch)


Batch = tuple[torch.Tensor, torch.Tensor]


def proxy_batch(ctx: Any, conf: Mapping[str, Any]) -> Callable[[], Batch]:
    """The zero-cost proxies' batch: proxy_batch_size images of the weights split, loaded on first use, kept."""
    batch: list[Batch] = []

    def get() -> Batch:
        if not batch:
            loader, _ = search_loaders(
                ctx.conf["dataset"], ctx.conf["nas"]["search"]["loader"], ctx.device, ctx.seed, shard=False
            )
            loader.batch_size = conf["proxy_batch_size"]
            batch.append(tuple(t.cpu() for t in next(iter(loader))))
        return batch[0]

    return get


def proxy_feature_fn(ctx: Any, space: SearchSpace, conf: Mapping[str, Any], measure: MeasureFn) -> FeatureFn:
    """The features of nas.search.bananas.proxy_features: cheap metrics measured as the trial loop measures
    them, zero-cost proxies scored as the `proxy` evaluator scores (the untrained network, built under the run
    seed so an architecture always gets the same score, on the first batch of the weights split)."""
    batch = proxy_batch(ctx, conf)

    def build(data: Any) -> torch.nn.Module:
        return space.build(space.from_json(data))

    def features(arch: Any, names: Sequence[str]) -> dict[str, float]:
        cheap = [n for n in names if n in METRICS and METRICS.get(n).cheap]
        out = dict(measure(arch, cheap)) if cheap else {}
        for name in (n for n in names if n not in out):
            [out[name]] = score_candidates([arch], build, batch(), name, ctx.device, ctx.seed)
        return out

    return features


def screen_fn(ctx: Any, space: SearchSpace, conf_search: Mapping[str, Any]) -> ScreenFn:
    """nas.search.bananas.screen_pool distinct random architectures, best first by screen_proxy: one zero-cost
    proxy, or the ensemble of nas.search.naswot.ensemble (its members from shared passes, its rank aggregate
    over the pool), each network scored as the `proxy` evaluator scores it (built under the run seed)."""
    conf, naswot = conf_search["bananas"], conf_search["naswot"]
    proxy = conf["screen_proxy"]
    if proxy == ENSEMBLE:
        names = check_members(naswot["ensemble"]["members"])
        what = f"the ensemble of {', '.join(names)} ({naswot['ensemble']['aggregate']})"
    else:
        names, what = [proxy], proxy
    batch = proxy_batch(ctx, conf)
    options = proxy_options(naswot)

    def build(data: Any) -> torch.nn.Module:
        return space.build(space.from_json(data))

    def screen(rng: random.Random) -> list[Any]:
        size = space.size()
        want = conf["screen_pool"] if size is None else min(conf["screen_pool"], size)
        pool, seen = [], set()
        for _ in range(want * MAX_REDRAWS):
            if len(pool) >= want:
                break
            data = space.to_json(space.sample(rng))
            if _key(data) not in seen:
                seen.add(_key(data))
                pool.append(data)
        ctx.log.info(f"[search] bananas: screening {len(pool)} random architectures by {what} (no query)")
        start = last = time.perf_counter()
        scores: list[dict[str, float]] = []
        for i, data in enumerate(pool):
            scores += measure_candidates([data], build, batch(), names, ctx.device, ctx.seed, options=options)
            now = time.perf_counter()
            if now - last >= PROGRESS_EVERY_S or i + 1 == len(pool):  # a line every half minute, and at the end
                ctx.log.info(f"[search] bananas: screened {i + 1}/{len(pool)} ({now - start:.1f} s)")
                last = now
        columns = {n: [row[n] for row in scores] for n in names}
        if proxy == ENSEMBLE:
            value = aggregate(columns, naswot["ensemble"]["aggregate"])
        else:
            value = np.asarray(columns[proxy], dtype=float)
        value = np.where(np.isfinite(value), value, -np.inf)  # a failed score (NaN) ranks last
        order = sorted(range(len(pool)), key=lambda i: (-value[i], i))
        return [pool[i] for i in order]

    return screen


@register_strategy
class Bananas(TrialStrategy):
    name = "bananas"
    summary = "BANANAS (White et al. 2021): MLP-ensemble predictor on path encodings, Thompson sampling, mutation"
    requires = frozenset({"sample", "mutate", "encode"})
    default_space = "nasbench201"
    multi_objective = True

    def budget(self) -> Budget:
        return Budget(self.conf["bananas"]["n_trials"], self.conf["bananas"]["time_budget_s"])

    def dry_run_notes(self) -> list[str]:
        s = Settings.from_conf(self.conf["bananas"])
        features = f", features + {', '.join(s.proxy_features)}" if s.proxy_features else ""
        first = f"the best {s.num_init} of {s.screen_pool} random by {self.conf['bananas']['screen_proxy']}"
        return [
            *super().dry_run_notes(),
            f"bananas: {first if s.screen_pool else f'{s.num_init} random'}, then batches of {s.k} from "
            f"{s.num_candidates} candidates; {s.predictor.members} MLPs on the {s.encoding} encoding{features}",
        ]

    def search(self) -> SearchOutcome:
        ctx, space = self.ctx, self.space
        conf = self.conf["bananas"]
        settings = Settings.from_conf(conf)
        evaluator = make_evaluator(ctx, space)
        goals = search_goals(ctx, evaluator.objective)
        # looked up at call time, so a benchmark that tables the cheap metrics can stand in for it
        measure = trial_eval.space_measure(space, self.conf, ctx.seed)
        features = proxy_feature_fn(ctx, space, conf, measure) if settings.proxy_features else None
        if settings.path_cutoff is not None and settings.encoding == "path":
            length = len(space.encode(space.sample(random.Random(0)), "path"))
            if settings.path_cutoff > length:
                raise conf.error(
                    "path_cutoff",
                    f"{settings.path_cutoff} is longer than {space.name}'s path "
                    f"encoding ({length}); lower it or set null for the whole encoding",
                )
        screen = screen_fn(ctx, space, self.conf) if settings.screen_pool else None
        planner = Planner(space, goals, settings, ctx.seed, measure, features, ctx.log.info, screen)
        arch, metrics, _ = run_trials(
            ctx, space, planner.propose, self.budget(), evaluator, goals=goals, measure=measure
        )
        return SearchOutcome(arch, metrics, {"trial": metrics["best_trial"]})
