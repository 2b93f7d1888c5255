"""PC-DARTS (Xu et al., ICLR 2020): DARTS over partial-channel mixed ops with edge normalization."""

from archsearch.strategies.pcdarts.strategy import PcDarts

__all__ = ["PcDarts"]
