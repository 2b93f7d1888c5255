"""`archsearch profile --space NAME`: measure every op of a search space at every shape it occurs in into a
latency table for this device (model/latency.py), from which `predicted_latency_ms` and `archsearch show`
predict any architecture's latency without running it.

After the ops, `--calibrate K` whole networks (random architectures of the space, seeded) are measured
too, and the table's `scale` and `overhead_ms` are fitted to them (measured ~ scale * sum of items +
overhead, least squares): ops timed alone run from warm caches, and the network's forward pass has glue of
its own. The table says how it was measured (device, runtime,
batch size, threads, warm-up, repeats, sizes) and, written over a table of the same device, runtime, batch
size and threads, keeps that table's other entries (another size of the space).
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import torch

from archsearch.common.errors import UserError
from archsearch.model.latency import (
    RUNTIMES,
    LatencyTable,
    default_table_path,
    device_name,
    item_module,
    measure_ms,
)
from archsearch.search.space import SPACES, SearchSpace, spaces_with

DEFAULT_CELLS = {"nasbench201": 5}  # N per stage; the DARTS skeleton's n_cells otherwise


def make_space(
    name: str,
    init_channels: int = 16,
    cells: int | None = None,
    nodes: int = 4,
    image_size: int = 32,
    channels: int = 3,
    classes: int = 10,
) -> SearchSpace:
    """Space `name` at the given search-network sizes (the keys every shipped space's model_desc reads)."""
    import archsearch.plugins  # noqa: F401 - every space registered

    space_class = SPACES.get(name)
    if "cost" not in space_class.capabilities():
        raise UserError(
            f"space {name} cannot predict latency (no cost items); spaces that can: {', '.join(spaces_with('cost'))}"
        )
    n_cells = cells if cells is not None else DEFAULT_CELLS.get(name, 8)
    conf_model_desc = {
        "skeleton": "cifar",
        "n_cells": n_cells,
        "n_cells_per_stage": n_cells,
        "init_channels": init_channels,
        "n_nodes": nodes,
        "stem_multiplier": 3,
        "n_reductions": 2,
        "aux_weight": 0.0,
        "affine": False,
    }
    conf_dataset = {"channels": channels, "n_classes": classes, "image_size": image_size}
    return space_class({}, conf_model_desc, conf_dataset)


def profile_space(
    space: SearchSpace,
    *,
    device: str = "cpu",
    runtime: str = "torch",
    batch_size: int = 1,
    threads: int | None = 1,
    warmup: int = 3,
    repeats: int = 10,
    calibrate: int = 10,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> LatencyTable:
    """Measure `space.profile_items()` and `calibrate` whole networks into a new table."""
    if runtime == "onnxruntime" and torch.device(device).type != "cpu":
        raise UserError("--runtime onnxruntime measures on the CPU; leave out --device or use --device cpu")
    say = progress or (lambda _line: None)
    items = space.profile_items()
    input_shape = (int(space.conf_dataset["channels"]), *space.image_hw())
    table = LatencyTable(
        meta={
            "space": space.name,
            "device": str(device),
            "device_name": device_name(device),
            "runtime": runtime,
            "batch_size": batch_size,
            "threads": threads,
            "warmup": warmup,
            "repeats": repeats,
            "input_shape": list(input_shape),
            "model_desc": dict(space.conf_model_desc),
            "torch": torch.__version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
    )
    kwargs = {"runtime": runtime, "device": device, "batch_size": batch_size, "threads": threads}
    for i, item in enumerate(items, 1):
        ms = measure_ms(item_module(item), item.input_shape, warmup=warmup, repeats=repeats, **kwargs)
        table.entries[item.key] = ms
        say(f"[{i}/{len(items)}] {item.key:44s} {ms:8.3f} ms")
    rng = random.Random(seed)
    sums, measured = [], []
    for i in range(calibrate):
        arch = space.sample(rng)
        measured.append(measure_ms(space.build(arch), input_shape, warmup=warmup, repeats=repeats, **kwargs))
        sums.append(table.sum_ms(space.cost_items(arch)))
        say(f"[calibrate {i + 1}/{calibrate}] measured {measured[-1]:.3f} ms, sum of ops {sums[-1]:.3f} ms")
    table.calibrate(sums, measured)
    table.meta["calibration_networks"] = calibrate
    return table


def write_table(table: LatencyTable, out: Path) -> Path:
    """Save `table` at `out`, keeping the entries of a table already there measured the same way."""
    if out.exists():
        try:
            old = LatencyTable.load(out)
        except UserError:
            old = None
        if old is not None and old.compatible(table):
            old.merge(table)
            table = old
    return table.save(out)


@click.command(name="profile", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--space", "space_name", required=True, help="The search space to profile (nasbench201, darts).")
@click.option("--device", default="cpu", show_default=True, type=click.Choice(["cpu", "cuda"]), help="Where to run.")
@click.option("--runtime", default="torch", show_default=True, type=click.Choice(list(RUNTIMES)), help="What runs ops.")
@click.option("--init-channels", type=click.IntRange(1, 4096), default=16, show_default=True, help="C of the network.")
@click.option("--cells", type=click.IntRange(1, 200), default=None, help="Cells (NB201: per stage, 5; DARTS: 8).")
@click.option("--nodes", type=click.IntRange(1, 16), default=4, show_default=True, help="Nodes per DARTS cell.")
@click.option("--image-size", type=click.IntRange(1, 4096), default=32, show_default=True, help="Input H = W.")
@click.option("--channels", type=click.IntRange(1, 64), default=3, show_default=True, help="Input channels.")
@click.option("--classes", type=click.IntRange(1, 100000), default=10, show_default=True, help="Output classes.")
@click.option("--batch-size", type=click.IntRange(1, 4096), default=1, show_default=True)
@click.option("--threads", type=click.IntRange(1, 1024), default=1, show_default=True, help="Intra-op threads.")
@click.option("--warmup", type=click.IntRange(0, 10000), default=3, show_default=True)
@click.option("--repeats", type=click.IntRange(1, 100000), default=10, show_default=True, help="Timed runs (median).")
@click.option(
    "--calibrate",
    type=click.IntRange(0, 10000),
    default=10,
    show_default=True,
    help="Whole networks measured to calibrate the scale and per-network overhead.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the calibration architectures.")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Table path (default ~/.cache/archsearch/latency/<device>/<space>.json).",
)
@click.option("--quiet", is_flag=True, help="No progress lines.")
def _profile_cli(space_name: str, device: str, runtime: str, out: Path | None, quiet: bool, **opts: Any) -> None:
    """Measure every op of a search space at every shape into this device's latency table."""
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda asked for, but CUDA is not available; use --device cpu")
    sizes = {k: opts.pop(k) for k in ("init_channels", "cells", "nodes", "image_size", "channels", "classes")}
    space = make_space(space_name, **sizes)
    path = Path(out).expanduser() if out is not None else default_table_path(space.name, device, runtime)
    if path.exists() and path.is_dir():
        raise UserError(f"--out {path} is a folder; give a file path ending in .json")
    progress = None if quiet else (lambda line: click.echo(line, err=True))
    started = time.perf_counter()
    table = profile_space(space, device=device, runtime=runtime, progress=progress, **opts)
    written = write_table(table, path)
    click.echo(
        f"latency table of {space.name} on {table.meta['device_name']} ({runtime}): {len(table.entries)} entries, "
        f"scale {table.scale:.3f}, overhead {table.overhead_ms:.3f} ms, "
        f"{time.perf_counter() - started:.0f} s -> {written}"
    )


def profile_main(argv: list[str]) -> int:
    """`archsearch profile --space NAME [--device cpu|cuda] [--runtime torch|onnxruntime]`: a bad option or
    value is one line and status 2, as any UserError."""
    try:
        _profile_cli.main(args=list(argv), prog_name="archsearch profile", standalone_mode=False)
    except UserError as e:
        click.echo(f"error: {e}", err=True)
        return 2
    except click.exceptions.Exit as done:
        return int(done.exit_code or 0)
    except click.ClickException as e:  # click's usage errors: one line, not its usage block
        click.echo(f"error: {e.format_message()}", err=True)
        return 2
    except click.exceptions.Abort:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(profile_main(sys.argv[1:]))
