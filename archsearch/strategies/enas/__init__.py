"""ENAS: efficient neural architecture search via parameter sharing (Pham et al., 2018)."""

from archsearch.strategies.enas.strategy import Enas
from archsearch.strategies.enas.trainer import EnasTrainer

__all__ = ["Enas", "EnasTrainer"]
