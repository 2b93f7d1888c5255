"""GDAS (Dong & Yang, CVPR 2019): one Gumbel-sampled op per edge, straight-through architecture gradient."""

from archsearch.strategies.gdas.strategy import Gdas, GdasTrainer

__all__ = ["Gdas", "GdasTrainer"]
