"""archsearch: neural architecture search for PyTorch.

The two library calls are re-exported lazily, so importing any part of the package (`archsearch.common.io`)
imports neither torch nor every plugin.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

    from torch import nn

__version__ = "0.1.0"


def load_model(path: str | Path, model: str | None = None, *, trust_code: bool = False) -> nn.Module:
    """Rebuild a trained network from an eval/model.pt file (imports torch on first use).

    A file of a user's own model is loaded only with `model="package.module:Class"` naming the class it
    was saved from, or `trust_code=True`; see archsearch.plugins.load_model.
    """
    from archsearch.plugins import load_model as _load_model

    return _load_model(path, model, trust_code=trust_code)


def run(algo: str, dataset: str | None = None, options=None, overrides=()):  # noqa: ANN001, ANN201 - lazy re-export
    """Run one experiment as the CLI would and return its summary; see archsearch.experiment.run.run_experiment.

    `archsearch.run("darts", overrides={"nas.eval.trainer.epochs": 2})` is `--algos darts --nas.eval.trainer.epochs 2`.
    """
    from archsearch.experiment.run import run_experiment

    return run_experiment(algo, dataset, options, overrides)
