"""Searcher: supernet desc + config -> trained supernet -> finalized architecture file.

The default searcher fits the runner's trainer class on the weights/arch split of the training set and
asks the finalizers for the final ModelDesc. Algorithms that search differently (random, manual, NASWOT,
morphism) subclass it and override `search`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archsearch.common.io import atomic_write_text, atomic_write_yaml
from archsearch.common.logging import plain
from archsearch.config import Config
from archsearch.data.loaders import search_loaders
from archsearch.nas.context import RunContext
from archsearch.nas.finalizers import Finalizers
from archsearch.nas.model import Model, count_params
from archsearch.nas.model_desc import ModelDesc
from archsearch.nas.model_desc_builder import ModelDescBuilder, desc_genotype
from archsearch.nas.trainer import Trainer

FINAL_DESC = "final_model_desc.yaml"
ModelFactory = Callable[[ModelDesc], Model]  # desc -> the module search trains (ExperimentRunner.build_search_model)


@dataclass
class SearchSetup:
    """What the runner's seams hand a searcher: its config section and the pieces to search with."""

    conf: Config  # nas.search
    builder: ModelDescBuilder
    trainer_class: type[Trainer]
    finalizers: Finalizers
    build_model: ModelFactory = Model


@dataclass
class SearchResult:
    final_arch: Path  # the file evaluation reads
    metrics: dict[str, Any] = field(default_factory=dict)


class Searcher:
    def search(self, ctx: RunContext, setup: SearchSetup) -> SearchResult:
        model = setup.build_model(setup.builder.build(meta={"algo": ctx.algo}))
        ctx.log.info(
            f"[search] supernet: {count_params(model):,} weights, "
            f"{sum(p.numel() for p in model.arch_params()):,} architecture parameters"
        )
        weights_loader, arch_loader = search_loaders(ctx.conf["dataset"], setup.conf["loader"], ctx.device, ctx.seed)
        trainer = setup.trainer_class(
            setup.conf["trainer"], model, ctx.log, ctx.device, "search", ctx.search_dir / "checkpoint.pt"
        )
        metrics = trainer.fit(weights_loader, arch_loader, resume=ctx.resume)
        final = setup.finalizers.finalize_model(model)
        return SearchResult(save_final_desc(ctx, final, metrics), metrics)


def save_final_desc(ctx: RunContext, desc: ModelDesc, metrics: dict[str, Any]) -> Path:
    """Write search/final_model_desc.yaml, genotype.txt (for two-input cells) and metrics.yaml."""
    path = desc.save(ctx.search_dir / FINAL_DESC)
    if all(c.n_inputs == 2 for c in desc.cells):
        genotype = desc_genotype(desc)
        desc.meta.setdefault("genotype", genotype)
        desc.save(path)
        atomic_write_text(ctx.search_dir / "genotype.txt", genotype + "\n")
        ctx.log.info(f"[search] genotype: {genotype}")
    return record_search_result(ctx, path, metrics)


def record_search_result(ctx: RunContext, final_arch: Path, metrics: dict[str, Any]) -> Path:
    """search/metrics.yaml plus a log record, for any kind of final architecture file."""
    atomic_write_yaml(ctx.search_dir / "metrics.yaml", plain(metrics))
    ctx.log.record("search_done", final_arch=final_arch, **metrics)
    ctx.log.info(f"[search] final architecture: {final_arch}")
    return final_arch
