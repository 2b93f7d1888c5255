"""The phases of one run, as plain functions of the run's context and its strategy: search (fingerprinted,
resumable, search/result.yaml written last), evaluation of the final architecture file (the final
training), and --dry-run sizes. Any registered strategy on any space that fits runs through them.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archsearch.common import distributed
from archsearch.common.checkpoint import fault_point
from archsearch.common.errors import ArchitectureError, UserError
from archsearch.common.fingerprint import check_fingerprint, phase_fingerprint
from archsearch.common.io import atomic_write_yaml
from archsearch.common.logging import plain
from archsearch.common.readers import read_yaml
from archsearch.common.seeding import seed_everything
from archsearch.model.network import count_params
from archsearch.model.stats import count_macs
from archsearch.search.benchmark_table import table_from_conf
from archsearch.search.space import SearchSpace
from archsearch.search.strategy import STRATEGIES, Strategy, make_space
from archsearch.train.context import RunContext
from archsearch.train.final import EvalResult, read_eval_metrics, train_final

SEARCH_RESULT = "result.yaml"  # written last by a finished search: its presence means "search done"


@dataclass
class SearchResult:
    """What a search hands evaluation: the final architecture file and the search's metrics."""

    final_arch: Path
    metrics: dict[str, Any] = field(default_factory=dict)


def make_strategy(ctx: RunContext) -> Strategy:
    """The run's strategy (`ctx.algo`) on the space its config names."""
    strategy_class = STRATEGIES.get(ctx.algo)
    return strategy_class(ctx, make_space(ctx, strategy_class))


def run_search(ctx: RunContext, strategy: Strategy) -> SearchResult:
    """Search and write the final architecture file; a resumed run whose search finished reuses it."""
    result_file = ctx.search_dir / SEARCH_RESULT
    # before anything is reused: a resume continues only the run its files came from
    on_rank0(lambda: check_fingerprint(ctx.search_dir, phase_fingerprint(ctx.conf, "search"), ctx.resume, "search"))
    if ctx.resume and result_file.exists():
        done = read_search_result(result_file)
        final_arch = from_experiment(ctx.out_dir, done["final_arch"])
        ctx.log.info(f"[search] already finished; reusing {final_arch}")
        return SearchResult(final_arch, done["metrics"])
    start = time.time()
    space, conf_search = strategy.space, ctx.conf["nas"]["search"]
    ctx.log.info(f"[search] {strategy.name} on {space.describe()}")
    # read before searching, so a wrong path fails at once rather than after the search
    table = table_from_conf(conf_search) if "benchmark" in space.capabilities() else None
    if conf_search["benchmark"] and table is None:
        ctx.log.info(f"[search] nas.search.benchmark is not used: space {space.name} has no benchmark key")
    outcome = strategy.search()
    meta = {"algo": ctx.algo, "space": space.name, **outcome.meta}
    path = space.save_arch(outcome.arch, ctx.search_dir, meta)
    found = f"[search] found {space.arch_str(outcome.arch)}"
    if table is not None:  # ground truth for every strategy, one-shot ones included
        accuracy = table.get(space.benchmark_key(outcome.arch))
        _, best = table.best()
        outcome.metrics.update(benchmark_top1=accuracy, benchmark_best_top1=best)
        found += f"; benchmark accuracy {'not in the table' if accuracy is None else f'{accuracy:.2%}'}"
        found += f" (the table's best: {best:.2%}, {len(table):,} architectures)"
    ctx.log.info(found)
    atomic_write_yaml(ctx.search_dir / "metrics.yaml", plain(outcome.metrics))
    ctx.log.record("search_done", final_arch=path, **outcome.metrics)
    ctx.log.info(f"[search] final architecture: {path}")
    result = SearchResult(path, outcome.metrics)
    result.metrics["search_time_s"] = round(time.time() - start, 2)
    check_ranks_same_file(ctx, "search", "final architecture file", result.final_arch)
    fault_point("search:before-result")
    final_arch = in_experiment(ctx.out_dir, result.final_arch)
    atomic_write_yaml(result_file, plain({"final_arch": final_arch, "metrics": result.metrics}))
    return result


def run_eval(ctx: RunContext, space: SearchSpace, final_arch: Path) -> EvalResult:
    """Train `final_arch` from scratch at evaluation size (the final training); a finished one is reused."""
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
    fingerprint = phase_fingerprint(ctx.conf, "eval", Path(final_arch))
    on_rank0(lambda: check_fingerprint(ctx.eval_dir, fingerprint, ctx.resume, "eval"))
    if ctx.resume and (done := read_eval_metrics(ctx.eval_dir)) is not None:
        ctx.log.info(f"[eval] already finished; metrics in {ctx.eval_dir / 'metrics.yaml'}")
        return EvalResult(done, ctx.eval_dir / "model.pt")
    # eval starts from the seed, not from wherever search left the RNG: a separate --eval-only run of the
    # same architecture then trains exactly as the combined run does
    seed_everything(ctx.seed)
    conf_eval = ctx.conf["nas"]["eval"]
    built = space.eval_model(Path(final_arch), conf_eval["model_desc"], ctx.eval_dir)
    return train_final(ctx, conf_eval, built)


def dry_run_sizes(ctx: RunContext, strategy: Strategy) -> dict[str, Any]:
    """Build the search model and an eval model, count them, train nothing, touch no dataset."""
    conf_dataset = ctx.conf["dataset"]
    shape = (conf_dataset["channels"], conf_dataset["image_size"], conf_dataset["image_size"])
    report: dict[str, Any] = {}
    supernet = strategy.search_model()
    if supernet is not None:
        report["search_model_params"] = count_params(supernet)
        if hasattr(supernet, "arch_params") and supernet.arch_params():
            report["search_arch_params"] = sum(p.numel() for p in supernet.arch_params())
            report["search_arch_shapes"] = {k: list(t.shape) for k, t in supernet.arch_tables.items()}
    space = strategy.space
    with tempfile.TemporaryDirectory() as tmp:
        example = space.save_arch(strategy.example_arch(), Path(tmp), {"example": True})
        built = space.eval_model(example, ctx.conf["nas"]["eval"]["model_desc"], None)
        report["eval_model_params"] = count_params(built.model)
        report["eval_model_macs"] = count_macs(built.model, shape)
    report["notes"] = [f"space: {space.describe()}", *strategy.dry_run_notes()]
    report["cell_based"] = space.cell_based
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
