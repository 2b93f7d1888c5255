"""Model cost figures: multiply-accumulates (MACs) for one input image, and for one inference batch the
latency with torch or ONNX Runtime and the peak memory."""

from __future__ import annotations

import itertools
import statistics
import time
import warnings
import weakref
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from archsearch.common.errors import UserError


@torch.no_grad()
def count_macs(model: nn.Module, input_shape: tuple[int, int, int], device: torch.device | str = "cpu") -> int:
    """MACs of conv and linear layers for one image of `input_shape` (C, H, W), in eval mode."""
    total = 0

    def conv_hook(m: nn.Conv2d, _inp, out) -> None:
        nonlocal total
        k = m.kernel_size[0] * m.kernel_size[1]
        total += out.numel() // out.shape[0] * (m.in_channels // m.groups) * k

    def linear_hook(m: nn.Linear, _inp, out) -> None:
        nonlocal total
        total += m.in_features * m.out_features

    hooks = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(linear_hook))
    was_training = model.training
    model.eval()
    try:
        model(torch.zeros(1, *input_shape, device=device))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return total


# ---- cost of one inference batch: latency and peak memory -------------------------------------------


def _example_input(input_shape: tuple[int, ...], batch_size: int, device: torch.device | str) -> torch.Tensor:
    return torch.randn(batch_size, *input_shape, device=device)


@torch.no_grad()
def measure_latency_ms(
    model: nn.Module,
    input_shape: tuple[int, ...],
    batch_size: int = 1,
    warmup: int = 3,
    repeats: int = 10,
    device: torch.device | str = "cpu",
    threads: int | None = None,
) -> float:
    """Median wall-clock milliseconds of one forward pass of a `batch_size` batch of `input_shape` with torch,
    in eval mode, after `warmup` untimed passes (first calls allocate and pick kernels). `threads` sets
    torch's intra-op threads for the measurement only (None: leave them as they are). On CUDA each pass is
    synchronized before the clock stops."""
    if repeats < 1 or warmup < 0 or batch_size < 1:
        raise ValueError(f"repeats >= 1, warmup >= 0, batch_size >= 1 needed, got {repeats}, {warmup}, {batch_size}")
    device = torch.device(device)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    was_training = model.training
    model.eval()
    try:
        x = _example_input(input_shape, batch_size, device)
        for _ in range(warmup):
            model(x)
        sync()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            model(x)
            sync()
            times.append((time.perf_counter() - start) * 1e3)
    finally:
        model.train(was_training)
        if threads is not None:
            torch.set_num_threads(old_threads)
    return statistics.median(times)


def onnx_session(model: nn.Module, input_shape: tuple[int, ...], batch_size: int = 1, threads: int | None = 1) -> Any:
    """An ONNX Runtime CPU session of `model` exported (eval mode, on CPU) at a fixed input shape, and
    its input name; a one-line UserError when onnxruntime or onnx is not installed."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise UserError("ONNX Runtime latency needs onnxruntime: pip install onnxruntime") from None
    import io

    was_training = model.training
    model.eval()
    buffer = io.BytesIO()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            x = _example_input(input_shape, batch_size, "cpu")
            torch.onnx.export(model.cpu(), (x,), buffer, input_names=["input"], output_names=["output"], dynamo=False)
    except ImportError:
        raise UserError("ONNX Runtime latency needs onnx to export the model: pip install onnx") from None
    finally:
        model.train(was_training)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])


def measure_onnx_latency_ms(
    model: nn.Module,
    input_shape: tuple[int, ...],
    batch_size: int = 1,
    warmup: int = 3,
    repeats: int = 10,
    threads: int | None = 1,
) -> float:
    """Median milliseconds of one `batch_size` batch through ONNX Runtime's CPU provider, the model exported
    (torch.onnx, eval mode) at that fixed shape; `threads` is the session's intra-op thread count (None: its
    default). A one-line UserError when onnxruntime is missing. The model is moved to the CPU to export."""
    if repeats < 1 or warmup < 0 or batch_size < 1:
        raise ValueError(f"repeats >= 1, warmup >= 0, batch_size >= 1 needed, got {repeats}, {warmup}, {batch_size}")
    session = onnx_session(model, input_shape, batch_size, threads)
    feed = {"input": _example_input(input_shape, batch_size, "cpu").numpy()}
    for _ in range(warmup):
        session.run(None, feed)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        session.run(None, feed)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


class _LiveTensors(TorchDispatchMode):
    """Sees every tensor an aten op returns and keeps the high-water mark of the bytes of the distinct
    storages still referenced (weak references: a tensor nobody holds any more is freed and drops out)."""

    def __init__(self) -> None:
        super().__init__()
        self.refs: list[weakref.ref] = []
        self.peak = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                self.refs.append(weakref.ref(t))
        alive: dict[int, int] = {}
        kept = []
        for ref in self.refs:
            t = ref()
            if t is not None:
                kept.append(ref)
                storage = t.untyped_storage()
                alive[storage.data_ptr()] = storage.nbytes()
        self.refs = kept
        self.peak = max(self.peak, sum(alive.values()))
        return out


@torch.no_grad()
def peak_memory_mb(
    model: nn.Module, input_shape: tuple[int, ...], batch_size: int = 1, device: torch.device | str = "cpu"
) -> float:
    """MiB one inference batch needs at its peak, in eval mode under no_grad.

    CUDA: `torch.cuda.max_memory_allocated` during the forward pass, the parameters and the input batch
    included (the allocator's own figure). CPU: the bytes of the parameters and buffers, plus the input batch,
    plus the most bytes of intermediate tensors alive at once during the forward pass: every tensor an aten
    op returns is tracked (a TorchDispatchMode) until nothing references it, so activations kept for a later
    skip connection or concatenation count and freed ones do not. It is the tensors' own size, without the
    allocator's caching or fragmentation and without the interpreter, so it compares networks, not processes.
    """
    device = torch.device(device)
    was_training = model.training
    model.eval()
    try:
        x = _example_input(input_shape, batch_size, device)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
            model(x)
            torch.cuda.synchronize(device)
            return torch.cuda.max_memory_allocated(device) / 2**20
        state = sum(t.numel() * t.element_size() for t in itertools.chain(model.parameters(), model.buffers()))
        with _LiveTensors() as live:
            model(x)
        return (state + x.numel() * x.element_size() + live.peak) / 2**20
    finally:
        model.train(was_training)
