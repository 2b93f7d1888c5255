"""What the report costs a run: the TensorBoard images of a differentiable search (per epoch) and the
report.html written at the end of every run (per algorithm), measured on toy runs.

    python scripts/bench_report.py                 # toy DARTS search on digits, with and without TB images,
                                                   # then the end-of-run report of every algorithm's tiny run

Part 1 runs the same seeded toy DARTS search twice (`--algos darts` toy mode on digits, search only, one
thread), once with `nas.search.trainer.tensorboard_images` true and once false, and also times each call of
the image hook. Part 2 times `write_report` (latency measurement included) on the tiny runs of
tests/report/toy_runs.py, each once, after one warm-up report (imports of matplotlib, igraph and jinja2,
which a run pays once). Prints markdown rows for docs/benchmarks.md and the machine load.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def toy_darts_search(logdir: Path, images: bool) -> tuple[float, list[float]]:
    import archsearch
    import archsearch.report.tensorboard as tb
    from archsearch.experiment.run import RunOptions

    spent: list[float] = []
    original = tb.log_epoch_images

    def timed(*args, **kwargs):
        start = time.perf_counter()
        original(*args, **kwargs)
        spent.append(time.perf_counter() - start)

    tb.log_epoch_images = timed
    try:
        start = time.perf_counter()
        archsearch.run(
            "darts",
            None,
            RunOptions(exp_prefix=f"images_{images}", phases="search"),
            {
                "common.logdir": str(logdir),
                "common.num_threads": 1,
                "report.auto": False,
                "nas.search.trainer.tensorboard_images": images,
            },
        )
        return time.perf_counter() - start, spent
    finally:
        tb.log_epoch_images = original


def main() -> None:
    import torch

    torch.set_num_threads(1)
    print(f"load before: {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        logdir = Path(tmp)
        rows = []
        for images in (False, True, False, True):  # interleaved: load drifts on a shared machine
            total, spent = toy_darts_search(logdir, images)
            rows.append((images, total, spent))
        print("| TB images | search wall time | time in the image hook (per epoch) |")
        print("|---|---:|---|")
        for images, total, spent in rows:
            per = ", ".join(f"{s:.2f}" for s in spent) if spent else "-"
            print(f"| {'on' if images else 'off'} | {total:.1f} s | {sum(spent):.2f} s ({per}) |")

        from archsearch.report.html import write_report
        from tests.report.toy_runs import RUNS, toy_run

        folders = []
        for name, algo, space, extra in RUNS:
            folders.append((name, toy_run(name, algo, space, {**extra, "report.auto": False}, logdir / "tiny")))
        write_report(folders[0][1])  # warm-up: the imports a run pays once
        print("\n| run | report.html (incl. latency) | size |")
        print("|---|---:|---:|")
        for name, folder in folders:
            start = time.perf_counter()
            path = write_report(folder)
            print(f"| {name} | {time.perf_counter() - start:.2f} s | {path.stat().st_size / 1024:.0f} KiB |")
    print(f"load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
