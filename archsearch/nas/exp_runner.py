"""ExperimentRunner: wires ModelDescBuilder -> Searcher (+trainer, finalizers) -> Evaluater for one algorithm.

An algorithm subclasses it, overrides the seams that differ (`model_desc_builder`, `trainer_class`,
`searcher`, `finalizers`, `build_eval_model`, `example_final_arch`) and registers itself in RUNNERS. The
framework never imports an algorithm; the CLI imports `archsearch.algos`, which fills the registry.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any, ClassVar

import yaml
from torch import nn

from archsearch.common.checkpoint import fault_point
from archsearch.common.errors import ArchitectureError
from archsearch.common.fingerprint import check_fingerprint, phase_fingerprint
from archsearch.common.io import atomic_write_yaml
from archsearch.common.logging import plain
from archsearch.common.registry import Registry
from archsearch.common.seeding import seed_everything
from archsearch.nas.arch_trainer import ArchTrainer
from archsearch.nas.context import RunContext
from archsearch.nas.evaluater import BuiltModel, EvalResult, Evaluater, read_eval_metrics
from archsearch.nas.finalizers import Finalizers
from archsearch.nas.model import Model, count_params
from archsearch.nas.model_desc import ModelDesc
from archsearch.nas.model_desc_builder import ModelDescBuilder
from archsearch.nas.model_stats import count_macs
from archsearch.nas.searcher import Searcher, SearchResult, SearchSetup
from archsearch.nas.trainer import Trainer

RUNNERS: Registry[type[ExperimentRunner]] = Registry("algorithm")
SEARCH_RESULT = "result.yaml"  # written last by a finished search: its presence means "search done"


class ExperimentRunner:
    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""  # one line for --help
    chooses_space: ClassVar[bool] = False  # True: a strategy runner, which picks the space from the config

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        self.conf_search = ctx.conf["nas"]["search"]
        self.conf_eval = ctx.conf["nas"]["eval"]

    # ---- seams ---------------------------------------------------------------------------------
    def model_desc_builder(self, conf_model_desc) -> ModelDescBuilder:
        return ModelDescBuilder(conf_model_desc, self.ctx.conf["dataset"])

    def trainer_class(self) -> type[Trainer]:
        return ArchTrainer

    def eval_trainer_class(self) -> type[Trainer]:
        return Trainer

    def searcher(self) -> Searcher:
        return Searcher()

    def finalizers(self) -> Finalizers:
        return Finalizers()

    def evaluater(self) -> Evaluater:
        return Evaluater()

    def build_eval_model(self, final_arch: Path, eval_dir: Path | None) -> BuiltModel:
        """Scale the found ModelDesc to the eval size (a pure desc -> desc function) and compile it."""
        refuse_foreign_architecture(final_arch)
        found = ModelDesc.load(final_arch)
        desc = self.model_desc_builder(self.conf_eval["model_desc"]).scale(found)
        if eval_dir is not None:
            desc.save(eval_dir / "model_desc.yaml")
        return BuiltModel(Model(desc), "model_desc", desc.to_yaml())

    def build_search_model(self, desc: ModelDesc) -> Model:
        """Compile the search-phase desc (an algorithm may swap in a faster but equivalent implementation)."""
        return Model(desc)

    def search_model(self) -> nn.Module | None:
        """The supernet search trains (for --dry-run); None for algorithms without one."""
        return self.build_search_model(self.model_desc_builder(self.conf_search["model_desc"]).build())

    def example_final_arch(self, folder: Path) -> Path:
        """An architecture of the kind search returns, for --dry-run: the untrained supernet, finalized."""
        model = self.search_model()
        assert isinstance(model, Model)
        return self.finalizers().finalize_model(model).save(folder / "example_final_model_desc.yaml")

    # ---- phases --------------------------------------------------------------------------------
    def run_search(self) -> SearchResult:
        ctx = self.ctx
        result_file = ctx.search_dir / SEARCH_RESULT
        # before anything is reused: a resume continues only the run its files came from
        check_fingerprint(ctx.search_dir, phase_fingerprint(ctx.conf, "search"), ctx.resume, "search")
        if ctx.resume and result_file.exists():
            done = yaml.safe_load(result_file.read_text())
            final_arch = from_experiment(ctx.out_dir, done["final_arch"])
            ctx.log.info(f"[search] already finished; reusing {final_arch}")
            return SearchResult(final_arch, done["metrics"])
        start = time.time()
        setup = SearchSetup(
            self.conf_search,
            self.model_desc_builder(self.conf_search["model_desc"]),
            self.trainer_class(),
            self.finalizers(),
            self.build_search_model,
        )
        result = self.searcher().search(self.ctx, setup)
        result.metrics["search_time_s"] = round(time.time() - start, 2)
        fault_point("search:before-result")
        final_arch = in_experiment(ctx.out_dir, result.final_arch)
        atomic_write_yaml(result_file, plain({"final_arch": final_arch, "metrics": result.metrics}))
        return result

    def run_eval(self, final_arch: Path) -> EvalResult:
        if not Path(final_arch).exists():
            raise ArchitectureError(
                f"final architecture {final_arch} does not exist; "
                f"set --nas.eval.final_desc to a search/final_model_desc.yaml"
            )
        fingerprint = phase_fingerprint(self.ctx.conf, "eval", Path(final_arch))
        check_fingerprint(self.ctx.eval_dir, fingerprint, self.ctx.resume, "eval")
        if self.ctx.resume and (done := read_eval_metrics(self.ctx.eval_dir)) is not None:
            self.ctx.log.info(f"[eval] already finished; metrics in {self.ctx.eval_dir / 'metrics.yaml'}")
            return EvalResult(done, self.ctx.eval_dir / "model.pt")
        # eval starts from the seed, not from wherever search left the RNG: a separate --eval-only run of the
        # same architecture then trains exactly as the combined run does
        seed_everything(self.ctx.seed)
        return self.evaluater().evaluate(
            self.ctx, self.conf_eval, self.build_eval_model, Path(final_arch), self.eval_trainer_class()
        )

    def dry_run(self) -> dict[str, Any]:
        """Build the search model and an eval model, count them, train nothing, touch no dataset."""
        conf_dataset = self.ctx.conf["dataset"]
        shape = (conf_dataset["channels"], conf_dataset["image_size"], conf_dataset["image_size"])
        report: dict[str, Any] = {}
        supernet = self.search_model()
        if supernet is not None:
            report["search_model_params"] = count_params(supernet)
            if hasattr(supernet, "arch_params") and supernet.arch_params():
                report["search_arch_params"] = sum(p.numel() for p in supernet.arch_params())
                report["search_arch_shapes"] = {k: list(t.shape) for k, t in supernet.arch_tables.items()}
        with tempfile.TemporaryDirectory() as tmp:
            built = self.build_eval_model(self.example_final_arch(Path(tmp)), None)
            report["eval_model_params"] = count_params(built.model)
            report["eval_model_macs"] = count_macs(built.model, shape)
        return report


def refuse_foreign_architecture(path: Path) -> None:
    """A one-line error when `path` is a JSON architecture of another kind than a ModelDesc (a user model's
    final_arch.json, a morphism graph), instead of a ModelDesc parser's complaint about unknown fields."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return  # not JSON: the ModelDesc loader reports what is wrong with it
    if isinstance(data, dict) and data.get("format") == "user_model_json" and isinstance(data.get("model"), str):
        raise ArchitectureError(
            f"{path} is an architecture of user model {data['model']!r}; evaluate it with "
            f"--nas.search.space.model {data['model']} if you trust that code"
        )
    if isinstance(data, dict) and {"layer_id_to_input_node_ids", "operation_history"} <= set(data):
        raise ArchitectureError(f"{path} is a network-morphism graph; evaluate it with --algos morphism")


def in_experiment(out_dir: Path, path: Path | str) -> str:
    """`path` relative to the experiment folder when it lies inside it, so a copied folder resumes where it is."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path(out_dir).resolve()))
    except ValueError:  # outside (an --eval-only architecture elsewhere): keep it as given
        return str(path)


def from_experiment(out_dir: Path, stored: str) -> Path:
    """The inverse of in_experiment: a relative path is read against the experiment folder it lies in now."""
    path = Path(stored)
    return path if path.is_absolute() else Path(out_dir) / path


def select_runner(algo: str, conf) -> type[ExperimentRunner]:
    """The runner for `algo`; a user model (`nas.search.space.model`) is a search space, so only the runners
    that choose their space (strategies) search one."""
    runner = RUNNERS.get(algo)
    if conf["nas"]["search"]["space"]["model"] and not runner.chooses_space:
        strategies = [n for n in RUNNERS.names() if RUNNERS.get(n).chooses_space]
        raise ArchitectureError(
            f"--algos {algo} cannot search a user model (nas.search.space.model); "
            f"use one of {', '.join(strategies) or 'none registered'}"
        )
    return runner
