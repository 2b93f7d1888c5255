"""The command line: `archsearch --algos darts [--full] [--dotted.config.key value ...]`.

Bad input (an unknown algorithm, dataset, flag, config key or value, a missing file) prints one line on
stderr and exits with status 2; a diverged run exits with 1; Ctrl-C exits with 130 and leaves the last
checkpoint, from which `--common.resume true` continues.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import click

import archsearch.algos  # noqa: F401 - registers every algorithm
from archsearch.common.errors import ConfigError, TrainingDiverged, UserError
from archsearch.common.io import atomic_write_text, atomic_write_yaml
from archsearch.common.logging import RunLog, plain
from archsearch.config import Config, load_config, to_yaml
from archsearch.data.providers import DATASETS
from archsearch.nas.context import RunContext
from archsearch.nas.exp_runner import RUNNERS, select_runner

PACKAGE_ROOT = Path(__file__).resolve().parent


def confs_dir() -> Path:
    """The shipped configs, archsearch/confs/ inside the package (in a wheel too), or $ARCHSEARCH_CONFS."""
    env = os.environ.get("ARCHSEARCH_CONFS")
    path = Path(env).expanduser() if env else PACKAGE_ROOT / "confs"
    if not (path / "common.yaml").exists():
        where = "ARCHSEARCH_CONFS" if env else "the installed package"
        raise UserError(f"config folder {path} (from {where}) has no common.yaml; point ARCHSEARCH_CONFS at a copy "
                        "of archsearch/confs or reinstall archsearch")
    return path


def config_files(algo: str, dataset: str | None, full: bool, extra: tuple[str, ...]) -> list[Path]:
    confs = confs_dir()
    files = [confs / "algos" / f"{algo}.yaml"]
    if not full:
        files.append(confs / "toy.yaml")
        if (confs / "algos" / "toy" / f"{algo}.yaml").exists():
            files.append(confs / "algos" / "toy" / f"{algo}.yaml")
    if dataset is not None:
        dataset_file = confs / "datasets" / f"{dataset}.yaml"
        if not dataset_file.exists():
            raise UserError(f"dataset {dataset!r} has no config {dataset_file}")
        files.append(dataset_file)
    return files + [Path(f) for f in extra]


def parse_overrides(args: list[str]) -> list[tuple[str, str]]:
    """`--a.b.c value` / `--a.b.c=value` pairs; anything else is an unknown option."""
    overrides = []
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or "." not in arg.split("=")[0]:
            raise UserError(
                f"unknown option {arg!r}; options are {', '.join(OPTION_NAMES)} "
                f"or a dotted config key like --nas.eval.trainer.epochs 200"
            )
        if "=" in arg:
            key, value = arg[2:].split("=", 1)
            i += 1
        else:
            if i + 1 >= len(args) or args[i + 1].startswith("--"):
                raise UserError(f"option {arg} needs a value, e.g. {arg} 3")
            key, value = arg[2:], args[i + 1]
            i += 2
        overrides.append((key, value))
    return overrides


def output_dir(conf: Config, algo: str, dataset: str, prefix: str, full: bool) -> Path:
    common = conf["common"]
    name = common["experiment_name"] or f"{prefix}_{dataset}_{'full' if full else 'toy'}"
    return Path(common["logdir"]).expanduser() / name / algo


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


def run_one(algo: str, dataset: str | None, opts: dict[str, Any], overrides: list[tuple[str, str]]) -> dict[str, Any]:
    import torch

    from archsearch.common.devices import select_device
    from archsearch.common.seeding import seed_everything

    conf = load_config(config_files(algo, dataset, opts["full"], opts["config"]), overrides)
    dataset_name = conf["dataset"]["name"]
    if dataset_name not in DATASETS:
        raise ConfigError(f"dataset.name: {DATASETS.unknown_message(dataset_name)}")
    common = conf["common"]
    out_dir = output_dir(conf, algo, dataset_name, opts["exp_prefix"], opts["full"])
    resume = bool(common["resume"])
    if common["num_threads"]:
        torch.set_num_threads(common["num_threads"])
    device = select_device(common["device"])
    if opts["dry_run"]:
        return dry_run(algo, conf, out_dir, device)

    moved = None
    if not resume:
        moved = archive_previous(out_dir / "eval") if opts["eval_only"] else archive_previous(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    log = RunLog(out_dir)
    try:
        if moved is not None:
            log.info(f"an earlier run was moved to {moved}")
        atomic_write_text(out_dir / "config.yaml", to_yaml(conf))
        seed_everything(common["seed"], common["deterministic"])
        ctx = RunContext(conf, log, device, out_dir, resume, common["seed"], algo)
        log.info(
            f"archsearch {algo} on {dataset_name} ({'full' if opts['full'] else 'toy'} mode), device {device}, "
            f"output {out_dir}"
        )
        log.record("start", algo=algo, dataset=dataset_name, device=str(device), argv=sys.argv[1:])
        return run_phases(select_runner(algo, conf)(ctx), ctx, opts)
    finally:
        log.close()


def run_phases(runner, ctx: RunContext, opts: dict[str, Any]) -> dict[str, Any]:
    start = time.time()
    summary: dict[str, Any] = {"algo": ctx.algo, "dataset": ctx.conf["dataset"]["name"], "output_dir": ctx.out_dir}
    final_arch = ctx.conf["nas"]["eval"]["final_desc"]
    if not opts["eval_only"]:
        result = runner.run_search()
        final_arch = final_arch or result.final_arch
        summary["search"] = result.metrics
        summary["final_arch"] = result.final_arch
    elif not final_arch:
        raise ConfigError("--eval-only needs the architecture to evaluate: --nas.eval.final_desc PATH")
    if not opts["search_only"]:
        evaluation = runner.run_eval(Path(final_arch).expanduser())
        summary["final_arch"] = Path(final_arch)
        summary["eval"] = evaluation.metrics
        summary["model"] = evaluation.model_path
    summary["wall_time_s"] = round(time.time() - start, 1)
    atomic_write_yaml(ctx.out_dir / "summary.yaml", plain(summary))
    print_summary(summary)
    return summary


def print_summary(summary: dict[str, Any]) -> None:
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
    lines.append(f"output folder  {summary['output_dir']}  (summary.yaml, log.log, log.yaml, tb/)")
    click.echo("\n".join(lines))


def dry_run(algo: str, conf: Config, out_dir: Path, device) -> dict[str, Any]:
    import torch

    from archsearch.common.seeding import seed_everything

    seed_everything(conf["common"]["seed"])
    ctx = RunContext(
        conf, RunLog(None, verbose=False), torch.device("cpu"), out_dir, False, conf["common"]["seed"], algo
    )
    report = select_runner(algo, conf)(ctx).dry_run()
    search, ev = conf["nas"]["search"], conf["nas"]["eval"]
    click.echo(f"== dry run: {algo} on {conf['dataset']['name']} (device {device}; nothing trained or downloaded) ==")
    cell_based = report.pop("cell_based", True)  # graph IR algorithms have no cell model_desc to show

    def settings(conf: Config) -> str:
        return f"{conf['model_desc'].to_dict()}  " if cell_based else ""

    click.echo(
        f"search: {settings(search)}epochs {search['trainer']['epochs']}, batch {search['loader']['batch_size']}"
    )
    if "search_model_params" in report:
        click.echo(f"  search model: {report['search_model_params']:,} weight parameters")
    if "search_arch_params" in report:
        click.echo(f"  architecture parameters: {report['search_arch_params']:,} {report['search_arch_shapes']}")
    click.echo(
        f"eval:   {settings(ev)}epochs {ev['trainer']['epochs']}, batch {ev['loader']['batch_size']}, "
        f"cutout {ev['loader']['cutout']}, drop path {ev['trainer']['drop_path_prob']}"
    )
    click.echo(
        f"  eval model: {report['eval_model_params']:,} parameters (excluding aux tower), "
        f"{report['eval_model_macs'] / 1e6:.1f}M MACs per image"
    )
    for note in report.get("notes", []):
        click.echo(note)
    click.echo(f"output folder: {out_dir}")
    return report


OPTION_NAMES = [
    "--algos",
    "--full",
    "--datasets",
    "--search-only",
    "--eval-only",
    "--exp-prefix",
    "--dry-run",
    "--config",
    "--help",
]


def _epilog() -> str:
    algos = "\n".join(f"  {name:10s} {RUNNERS.get(name).summary}" for name in RUNNERS.names())
    return (
        f"\b\nAlgorithms:\n{algos}\n\n\bDatasets: {', '.join(DATASETS.names())}\n\n"
        "\bConfig overrides: any key of the resolved config, dotted, e.g.\n"
        "  --nas.eval.trainer.epochs 200 --common.seed 3 --nas.search.loader.batch_size 32"
    )


@click.command(
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": ["-h", "--help"]},
    epilog=_epilog(),
)
@click.option(
    "--algos", default="darts", show_default=True, help="Comma-separated algorithms, run one after the other."
)
@click.option("--full", is_flag=True, help="Paper-scale settings (default: toy mode on digits, about a minute on CPU).")
@click.option(
    "--datasets", default=None, help="Comma-separated datasets (default: digits in toy mode, cifar10 with --full)."
)
@click.option("--search-only", is_flag=True, help="Run the search phase only.")
@click.option("--eval-only", is_flag=True, help="Evaluate --nas.eval.final_desc PATH only.")
@click.option("--exp-prefix", default="archsearch", show_default=True, help="Experiment name prefix.")
@click.option("--dry-run", is_flag=True, help="Resolve config, build models, print sizes and paths; train nothing.")
@click.option("--config", multiple=True, help="Extra YAML config file(s) applied on top.")
@click.pass_context
def command(ctx: click.Context, **opts: Any) -> None:
    """archsearch: neural architecture search for PyTorch (DARTS, ENAS, morphism, NASWOT, random, manual)."""
    if opts["search_only"] and opts["eval_only"]:
        raise UserError("--search-only and --eval-only exclude each other")
    overrides = parse_overrides(ctx.args)
    algos = [a.strip() for a in opts["algos"].split(",") if a.strip()]
    if not algos:
        raise UserError("--algos needs at least one algorithm")
    for algo in algos:
        if algo not in RUNNERS:
            raise UserError(RUNNERS.unknown_message(algo).replace("unknown algorithm", "unknown algorithm in --algos"))
    datasets: list[str | None] = [None]
    if opts["datasets"]:
        datasets = [d.strip() for d in opts["datasets"].split(",") if d.strip()]
        for d in datasets:
            if d not in DATASETS:
                raise UserError(DATASETS.unknown_message(d).replace("unknown dataset", "unknown dataset in --datasets"))
    for algo in algos:
        for dataset in datasets:
            run_one(algo, dataset, opts, overrides)


def main(argv: list[str] | None = None) -> int:
    try:
        command.main(args=argv, prog_name="archsearch", standalone_mode=False)
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.ClickException as e:  # click's own usage errors: one line, status 2
        click.echo(f"error: {e.format_message()}", err=True)
        return 2
    except (click.Abort, KeyboardInterrupt):  # click turns Ctrl-C into Abort
        click.echo(
            "interrupted: the last finished epoch's checkpoint is kept; rerun with --common.resume true to continue",
            err=True,
        )
        return 130
    except UserError as e:
        click.echo(f"error: {e}", err=True)
        return 2
    except TrainingDiverged as e:
        click.echo(f"error: {e}", err=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
