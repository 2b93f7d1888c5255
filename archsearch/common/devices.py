"""Device selection. AMP and channels_last are CUDA-only switches: on CPU they are no-ops."""

from __future__ import annotations

import torch

from archsearch.common.errors import ConfigError


def select_device(name: str) -> torch.device:
    """`auto` picks CUDA when present, else CPU; `cpu`, `cuda`, `cuda:1` are taken as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ConfigError(f"common.device: {name!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"common.device: {name!r} asked for, but CUDA is not available; use auto or cpu")
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"common.device: {name!r} is not supported; use auto, cpu, cuda or cuda:N")
    return device
