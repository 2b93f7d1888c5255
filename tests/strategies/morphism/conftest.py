"""Shared helpers for the morphism tests, handed out as fixtures (no imports between test modules, so
they work under any pytest import mode): fixture documents and weighted graphs with non-trivial weights."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from archsearch.strategies.morphism import Graph

DATA = Path(__file__).parent / "data"


def _load_fixture(name: str) -> dict[str, Any]:
    return json.loads((DATA / name).read_text())


def _make_weighted(graph: Graph, seed: int = 0) -> Graph:
    """Give ``graph`` random weights and non-trivial batch-norm statistics, in place."""
    torch.manual_seed(seed)
    model = graph.produce_torch_model()
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 1.5)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.5, 0.5)
    graph.set_weights_from_model(model)
    return graph


def _forward(graph: Graph, x: torch.Tensor) -> torch.Tensor:
    model = graph.produce_torch_model().eval()
    with torch.no_grad():
        return model(x)


def _assert_same_function(before: torch.Tensor, after: torch.Tensor, rel: float = 1e-3) -> None:
    """Morphisms add ~1e-4 relative noise to break symmetry; anything larger is a real change."""
    assert before.shape == after.shape
    scale = before.abs().max().item() + 1e-6
    error = (after - before).abs().max().item()
    assert error <= rel * scale, f"the morphism changed the function: max error {error:.3g}, scale {scale:.3g}"


@pytest.fixture
def load_fixture() -> Callable[[str], dict[str, Any]]:
    return _load_fixture


@pytest.fixture
def doc_17() -> dict[str, Any]:
    return _load_fixture("nni_doc_17_layers.json")


@pytest.fixture
def make_weighted() -> Callable[..., Graph]:
    return _make_weighted


@pytest.fixture
def forward() -> Callable[[Graph, torch.Tensor], torch.Tensor]:
    return _forward


@pytest.fixture
def same_function() -> Callable[..., None]:
    return _assert_same_function


@pytest.fixture
def data_dir() -> Path:
    return DATA
