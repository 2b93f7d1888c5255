"""Trainer: the one training loop. Algorithms customize it through hooks, never by copying it.

Hooks (all no-ops here): configure, pre_fit, post_fit, pre_epoch, post_epoch, pre_step, post_step; plus
extra_state / load_extra_state for whatever an algorithm must checkpoint besides weights and optimizer.
`configure` runs at the end of __init__, before any checkpoint is restored (as Lightning configures its
optimizers before restoring), so every piece of algorithm state exists when `load_extra_state` is called
and nothing it builds draws from an RNG after the checkpoint's RNG state is set.
Every epoch ends with an atomic, checksummed checkpoint; `fit` resumes from it when asked. Metrics are accumulated on
the device and read back only at progress updates and epoch ends, so the GPU is not synchronized per step.

Under torchrun (archsearch.common.distributed) every rank runs this loop on its slice of each global batch:
`sync_gradients` averages the weight gradients over the ranks before every optimizer step (weighted by the
ranks' sample counts: the global batch's gradient), metrics are summed over the ranks when read (top-1 over the
whole split), BatchNorm running statistics are averaged at the end of every training epoch, and rank 0 alone
writes the checkpoint, which every rank waits for before going on.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from archsearch.common import distributed
from archsearch.common.checkpoint import CheckpointError, fault_point, load_checkpoint, require_keys, save_checkpoint
from archsearch.common.errors import ConfigError, TrainingDiverged
from archsearch.common.logging import RunLog
from archsearch.common.seeding import rng_state, set_rng_state
from archsearch.config import choice

PROGRESS_EVERY = 20  # steps between progress-bar refreshes (each one reads metrics back from the device)


def build_optimizer(conf_optimizer: Mapping, params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
    kind = choice(conf_optimizer, "type", ["sgd", "adam"])
    if kind == "sgd":
        return torch.optim.SGD(
            params,
            lr=conf_optimizer["lr"],
            momentum=conf_optimizer["momentum"],
            weight_decay=conf_optimizer["weight_decay"],
            nesterov=conf_optimizer["nesterov"],
        )
    return torch.optim.Adam(
        params,
        lr=conf_optimizer["lr"],
        betas=tuple(conf_optimizer["betas"]),
        weight_decay=conf_optimizer["weight_decay"],
    )


def build_scheduler(conf_schedule: Mapping, optimizer: torch.optim.Optimizer, epochs: int):
    kind = choice(conf_schedule, "type", ["cosine", "cosine_restarts", "step", "constant", "linear"])
    if kind == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(epochs, 1), eta_min=conf_schedule["min_lr"])
    if kind == "cosine_restarts":  # SGDR, as ENAS trains its shared weights (T_0 = t0 epochs, T_i = t_mul * T_i-1)
        return torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
            optimizer, conf_schedule["t0"], conf_schedule["t_mul"], eta_min=conf_schedule["min_lr"]
        )
    if kind == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, conf_schedule["step_size"], conf_schedule["gamma"])
    if kind == "linear":  # SPOS' supernet schedule: lr * (1 - epoch / epochs), to 0 (the paper decays per step)
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: max(0.0, 1.0 - e / max(epochs, 1)))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)


def topk_correct(logits: torch.Tensor, y: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> list[torch.Tensor]:
    k_max = min(max(ks), logits.shape[1])
    pred = logits.topk(k_max, dim=1).indices
    hits = pred.eq(y[:, None])
    return [hits[:, : min(k, k_max)].any(dim=1).sum() for k in ks]


class Metrics:
    """Running sums on the device; `.read()` syncs once (and sums over the torchrun ranks)."""

    def __init__(self, device: torch.device) -> None:
        self.sums = torch.zeros(4, device=device, dtype=torch.float64)  # loss*n, top1, top5, n

    def add(self, loss: torch.Tensor, logits: torch.Tensor, y: torch.Tensor) -> None:
        top1, top5 = topk_correct(logits.detach(), y)
        n = y.shape[0]
        self.sums += torch.stack(
            [
                loss.detach().double() * n,
                top1.double(),
                top5.double(),
                torch.tensor(float(n), device=self.sums.device, dtype=torch.float64),
            ]
        )

    def read(self) -> dict[str, float]:
        loss, top1, top5, n = distributed.all_reduce_sum(self.sums.clone()).tolist()
        n = max(n, 1.0)
        return {"loss": loss / n, "top1": top1 / n, "top5": top5 / n}


class Trainer:
    """Trains `model` for `conf_trainer['epochs']` epochs on the weights it exposes as nonarch params."""

    def __init__(
        self,
        conf_trainer: Mapping,
        model: nn.Module,
        log: RunLog,
        device: torch.device,
        phase: str,
        checkpoint_path: Path | None = None,
    ) -> None:
        self.conf = conf_trainer
        self.log, self.device, self.phase = log, device, phase
        self.checkpoint_path = checkpoint_path
        self.epochs: int = conf_trainer["epochs"]
        self.grad_clip: float = conf_trainer["grad_clip"]
        self.drop_path_prob: float = conf_trainer["drop_path_prob"]
        self.label_smoothing: float = conf_trainer["label_smoothing"]
        cuda = device.type == "cuda"
        self.amp = bool(conf_trainer["amp"]) and cuda  # CUDA-only switches: no-ops on CPU
        self.channels_last = bool(conf_trainer["channels_last"]) and cuda
        # every shipped config has sync_bn (common.yaml); a hand-built trainer mapping may leave it out
        model = self.sync_batchnorm(model, "sync_bn" in conf_trainer and bool(conf_trainer["sync_bn"]), device)
        self.model = model.to(
            device, memory_format=torch.channels_last if self.channels_last else torch.preserve_format
        )
        desc = getattr(model, "desc", None)
        aux = getattr(desc, "aux_tower", None)
        self.aux_weight: float = aux.weight if aux is not None else 0.0
        self.optimizer = build_optimizer(conf_trainer["optimizer"], self.weight_params())
        self.scheduler = build_scheduler(conf_trainer["lr_schedule"], self.optimizer, self.epochs)
        self.epoch = 0  # the next epoch to run
        self.history: list[dict[str, Any]] = []
        self.global_step = 0
        self.checkpoint_written = False  # a good checkpoint of this run exists (written or restored)
        self.stop_requested = False  # set by a hook's early-stop rule: fit ends after this epoch (checkpointed)
        self.configure()

    # the keys every checkpoint has (a file without them is another kind of file, e.g. a model.pt)
    STATE_KEYS = ("epoch", "global_step", "model", "optimizer", "scheduler", "history", "rng", "extra")

    # ---- hooks ---------------------------------------------------------------------------------
    def configure(self) -> None:
        """Build algorithm state (extra optimizers, controllers): runs before any checkpoint is restored."""

    def pre_fit(self, train_loader, val_loader) -> None: ...
    def post_fit(self, train_loader, val_loader) -> None: ...
    def pre_epoch(self, epoch: int, train_loader, val_loader) -> None: ...
    def post_epoch(self, epoch: int, metrics: dict[str, Any]) -> None: ...
    def pre_step(self, step: int, x: torch.Tensor, y: torch.Tensor) -> None: ...
    def post_step(
        self, step: int, x: torch.Tensor, y: torch.Tensor, logits: torch.Tensor, loss: torch.Tensor
    ) -> None: ...
    def extra_state(self) -> dict[str, Any]:
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None: ...

    # ---- pieces subclasses may reuse -----------------------------------------------------------
    def sync_batchnorm(self, model: nn.Module, sync_bn: bool, device: torch.device) -> nn.Module:
        """trainer.sync_bn: BatchNorm over the global batch (SyncBatchNorm) under torchrun, before the optimizers
        are built (the conversion keeps the parameter objects). torch's SyncBatchNorm runs on GPUs only."""
        if not sync_bn or distributed.world_size() == 1:
            return model
        if device.type != "cuda":
            section = getattr(self.conf, "path", "") or "nas.<phase>.trainer"
            raise ConfigError(
                f"config {section}.sync_bn: true needs CUDA devices (torch's SyncBatchNorm runs on GPUs only); "
                "set it false on CPU (running statistics are then averaged over the ranks after every epoch)"
            )
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)

    def sync_gradients(self, n_local: int) -> None:
        """Average the weight gradients over the torchrun ranks (a no-op without torchrun); `n_local` is this
        rank's number of samples in the step."""
        distributed.average_gradients([p.grad for p in self.weight_params()], n_local)

    def weight_params(self) -> list[nn.Parameter]:
        params = self.model.nonarch_params() if hasattr(self.model, "nonarch_params") else self.model.parameters()
        return [p for p in params if p.requires_grad]

    def autocast(self):
        if self.amp:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def loss_of(self, output, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss, logits) for a model output that may carry auxiliary logits."""
        if isinstance(output, tuple):
            logits, aux_logits = output
            loss = F.cross_entropy(logits.float(), y, label_smoothing=self.label_smoothing)
            loss = loss + self.aux_weight * F.cross_entropy(aux_logits.float(), y, label_smoothing=self.label_smoothing)
            return loss, logits
        return F.cross_entropy(output.float(), y, label_smoothing=self.label_smoothing), output

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.optimizer.zero_grad(set_to_none=True)
        with self.autocast():
            loss, logits = self.loss_of(self.model(self.prepare(x)), y)
        loss.backward()
        self.sync_gradients(y.shape[0])  # before clipping: the clip sees the global batch's gradient
        if self.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.weight_params(), self.grad_clip)
        self.optimizer.step()
        return loss, logits

    @torch.no_grad()
    def evaluate(self, loader) -> dict[str, float]:
        self.model.eval()
        metrics = Metrics(self.device)
        for x, y in loader:
            with self.autocast():
                out = self.model(self.prepare(x))
            loss, logits = self.loss_of(out, y)
            metrics.add(loss, logits, y)
        return metrics.read()

    # ---- the loop ------------------------------------------------------------------------------
    def fit(self, train_loader, val_loader=None, resume: bool = False, val_name: str = "val") -> dict[str, Any]:
        """Train until `epochs`; evaluate on `val_loader` after each epoch, reported as `<val_name>_top1`."""
        if resume and self.checkpoint_path is not None and self.checkpoint_path.exists():
            self.restore(self.checkpoint_path)
            self.log.info(f"[{self.phase}] resumed from {self.checkpoint_path} at epoch {self.epoch}/{self.epochs}")
        self.pre_fit(train_loader, val_loader)
        while self.epoch < self.epochs and not self.stop_requested:
            epoch = self.epoch
            start = time.time()
            if hasattr(self.model, "drop_path_prob"):
                self.model.drop_path_prob = self.drop_path_prob * epoch / self.epochs
            for loader in (train_loader, val_loader):
                if loader is not None and hasattr(loader, "set_epoch"):
                    loader.set_epoch(epoch)
            self.pre_epoch(epoch, train_loader, val_loader)
            lr = self.optimizer.param_groups[0]["lr"]
            train = self.train_epoch(epoch, train_loader)
            metrics: dict[str, Any] = {"epoch": epoch + 1, "lr": lr, **{f"train_{k}": v for k, v in train.items()}}
            if val_loader is not None:
                metrics.update({f"{val_name}_{k}": v for k, v in self.evaluate(val_loader).items()})
            self.scheduler.step()
            metrics["epoch_time"] = time.time() - start
            self.post_epoch(epoch, metrics)
            distributed.average_buffers(self.model)  # hooks may run the model in train mode (ENAS' rewards)
            self.stop_requested = distributed.broadcast_object(self.stop_requested)  # rank 0 decides for all
            self.epoch = epoch + 1
            self.history.append(metrics)
            self._report(metrics)
            if self.checkpoint_path is not None:
                save_checkpoint(self.state_dict(), self.checkpoint_path)  # rank 0's; the same state on every rank
                self.checkpoint_written = True
                distributed.barrier()  # no rank runs ahead of the checkpoint a rerun would resume from
            fault_point(f"{self.phase}:epoch:{self.epoch}")
        self.check_ranks_identical()
        self.post_fit(train_loader, val_loader)
        return self.history[-1] if self.history else {}

    def train_epoch(self, epoch: int, loader) -> dict[str, float]:
        self.model.train()
        metrics = Metrics(self.device)
        bar = tqdm(
            total=len(loader),
            desc=f"{self.phase} {epoch + 1}/{self.epochs}",
            leave=False,
            disable=None if distributed.is_rank0() else True,
            file=sys.stderr,
            dynamic_ncols=True,
        )
        for step, (x, y) in enumerate(loader):
            self.pre_step(step, x, y)
            loss, logits = self.train_step(x, y)
            metrics.add(loss, logits, y)
            self.post_step(step, x, y, logits, loss)
            self.global_step += 1
            bar.update(1)
            if (step + 1) % PROGRESS_EVERY == 0:
                self._check_finite(metrics.read(), epoch, bar)
        bar.close()
        distributed.average_buffers(self.model)  # every rank evaluates and checkpoints the same model
        result = metrics.read()
        self._check_finite(result, epoch, bar)
        return result

    def rank_checked_state(self) -> dict[str, list[torch.Tensor]]:
        """What must be bit-identical on every torchrun rank after training: the weights (and buffers).
        Search trainers add their architecture parameters or controller."""
        return {"weights": [*self.model.parameters(), *self.model.buffers()]}

    def check_ranks_identical(self) -> None:
        """Under torchrun: compare every rank's digest of `rank_checked_state()`; RanksDiverged if one differs."""
        if distributed.world_size() == 1:
            return
        for what, tensors in self.rank_checked_state().items():
            digests = distributed.check_identical(f"[{self.phase}] {what}", distributed.tensors_digest(tensors))
            self.log.info(f"[{self.phase}] {what} bit-identical on all {len(digests)} ranks: sha256 {digests[0][:16]}")
            self.log.record("ranks_identical", phase=self.phase, what=what, digests=digests)

    def _check_finite(self, metrics: dict[str, float], epoch: int, bar) -> None:
        if not math.isfinite(metrics["loss"]):
            bar.close()
            raise TrainingDiverged(self.diverged_message(metrics["loss"], epoch))
        bar.set_postfix(loss=f"{metrics['loss']:.3f}", top1=f"{metrics['top1']:.3f}")

    def diverged_message(self, loss: float, epoch: int) -> str:
        """Names the last good checkpoint only if one was written, and how to retry with other settings: a
        resume would restore the checkpoint's optimizer state (and is refused when the config changed)."""
        where = ""
        if self.checkpoint_written and self.checkpoint_path is not None:
            where = f"; the last good checkpoint is {self.checkpoint_path} (epoch {self.epoch})"
        section = getattr(self.conf, "path", "") or "nas.<phase>.trainer"
        return (
            f"[{self.phase}] loss became {loss} in epoch {epoch + 1}{where}; lower --{section}.optimizer.lr or "
            f"set --{section}.grad_clip and rerun without --common.resume true (the earlier run is moved aside)"
        )

    def _report(self, metrics: dict[str, Any]) -> None:
        shown = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items())
        self.log.info(f"[{self.phase}] {shown}")
        self.log.record(f"{self.phase}_epoch", **metrics)
        self.log.scalars(self.phase, metrics, metrics["epoch"])

    # ---- checkpointing -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "global_step": self.global_step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "history": self.history,
            "rng": rng_state(),
            "extra": self.extra_state(),
            "stop_requested": self.stop_requested,
        }

    def restore(self, path: Path) -> None:
        """Load a checkpoint; a corrupt file, another kind of file or one for another model is one line."""
        state = load_checkpoint(path, self.device, require_checksum=True)
        require_keys(path, state, self.STATE_KEYS, f"{self.phase} checkpoint")
        try:
            self.load_state_dict(state)
        except (RuntimeError, KeyError, ValueError, TypeError) as e:  # shapes or state of another model
            first = " ".join(line.strip() for line in str(e).strip().splitlines()[:2])[:300]
            raise CheckpointError(
                f"{path}: does not fit this {self.phase} model or optimizer ({type(e).__name__}: {first}); "
                f"rerun without --common.resume true to start over (the earlier run is moved aside)"
            ) from None
        self.checkpoint_written = True

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.epoch, self.global_step, self.history = state["epoch"], state["global_step"], state["history"]
        set_rng_state(state["rng"])
        self.stop_requested = bool(state.get("stop_requested", False))  # absent: a checkpoint from before early stops
        self.load_extra_state(state["extra"])
