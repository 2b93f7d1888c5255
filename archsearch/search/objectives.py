"""Objectives, constraints and the Pareto front of a search (nas.search.objectives, constraints, select).

- An `Objective` is a metric (archsearch/search/metrics.py) and a goal, max or min; the first is the primary.
- A `Constraint` bounds a metric (min and/or max). On a cheap metric it is checked before the candidate is
  evaluated (the trial loop rejects the proposal and draws again); on an expensive one it marks the trial
  infeasible after its evaluation.
- Constrained domination (Deb et al. 2002): a feasible trial dominates an infeasible one; of two infeasible
  ones, the smaller total violation dominates; of two feasible ones, Pareto domination on the objectives.
- The front is the set of feasible trials with finite objectives that no other such trial dominates.
- Hypervolume comes from pymoo (`pymoo.indicators.hv.HV`), in minimization form (max goals negated).
- The final architecture is chosen from the front by a rule: `best` (the best primary objective; ties by the
  next objectives, then the earliest trial) or `knee` (each objective scaled to [0, 1] over the front, 0 the
  best: the member with the smallest sum, which in 2-D is the member farthest from the line through the two
  extremes; ties: the earliest trial).

`Goals.legacy` is today's search: one objective, the evaluator's, and no constraints; the trial loop then
writes exactly what it always did (no front, no pareto.yaml, no extra record fields).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from archsearch.common.errors import ConfigError
from archsearch.config.schema import register_check, show
from archsearch.search.metrics import GOALS, METRICS, get_metric

RULES = ("best", "knee")


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class Objective:
    metric: str
    goal: str  # max | min

    def key(self, value: float) -> float:
        """`value` as a quantity to minimize."""
        return -value if self.goal == "max" else value


@dataclass(frozen=True)
class Constraint:
    metric: str
    min: float | None = None
    max: float | None = None

    def violation(self, value: Any) -> float:
        """0 when `value` is within the bounds, else how far out, relative to the bound (missing or NaN: inf)."""
        if not _finite(value):
            return math.inf
        out = 0.0
        if self.max is not None and value > self.max:
            out += (value - self.max) / (abs(self.max) or 1.0)
        if self.min is not None and value < self.min:
            out += (self.min - value) / (abs(self.min) or 1.0)
        return out

    def text(self) -> str:
        parts = []
        if self.min is not None:
            parts.append(f"{self.metric} >= {self.min:g}")
        if self.max is not None:
            parts.append(f"{self.metric} <= {self.max:g}")
        return " and ".join(parts)


@dataclass(frozen=True)
class Goals:
    objectives: tuple[Objective, ...]
    constraints: tuple[Constraint, ...] = ()
    rule: str = "best"
    reference_point: tuple[float, ...] | None = None  # in the metrics' own units; None: derived (see reference)
    legacy: bool = False  # today's single-objective search: nothing new is computed or written

    @property
    def primary(self) -> Objective:
        return self.objectives[0]

    def names(self) -> list[str]:
        """Every metric an objective or a constraint names, objectives first."""
        names = [o.metric for o in self.objectives]
        return names + [c.metric for c in self.constraints if c.metric not in names]

    def cheap_names(self) -> list[str]:
        return [n for n in self.names() if n in METRICS and METRICS.get(n).cheap]

    def expensive_names(self) -> list[str]:
        return [n for n in self.names() if n not in self.cheap_names()]

    def cheap_constraints(self) -> tuple[Constraint, ...]:
        cheap = set(self.cheap_names())
        return tuple(c for c in self.constraints if c.metric in cheap)

    def violation(self, metrics: Mapping[str, Any], constraints: Sequence[Constraint] | None = None) -> float:
        chosen = self.constraints if constraints is None else constraints
        return sum(c.violation(metrics.get(c.metric)) for c in chosen)

    def feasible(self, metrics: Mapping[str, Any]) -> bool:
        return self.violation(metrics) == 0

    def vector(self, metrics: Mapping[str, Any]) -> tuple[float, ...] | None:
        """The objectives as quantities to minimize, or None when one is missing or not finite."""
        values = [metrics.get(o.metric) for o in self.objectives]
        if not all(_finite(v) for v in values):
            return None
        return tuple(o.key(float(v)) for o, v in zip(self.objectives, values))

    def describe(self) -> str:
        objectives = ", ".join(f"{o.goal} {o.metric}" for o in self.objectives)
        constraints = "; ".join(c.text() for c in self.constraints)
        return objectives + (f" subject to {constraints}" if constraints else "")


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """Pareto domination of minimization vectors: `a` no worse in every objective and better in one."""
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def constrained_dominates(a: Mapping[str, Any], b: Mapping[str, Any], goals: Goals) -> bool:
    """Deb's constrained domination of trial metrics `a` over `b`."""
    va, vb = goals.violation(a), goals.violation(b)
    if va == 0 and vb > 0:
        return True
    if va > 0 or vb > 0:
        return va < vb
    fa, fb = goals.vector(a), goals.vector(b)
    if fa is None:
        return False
    return fb is None or dominates(fa, fb)


def on_front(record: Mapping[str, Any], goals: Goals) -> bool:
    """A record that can be on the front at all: feasible, with finite objectives."""
    return goals.feasible(record["metrics"]) and goals.vector(record["metrics"]) is not None


def pareto_front(records: Sequence[Mapping[str, Any]], goals: Goals) -> list[Mapping[str, Any]]:
    """The feasible records (with finite objectives) no other such record dominates, in their order."""
    candidates = [(r, goals.vector(r["metrics"])) for r in records if on_front(r, goals)]
    return [r for r, v in candidates if not any(dominates(w, v) for _, w in candidates)]


def update_front(front: list[Mapping[str, Any]], record: Mapping[str, Any], goals: Goals) -> bool:
    """Add `record` to `front` (in place) unless a member dominates it; drop the members it dominates.
    True when the front changed."""
    if not on_front(record, goals):
        return False
    v = goals.vector(record["metrics"])
    vectors = [goals.vector(m["metrics"]) for m in front]
    if any(dominates(w, v) for w in vectors):
        return False
    front[:] = [m for m, w in zip(front, vectors) if not dominates(v, w)] + [record]
    return True


def reference_point(goals: Goals, records: Sequence[Mapping[str, Any]]) -> tuple[float, ...] | None:
    """The hypervolume's reference point, in the metrics' own units: nas.search.reference_point when set;
    else per objective, a constraint's bound on its worse side when there is one, else the worst value of the
    feasible trials so far moved a tenth of their range further out (None while there are none)."""
    if goals.reference_point is not None:
        return goals.reference_point
    vectors = [goals.vector(r["metrics"]) for r in records if on_front(r, goals)]
    point = []
    for i, o in enumerate(goals.objectives):
        bound = None
        for c in goals.constraints:
            if c.metric == o.metric:
                bound = c.max if o.goal == "min" else c.min
        if bound is not None:
            point.append(float(bound))
            continue
        if not vectors:
            return None
        keys = [v[i] for v in vectors]
        worst, spread = max(keys), max(keys) - min(keys)
        margin = 0.1 * spread if spread > 0 else 0.1 * abs(worst) or 1.0
        point.append(o.key(worst + margin))  # back to the metric's own sign
    return tuple(point)


def hypervolume(front: Sequence[Mapping[str, Any]], goals: Goals, reference: Sequence[float] | None) -> float:
    """The volume the front dominates up to `reference` (pymoo's HV, objectives in minimization form)."""
    if reference is None or not front:
        return 0.0
    from pymoo.indicators.hv import HV

    ref = np.array([o.key(float(r)) for o, r in zip(goals.objectives, reference)])
    points = np.array([goals.vector(m["metrics"]) for m in front], dtype=float)
    points = points[np.all(points < ref, axis=1)]  # members outside the reference box add nothing
    if len(points) == 0:
        return 0.0
    return float(HV(ref_point=ref)(points))


def hypervolume_curve(
    records: Sequence[Mapping[str, Any]], goals: Goals, reference: Sequence[float] | None
) -> list[tuple[int, float]]:
    """(trials finished, hypervolume of the feasible front of the first that many records) for every record
    in the order they finished, all against the one `reference` (the final one). Each record's own
    `hypervolume` is against a reference derived from the trials up to it, which may move out and make the
    value fall; this curve never decreases."""
    front: list[Mapping[str, Any]] = []
    curve, volume = [], 0.0
    for finished, record in enumerate(records, 1):
        if update_front(front, record, goals):
            volume = hypervolume(front, goals, reference)
        curve.append((finished, volume))
    return curve


def knee(front: Sequence[Mapping[str, Any]], goals: Goals) -> Mapping[str, Any]:
    """The member with the smallest sum of objectives scaled to [0, 1] over the front (the earliest on ties)."""
    vectors = np.array([goals.vector(m["metrics"]) for m in front], dtype=float)
    low, high = vectors.min(axis=0), vectors.max(axis=0)
    scaled = (vectors - low) / np.where(high > low, high - low, 1.0)
    sums = scaled.sum(axis=1)
    best = min(range(len(front)), key=lambda i: (sums[i], front[i]["index"]))
    return front[best]


def select(front: Sequence[Mapping[str, Any]], goals: Goals) -> Mapping[str, Any] | None:
    """The final architecture's record by goals.rule, or None for an empty front."""
    if not front:
        return None
    if goals.rule == "knee":
        return knee(front, goals)
    return min(front, key=lambda m: (goals.vector(m["metrics"]), m["index"]))


def closest(records: Sequence[Mapping[str, Any]], goals: Goals) -> Mapping[str, Any] | None:
    """The record with the smallest constraint violation (for the line saying none was feasible)."""
    finite = [r for r in records if math.isfinite(goals.violation(r["metrics"]))]
    return min(finite, key=lambda r: (goals.violation(r["metrics"]), r["index"])) if finite else None


# ---- from the config -------------------------------------------------------------------------------


def _get(conf: Mapping[str, Any], key: str, default: Any = None) -> Any:
    """conf[key] or `default` (a Config's own .get raises on a missing key)."""
    return conf[key] if key in conf else default  # noqa: SIM401 - Config.get raises


def goals_from_conf(conf_search: Mapping[str, Any], objective: str, mode: str = "max") -> Goals:
    """The goals of nas.search (validated by the schema); `objective`/`mode` is the evaluator's metric, the
    single objective when nas.search.objectives is null."""
    declared = _get(conf_search, "objectives")
    if declared is None:
        objectives: tuple[Objective, ...] = (Objective(objective, mode),)
    else:
        objectives = tuple(Objective(o["metric"], o.get("goal") or get_metric(o["metric"]).goal) for o in declared)
    constraints = tuple(
        Constraint(name, _get(bounds, "min"), _get(bounds, "max"))
        for name, bounds in (_get(conf_search, "constraints") or {}).items()
    )
    ref = _get(conf_search, "reference_point")
    goals = Goals(objectives, constraints, _get(conf_search, "select", "best"), tuple(ref) if ref else None)
    legacy = len(objectives) == 1 and not constraints and objectives[0] == Objective(objective, mode)
    return Goals(goals.objectives, goals.constraints, goals.rule, goals.reference_point, legacy)


def _check_objectives(value: Any) -> str | None:
    if value is None:
        return None
    seen = set()
    for n, entry in enumerate(value, 1):
        if not isinstance(entry, dict) or "metric" not in entry or set(entry) - {"metric", "goal"}:
            return (
                f"entry {n} {show(entry)} is not allowed (a mapping {{metric: NAME, goal: max|min}}; "
                "the first is the primary objective)"
            )
        name = entry["metric"]
        if not isinstance(name, str) or name not in METRICS:
            return f"entry {n}: {METRICS.unknown_message(str(name))}"
        if entry.get("goal") not in (None, *GOALS):
            return f"entry {n} ({name}): goal {show(entry.get('goal'))} is not allowed (max or min)"
        if name in seen:
            return f"entry {n}: metric {name} is already an objective"
        seen.add(name)
    return None


def _check_constraints(value: Any) -> str | None:
    for name, bounds in value.items():
        if not isinstance(name, str) or name not in METRICS:
            return METRICS.unknown_message(str(name))
        if not isinstance(bounds, dict) or not bounds or set(bounds) - {"min", "max"}:
            return f"{name}: {show(bounds)} is not allowed (a mapping with min and/or max, e.g. {{max: 5.0}})"
        for key, bound in bounds.items():
            if not _finite(bound):
                return f"{name}.{key}: {show(bound)} is not allowed (a finite number)"
        if "min" in bounds and "max" in bounds and bounds["min"] > bounds["max"]:
            return f"{name}: min {bounds['min']:g} is above max {bounds['max']:g}; no value can meet it"
    return None


def _check_goals(conf: Mapping[str, Any]) -> tuple[str, str] | None:
    if "objectives" in conf:
        found = _check_objectives(conf["objectives"])
        if found:
            return "objectives", found
    if "constraints" in conf:
        found = _check_constraints(conf["constraints"])
        if found:
            return "constraints", found
    ref = conf.get("reference_point")
    if ref is not None and "objectives" in conf:
        n = len(conf["objectives"]) if conf["objectives"] is not None else 1
        if len(ref) != n:
            return "reference_point", f"has {len(ref)} values for {n} objectives; give one per objective, or null"
    return None


register_check("nas.search", _check_goals)


def require_produced(goals: Goals, produces: Sequence[str] | None, how: str) -> None:
    """One line when an objective or constraint names an expensive metric the evaluator does not give."""
    if produces is None:
        return
    for name in goals.expensive_names():
        if name not in produces:
            raise ConfigError(
                f"nas.search.objectives/constraints name {name}, which {how} does not give (it gives "
                f"{', '.join(produces)}; cheap metrics: {', '.join(n for n in METRICS if METRICS.get(n).cheap)})"
            )
