"""Run an experiment as one library call: `archsearch.run("darts", overrides={"nas.eval.trainer.epochs": 2})`.

This is everything the command line does after parsing: resolve the config (shipped files, toy or full,
dataset, the user's files, overrides), confine the output folder to the logdir, lock it against a second
run, move an earlier run aside, seed, and run the phases. The CLI (`archsearch.cli`) only parses
arguments and prints what this returns, so a notebook or a sweep script gets exactly the CLI's behaviour.

Under torchrun every rank runs this same function (archsearch.common.distributed): rank 0 takes the lock,
moves the earlier run aside and writes every file, the others wait for it at a barrier, then all ranks run
the phases together. An elastic restart (torchrun --max-restarts) resumes from the last checkpoint by itself.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

import archsearch.plugins  # noqa: F401 - the plugin bootstrap: registers every algorithm, space and format
from archsearch.common import distributed
from archsearch.common.errors import ConfigError, UserError
from archsearch.common.io import atomic_write_text, atomic_write_yaml
from archsearch.common.lock import experiment_lock
from archsearch.common.logging import RunLog, plain
from archsearch.config import (
    Config,
    YamlCache,
    confs_dir,
    load_config,
    load_files,
    parse_override_value,
    to_yaml,
)
from archsearch.config import schema as config_schema
from archsearch.data.providers import DATASETS
from archsearch.experiment.phases import dry_run_sizes, in_experiment, make_strategy, run_eval, run_search
from archsearch.report import tensorboard
from archsearch.search.strategy import STRATEGIES, space_name
from archsearch.train.context import RunContext

PHASES = ("both", "search", "eval")


@dataclass(frozen=True)
class RunOptions:
    """The choices of one run that are not config keys (the CLI's flags)."""

    full: bool = False
    config: tuple[str, ...] = ()  # the user's extra YAML files, applied after the shipped ones
    phases: str = "both"  # both | search (--search-only) | eval (--eval-only)
    exp_prefix: str = "archsearch"
    dry_run: bool = False
    argv: list[str] = field(default_factory=list)  # recorded in log.yaml for the report

    def __post_init__(self) -> None:
        if self.phases not in PHASES:
            raise UserError(f"phases {self.phases!r} is not one of {', '.join(PHASES)}")


def config_files(
    algo: str, dataset: str | None, full: bool, extra: Sequence[str | os.PathLike] = (), space: str | None = None
) -> list[Path]:
    """The files whose merge is the run's config, in the order they apply (later wins): the algorithm's, the
    search space's (its network sizes and evaluation recipe, e.g. NAS-Bench-201's), toy mode's, the dataset's,
    the user's."""
    confs = confs_dir()
    algo_file = confs / "algos" / f"{algo}.yaml"
    # a strategy that declares its defaults beside its code needs no file of its own: the shared settings do
    files = [algo_file if algo_file.exists() else confs / "common.yaml"]
    if space is not None and (confs / "spaces" / f"{space}.yaml").exists():
        files.append(confs / "spaces" / f"{space}.yaml")
    if not full:
        files.append(confs / "toy.yaml")
        for toy in (confs / "algos" / "toy" / f"{algo}.yaml", confs / "spaces" / "toy" / f"{space}.yaml"):
            if toy.exists():
                files.append(toy)
    if dataset is not None:
        dataset_file = confs / "datasets" / f"{dataset}.yaml"
        if not dataset_file.exists():
            raise UserError(f"dataset {dataset!r} has no config {dataset_file}")
        files.append(dataset_file)
    return files + [Path(f) for f in extra]


def override_pairs(overrides: Mapping[str, Any] | Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """(dotted key, YAML text) pairs from a mapping of Python values or from the CLI's string pairs."""
    items = overrides.items() if isinstance(overrides, Mapping) else overrides
    return [(key, value if isinstance(value, str) else _flow_yaml(value)) for key, value in items]


def _flow_yaml(value: Any) -> str:
    # safe_dump ends a lone scalar with the document-end marker "..."; an override is one line
    text = yaml.safe_dump(value, default_flow_style=True, width=10**9).strip()
    return text.removesuffix("...").strip()


def checked_folder_name(name: str, what: str) -> str:
    """`name` if it is one plain folder name of safe characters (config_schema.SAFE_NAME), so an experiment can
    only ever write inside the logdir, and its folder name needs no quoting in a shell or a URL."""
    if not re.fullmatch(config_schema.SAFE_NAME, name):
        raise UserError(
            f"{what} {name[:60]!r} is not a plain folder name; experiments are folders directly inside the logdir, "
            f"named with 1-100 of A-Z a-z 0-9 . _ - (not starting with '.'); use --common.logdir to write elsewhere"
        )
    return name


def output_dir(conf: Config, algo: str, dataset: str, prefix: str, full: bool) -> Path:
    common = conf["common"]
    if common["experiment_name"]:
        name = checked_folder_name(str(common["experiment_name"]), "common.experiment_name")
    else:
        name = f"{checked_folder_name(prefix, '--exp-prefix')}_{dataset}_{'full' if full else 'toy'}"
    return Path(common["logdir"]).expanduser() / name / algo


def make_output_folder(path: Path) -> None:
    """Create the experiment folder, or one line saying why it cannot be (any OS reason, e.g. /proc/x)."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(
            f"cannot create the output folder {path}: {e.strerror or e}; choose another --common.logdir"
        ) from None


def archive_previous(path: Path) -> Path | None:
    """Move an earlier run's folder aside instead of deleting it (nothing is lost)."""
    if not path.exists() or not any(path.iterdir()):
        return None
    target = path.with_name(f"{path.name}.{time.strftime('%Y%m%d-%H%M%S')}")
    n = 1
    while target.exists():
        target = path.with_name(f"{path.name}.{time.strftime('%Y%m%d-%H%M%S')}-{n}")
        n += 1
    shutil.move(str(path), str(target))
    return target


def resolve_config(algo: str, dataset: str | None, options: RunOptions, overrides: Sequence[tuple[str, str]]) -> Config:
    if algo not in STRATEGIES:
        raise UserError(STRATEGIES.unknown_message(algo))
    cache: YamlCache = {}  # each file is read once, though the space is chosen before the whole config exists
    space = chosen_space(algo, config_files(algo, dataset, options.full, options.config), overrides, cache)
    conf = load_config(config_files(algo, dataset, options.full, options.config, space), overrides, cache)
    if conf["dataset"]["name"] not in DATASETS:
        raise ConfigError(f"dataset.name: {DATASETS.unknown_message(conf['dataset']['name'])}")
    return conf


def chosen_space(
    algo: str, files: Sequence[Path], overrides: Sequence[tuple[str, str]], cache: YamlCache | None = None
) -> str:
    """The search space a run will use, read before the full config exists (its file is part of the config):
    `nas.search.space.name` and `.model` from the files and overrides, by the one rule of `space_name`."""
    merged, _ = load_files(files, cache)  # every section in it is a mapping (one line naming the file otherwise)
    space: dict[str, Any] = dict(merged.get("nas", {}).get("search", {}).get("space", {}))
    for key, value in overrides:  # only the two keys that pick the space; load_config checks every override
        if key in ("nas.search.space", "nas.search.space.name", "nas.search.space.model"):
            field_name = "name" if key != "nas.search.space.model" else "model"
            space[field_name] = parse_override_value(value, key)
    return space_name(space, STRATEGIES.get(algo))


def run_experiment(
    algo: str,
    dataset: str | None = None,
    options: RunOptions | None = None,
    overrides: Mapping[str, Any] | Sequence[tuple[str, str]] = (),
) -> dict[str, Any]:
    """Run one algorithm on one dataset (None: the mode's default) and return its summary.

    `overrides` are dotted config keys with values, `{"nas.eval.trainer.epochs": 2}`, or the CLI's
    `[("nas.eval.trainer.epochs", "2")]`. A dry run returns the sizes it would train, with `lines` to print.
    """
    import torch

    from archsearch.common.seeding import seed_everything

    options = options or RunOptions()
    conf = resolve_config(algo, dataset, options, override_pairs(overrides))
    dataset_name = conf["dataset"]["name"]
    common = conf["common"]
    out_dir = output_dir(conf, algo, dataset_name, options.exp_prefix, options.full)
    resume = bool(common["resume"])
    if common["num_threads"]:
        torch.set_num_threads(common["num_threads"])
    launch = distributed.launch_env()
    check_batches(conf)  # before any process group or folder: a batch torchrun's ranks cannot split is one line
    if options.dry_run:  # starts no process group; rank 0 describes the job, the other ranks print nothing
        if launch is not None and launch.rank > 0:
            return {"lines": []}
        return dry_run(algo, conf, out_dir, distributed.select_rank_device(common["device"], launch))
    device = distributed.setup(common["device"], common["dist_timeout_s"])
    restarted = launch is not None and launch.restart > 0 and not resume
    resume = resume or restarted  # torchrun --max-restarts: a restarted job continues from its checkpoint

    if distributed.is_writer():
        make_output_folder(out_dir.parent)
    with experiment_lock(out_dir):
        moved = None
        if not resume and distributed.is_writer():
            moved = archive_previous(out_dir / "eval") if options.phases == "eval" else archive_previous(out_dir)
            out_dir.mkdir(parents=True, exist_ok=True)
        distributed.barrier()  # the other ranks start once rank 0 has set the folder up
        log = RunLog(out_dir)
        try:
            if moved is not None:
                log.info(f"an earlier run was moved to {moved}")
            if restarted:
                log.info(f"torchrun restart {launch.restart}: resuming from the last checkpoint")
            atomic_write_text(out_dir / "config.yaml", to_yaml(conf))
            seed_everything(common["seed"], common["deterministic"])
            ctx = RunContext(conf, log, device, out_dir, resume, common["seed"], algo, tensorboard.log_epoch_images)
            log.info(
                f"archsearch {algo} on {dataset_name} ({'full' if options.full else 'toy'} mode), device {device}, "
                f"output {out_dir}"
            )
            log.record("start", algo=algo, dataset=dataset_name, device=str(device), argv=options.argv)
            log_world(log, device)
            try:
                summary = run_phases(ctx, options.phases)
            except RuntimeError as e:  # a rank died or hung: one line, not a trace per rank
                if not distributed.lost_peer(e):
                    raise
                # the line goes out now, not when SystemExit reaches the top: torchrun's SIGTERM may arrive while
                # the log closes and the lock is released, and its handler stays silent once this line is reported
                print(distributed.lost_rank_message(e), file=sys.stderr, flush=True)
                raise SystemExit(1) from None
            distributed.barrier()  # no rank tears the group down while another still writes its last files
            if conf["report"]["auto"] and distributed.is_writer():  # report.html (issue 14): a failure is a warning
                try:
                    from archsearch.common.interrupts import interrupt_point
                    from archsearch.report.html import report_after_run

                    interrupt_point("report")
                    report = report_after_run(out_dir, log, latency=conf["report"]["latency"])
                except KeyboardInterrupt:  # the run is finished: nothing to resume, only the report to write
                    raise FinishedRunInterrupted(out_dir) from None
                if report is not None:
                    summary["report"] = str(report)  # printed by summary_text; summary.yaml is already written
            return summary
        finally:
            log.close()


class FinishedRunInterrupted(KeyboardInterrupt):
    """Ctrl-C while the end-of-run report was written: every phase had finished, so the advice is to write the
    report, not to resume. `message` is the line the CLI prints."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.message = (
            f"interrupted while writing the report: the run is finished (results in {out_dir / 'summary.yaml'}); "
            f"write its report with `archsearch report {out_dir}`"
        )
        super().__init__(self.message)


def check_batches(conf: Config) -> None:
    """Every loader's configured (global) batch must split evenly among torchrun's ranks."""
    for phase in ("search", "eval"):
        loader = conf["nas"][phase]["loader"]
        for key in ("batch_size", "test_batch_size"):
            distributed.per_rank_batch(loader[key], f"nas.{phase}.loader.{key}")


def log_world(log: RunLog, device) -> None:
    """Under torchrun: the world size and every rank's host and device, in log.log and log.yaml."""
    if not distributed.active():
        return
    import socket

    import torch

    devices = distributed.all_gather_object(f"{socket.gethostname()}:{device}")
    backend = torch.distributed.get_backend()
    shown = ", ".join(f"rank {r} {d}" for r, d in enumerate(devices))
    log.info(f"torchrun: {len(devices)} ranks ({backend}): {shown}")
    log.record("distributed", world_size=len(devices), backend=backend, devices=devices)


def run_phases(ctx: RunContext, phases: str = "both") -> dict[str, Any]:
    """Search and/or evaluate with the run's strategy, write summary.yaml and return the summary."""
    start = time.time()
    strategy = make_strategy(ctx)
    summary: dict[str, Any] = {"algo": ctx.algo, "dataset": ctx.conf["dataset"]["name"], "output_dir": ctx.out_dir}
    final_arch = ctx.conf["nas"]["eval"]["final_desc"]
    if phases != "eval":
        result = run_search(ctx, strategy)
        final_arch = final_arch or result.final_arch
        summary["search"] = result.metrics
        summary["final_arch"] = result.final_arch
    elif not final_arch:
        raise ConfigError("--eval-only needs the architecture to evaluate: --nas.eval.final_desc PATH")
    if phases != "search":
        evaluation = run_eval(ctx, strategy.space, Path(final_arch).expanduser())
        summary["final_arch"] = Path(final_arch)
        summary["eval"] = evaluation.metrics
        summary["model"] = evaluation.model_path
    summary["wall_time_s"] = round(time.time() - start, 1)
    # on disk, paths are relative to the experiment folder (the file's own), so a copied folder stays whole
    stored = {k: v for k, v in summary.items() if k != "output_dir"}
    for key in ("final_arch", "model"):
        if stored.get(key) is not None:
            stored[key] = in_experiment(ctx.out_dir, stored[key])
    atomic_write_yaml(ctx.out_dir / "summary.yaml", plain(stored))
    return summary


def summary_text(summary: dict[str, Any]) -> str:
    """The few lines a finished run prints (under torchrun rank 0 prints them, the other ranks nothing)."""
    if not distributed.is_writer():
        return ""
    lines = [f"== {summary['algo']} on {summary['dataset']} =="]
    if "eval" in summary:
        e = summary["eval"]
        lines.append(f"test accuracy  {e['test_top1'] * 100:.2f}% (top5 {e['test_top5'] * 100:.2f}%)")
        lines.append(f"model          {e['params']:,} parameters, {e['macs'] / 1e6:.2f}M MACs per image")
    for key in ("best_val_top1", "val_top1"):
        if key in summary.get("search", {}):
            lines.append(f"search         {key} {summary['search'][key] * 100:.2f}%")
            break
    lines.append(f"wall time      {summary['wall_time_s']:.1f} s")
    lines.append(f"architecture   {summary.get('final_arch')}")
    if summary.get("model"):
        lines.append(f"model file     {summary['model']}")
    if summary.get("report"):
        lines.append(f"report         {summary['report']}  (open it in a browser)")
    lines.append(f"output folder  {summary['output_dir']}  (summary.yaml, log.log, log.yaml, tb/)")
    return "\n".join(lines)


def dry_run(algo: str, conf: Config, out_dir: Path, device) -> dict[str, Any]:
    """Build the search and eval models at the configured sizes and describe them; train and download nothing."""
    import torch

    from archsearch.common.seeding import seed_everything

    seed_everything(conf["common"]["seed"])
    ctx = RunContext(
        conf, RunLog(None, verbose=False), torch.device("cpu"), out_dir, False, conf["common"]["seed"], algo
    )
    report = dry_run_sizes(ctx, make_strategy(ctx))
    launch = distributed.launch_env()
    search, ev = conf["nas"]["search"], conf["nas"]["eval"]
    cell_based = report.pop("cell_based", True)  # graph IR algorithms have no cell model_desc to show

    def settings(conf: Config) -> str:
        return f"{conf['model_desc'].to_dict()}  " if cell_based else ""

    lines = [
        f"== dry run: {algo} on {conf['dataset']['name']} (device {device}; nothing trained or downloaded) ==",
        f"search: {settings(search)}epochs {search['trainer']['epochs']}, batch {search['loader']['batch_size']}",
    ]
    if "search_model_params" in report:
        lines.append(f"  search model: {report['search_model_params']:,} weight parameters")
    if "search_arch_params" in report:
        lines.append(f"  architecture parameters: {report['search_arch_params']:,} {report['search_arch_shapes']}")
    lines.append(
        f"eval:   {settings(ev)}epochs {ev['trainer']['epochs']}, batch {ev['loader']['batch_size']}, "
        f"cutout {ev['loader']['cutout']}, drop path {ev['trainer']['drop_path_prob']}"
    )
    lines.append(
        f"  eval model: {report['eval_model_params']:,} parameters (excluding aux tower), "
        f"{report['eval_model_macs'] / 1e6:.1f}M MACs per image"
    )
    lines.extend(report.get("notes", []))
    if launch is not None:
        lines.extend(torchrun_lines(conf, launch, device))
    lines.append(f"output folder: {out_dir}")
    report["lines"] = lines
    return report


def torchrun_lines(conf: Config, launch: distributed.Launch, device) -> list[str]:
    """What a torchrun job would do: world size, each rank's share of every batch, the devices."""
    search, ev = conf["nas"]["search"]["loader"], conf["nas"]["eval"]["loader"]
    world = launch.world_size

    def share(batch: int) -> str:
        return f"{batch} = {world} x {batch // world}"

    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    nodes = max(world // max(local, 1), 1)
    if device.type == "cuda":
        devices = f"cuda:0..cuda:{local - 1} on each node (rank r uses cuda:LOCAL_RANK), NCCL"
    else:
        devices = f"cpu, {local} process(es) per node, gloo"
    return [
        f"torchrun: world size {world} ({nodes} node(s) x {local} per node), this process rank {launch.rank}",
        f"  per-rank batch: search {share(search['batch_size'])} (test {share(search['test_batch_size'])}), "
        f"eval {share(ev['batch_size'])} (test {share(ev['test_batch_size'])})",
        f"  devices: {devices}",
    ]
