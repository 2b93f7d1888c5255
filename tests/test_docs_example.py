"""docs/extending.md's worked example (a local-search strategy) runs as written: its code block is registered
in a fresh process, given the config the doc describes, and searched on NAS-Bench-201 in tabular mode."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import textwrap

import yaml

from archsearch.spaces.nasbench201 import all_archs
from tests.conftest import REPO


def example_code() -> str:
    text = (REPO / "docs" / "extending.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    return next(b for b in blocks if "@register_strategy\nclass LocalSearch" in b)


def test_the_worked_example_is_a_strategy_that_climbs_on_nasbench201(tmp_path):
    confs = tmp_path / "confs"
    shutil.copytree(REPO / "archsearch" / "confs", confs)
    (confs / "algos" / "local.yaml").write_text(
        "__include__: ../common.yaml\nnas:\n  search:\n    local: {n_trials: 150, neighbours: 10}\n"
    )
    table = tmp_path / "bench.csv"  # a made-up table of every cell: each 3x3 conv adds 8 points
    rows = (f"{arch},{40 + 8 * arch.count('nor_conv_3x3') + (i % 7) / 10}\n" for i, arch in enumerate(all_archs()))
    table.write_text("architecture,accuracy\n" + "".join(rows))
    (tmp_path / "local_search.py").write_text(example_code())
    script = textwrap.dedent(
        """
        import sys
        import archsearch.strategies, local_search  # the bootstrap, then the plugin registers itself
        from archsearch.cli import main
        sys.exit(main(sys.argv[1:]))
        """
    )
    args = ["--algos", "local", "--search-only", "--common.logdir", str(tmp_path / "logdir"),
            "--nas.search.benchmark", str(table), "--nas.search.evaluate_by", "table",
            "--nas.search.local.n_trials", "40"]  # fmt: skip
    env = {"ARCHSEARCH_CONFS": str(confs), "PYTHONPATH": f"{tmp_path}:{REPO}"}
    proc = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, env=env, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "logdir" / "archsearch_digits_toy" / "local"
    trials = yaml.safe_load((out / "search" / "trials.yaml").read_text())
    assert len(trials) == 40
    best = max(trials, key=lambda t: t["metrics"]["benchmark_top1"])
    assert trials[-1]["best_so_far"] == best["metrics"]["benchmark_top1"]
    # the walk climbs: random cells have 1.2 of 6 edges as 3x3 convs on average, one-edit moves add them
    assert best["arch"].count("nor_conv_3x3") >= 4 > trials[0]["arch"].count("nor_conv_3x3")
    summary = yaml.safe_load((out / "summary.yaml").read_text())
    assert summary["search"]["benchmark_top1"] == best["metrics"]["benchmark_top1"]
