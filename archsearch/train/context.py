"""RunContext: what every phase of one run shares, handed down explicitly (no global state)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from archsearch.common.logging import RunLog
from archsearch.config import Config

# (log, model, softmax tables, column names, epoch, the callback's own cache) -> None: the per-epoch TensorBoard
# pictures of a differentiable search (archsearch.report.tensorboard.log_epoch_images)
EpochImages = Callable[[RunLog, nn.Module, dict, dict, int, dict], None]


@dataclass
class RunContext:
    conf: Config  # the whole resolved config (phases read only their own section)
    log: RunLog
    device: torch.device
    out_dir: Path  # <logdir>/<experiment>/<algo>
    resume: bool
    seed: int
    algo: str
    epoch_images: EpochImages | None = None  # the run hands the report's drawing down to search trainers

    @property
    def search_dir(self) -> Path:
        return self.out_dir / "search"

    @property
    def eval_dir(self) -> Path:
        return self.out_dir / "eval"
