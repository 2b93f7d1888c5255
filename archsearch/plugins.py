"""The plugin bootstrap: importing this module registers every search space, then every strategy (with
their ops, config sections and file formats). The run (archsearch.experiment.run) and `load_model` import it;
nothing below it does, so the framework never depends on a plugin.

A new space or strategy is one module: add its import here.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

import archsearch.search.hardware_metrics  # noqa: F401 - latency, ONNX latency, peak memory, predicted latency

# the spaces, before the strategies that run on them
import archsearch.spaces.darts_cells
import archsearch.spaces.enas
import archsearch.spaces.morphism.space
import archsearch.spaces.nasbench201
import archsearch.spaces.user_model  # noqa: F401
from archsearch.model import load as _load
from archsearch.strategies.bananas import strategy as _bananas  # noqa: F401
from archsearch.strategies.darts import strategy as _darts  # noqa: F401
from archsearch.strategies.enas import strategy as _enas  # noqa: F401
from archsearch.strategies.gdas import strategy as _gdas  # noqa: F401
from archsearch.strategies.manual import strategy as _manual  # noqa: F401
from archsearch.strategies.morphism import strategy as _morphism  # noqa: F401
from archsearch.strategies.naswot import strategy as _naswot  # noqa: F401
from archsearch.strategies.nsga2 import strategy as _nsga2  # noqa: F401
from archsearch.strategies.optuna_search import strategy as _optuna_search  # noqa: F401
from archsearch.strategies.pcdarts import strategy as _pcdarts  # noqa: F401
from archsearch.strategies.random import strategy as _random  # noqa: F401
from archsearch.strategies.rea import strategy as _rea  # noqa: F401
from archsearch.strategies.spos import strategy as _spos  # noqa: F401


def load_model(path: str | Path, model: str | None = None, *, trust_code: bool = False) -> nn.Module:
    """The network in an eval/model.pt file, with its trained weights, in eval mode; every space's file format
    is registered. A user model's class is imported only when `model` names it or `trust_code=True`."""
    return _load.load_model(path, model, trust_code=trust_code)
