"""ENAS: efficient neural architecture search via parameter sharing (Pham et al., 2018)."""

from archsearch.algos.enas.strategy import Enas
from archsearch.algos.enas.trainer import EnasTrainer

__all__ = ["Enas", "EnasTrainer"]
