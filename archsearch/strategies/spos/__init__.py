"""SPOS: single-path one-shot NAS with uniform sampling (Guo et al., ECCV 2020)."""

from archsearch.strategies.spos.strategy import Spos
from archsearch.strategies.spos.trainer import SposTrainer

__all__ = ["Spos", "SposTrainer"]
