"""ENAS: efficient neural architecture search via parameter sharing (Pham et al., 2018)."""

from archsearch.algos.enas.runner import EnasRunner, EnasSearcher
from archsearch.algos.enas.trainer import EnasTrainer

__all__ = ["EnasRunner", "EnasSearcher", "EnasTrainer"]
