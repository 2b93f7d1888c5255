"""Multi-fidelity trials: successive halving, Hyperband and ASHA over the trial loop (`nas.search.fidelity`).

A candidate is first trained for a small resource (epochs) and only the best 1/eta of each rung are
promoted to eta times more, up to the maximum, so many candidates get a little training and few get all
of it:

- **successive halving** (Jamieson & Talwalkar, AISTATS 2016; `fidelity` alone): one bracket at a time, the
  most aggressive one of Hyperband (s = s_max): eta^s_max candidates at `min` epochs, the best
  floor(n_i / eta) of each finished rung promoted to the next, until one has `max` epochs; brackets repeat
  while the budget lasts. Synchronous: a rung is promoted once all its trials finished.
- **Hyperband** (Li, Jamieson, DeSalvo, Rostamizadeh, Talwalkar, JMLR 2018, Algorithm 1; `hyperband: true`):
  the brackets s = s_max, ..., 0 in turn, bracket s starting n = ceil((s_max+1) eta^s / (s+1)) candidates at
  max * eta^-s epochs (the hedge over how aggressive to be); then again from s_max (the paper's infinite
  horizon loop).
- **ASHA** (Li, Jamieson, Rostamizadeh, Gonina, Ben-tzur, Hardt, Recht, Talwalkar, MLSys 2020, Algorithm 2;
  the default when the executor runs several trials at once, `--common.executor ray`): no rung waits for
  another; whenever a worker is free, promote the best candidate of the highest rung k that is in the top
  floor(|rung k| / eta) of rung k and not yet promoted, else start a new candidate in the bottom rung.

Everything here is a function of the finished and running trials' records (each says its `candidate`, its
`bracket`, its `rung` and its `resource`), as the trial loop's proposals are: a resumed search recomputes the
same decisions from the trial index, with nothing to checkpoint.

Rung resources: bracket s's rung i trains to max * eta^(i - s) epochs (rounded to whole epochs, at least
`min`), so the top rung is always `max`; s_max is the largest s with min * eta^s <= max.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from archsearch.config.schema import Value, register_check, register_section, show

RESOURCES = ("epochs",)
KEYS = ("resource", "min", "max", "eta", "hyperband", "asynchronous")
FIELDS = ("candidate", "bracket", "rung", "resource")  # what a fidelity trial's record adds

register_section(
    "nas.search",
    {
        "fidelity": Value(
            "mapping",
            null=True,
            allowed_text="a mapping {resource: epochs, min: 1, max: 27, eta: 3} (hyperband, asynchronous optional)",
            default=None,
            has_default=True,
        )
    },
)


@dataclass(frozen=True)
class Fidelity:
    """The schedule: `resource` (epochs) from `min` to `max`, reduction factor `eta`; `hyperband` runs all
    s_max + 1 brackets in turn (else successive halving's one); `asynchronous` promotes as ASHA does (None:
    when the executor runs several trials at once)."""

    resource: str
    min: int
    max: int
    eta: int
    hyperband: bool = False
    asynchronous: bool | None = None

    @property
    def s_max(self) -> int:
        """The largest s with min * eta^s <= max (integers only: no float log rounding down 27/3^3)."""
        s = 0
        while self.min * self.eta ** (s + 1) <= self.max:
            s += 1
        return s

    def bracket_s(self, bracket: int) -> int:
        """The s (the number of promotions) of the `bracket`-th bracket started."""
        if not self.hyperband:
            return self.s_max
        return self.s_max - bracket % (self.s_max + 1)

    def n_candidates(self, s: int) -> int:
        """Hyperband's n for bracket s: ceil(B / R * eta^s / (s + 1)) with B = (s_max + 1) R."""
        return -(-(self.s_max + 1) * self.eta**s // (s + 1))

    def resource_of(self, s: int, rung: int) -> int:
        """The resource of rung `rung` of a bracket with s promotions: max * eta^(rung - s)."""
        exact = Fraction(self.max * self.eta**rung, self.eta**s)
        return max(self.min, min(self.max, round(exact)))

    def table(self) -> list[list[tuple[int, int]]]:
        """Hyperband's table (Li et al. 2018, Table 1): for s = s_max..0, the (n_i, r_i) of its rungs."""
        rows = []
        for s in range(self.s_max, -1, -1):
            n = self.n_candidates(s)
            rows.append([(n // self.eta**i, self.resource_of(s, i)) for i in range(s + 1)])
        return rows

    def describe(self) -> str:
        how = "Hyperband" if self.hyperband else "successive halving"
        return f"{how} over {self.resource} {self.min}..{self.max}, eta {self.eta}"


def _opt(value: Mapping[str, Any], key: str) -> Any:
    """An optional setting (None when absent; a Config's .get raises for a missing key)."""
    return value[key] if key in value else None  # noqa: SIM401 - Config.get raises


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_fidelity(value: Any) -> str | None:
    """Why a nas.search.fidelity value is wrong, in one phrase (None: it is fine)."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        return f"{show(value)} is not allowed (a mapping {{resource: epochs, min: 1, max: 27, eta: 3}} or null)"
    unknown = sorted(set(value) - set(KEYS))
    if unknown:
        return f"{unknown[0]!r} is not a fidelity setting ({', '.join(KEYS)})"
    missing = [k for k in ("resource", "min", "max", "eta") if k not in value]
    if missing:
        return f"{missing[0]} is missing (e.g. {{resource: epochs, min: 1, max: 27, eta: 3}})"
    if value["resource"] not in RESOURCES:
        return f"resource {show(value['resource'])} is not one of {', '.join(RESOURCES)}"
    for key in ("min", "max"):
        if not _int(value[key]) or value[key] < 1:
            return f"{key} {show(value[key])} is not allowed (a whole number of {value['resource']} >= 1)"
    if value["min"] > value["max"]:
        return f"min {value['min']} is above max {value['max']}; set min <= max"
    if not _int(value["eta"]) or value["eta"] < 2:
        return f"eta {show(value['eta'])} is not allowed (the reduction factor, an integer >= 2; the papers use 3)"
    for key in ("hyperband", "asynchronous"):
        if key in value and not isinstance(value[key], bool) and not (key == "asynchronous" and value[key] is None):
            return f"{key} {show(value[key])} is not allowed (true or false)"
    if _opt(value, "hyperband") and _opt(value, "asynchronous"):
        return (
            "hyperband with asynchronous true is not built: Hyperband's brackets run synchronously here "
            "(ASHA: hyperband false)"
        )
    return None


def _check(conf: Mapping[str, Any]) -> tuple[str, str] | None:
    value = conf["fidelity"] if "fidelity" in conf else None  # noqa: SIM401 - Config.get raises
    found = check_fidelity(value)
    if found:
        return "fidelity", found
    if value is not None and "evaluate_by" in conf and conf["evaluate_by"] != "train":
        # a table or a proxy has one fidelity: a lookup or a score of the untrained network
        return "fidelity", (
            f"needs --nas.search.evaluate_by train (a {conf['evaluate_by']} evaluation has no resource to grow); "
            "set --nas.search.fidelity null"
        )
    return None


register_check("nas.search", _check)


def fidelity_from_conf(conf_search: Mapping[str, Any]) -> Fidelity | None:
    """nas.search.fidelity (validated by the schema) as a Fidelity, or None for a single fidelity."""
    value = conf_search["fidelity"] if "fidelity" in conf_search else None  # noqa: SIM401 - Config.get raises
    if value is None:
        return None
    return Fidelity(
        value["resource"],
        value["min"],
        value["max"],
        value["eta"],
        bool(_opt(value, "hyperband")),
        _opt(value, "asynchronous"),
    )


# ---- promotion ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """What to run next: a new candidate (`candidate` None) or a promotion of `candidate` to `rung`."""

    bracket: int
    rung: int
    resource: int
    candidate: int | None = None

    def fields(self, index: int) -> dict[str, int]:
        return {"candidate": index if self.candidate is None else self.candidate, "bracket": self.bracket,
                "rung": self.rung, "resource": self.resource}  # fmt: skip


Rank = Any  # a sort key: smaller is better


def top(records: Sequence[Mapping[str, Any]], k: int, rank: Any) -> list[int]:
    """The candidates of the best `k` records of one rung: `rank(records)` gives each a sort key (smaller is
    better; None for one that can never be promoted: a failed trial), ties to the earlier candidate."""
    keys = rank(list(records))
    ranked = sorted((key, r["candidate"]) for r, key in zip(records, keys, strict=True) if key is not None)
    return [c for _, c in ranked[:k]]


def _at(entries: Iterable[Mapping[str, Any]], bracket: int, rung: int) -> list[Mapping[str, Any]]:
    return [e for e in entries if e["bracket"] == bracket and e["rung"] == rung]


class Scheduler:
    """Chooses the next job from the finished records (`done`, with metrics) and the running trials' fields
    (`running`); `can_add` says whether a new candidate may start. None: nothing to start now (wait for a
    running trial, or the search is over when none runs). `rank(records)` gives the sort keys of a rung's
    records (smaller is better)."""

    def __init__(self, fidelity: Fidelity, rank: Any, asynchronous: bool) -> None:
        self.fidelity, self.rank, self.asynchronous = fidelity, rank, asynchronous

    def next_job(self, done: list[Mapping[str, Any]], running: list[Mapping[str, Any]], can_add: bool) -> Job | None:
        if self.asynchronous:
            return self._asha(done, running, can_add)
        return self._sync(done, running, can_add)

    def _new(self, bracket: int) -> Job:
        s = self.fidelity.bracket_s(bracket)
        return Job(bracket, 0, self.fidelity.resource_of(s, 0))

    def _sync(self, done: list[Mapping[str, Any]], running: list[Mapping[str, Any]], can_add: bool) -> Job | None:
        f, entries = self.fidelity, [*done, *running]
        bracket = 0
        while True:
            s = f.bracket_s(bracket)
            base = _at(entries, bracket, 0)
            if len(base) < f.n_candidates(s) and can_add:
                return self._new(bracket)
            if not base:
                return None  # no bracket left to start: the search ends once nothing runs
            for rung in range(s):
                members = _at(entries, bracket, rung)
                if any(e["rung"] == rung and e["bracket"] == bracket for e in running):
                    return None  # synchronous: the rung is promoted once all of it finished
                # Li et al.'s top_k(T, floor(n_i / eta)); at least one, so a bracket the budget cut short
                # still brings a candidate to max (a full bracket always has n_i >= eta below its top)
                k = max(1, len(members) // f.eta)
                above = {e["candidate"] for e in _at(entries, bracket, rung + 1)}
                for candidate in top(members, k, self.rank):
                    if candidate not in above:
                        return Job(bracket, rung + 1, f.resource_of(s, rung + 1), candidate)
            if any(e["bracket"] == bracket for e in running):
                return None
            bracket += 1

    def _asha(self, done: list[Mapping[str, Any]], running: list[Mapping[str, Any]], can_add: bool) -> Job | None:
        f = self.fidelity
        s = f.s_max
        entries = [*done, *running]
        for rung in range(s - 1, -1, -1):  # the highest rung first (Algorithm 2's get_job)
            members = [r for r in done if r["rung"] == rung]
            promoted = {e["candidate"] for e in entries if e["rung"] == rung + 1}
            for candidate in top(members, len(members) // f.eta, self.rank):
                if candidate not in promoted:
                    return Job(0, rung + 1, f.resource_of(s, rung + 1), candidate)
        return self._new(0) if can_add else None

    def retired(self, done: list[Mapping[str, Any]], running: list[Mapping[str, Any]]) -> set[int]:
        """The candidates that can no longer be promoted (their checkpoints may go): those at their bracket's
        top rung, and (synchronous) those left out of a rung whose promotions have begun. ASHA may promote
        any other candidate later, as its rung grows: theirs stay until the search ends."""
        f, entries = self.fidelity, [*done, *running]
        out = set()
        for r in done:
            s = f.bracket_s(r["bracket"]) if not self.asynchronous else f.s_max
            if r["rung"] >= s:
                out.add(r["candidate"])
        if self.asynchronous:
            return out
        groups = {(e["bracket"], e["rung"]) for e in entries}
        for bracket, rung in groups:
            if (bracket, rung + 1) not in groups:
                continue  # no promotion from this rung has begun
            # promotions start only once the rung finished: the chosen ones are fixed, the rest retire
            members = _at(entries, bracket, rung)
            chosen = set(top(members, max(1, len(members) // f.eta), self.rank))
            out.update(e["candidate"] for e in members if e["candidate"] not in chosen)
        return out


def level_records(records: Sequence[Mapping[str, Any]], finite: Any) -> list[Mapping[str, Any]]:
    """The records at the highest resource any finished record with a finite objective reached: the best
    trial and the front are compared within one rung's resource, never across resources."""
    levels = [r["resource"] for r in records if finite(r)]
    if not levels:
        return list(records)
    top_level = max(levels)
    return [r for r in records if r["resource"] == top_level]


def history_for_proposals(records: Sequence[dict[str, Any]], fidelity: Fidelity) -> list[dict[str, Any]]:
    """What a strategy's `propose` sees: each candidate's first record at the minimum resource, in trial order,
    so a strategy compares candidates only at one resource (REA's population, NSGA-II's generations, random's
    list of tried architectures). With Hyperband, the candidates of brackets that start higher are left out."""
    return [r for r in records if r["rung"] == 0 and r["resource"] == fidelity.min]


def finite_or_none(value: Any) -> float | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None
