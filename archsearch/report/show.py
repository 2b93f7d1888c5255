"""`archsearch show PATH`: what a found architecture costs (parameters, MACs, latency, peak memory) and,
for cell-based descs, a PNG of its normal and reduction cells and the latency a profiled table predicts
beside the measured one (`archsearch profile`, `--latency-table`)."""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import click
import torch
from torch import nn

from archsearch.common.readers import read_json
from archsearch.report.drawing import draw_pictures
from archsearch.report.export import (
    DEFAULT_IMAGE_SIZE,
    ExportError,
    check_fits,
    check_model_file,
    check_shape,
    input_shape_of,
    load_net,
    load_state,
    parse_shape,
    run_click,
)
from archsearch.report.run_data import space_class

BATCHES = (1, 64)


def _load(
    path: Path, model: str | None, trust_code: bool, given: tuple[int, int, int] | None
) -> tuple[nn.Module, tuple[int, int, int], Any]:
    """(untrained or trained module, input C,H,W, the ModelDesc when there is one) for any file show reads."""
    if path.suffix == ".pt":
        from archsearch.model.model_desc import ModelDesc

        net = load_net(path, model, trust_code)
        state = load_state(path)
        desc = ModelDesc.from_yaml(state["arch"], str(path)) if state.get("arch_format") == "model_desc" else None
        return net, input_shape_of(path, given), desc
    if path.suffix in (".yaml", ".yml"):
        from archsearch.model.model_desc import ModelDesc
        from archsearch.model.network import Model

        desc = ModelDesc.load(path)
        return Model(desc), (desc.ch_in, DEFAULT_IMAGE_SIZE, DEFAULT_IMAGE_SIZE), desc
    if path.suffix == ".json":
        data = read_json(path, "architecture file", ExportError)
        if isinstance(data, dict) and "choices" in data:  # a user model's final_arch.json
            from archsearch.model.load import CodeAllowed
            from archsearch.spaces.user_model import UserModelArch

            net = UserModelArch.load(path).build_fixed(CodeAllowed(model, trust_code), str(path))
            return net, (1, 28, 28), None  # the file does not say; MNIST-size, override with --input-shape
        from archsearch.spaces.morphism.ir_json import load_graph_file

        graph = load_graph_file(path)
        h, w, c = graph.input_shape
        return graph.produce_torch_model(), (int(c), int(h), int(w)), None
    raise ExportError(f"{path}: show reads a model.pt, a desc YAML, a morphism JSON or a user-model arch JSON")


@torch.no_grad()
def _latency_ms(net: nn.Module, x: torch.Tensor, runs: int, warmup: int) -> float:
    sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)
    for _ in range(warmup):  # first calls allocate and pick kernels; they are not the steady state
        net(x)
    sync()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        net(x)
        sync()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


@torch.no_grad()
def _peak_memory(net: nn.Module, x: torch.Tensor) -> tuple[int, str]:
    """Bytes one forward pass allocates at its peak, and how that was measured."""
    if x.is_cuda:
        torch.cuda.reset_peak_memory_stats(x.device)
        before = torch.cuda.memory_allocated(x.device)
        net(x)
        return torch.cuda.max_memory_allocated(x.device) - before, "torch.cuda.max_memory_allocated"
    # CPU: the growth of the process's peak RSS (ru_maxrss, KiB on Linux) over one forward pass; a lower
    # bound, since memory the process already peaked at earlier is not counted again
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    net(x)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return (after - before) * 1024, "peak RSS increase (getrusage ru_maxrss)"


def show(
    path: Path,
    *,
    model: str | None = None,
    trust_code: bool = False,
    input_shape: tuple[int, int, int] | None = None,
    runs: int = 10,
    warmup: int = 3,
    picture: Path | None = None,
    device: str | None = None,
    latency_table: Path | None = None,
) -> dict[str, Any]:
    """Parameters, MACs, median latency at batch 1 and 64, peak memory, and the cell PNG where there is one;
    for a cell network, the latency a profiled table predicts (`latency_table`, else this device's default
    table of the desc's space when there is one)."""
    from archsearch.model.network import count_params
    from archsearch.model.stats import count_macs

    path = Path(path).expanduser()
    if input_shape is not None:
        input_shape = check_shape(tuple(input_shape), "--input-shape")
    check_model_file(path, "file")
    net, shape, desc = _load(path, model, trust_code, input_shape)
    where = "--input-shape" if input_shape else f"the input shape of {path}"
    shape = check_shape(tuple(input_shape or shape), where)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    net = net.to(dev).eval()
    check_fits(net, torch.randn(2, *shape, device=dev), where)
    info: dict[str, Any] = {
        "path": str(path),
        "input_shape": list(shape),
        "device": str(dev),
        "params": count_params(net),
        "macs": count_macs(net, shape, dev),
        "latency_ms": {},
        "runs": runs,
    }
    # memory first: the RSS high-water mark only grows, so after the batch-64 timings it would read 0
    peak, how = _peak_memory(net, torch.randn(BATCHES[-1], *shape, device=dev))
    info["peak_memory_bytes"], info["peak_memory_method"] = peak, f"{how}, batch {BATCHES[-1]}"
    for batch in BATCHES:
        info["latency_ms"][batch] = round(_latency_ms(net, torch.randn(batch, *shape, device=dev), runs, warmup), 3)
    predicted = _predicted(desc, shape, dev, latency_table)
    if predicted is not None:
        info["predicted_latency"] = predicted
    pictures = desc_pictures(desc) if desc is not None else []
    if pictures:
        info["cells_png"] = str(
            draw_pictures(pictures, Path(picture) if picture else path.with_name(path.stem + "_cells.png"))
        )
    return info


def desc_pictures(desc: Any) -> list[Any]:
    """The pictures the desc's space draws of it (its meta names the space; DARTS cells without a tag)."""
    tag = desc.meta.get("space") if isinstance(desc.meta, dict) else None
    tag = tag.get("name") if isinstance(tag, dict) else tag
    space = space_class(tag if isinstance(tag, str) and tag else "darts")
    return space.pictures(desc.to_dict()) if space is not None else []


def _predicted(desc: Any, shape: tuple[int, int, int], dev: torch.device, path: Path | None) -> dict[str, Any] | None:
    """{batch, ms, table} the latency table predicts for `desc`, {error} where it cannot, None where there is
    no table to ask (none given, none profiled for the desc's space on this device)."""
    from archsearch.model.latency import LatencyTable, LatencyTableError, default_table_path, desc_cost_items

    if path is None:
        space = desc.meta.get("space") if desc is not None and isinstance(desc.meta, dict) else None
        if not isinstance(space, str):
            return None
        path = default_table_path(space, dev)
        if not path.is_file():
            return None
    table = LatencyTable.load(path)  # a table given and unreadable: one line, as any bad input
    if desc is None:
        return {"error": "only a cell network (a desc) has cost items", "table": str(path)}
    batch = table.meta.get("batch_size", 1)
    try:
        ms = table.predict(desc_cost_items(desc, shape[1:]))
    except LatencyTableError as e:
        return {"error": str(e), "table": str(path)}
    return {"batch": batch, "ms": round(ms, 3), "table": str(path)}


def render(info: dict[str, Any]) -> str:
    lines = [
        f"{info['path']}",
        f"  parameters   {info['params']:,}",
        f"  MACs         {info['macs'] / 1e6:.2f}M per image {tuple(info['input_shape'])}",
    ]
    for batch, ms in info["latency_ms"].items():
        lines.append(f"  latency      {ms:.2f} ms at batch {batch} on {info['device']} (median of {info['runs']})")
    predicted = info.get("predicted_latency")
    if predicted is not None and "ms" in predicted:
        measured = info["latency_ms"].get(predicted["batch"])
        beside = f", measured {measured:.2f} ms" if measured is not None else ""
        at = f"at batch {predicted['batch']}{beside}"
        lines.append(f"  predicted    {predicted['ms']:.2f} ms {at} (table {predicted['table']})")
    elif predicted is not None:
        lines.append(f"  predicted    n/a: {predicted['error']}")
    lines.append(f"  peak memory  {info['peak_memory_bytes'] / 2**20:.1f} MiB ({info['peak_memory_method']})")
    if "cells_png" in info:
        lines.append(f"  cells        {info['cells_png']}")
    return "\n".join(lines)


@click.command(name="show", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--input-shape", default=None, help="C,H,W of one image (default: from the file or run config).")
@click.option("--runs", type=int, default=10, show_default=True, help="Timed runs per batch size.")
@click.option("--png", "picture", type=click.Path(path_type=Path), default=None, help="Where to write the cells.")
@click.option("--model", default=None, help="The user model class (package.module:Class) the file may import.")
@click.option("--trust-code", is_flag=True, help="Let the file import whatever user code it names.")
@click.option(
    "--latency-table",
    type=click.Path(path_type=Path),
    default=None,
    help="Latency table to predict with (default: this device's table of the desc's space, if profiled).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def _show_cli(
    path: Path,
    input_shape: str | None,
    runs: int,
    picture: Path | None,
    model: str | None,
    trust_code: bool,
    latency_table: Path | None,
    as_json: bool,
) -> None:
    """Parameters, MACs, latency, peak memory and the cell picture of PATH."""
    info = show(
        path,
        model=model,
        trust_code=trust_code,
        input_shape=parse_shape(input_shape),
        runs=runs,
        picture=picture,
        latency_table=latency_table,
    )
    click.echo(json.dumps(info, indent=2) if as_json else render(info))


def show_main(argv: list[str]) -> int:
    """`archsearch show PATH`."""
    return run_click(_show_cli, argv)


if __name__ == "__main__":
    sys.exit(show_main(sys.argv[1:]))
