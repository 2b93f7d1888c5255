"""ExperimentRunner: the phases of one run, whatever the algorithm: search (fingerprinted, resumable, with
search/result.yaml written last), evaluation of the final architecture file, and --dry-run sizes.

Its one subclass is the strategy runner (archsearch.nas.strategy.StrategyRunner), which supplies the four
pieces below from a strategy and a search space. The framework never imports an algorithm; the CLI imports
`archsearch.algos`, which registers every strategy in RUNNERS.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from torch import nn

from archsearch.common import distributed
from archsearch.common.checkpoint import fault_point
from archsearch.common.errors import ArchitectureError, UserError
from archsearch.common.fingerprint import check_fingerprint, phase_fingerprint
from archsearch.common.io import atomic_write_yaml
from archsearch.common.logging import plain
from archsearch.common.readers import read_yaml
from archsearch.common.registry import Registry
from archsearch.common.seeding import seed_everything
from archsearch.nas.context import RunContext
from archsearch.nas.evaluater import BuiltModel, EvalResult, Evaluater, read_eval_metrics
from archsearch.nas.model import count_params
from archsearch.nas.model_stats import count_macs
from archsearch.nas.searcher import SearchResult
from archsearch.nas.trainer import Trainer

RUNNERS: Registry[type[ExperimentRunner]] = Registry("algorithm")
SEARCH_RESULT = "result.yaml"  # written last by a finished search: its presence means "search done"


class ExperimentRunner:
    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""  # one line for --help

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        self.conf_search = ctx.conf["nas"]["search"]
        self.conf_eval = ctx.conf["nas"]["eval"]

    # ---- what a subclass supplies ----------------------------------------------------------------
    def search(self) -> SearchResult:
        """Search and write the final architecture file."""
        raise NotImplementedError

    def build_eval_model(self, final_arch: Path, eval_dir: Path | None) -> BuiltModel:
        """The network of `final_arch` at evaluation size (written into eval_dir when given)."""
        raise NotImplementedError

    def search_model(self) -> nn.Module | None:
        """The supernet search trains (for --dry-run); None for algorithms without one."""
        return None

    def example_final_arch(self, folder: Path) -> Path:
        """An architecture file of the kind search writes, for --dry-run's eval model."""
        raise NotImplementedError

    # ---- phases --------------------------------------------------------------------------------
    def run_search(self) -> SearchResult:
        ctx = self.ctx
        result_file = ctx.search_dir / SEARCH_RESULT
        # before anything is reused: a resume continues only the run its files came from
        on_rank0(lambda: check_fingerprint(ctx.search_dir, phase_fingerprint(ctx.conf, "search"), ctx.resume, "search"))
        if ctx.resume and result_file.exists():
            done = read_search_result(result_file)
            final_arch = from_experiment(ctx.out_dir, done["final_arch"])
            ctx.log.info(f"[search] already finished; reusing {final_arch}")
            return SearchResult(final_arch, done["metrics"])
        start = time.time()
        result = self.search()
        result.metrics["search_time_s"] = round(time.time() - start, 2)
        check_ranks_same_file(ctx, "search", "final architecture file", result.final_arch)
        fault_point("search:before-result")
        final_arch = in_experiment(ctx.out_dir, result.final_arch)
        atomic_write_yaml(result_file, plain({"final_arch": final_arch, "metrics": result.metrics}))
        return result

    def run_eval(self, final_arch: Path) -> EvalResult:
        distributed.barrier()  # torchrun: rank 0 has written the architecture file every rank reads now
        seen = distributed.all_gather_object(Path(final_arch).exists())
        if any(seen) and not all(seen):
            lacking = ", ".join(str(r) for r, ok in enumerate(seen) if not ok)
            raise ArchitectureError(
                f"final architecture {final_arch} is missing on the node(s) of rank(s) {lacking}: a multi-node "
                "torchrun job needs --common.logdir (and the data) on a file system every node shares"
            )
        if not Path(final_arch).exists():
            raise ArchitectureError(
                f"final architecture {final_arch} does not exist; "
                f"set --nas.eval.final_desc to a search/final_model_desc.yaml"
            )
        fingerprint = phase_fingerprint(self.ctx.conf, "eval", Path(final_arch))
        on_rank0(lambda: check_fingerprint(self.ctx.eval_dir, fingerprint, self.ctx.resume, "eval"))
        if self.ctx.resume and (done := read_eval_metrics(self.ctx.eval_dir)) is not None:
            self.ctx.log.info(f"[eval] already finished; metrics in {self.ctx.eval_dir / 'metrics.yaml'}")
            return EvalResult(done, self.ctx.eval_dir / "model.pt")
        # eval starts from the seed, not from wherever search left the RNG: a separate --eval-only run of the
        # same architecture then trains exactly as the combined run does
        seed_everything(self.ctx.seed)
        return Evaluater().evaluate(self.ctx, self.conf_eval, self.build_eval_model, Path(final_arch), Trainer)

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


def on_rank0(check: Callable[[], None]) -> None:
    """Run `check`, which reads a phase folder and may start writing into it, on rank 0 alone (a torchrun rank
    reading the folder while rank 0 writes its first file would see a half-made phase); its UserError, if
    any, is raised on every rank. Without torchrun: just `check()`."""
    if distributed.world_size() == 1:
        check()
        return
    error = None
    if distributed.is_rank0():
        try:
            check()
        except UserError as e:
            error = e
    error = distributed.broadcast_object(error)
    if error is not None:
        raise error


def read_search_result(path: Path) -> dict[str, Any]:
    """search/result.yaml of a finished search: {final_arch: path, metrics: mapping}, or one line naming it."""
    done = read_yaml(path, "search result", UserError, expect=dict, max_bytes=4 * 1024 * 1024)
    final_arch, metrics = done.get("final_arch"), done.get("metrics")
    if not isinstance(final_arch, str) or not final_arch or not isinstance(metrics, dict):
        raise UserError(
            f"search result {path} lacks final_arch (a path) or metrics (a mapping); delete it to search again, "
            "or rerun without --common.resume true to start over (the earlier run is moved aside)"
        )
    return done


def check_ranks_same_file(ctx: RunContext, phase: str, what: str, path: Path) -> None:
    """Under torchrun: prove every rank produced the same bytes for `path` (rank 0 wrote them), or stop."""
    if distributed.world_size() == 1:
        return
    digests = distributed.check_same_file(what, path)
    ctx.log.info(f"[{phase}] {what} identical on all {len(digests)} ranks: sha256 {digests[0][:16]}")
    ctx.log.record("ranks_identical", phase=phase, what=what, digests=digests)


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
