"""The command line: `archsearch --algos darts [--full] [--dotted.config.key value ...]`.

Bad input (an unknown algorithm, dataset, flag, config key or value, a missing file) prints one line on
stderr and exits with status 2; a diverged run exits with 1; Ctrl-C exits with 130 and leaves the last
checkpoint, from which `--common.resume true` continues.

Ctrl-C at any moment is one `interrupted: ...` line and status 130, start-up included: importing this module
imports neither click nor torch (they are imported inside `main`, under its handler), and scripts/main.py
guards its own import of this module.
"""

from __future__ import annotations

import errno
import signal
import sys
from typing import Any

from archsearch.common.errors import TrainingDiverged, UserError
from archsearch.common.interrupts import interrupt_point

INTERRUPTED = "interrupted: the last finished epoch's checkpoint is kept; rerun with --common.resume true to continue"
INTERRUPTED_AT_START = "interrupted before the run started; nothing was written"
_run_started = False  # set once the command starts its runs: before that, nothing was written


def _interrupted(error: BaseException | None, subcommand: str | None = None) -> int:
    """The one line for Ctrl-C (a KeyboardInterrupt carrying `message` says it itself), status 130; a second
    Ctrl-C while it is printed is ignored."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    message = getattr(error, "message", None)
    if not isinstance(message, str):
        if subcommand is not None:
            message = f"interrupted: archsearch {subcommand} stopped"
        else:
            message = INTERRUPTED if _run_started else INTERRUPTED_AT_START
    print(message, file=sys.stderr, flush=True)
    return 130


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


# filesystem problems the user fixes outside archsearch: one line naming the path, exit 2
ENVIRONMENT_ERRNOS = {
    errno.EACCES: "check the folder's permissions or choose another --common.logdir",
    errno.EPERM: "check the folder's permissions or choose another --common.logdir",
    errno.EROFS: "the file system is read-only; choose another --common.logdir",
    errno.ENOSPC: "the disk is full; free space (the last checkpoint is kept) and rerun with --common.resume true",
    errno.EDQUOT: "the disk quota is exceeded; free space and rerun with --common.resume true",
}

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
    from archsearch.data.providers import DATASETS
    from archsearch.search.strategy import STRATEGIES

    algos = "\n".join(f"  {name:10s} {STRATEGIES.get(name).summary}" for name in STRATEGIES.names())
    return (
        f"\b\nAlgorithms:\n{algos}\n\n\bDatasets: {', '.join(DATASETS.names())}\n\n"
        "\bConfig overrides: any key of the resolved config, dotted, e.g.\n"
        "  --nas.eval.trainer.epochs 200 --common.seed 3 --nas.search.loader.batch_size 32\n\n"
        "\bSweeps: --common.seeds [0,1,2] runs every algorithm and dataset once per seed\n"
        '  (in parallel on Ray with --common.executor ray; README "Many trials")'
    )


def _command():
    """The click command (built on first use: importing this module imports neither click nor torch, so a
    Ctrl-C at any moment of start-up reaches `main`'s handler)."""
    global _COMMAND
    if _COMMAND is not None:
        return _COMMAND
    import click

    from archsearch.data.providers import DATASETS
    from archsearch.experiment.run import RunOptions, summary_text
    from archsearch.experiment.sweep import Job, SweepFailed, run_jobs, split_seeds
    from archsearch.search.strategy import STRATEGIES

    @click.command(
        context_settings={
            "ignore_unknown_options": True,
            "allow_extra_args": True,
            "help_option_names": ["-h", "--help"],
        },
        epilog=_epilog(),
    )
    @click.option(
        "--algos", default="darts", show_default=True, help="Comma-separated algorithms, run one after the other."
    )
    @click.option(
        "--full", is_flag=True, help="Paper-scale settings (default: toy mode on digits, about a minute on CPU)."
    )
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
            if algo not in STRATEGIES:
                raise UserError(
                    STRATEGIES.unknown_message(algo).replace("unknown algorithm", "unknown algorithm in --algos")
                )
        datasets: list[str | None] = [None]
        if opts["datasets"]:
            datasets = [d.strip() for d in opts["datasets"].split(",") if d.strip()]
            for d in datasets:
                if d not in DATASETS:
                    raise UserError(
                        DATASETS.unknown_message(d).replace("unknown dataset", "unknown dataset in --datasets")
                    )
        phases = "search" if opts["search_only"] else "eval" if opts["eval_only"] else "both"
        options = RunOptions(opts["full"], opts["config"], phases, opts["exp_prefix"], opts["dry_run"], sys.argv[1:])
        seeds, overrides = split_seeds(overrides)
        jobs = [Job(algo, dataset, seed) for algo in algos for dataset in datasets for seed in (seeds or [None])]
        failed: list[str] = []

        def report(job: Job, result: dict[str, Any] | None, error: str | None) -> None:
            if result is None:  # a run of a sweep on Ray that failed: the others go on
                failed.append(f"{job.algo} on {job.dataset or 'the default dataset'}, seed {job.seed}: {error}")
                click.echo(f"error: {failed[-1]}", err=True)
            else:
                text = "\n".join(result["lines"]) if options.dry_run else summary_text(result)
                if text:  # empty on torchrun ranks other than 0: rank 0 prints for the job
                    click.echo(text)

        global _run_started
        _run_started = True
        run_jobs(jobs, options, overrides, report)
        if failed:
            raise SweepFailed(f"{len(failed)} of {len(jobs)} runs failed: {'; '.join(failed)}")

    _COMMAND = command
    return command


_COMMAND = None


# `archsearch export|show|report|profile ...`: tools on a run's files or a space, each its own command
SUBCOMMANDS = {
    "export": "archsearch.report.export:export_main",
    "show": "archsearch.report.show:show_main",
    "report": "archsearch.report.html:report_main",
    "profile": "archsearch.report.profile:profile_main",
}


def main(argv: list[str] | None = None) -> int:
    """The `archsearch` console script: the exit status (0, 1, 2, or 130 for Ctrl-C at any moment)."""
    args = sys.argv[1:] if argv is None else argv
    subcommand = args[0] if args and args[0] in SUBCOMMANDS else None
    try:
        interrupt_point("startup")
        if subcommand is not None:
            import importlib

            module, _, function = SUBCOMMANDS[subcommand].partition(":")
            return getattr(importlib.import_module(module), function)(args[1:])
        return _run_command(argv)
    except KeyboardInterrupt as e:
        return _interrupted(e, subcommand)


def _run_command(argv: list[str] | None) -> int:
    import click

    command = _command()
    from archsearch.experiment.sweep import SweepFailed

    try:
        command.main(args=argv, prog_name="archsearch", standalone_mode=False)
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.Abort as e:  # click turns Ctrl-C into Abort; the interrupt it replaced may carry a message
        return _interrupted(e.__cause__ or e.__context__)
    except click.ClickException as e:  # click's own usage errors: one line, status 2
        click.echo(f"error: {e.format_message()}", err=True)
        return 2
    except UserError as e:
        click.echo(f"error: {e}", err=True)
        return 2
    except (TrainingDiverged, SweepFailed) as e:
        click.echo(f"error: {e}", err=True)
        return 1
    except OSError as e:
        if e.errno not in ENVIRONMENT_ERRNOS:
            raise  # anything else is a bug and keeps its traceback
        where = f" {e.filename}" if e.filename else ""
        click.echo(f"error: cannot write or read{where}: {e.strerror}; {ENVIRONMENT_ERRNOS[e.errno]}", err=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
