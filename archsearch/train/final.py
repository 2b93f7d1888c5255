"""The final training: train a final architecture from scratch and write eval/model.pt and eval/metrics.yaml.

It is architecture-agnostic: the space hands it a BuiltModel, the network with the text that describes it
(a scaled ModelDesc YAML, a graph JSON, ...), which is stored inside model.pt so `archsearch.load_model` can
rebuild the network from that one file. (Scoring a candidate during a search is the trial evaluator's job,
archsearch.search.trial_eval.)
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archsearch.common.checkpoint import save_checkpoint
from archsearch.common.errors import TrainingDiverged, UserError
from archsearch.common.io import atomic_write_yaml
from archsearch.common.logging import plain
from archsearch.common.readers import read_yaml
from archsearch.data.loaders import eval_loaders
from archsearch.model.load import BuiltModel
from archsearch.model.network import count_params
from archsearch.model.stats import count_macs
from archsearch.train.context import RunContext
from archsearch.train.trainer import Trainer


@dataclass
class EvalResult:
    metrics: dict[str, Any] = field(default_factory=dict)
    model_path: Path | None = None


def train_final(ctx: RunContext, conf_eval: Mapping, built: BuiltModel) -> EvalResult:
    """Train `built.model` with nas.eval's loader and trainer, test it, and write model.pt and metrics.yaml."""
    model = built.model
    conf_dataset = ctx.conf["dataset"]
    input_shape = (conf_dataset["channels"], conf_dataset["image_size"], conf_dataset["image_size"])
    params, macs = count_params(model), count_macs(model, input_shape)
    ctx.log.info(f"[eval] model: {params:,} parameters, {macs / 1e6:.1f}M MACs per image")
    train_loader, test_loader = eval_loaders(conf_dataset, conf_eval["loader"], ctx.device, ctx.seed)
    trainer = Trainer(
        conf_eval["trainer"], model, ctx.log, ctx.device, "eval", ctx.eval_dir / "checkpoint.pt"
    )
    start = time.time()
    trainer.fit(train_loader, test_loader, resume=ctx.resume, val_name="test")
    test = trainer.evaluate(test_loader)  # the final weights' figure is the one reported
    if not math.isfinite(test["loss"]):  # a NaN model is a failed run, not a success at chance accuracy
        section = getattr(conf_eval, "path", "") or "nas.eval"
        raise TrainingDiverged(
            f"[eval] test loss is {test['loss']} after {trainer.epochs} epochs: no model or metrics written; "
            f"lower --{section}.trainer.optimizer.lr or set --{section}.trainer.grad_clip and rerun "
            f"without --common.resume true (the earlier run is moved aside)"
        )
    metrics = {
        "test_top1": test["top1"],
        "test_top5": test["top5"],
        "test_loss": test["loss"],
        "params": params,
        "macs": macs,
        "epochs": trainer.epochs,
        "train_time_s": round(time.time() - start, 2),
        "final_train_top1": trainer.history[-1]["train_top1"] if trainer.history else None,
    }
    model_path = save_checkpoint(  # with its sha256 beside it, which load_model verifies
        {"arch_format": built.arch_format, "arch": built.arch_text, "state_dict": model.state_dict()},
        ctx.eval_dir / "model.pt",
    )
    atomic_write_yaml(ctx.eval_dir / "metrics.yaml", plain(metrics))
    ctx.log.record("eval_done", **metrics)
    ctx.log.info(f"[eval] test top1 {metrics['test_top1']:.4f}  model: {model_path}")
    return EvalResult(metrics, model_path)


def read_eval_metrics(eval_dir: Path) -> dict[str, Any] | None:
    path = eval_dir / "metrics.yaml"
    if not path.exists() or not (eval_dir / "model.pt").exists():
        return None
    metrics = read_yaml(path, "eval metrics", UserError, expect=dict, max_bytes=4 * 1024 * 1024)
    for key in METRIC_KEYS:
        value = metrics.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise UserError(
                f"eval metrics {path}: {key} is {str(value)[:40]!r}, not a number; delete it to evaluate again, "
                "or rerun without --common.resume true to start over (the earlier run is moved aside)"
            )
    return metrics


METRIC_KEYS = ("test_top1", "test_top5", "params", "macs")  # what a finished run's summary prints
