"""NASWOT (Mellor et al., ICML 2021): rank untrained networks by how differently their ReLUs code the
samples of one mini-batch, then pick the best of N sampled architectures without training any.

`proxies` holds the NASWOT score and the other zero-cost proxies (registry `PROXIES`), `sampling`
`score_candidates` (and NAS-Bench-201 candidates for scripts), `runner` the strategy and the `proxy` trial
evaluator, `correlation` the comparison with a benchmark table of trained accuracies.
"""

from archsearch.config.schema import register_rename
from archsearch.strategies.naswot.proxies import PROXIES, get_proxy, naswot, naswot_kernel
from archsearch.strategies.naswot.sampling import (
    Candidate,
    nb201_candidates,
    nb201_model_builder,
    sample_nb201,
    score_candidates,
)
from archsearch.strategies.naswot.strategy import Naswot  # noqa: F401 - registers --algos naswot and evaluate_by proxy

__all__ = [
    "PROXIES",
    "get_proxy",
    "naswot",
    "naswot_kernel",
    "Candidate",
    "nb201_candidates",
    "nb201_model_builder",
    "sample_nb201",
    "score_candidates",
]

# the keys NASWOT had before any strategy ran on any space (issue 11)
for _old, _new in {
    "space": "--nas.search.space.name (nasbench201, darts, ...)",
    "benchmark_csv": "--nas.search.benchmark",
    "arch_column": "--nas.search.benchmark_columns [KEY_COLUMN, ACCURACY_COLUMN]",
    "accuracy_column": "--nas.search.benchmark_columns [KEY_COLUMN, ACCURACY_COLUMN]",
    "darts_nodes": "--nas.search.model_desc.n_nodes (the darts space's nodes per cell)",
}.items():
    register_rename(f"nas.search.naswot.{_old}", _new)
