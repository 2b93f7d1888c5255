"""DARTS: differentiable architecture search."""

from archsearch.algos.darts.bilevel import BilevelOptimizer
from archsearch.algos.darts.builder import DartsModelDescBuilder
from archsearch.algos.darts.finalizers import DartsFinalizers
from archsearch.algos.darts.mixed_op import MixedOp
from archsearch.algos.darts.runner import DartsRunner
from archsearch.algos.darts.trainer import BilevelArchTrainer

__all__ = [
    "BilevelArchTrainer",
    "BilevelOptimizer",
    "DartsFinalizers",
    "DartsModelDescBuilder",
    "DartsRunner",
    "MixedOp",
]
