"""RunContext: what every phase of one run shares, handed down explicitly (no global state)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from archsearch.common.logging import RunLog
from archsearch.config import Config


@dataclass
class RunContext:
    conf: Config  # the whole resolved config (phases read only their own section)
    log: RunLog
    device: torch.device
    out_dir: Path  # <logdir>/<experiment>/<algo>
    resume: bool
    seed: int
    algo: str

    @property
    def search_dir(self) -> Path:
        return self.out_dir / "search"

    @property
    def eval_dir(self) -> Path:
        return self.out_dir / "eval"
