"""Checkpoints: written atomically, read with weights_only=True (no arbitrary code on load)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from archsearch.common.errors import UserError
from archsearch.common.io import atomic_torch_save


def save_checkpoint(state: dict[str, Any], path: Path) -> Path:
    return atomic_torch_save(state, path)


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise UserError(f"checkpoint {path} does not exist") from None
    except Exception as e:  # a truncated or foreign file: say which, do not dump a trace
        raise UserError(
            f"checkpoint {path} cannot be read ({type(e).__name__}: {str(e).splitlines()[0]}); delete it to start over"
        ) from None
