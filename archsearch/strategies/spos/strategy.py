"""SPOS as `--algos spos` (Guo et al., "Single Path One-Shot Neural Architecture Search with Uniform
Sampling", ECCV 2020): train a weight-sharing supernet one uniformly sampled path per step, then search it
with any black-box strategy, candidates scored with the weights they inherit.

1. Supernet training (skipped with `--nas.search.supernet PATH`): the space's sampled supernet (NAS-Bench-201
   and DARTS cells, ENAS micro and macro, a user model: capability `sampled`) trained by the shared Trainer
   with `SposTrainer`'s uniform path sampling (`fit_supernet`: search/checkpoint.pt every epoch, so a killed
   training resumes exactly). The result is search/supernet.pt (supernet_file.py).
2. Search: the strategy `nas.search.spos.searcher` names (REA by default, standing for the paper's
   evolutionary search; random, nsga2, optuna, any registered TrialStrategy whose evaluation follows
   nas.search.evaluate_by) runs as it always does, on the one trial loop, with `evaluate_by supernet`
   (evaluator.py): the searcher is instantiated on this run's context and space and its own `search()` runs,
   so its proposals, budget (nas.search.<searcher>.n_trials ...), objectives, constraints (cheap ones checked
   before a candidate is scored), trial index and resume are exactly its own; SPOS only supplies the scores.

Deviations from the paper are in docs/spos.md.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from torch import nn

from archsearch.common.checkpoint import fault_point
from archsearch.common.errors import ConfigError
from archsearch.config.schema import Int, Str, register_check, register_section
from archsearch.search.strategy import STRATEGIES, SearchOutcome, Strategy, check_pair, fit_supernet, register_strategy
from archsearch.search.trial_eval import TrialStrategy
from archsearch.strategies.spos.evaluator import SupernetEvaluator, supernet_path
from archsearch.strategies.spos.supernet_file import SUPERNET_FILE, load_supernet, save_supernet
from archsearch.strategies.spos.trainer import SposTrainer

EVALUATE_BY = "supernet"


def searchers() -> list[str]:
    """The registered strategies that can search a supernet: trial-loop strategies that evaluate candidates by
    nas.search.evaluate_by (not those with an evaluation of their own, like naswot's proxy)."""
    return sorted(
        n
        for n in STRATEGIES.names()
        if issubclass(STRATEGIES.get(n), TrialStrategy) and STRATEGIES.get(n).evaluate_by is TrialStrategy.evaluate_by
    )


def shown_path(path: Path, experiment: Path) -> str:
    """`path` relative to the experiment folder when it lies inside (result files move with their folder)."""
    try:
        return str(Path(path).resolve().relative_to(experiment.resolve()))
    except ValueError:
        return str(path)


@register_strategy
class Spos(Strategy):
    name = "spos"
    summary = "SPOS: supernet trained one uniform path per step, then searched (REA, ...) with inherited weights"
    requires = frozenset({"sampled", "sample"})
    default_space = "nasbench201"

    def searcher_class(self) -> type[TrialStrategy]:
        name = self.conf["spos"]["searcher"]
        problem = _a_searcher({"searcher": name})
        if problem is not None:  # the config check said so before the run began; a hand-built config too
            raise ConfigError(f"config nas.search.spos.searcher: {problem[1]}")
        searcher = STRATEGIES.get(name)
        check_pair(searcher, type(self.space))  # e.g. rea needs `mutate`
        return searcher  # type: ignore[return-value]

    def search_model(self) -> nn.Module:
        return self.space.sampled_supernet()

    def dry_run_notes(self) -> list[str]:
        conf = self.conf["spos"]
        given = self.conf["supernet"]
        epochs = self.conf["trainer"]["epochs"]
        training = f"supernet from {given} (no training)" if given else f"{epochs} epochs of supernet training"
        return [f"spos: {training}, then --algos {conf['searcher']} with evaluate_by supernet "
                f"(BatchNorm recalibrated on {conf['bn_batches']} batches)"]  # fmt: skip

    def search(self) -> SearchOutcome:
        ctx, space, conf = self.ctx, self.space, self.conf
        if conf["evaluate_by"] != EVALUATE_BY:
            raise ConfigError(
                f"config nas.search.evaluate_by: --algos spos scores candidates with its supernet; set it to "
                f"{EVALUATE_BY} (it is {conf['evaluate_by']!r}), or use --algos {conf['spos']['searcher']} to "
                "search without one"
            )
        searcher = self.searcher_class()
        metrics: dict[str, Any] = {}
        if conf["supernet"] is None:
            supernet = space.sampled_supernet()
            shared = sum(p.numel() for p in supernet.parameters())
            ctx.log.info(f"[search] SPOS supernet of {space.describe()}; shared weights: {shared:,}")
            trainer, last = fit_supernet(ctx, supernet, functools.partial(SposTrainer, space=space, seed=ctx.seed))
            path = save_supernet(ctx.search_dir / SUPERNET_FILE, trainer.model, space, trainer.history)
            fault_point("spos:supernet_saved")
            ctx.log.info(f"[search] supernet saved: {path}; search it again without retraining: "
                         f"--nas.search.supernet {path}")  # fmt: skip
            metrics.update({f"supernet_{k}": v for k, v in last.items() if k in ("train_top1", "val_top1", "epoch")})
        else:
            path = supernet_path(ctx, conf)
            _, history = load_supernet(path, space)  # checked here, before the searcher starts
            ctx.log.info(f"[search] searching the trained supernet {path} ({len(history)} epochs); no training")
            for row in history:  # its training curve, in this run's log.yaml for the report
                ctx.log.record("search_epoch", **row, supernet_file=str(path))
        ctx.log.info(f"[search] searching it with --algos {searcher.name} (nas.search.{searcher.name})")
        outcome = searcher(ctx, space).search()
        shown = shown_path(path, ctx.out_dir.parent)
        outcome.metrics.update(metrics, searcher=searcher.name, supernet=shown)
        outcome.meta.update(searcher=searcher.name, supernet=shown)
        return outcome


# ---- SPOS' keys (confs/algos/spos.yaml holds the paper's values). The evaluator's keys have defaults here
# because `--nas.search.evaluate_by supernet` works under any black-box strategy, whose file lacks them.
register_section(
    "nas.search",
    {"supernet": Str(null=True, pattern=r".+", allowed="the search/supernet.pt of an --algos spos run",
                     default=None)},
)  # fmt: skip
register_section(
    "nas.search.spos",
    {
        "searcher": Str(pattern=r"[a-z0-9_]+", allowed="a black-box strategy (rea, random, nsga2, ...)", default="rea"),
        "bn_batches": Int(ge=0, default=20),
        "eval_batches": Int(null=True, ge=1, default=None),
    },
)


def _a_searcher(conf: Any) -> tuple[str, str] | None:
    """nas.search.spos.searcher names a registered strategy that can search a supernet (checked with the whole
    config, before a run starts: the strategies are registered by then)."""
    name, valid = conf.get("searcher"), searchers()
    if name is None or name in valid:
        return None
    return "searcher", f"{name!r} is not a strategy that searches a supernet; choose one of {', '.join(valid)}"


register_check("nas.search.spos", _a_searcher)
__all__ = ["Spos", "SupernetEvaluator", "searchers"]  # importing the evaluator registers evaluate_by supernet
