"""Importing this package registers every algorithm's runner (and ops) in the registries."""

from archsearch.algos import darts, enas, manual, morphism, naswot, random, user_model  # noqa: F401
