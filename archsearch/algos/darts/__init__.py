"""DARTS: differentiable architecture search (the strategy, its bilevel trainer and the fused cell)."""

from archsearch.algos.darts.bilevel import BilevelOptimizer
from archsearch.algos.darts.strategy import Darts
from archsearch.algos.darts.trainer import BilevelArchTrainer
from archsearch.nas.mixed_op import MixedOp
from archsearch.spaces.darts_cells import DartsModelDescBuilder

__all__ = ["BilevelArchTrainer", "BilevelOptimizer", "Darts", "DartsModelDescBuilder", "MixedOp"]
