"""DARTS: differentiable architecture search (the strategy, its bilevel trainer and the fused cell)."""

from archsearch.model.mixed_op import MixedOp
from archsearch.spaces.darts_cells import DartsModelDescBuilder
from archsearch.strategies.darts.bilevel import BilevelOptimizer
from archsearch.strategies.darts.strategy import Darts
from archsearch.strategies.darts.trainer import BilevelArchTrainer

__all__ = ["BilevelArchTrainer", "BilevelOptimizer", "Darts", "DartsModelDescBuilder", "MixedOp"]
