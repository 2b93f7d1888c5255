"""NASWOT (Mellor et al., ICML 2021): rank untrained networks by how differently their ReLUs code the
samples of one mini-batch, then pick the best of N sampled architectures without training any.

`proxies` holds the NASWOT score and the other zero-cost proxies (registry `PROXIES`), `sampling` the
candidates of the NAS-Bench-201 and DARTS spaces and `score_candidates`, `correlation` the comparison
with a benchmark table of trained accuracies.
"""

from archsearch.algos.naswot.proxies import PROXIES, get_proxy, naswot, naswot_kernel
from archsearch.algos.naswot.runner import NaswotRunner  # noqa: F401 - registers --algos naswot
from archsearch.algos.naswot.sampling import (
    Candidate,
    best_candidate,
    darts_model_builder,
    nb201_candidates,
    nb201_model_builder,
    sample_darts,
    sample_nb201,
    score_candidates,
)

__all__ = [
    "PROXIES",
    "get_proxy",
    "naswot",
    "naswot_kernel",
    "Candidate",
    "best_candidate",
    "darts_model_builder",
    "nb201_candidates",
    "nb201_model_builder",
    "sample_darts",
    "sample_nb201",
    "score_candidates",
]
