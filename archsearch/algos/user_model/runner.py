"""The runner every user-model strategy shares: search writes search/final_arch.json, evaluation builds the
user's model with the chosen candidates and trains it with the framework's Evaluater.

DARTS and ENAS search the same way: wrap the user's model in a `UserSupernet` (which drives its mutables),
fit the strategy's trainer on the weights/arch split with the shared loop, then ask the supernet for the
final choices. Random search trains separate candidates instead (random.py).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, ClassVar

from torch import nn

from archsearch.algos.user_model.model_ref import ARCH_FORMAT, CONF_KEY, FINAL_ARCH, UserModelArch, UserModelRef
from archsearch.data.loaders import search_loaders
from archsearch.nas.context import RunContext
from archsearch.nas.evaluater import BuiltModel
from archsearch.nas.exp_runner import ExperimentRunner
from archsearch.nas.load import CodeAllowed
from archsearch.nas.model import count_params
from archsearch.nas.searcher import Searcher, SearchResult, SearchSetup, record_search_result
from archsearch.nas.trainer import Trainer
from archsearch.spaces.mutables import Choices, MutableSpace


class UserSupernet(nn.Module):
    """The user's model as a strategy searches it: `forward` is the model's, the mutables driven by the strategy."""

    def __init__(self, model: nn.Module, space: MutableSpace) -> None:
        super().__init__()
        self.model = model
        self.space = space  # not a module: it only points at the model's mutables

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.model(*args, **kwargs)

    def final_choices(self, trainer: Trainer, conf_search) -> tuple[Choices, dict[str, Any]]:
        """The architecture the search found, and metrics about how it was picked."""
        raise NotImplementedError


def save_final_arch(ctx: RunContext, arch: UserModelArch, metrics: dict[str, Any]) -> Path:
    """search/final_arch.json (atomic) plus search/metrics.yaml and the log record, as save_final_desc does."""
    path = arch.save(ctx.search_dir / FINAL_ARCH)
    ctx.log.info(f"[search] choices: {arch.choices}")
    return record_search_result(ctx, path, metrics)


class SupernetSearcher(Searcher):
    def __init__(self, runner: UserModelRunner) -> None:
        self.runner = runner

    def search(self, ctx: RunContext, setup: SearchSetup) -> SearchResult:
        conf_search = setup.conf
        trainer_class = setup.trainer_class
        ref = self.runner.model_ref()
        supernet = self.runner.search_model()
        ctx.log.info(f"[search] {ref.path}: {supernet.space.describe()}; {count_params(supernet.model):,} weights")
        weights_loader, arch_loader = search_loaders(ctx.conf["dataset"], conf_search["loader"], ctx.device, ctx.seed)
        trainer = trainer_class(
            conf_search["trainer"], supernet, ctx.log, ctx.device, "search", ctx.search_dir / "checkpoint.pt"
        )
        metrics = trainer.fit(weights_loader, arch_loader, resume=ctx.resume)
        choices, found = supernet.final_choices(trainer, conf_search)
        metrics.update(found)
        arch = UserModelArch(ref, supernet.space.to_json(choices), {"algo": ctx.algo})
        return SearchResult(save_final_arch(ctx, arch, metrics), metrics)


class UserModelRunner(ExperimentRunner):
    """Base of the strategies registered in USER_MODEL_RUNNERS; a strategy sets `supernet_class` and the
    trainer (DARTS, ENAS) or overrides `searcher` (random)."""

    supernet_class: ClassVar[type[UserSupernet]] = UserSupernet

    def model_ref(self) -> UserModelRef:
        return UserModelRef.from_conf(self.conf_search["space"])

    def searcher(self) -> Searcher:
        return SupernetSearcher(self)

    def search_model(self) -> nn.Module:
        model, space = self.model_ref().build_space()
        return self.supernet_class(model, space)

    def example_final_arch(self, folder: Path) -> Path:
        """The model's default choices (first candidate, first inputs), for --dry-run."""
        ref = self.model_ref()
        _, space = ref.build_space()
        arch = UserModelArch(ref, space.to_json(space.default_choices()), {"algo": self.ctx.algo, "example": True})
        return arch.save(folder / FINAL_ARCH)

    def build_eval_model(self, final_arch: Path, eval_dir: Path | None) -> BuiltModel:
        configured = self.model_ref()
        arch = UserModelArch.load(final_arch, configured)  # a bare choice JSON is for the configured model
        # the class comes from the config alone: a file naming another one is refused, never imported
        model = arch.build_fixed(CodeAllowed(configured.path, named_by=CONF_KEY), str(final_arch))
        if eval_dir is not None:
            arch.save(eval_dir / FINAL_ARCH)
        return BuiltModel(model, ARCH_FORMAT, arch.to_json())

    def dry_run(self) -> dict[str, Any]:
        report = {**super().dry_run(), "cell_based": False}
        supernet = self.search_model()
        report["search_model_params"] = count_params(supernet.model)  # the user's weights, without alphas
        arch_params = list(supernet.arch_params()) if hasattr(supernet, "arch_params") else []
        if arch_params:
            report["search_arch_params"] = sum(p.numel() for p in arch_params)
            report["search_arch_shapes"] = {k: list(t.shape) for k, t in supernet.arch_tables.items()}
        with tempfile.TemporaryDirectory() as tmp:
            example = UserModelArch.load(self.example_final_arch(Path(tmp)))
        report["notes"] = [
            f"user model {self.model_ref().path}({self.model_ref().kwargs}): {supernet.space.describe()}",
            f"  example choice JSON (the defaults): {example.choices}",
        ]
        return report
