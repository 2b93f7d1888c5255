"""NSGA-II (`--algos nsga2`): Optuna's NSGAIISampler on the trial loop."""

from archsearch.strategies.nsga2.strategy import Nsga2  # noqa: F401 - registers --algos nsga2
