"""Run logging: log.log (human), log.yaml (one record per epoch/event) and TensorBoard scalars.

A RunLog is created per run and handed down explicitly (no global singleton), so two runs in one
process, or a test, never write into each other's files.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from archsearch.common import distributed


def plain(value: Any) -> Any:
    """Convert tensors/numpy scalars and containers into YAML-safe Python values."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):  # torch.Tensor, numpy arrays and scalars
        return plain(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


class _StrictFileHandler(logging.FileHandler):
    """A FileHandler that lets a write error (full disk, file system gone read-only) propagate.

    logging's default prints a traceback and carries on, which would lose log lines silently and bury the
    one-line error the CLI prints for filesystem problems.
    """

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        raise  # noqa: PLE0704 - re-raises the write error being handled


class RunLog:
    """Writes to `<out_dir>/log.log`, `<out_dir>/log.yaml` and `<out_dir>/tb/`; quiet when out_dir is None,
    and on every torchrun rank but 0 (rank 0 logs for the job)."""

    def __init__(self, out_dir: Path | None, name: str = "archsearch", verbose: bool = True) -> None:
        if not distributed.is_writer():
            out_dir, verbose = None, False
        self.out_dir = out_dir
        self.start_time = time.time()
        self.logger = logging.getLogger(f"{name}.{id(self)}")
        self.logger.setLevel(logging.INFO)
        self.logger.propagate = False
        fmt = logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S")
        if verbose:
            stream = logging.StreamHandler(sys.stdout)
            stream.setFormatter(fmt)
            self.logger.addHandler(stream)
        self._tb = None
        self._yaml_file = None
        if out_dir is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
            file_handler = _StrictFileHandler(out_dir / "log.log")
            file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
            self.logger.addHandler(file_handler)
            self._yaml_file = open(out_dir / "log.yaml", "a")  # noqa: SIM115 - closed in close()

    def info(self, message: str) -> None:
        self.logger.info(message)

    def warning(self, message: str) -> None:
        self.logger.warning(f"WARNING: {message}")

    def record(self, event: str, **fields: Any) -> None:
        """Append one record to log.yaml (a YAML list, readable with yaml.safe_load at any time)."""
        if self._yaml_file is None:
            return
        entry = {"event": event, "time": round(time.time() - self.start_time, 3), **plain(fields)}
        self._yaml_file.write(yaml.safe_dump([entry], sort_keys=False, default_flow_style=None))
        self._yaml_file.flush()

    def tb_writer(self) -> Any:
        """The run's TensorBoard SummaryWriter, opened on first use; None where this process writes no files
        (no output folder, or a torchrun rank other than 0)."""
        if self.out_dir is None:
            return None
        if self._tb is None:
            from torch.utils.tensorboard import SummaryWriter  # slow import: only when used

            self._tb = SummaryWriter(str(self.out_dir / "tb"))
        return self._tb

    def scalars(self, prefix: str, values: Mapping[str, Any], step: int) -> None:
        """TensorBoard scalars `prefix/key` for every numeric value."""
        writer = self.tb_writer()
        if writer is None:
            return
        for key, value in values.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                writer.add_scalar(f"{prefix}/{key}", value, step)
        writer.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        if self._yaml_file is not None:
            self._yaml_file.close()
            self._yaml_file = None
        for handler in list(self.logger.handlers):
            handler.close()
            self.logger.removeHandler(handler)
