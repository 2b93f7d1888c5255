"""PC-DARTS (Xu et al., ICLR 2020) as a strategy: the DARTS strategy and bilevel trainer over a supernet whose
MixedOps pass 1/K of the channels through the candidates (channel shuffle after) and whose edges are
weighted by per-node softmaxed betas (edge normalization); the found genotype ranks edges by
softmax(alpha) * beta weight, as PC-DARTS' `genotype()` does. Memory is the point: K=4 cuts the mixed ops'
activations about fourfold, so the paper trains the supernet at batch 256 where DARTS fits 64.

Settings (confs/algos/pcdarts.yaml) follow yuhuixu1993/PC-DARTS train_search.py. Runs on every space whose
supernet is built from MixedOp edges (capability `mixed_op`: darts, nasbench201).
"""

from __future__ import annotations

from torch import nn

from archsearch.common.errors import ConfigError
from archsearch.config.schema import Bool, Int, register_section
from archsearch.model.mixed_op import MixedOpOptions
from archsearch.search.strategy import register_strategy
from archsearch.strategies.darts.strategy import Darts

register_section("nas.search.model_desc", {"partial_channels": Int(ge=1), "edge_normalization": Bool()})


@register_strategy
class PcDarts(Darts):
    name = "pcdarts"
    summary = "PC-DARTS: DARTS with partial channel connections (1/K of the channels) and edge normalization"
    requires = frozenset({"mixed_op"})

    def options(self) -> MixedOpOptions:
        conf = self.conf["model_desc"]
        k, width = conf["partial_channels"], conf["init_channels"]
        if width % k:
            raise ConfigError(
                f"nas.search.model_desc.partial_channels {k} must divide init_channels {width}: every edge passes "
                f"1/K of its channels through the ops (set init_channels to a multiple of {k})"
            )
        return MixedOpOptions(partial_channels=k, edge_normalization=conf["edge_normalization"])

    def search_model(self) -> nn.Module:
        # never fused: the fused cell implements DARTS' plain mixed op only (fusable() refuses these edges)
        return self.space.mixed_op_supernet(self.options())

    def dry_run_notes(self) -> list[str]:
        options = self.options()
        return [
            *super().dry_run_notes(),
            f"partial channels: 1/{options.partial_channels}, edge normalization: {options.edge_normalization}",
        ]
