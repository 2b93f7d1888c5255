"""A proxy ensemble: several zero-cost proxies of one network, combined by their ranks in the population.

Ranks are relative, so an ensemble score only exists for a population: each network keeps every member's raw
score (`zero_cost.measure` computes them from shared passes), and `aggregate` turns the population's columns
into one score per network:

- `log_rank` (AZ-NAS, Lee & Ham CVPR 2024, eq. 12; the default): sum over members of log(rank / m), rank 1
  the lowest of m networks and m the highest (ties share their average rank, scipy.stats.rankdata). A network
  must rank well on every member: one last place costs log(1/m), however good the others.
- `mean_rank`: the mean over members of rank / m (a linear vote; a bad member is outvoted).

Every member is higher-is-better (AZ-NAS ranks FLOPs the same way: more is better). A NaN member score (the
proxy failed on that network) ranks last, as -inf does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy import stats

from archsearch.common.errors import ConfigError
from archsearch.strategies.naswot.proxies import PROXIES

AGGREGATES = ("log_rank", "mean_rank")
ENSEMBLE = "ensemble"
# The AZ-NAS ensemble, the reference (tau 0.741 on NB201 CIFAR-10)
AZ_NAS_MEMBERS = ("az_expressivity", "az_progressivity", "az_trainability", "az_complexity")


def check_members(members: Sequence[str] | None, where: str = "nas.search.naswot.ensemble.members") -> list[str]:
    """The member list, or one ConfigError line: empty, unknown names, repeats, or the ensemble itself."""
    if not members:
        raise ConfigError(f"{where}: the ensemble needs at least one member proxy, e.g. [{', '.join(AZ_NAS_MEMBERS)}]")
    known = [n for n in PROXIES.names() if n != ENSEMBLE]
    for name in members:
        if name == ENSEMBLE or name not in PROXIES:
            raise ConfigError(f"{where}: unknown member proxy {name!r}; known: {', '.join(known)}")
    if len(set(members)) != len(members):
        raise ConfigError(f"{where}: a member is listed twice ({', '.join(members)})")
    return list(members)


def ranks(values: Sequence[float]) -> np.ndarray:
    """1 = the lowest, len = the highest; ties share their average rank; NaN ranks with -inf, last."""
    v = np.asarray(values, dtype=float)
    return stats.rankdata(np.where(np.isnan(v), -np.inf, v))


def aggregate(columns: Mapping[str, Sequence[float]], how: str = "log_rank") -> np.ndarray:
    """One ensemble score per network from each member's raw scores over the population (higher is better)."""
    if how not in AGGREGATES:
        raise ConfigError(f"nas.search.naswot.ensemble.aggregate: {how!r} is not one of {', '.join(AGGREGATES)}")
    if not columns:
        raise ConfigError("nas.search.naswot.ensemble.members: the ensemble needs at least one member proxy")
    lengths = {len(v) for v in columns.values()}
    if len(lengths) != 1:
        raise ValueError(f"members score different numbers of networks: {sorted(lengths)}")
    m = lengths.pop()
    if m == 0:
        return np.zeros(0)
    total = np.zeros(m)
    for values in columns.values():
        r = ranks(values) / m
        total += np.log(r) if how == "log_rank" else r
    return total if how == "log_rank" else total / len(columns)


__all__ = ["AGGREGATES", "AZ_NAS_MEMBERS", "ENSEMBLE", "aggregate", "check_members", "ranks"]
