"""Optuna's samplers by ask-and-tell (`--algos optuna`); named `optuna_search` so it does not shadow the
`optuna` library."""

from archsearch.strategies.optuna_search.strategy import AskTell, OptunaSearch  # noqa: F401 - registers --algos optuna
