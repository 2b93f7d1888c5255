"""ArchTrainer: the search-phase trainer.

Weight steps run on the weights split as in the base Trainer; `next_arch_batch()` draws batches from the
arch split for algorithms that update the architecture in a hook (DARTS' bilevel step, ENAS' controller).
After each epoch it records the softmax of every architecture table in log.yaml and TensorBoard, so a
user can watch a search converge.
"""

from __future__ import annotations

from typing import Any

import torch

from archsearch.train.context import EpochImages
from archsearch.train.trainer import Trainer


class ArchTrainer(Trainer):
    arch_loader = None
    _arch_iter = None
    # the run's TensorBoard image callback (RunContext.epoch_images), set by fit_supernet; the drawing lives in
    # the report, above the framework, so it is handed down rather than imported
    epoch_images: EpochImages | None = None

    def pre_epoch(self, epoch: int, train_loader, val_loader) -> None:
        self.arch_loader = val_loader
        self._arch_iter = None

    def next_arch_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next batch of the arch split, cycling when it runs out (it is smaller than an epoch)."""
        if self.arch_loader is None:
            raise RuntimeError("this search trainer needs an arch loader (the val split)")
        if self._arch_iter is not None:
            batch = next(self._arch_iter, None)
            if batch is not None:
                return batch
        self._arch_iter = iter(self.arch_loader)
        return next(self._arch_iter)

    def rank_checked_state(self) -> dict[str, list[torch.Tensor]]:
        state = super().rank_checked_state()
        arch = self.model.arch_params() if hasattr(self.model, "arch_params") else []
        if arch:
            state["architecture parameters"] = list(arch)
        return state

    def arch_weights(self) -> dict[str, list[list[float]]]:
        tables = getattr(self.model, "arch_tables", {})
        return {key: torch.softmax(table.detach().float(), dim=-1).cpu().tolist() for key, table in tables.items()}

    def post_epoch(self, epoch: int, metrics: dict[str, Any]) -> None:
        weights = self.arch_weights()
        if not weights:
            return
        rounded = {k: [[round(v, 4) for v in row] for row in table] for k, table in weights.items()}
        names = self.arch_column_names()
        self.log.record("arch_weights", epoch=epoch + 1, softmax=rounded, columns=names)
        for key, table in weights.items():
            cols = names.get(key) or [str(i) for i in range(len(table[0]))]
            scalars = {f"edge{r:02d}_{cols[c]}": v for r, row in enumerate(table) for c, v in enumerate(row)}
            self.log.scalars(f"arch_{key}", scalars, epoch + 1)
        if self.conf["tensorboard_images"] and self.epoch_images is not None:  # the report's pictures, per epoch
            self.epoch_images(self.log, self.model, weights, names, epoch + 1, self.__dict__.setdefault("_drawn", {}))

    def arch_column_names(self) -> dict[str, list[str]]:
        """Column names per arch table (the candidate op names), read from the ops that use it."""
        names: dict[str, list[str]] = {}
        for module in self.model.modules():
            key, candidates = getattr(module, "arch_key", None), getattr(module, "candidates", None)
            if key is not None and candidates is not None:
                names.setdefault(key, list(candidates))
        return names
