"""`--nas.search.evaluate_by supernet`: a candidate inherits the trained supernet's weights and is scored on the
arch split, with no training of its own (SPOS' search, Guo et al. 2020, sec. 3.3).

A trial selects its path in the supernet (`set_arch`), recalibrates the BatchNorm running statistics of the
whole network on `nas.search.spos.bn_batches` batches of the weights (training) split, as SPOS does before
every inference ("the statistics of all the Batch Normalization operations are recalculated on a random subset
of training data"): each statistic is reset and recomputed as the plain average over those batches
(momentum None), in train mode under no_grad, so no weight moves. Then it is scored in eval mode on the arch
split (the first `eval_batches` batches, null: all of it): metrics `supernet_top1` and `supernet_loss`.

The recalibration and scoring batches are drawn once, from the loaders' seeded epoch 0, and every trial uses
the same ones, and a reset statistic forgets every earlier trial: a trial's figure is a function of its
architecture, the supernet and the seed alone, so a resumed or re-ordered search scores exactly the same.

Any black-box strategy searches with it (`--algos rea --nas.search.evaluate_by supernet --nas.search.supernet
PATH`); `--algos spos` trains the supernet first and then runs its searcher with it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from archsearch.common.devices import select_device
from archsearch.common.errors import ConfigError
from archsearch.data.loaders import search_loaders
from archsearch.search.space import SearchSpace
from archsearch.search.trial_eval import ShippableEvaluator, register_evaluator
from archsearch.search.trial_loop import Trial, TrialLog
from archsearch.strategies.spos.supernet_file import SUPERNET_FILE, load_supernet
from archsearch.train.context import RunContext

Batches = list[tuple[torch.Tensor, torch.Tensor]]


@torch.no_grad()
def recalibrate_bn(model: nn.Module, batches: Batches, device: torch.device) -> int:
    """Reset every BatchNorm's running statistics and recompute them as the average over `batches` (the
    model's current child); weights are untouched. Returns how many BatchNorms were recalibrated."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not batches:
        return 0
    saved = [(bn, bn.momentum) for bn in norms]
    was_training = model.training
    try:
        for bn in norms:
            bn.reset_running_stats()
            bn.momentum = None  # a cumulative average: independent of the order and of anything before
        model.train()
        for x, _ in batches:
            model(x.to(device))
    finally:
        for bn, momentum in saved:
            bn.momentum = momentum
        model.train(was_training)
    return len(norms)


@torch.no_grad()
def score(model: nn.Module, batches: Batches, device: torch.device) -> dict[str, float]:
    """Top-1 accuracy (a fraction) and mean loss of `model` in eval mode on `batches`."""
    model.eval()
    correct, loss, n = 0, 0.0, 0
    for x, y in batches:
        out = model(x.to(device))
        logits = out[0] if isinstance(out, tuple) else out
        y = y.to(device)
        correct += int((logits.argmax(1) == y).sum())
        loss += float(F.cross_entropy(logits.float(), y, reduction="sum"))
        n += int(y.shape[0])
    return {"supernet_top1": correct / max(n, 1), "supernet_loss": loss / max(n, 1)}


@dataclass
class SupernetWork:
    """Scores a trial wherever it runs: the supernet's weights and the fixed batches travel once (the object
    store under Ray); the supernet is rebuilt from the space in the worker on its first trial."""

    space: SearchSpace
    state: dict[str, torch.Tensor]
    bn_batches: Batches
    eval_batches: Batches
    device: str
    _model: nn.Module | None = field(default=None, repr=False)

    def model(self) -> tuple[nn.Module, torch.device]:
        device = select_device(self.device)
        if self._model is None:
            model = self.space.sampled_supernet()
            model.load_state_dict(self.state)
            self._model = model.to(device)
        return self._model, device

    def __call__(self, trial: Trial, payload: Any = None, log: TrialLog | None = None) -> tuple[dict, dict]:
        model, device = self.model()
        model.set_arch(self.space.from_json(trial.arch, f"trial {trial.index}"))
        recalibrate_bn(model, self.bn_batches, device)
        return score(model, self.eval_batches, device), {}


def supernet_path(ctx: RunContext, conf_search: Mapping, quiet: bool = False) -> Path:
    """The supernet a run searches: nas.search.supernet, else this run's search/supernet.pt (--algos spos).

    A path into this run's own folder that the start of this run moved aside (a second run of the same
    experiment: `archive_previous`) is found in the newest moved-aside folder, and the log says so."""
    given = conf_search["supernet"]
    if given is None:
        path = ctx.search_dir / SUPERNET_FILE
        if not path.is_file():
            raise ConfigError(
                "--nas.search.evaluate_by supernet needs a trained supernet: --nas.search.supernet PATH (the "
                f"search/{SUPERNET_FILE} of an --algos spos run), or run --algos spos, which trains one"
            )
        return path
    path = Path(given).expanduser()
    if path.exists():
        return path
    try:
        inside = path.resolve().relative_to(ctx.out_dir.resolve())
    except ValueError:
        return path  # read_supernet names the missing file
    moved = sorted(p for p in ctx.out_dir.parent.glob(f"{ctx.out_dir.name}.*") if (p / inside).is_file())
    if not moved:
        return path
    found = moved[-1] / inside  # archive names carry the time they were moved: the last sorts last
    if not quiet:
        ctx.log.info(f"[search] nas.search.supernet {path} was moved aside with the earlier run; using {found}")
    return found


@register_evaluator("supernet")
class SupernetEvaluator(ShippableEvaluator):
    objective = "supernet_top1"
    produces = ("supernet_top1", "supernet_loss")

    def __init__(self, ctx: RunContext, space: SearchSpace, conf_search: Mapping) -> None:
        conf = conf_search["spos"]
        if "sampled" not in space.capabilities():
            raise ConfigError(f"--nas.search.evaluate_by supernet needs a space with a sampled supernet; {space.name} "
                              "has none")  # fmt: skip
        self.path = supernet_path(ctx, conf_search, quiet=True)  # --algos spos said where it is
        supernet, _ = load_supernet(self.path, space)
        weights_loader, arch_loader = search_loaders(
            ctx.conf["dataset"], conf_search["loader"], ctx.device, ctx.seed, shard=False
        )
        for loader in (weights_loader, arch_loader):
            if hasattr(loader, "set_epoch"):
                loader.set_epoch(0)
        bn = [(x.cpu(), y.cpu()) for x, y in islice(iter(weights_loader), conf["bn_batches"])]
        n_eval = conf["eval_batches"]
        held = [(x.cpu(), y.cpu()) for x, y in (islice(iter(arch_loader), n_eval) if n_eval else arch_loader)]
        self._work = SupernetWork(space, supernet.state_dict(), bn, held, ctx.conf["common"]["device"])
        images = sum(int(x.shape[0]) for x, _ in bn)
        ctx.log.info(
            f"[search] scoring with the supernet {self.path}: BatchNorm recalibrated on {images} training images, "
            f"scored on {sum(int(y.shape[0]) for _, y in held)} arch-split images"
        )

    def __call__(self, trial: Trial) -> dict[str, Any]:
        return self._work(trial)[0]

    def work(self) -> SupernetWork:
        return self._work
