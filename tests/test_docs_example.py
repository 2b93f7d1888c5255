"""docs/extending.md's worked examples run as written: each is one module, registered in a fresh process by
importing it after the shipped plugins, with nothing else added (no YAML file: the plugins declare their keys
and defaults beside their code). The local-search strategy climbs on NAS-Bench-201 in tabular mode; the
kernel-chain space is searched, evaluated, and its model.pt rebuilt by archsearch.load_model."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import yaml

from archsearch.spaces.nasbench201 import all_archs
from tests.conftest import REPO

RUN_CLI = textwrap.dedent(
    """
    import sys
    import archsearch.plugins, extending_examples  # the shipped plugins, then the doc's
    from archsearch.cli import main
    sys.exit(main(sys.argv[1:]))
    """
)


def example_code(marker: str) -> str:
    text = (REPO / "docs" / "extending.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    return next(b for b in blocks if marker in b)


def run_with_examples(tmp_path: Path, *args: str, code: str = RUN_CLI) -> subprocess.CompletedProcess:
    module = tmp_path / "extending_examples.py"
    if not module.exists():  # both examples in one module, as a user's plugin file would hold them
        module.write_text(example_code("class LocalSearch") + "\n\n" + example_code("class KernelChain"))
    env = {"PYTHONPATH": f"{tmp_path}:{REPO}", "OMP_NUM_THREADS": "1", "PATH": ""}
    full = [*args, "--common.logdir", str(tmp_path / "logdir"), "--common.num_threads", "1"] if args else []
    return subprocess.run(
        [sys.executable, "-c", code, *full], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600
    )


def test_the_strategy_example_climbs_on_nasbench201(tmp_path):
    table = tmp_path / "bench.csv"  # a made-up table of every cell: each 3x3 conv adds 8 points
    rows = (f"{arch},{40 + 8 * arch.count('nor_conv_3x3') + (i % 7) / 10}\n" for i, arch in enumerate(all_archs()))
    table.write_text("architecture,accuracy\n" + "".join(rows))
    proc = run_with_examples(
        tmp_path, "--algos", "local", "--search-only", "--nas.search.benchmark", str(table),
        "--nas.search.evaluate_by", "table", "--nas.search.local.n_trials", "40",
    )  # fmt: skip
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
    # the plugin's declared range is checked like every shipped key's
    bad = run_with_examples(tmp_path, "--algos", "local", "--nas.search.local.n_trials", "0")
    assert bad.returncode == 2 and "nas.search.local.n_trials" in bad.stderr and "Traceback" not in bad.stderr


def test_the_space_example_is_searched_evaluated_and_loaded(tmp_path):
    proc = run_with_examples(
        tmp_path, "--algos", "local", "--nas.search.space", "kernel_chain", "--nas.search.local.n_trials", "3",
        "--nas.search.space.chain_layers", "3", "--nas.search.trainer.epochs", "1",
        "--nas.search.loader.limit_batches", "2", "--nas.eval.trainer.epochs", "1",
        "--nas.eval.loader.limit_batches", "2",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "logdir" / "archsearch_digits_toy" / "local"
    trials = yaml.safe_load((out / "search" / "trials.yaml").read_text())
    assert len(trials) == 3 and all(len(t["arch"]) == 3 and set(t["arch"]) <= {1, 3, 5} for t in trials)
    summary = yaml.safe_load((out / "summary.yaml").read_text())
    assert summary["final_arch"] == "search/final_chain.json" and 0 <= summary["eval"]["test_top1"] <= 1
    load = textwrap.dedent(
        f"""
        import torch, archsearch, extending_examples
        net = archsearch.load_model({str(out / "eval" / "model.pt")!r})
        print(tuple(net(torch.zeros(2, 1, 8, 8)).shape), sum(isinstance(m, torch.nn.Conv2d) for m in net))
        """
    )
    loaded = run_with_examples(tmp_path, code=load)
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    assert loaded.stdout.split() == ["(2,", "10)", "3"]
