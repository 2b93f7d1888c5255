"""torchrun support: one process per device, PyTorch's own process group, rank 0 writes.

A run launched by `torchrun` (or any launcher that sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and
MASTER_PORT) initializes the default process group here: NCCL when the rank drives a CUDA device (bound to
cuda:LOCAL_RANK), gloo on CPU. Without those variables every function below is a no-op, so a plain
`archsearch ...` behaves exactly as before.

Why explicit gradient averaging instead of wrapping the model in DistributedDataParallel: DARTS' bilevel
step runs extra forward/backward passes through `torch.autograd.grad` (the virtual step, the finite-difference
Hessian-vector product) that DDP's reducer does not see, and ENAS trains a different child each step (unused
parameters). `average_gradients` flattens a list of gradients into one bucket, all-reduces it once and
weights every rank by its number of samples, so the result is exactly the gradient of the global batch's mean
loss, whatever the order of DARTS and whatever the batch split.

Only rank 0 writes files (common/io.py and checkpoint.py ask `is_writer()`); the other ranks keep the sha256
of what they would have written (`unwritten_digest`), so `check_same_file` can prove every rank produced the
same final architecture.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import hashlib
import os
import signal
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from archsearch.common.errors import ConfigError, UserError

ENV_KEYS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


class RanksDiverged(RuntimeError):
    """Ranks that must hold identical state (weights, architecture, a sampled arc) do not: a bug, not bad input."""


@dataclass(frozen=True)
class Launch:
    """What torchrun's environment says about this process."""

    rank: int
    world_size: int
    local_rank: int
    restart: int  # TORCHELASTIC_RESTART_COUNT: > 0 after an elastic restart (--max-restarts)


def launch_env(environ: dict[str, str] | None = None) -> Launch | None:
    """This process's place in a torchrun job, or None when it was not started by one."""
    env = os.environ if environ is None else environ
    if "WORLD_SIZE" not in env and "RANK" not in env:
        return None
    missing = [k for k in ENV_KEYS if not env.get(k)]
    if missing:
        raise UserError(
            f"distributed launch: environment variable(s) {', '.join(missing)} not set; start the run with "
            "torchrun (torchrun --nproc_per_node N scripts/main.py ...) or unset RANK/WORLD_SIZE"
        )
    try:
        rank, world, local = int(env["RANK"]), int(env["WORLD_SIZE"]), int(env["LOCAL_RANK"])
        restart = int(env.get("TORCHELASTIC_RESTART_COUNT", "0") or 0)
    except ValueError:
        raise UserError(
            f"distributed launch: RANK={env['RANK']!r}, WORLD_SIZE={env['WORLD_SIZE']!r}, "
            f"LOCAL_RANK={env['LOCAL_RANK']!r} must be integers (torchrun sets them)"
        ) from None
    if not (world >= 1 and 0 <= rank < world and local >= 0):
        raise UserError(f"distributed launch: RANK={rank} is not in 0..WORLD_SIZE-1 (WORLD_SIZE={world})")
    return Launch(rank, world, local, restart)


def active() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def launched_world_size() -> int:
    """The world size torchrun asked for, before (or without: --dry-run) the process group exists."""
    if active():
        return world_size()
    launch = launch_env()
    return launch.world_size if launch is not None else 1


def is_rank0() -> bool:
    return rank() == 0


def is_writer() -> bool:
    """True where files are written: everywhere without torchrun, on rank 0 under it."""
    if active():
        return rank() == 0
    launch = _safe_launch()  # before setup (or a --dry-run, which starts no process group)
    return launch is None or launch.rank == 0


def _safe_launch() -> Launch | None:
    try:
        return launch_env()
    except UserError:
        return None


def select_rank_device(name: str, launch: Launch | None) -> torch.device:
    """The device of this process: `common.device` as given without torchrun; under it, cuda:LOCAL_RANK
    (auto or cuda) or cpu, since each rank owns exactly one device."""
    from archsearch.common.devices import select_device

    device = select_device(name)
    if launch is None or device.type != "cuda":
        return device
    if device.index is not None and launch.world_size > 1:
        raise ConfigError(
            f"common.device: {name!r} pins every rank to one GPU; under torchrun use auto or cuda "
            "(rank r then uses cuda:LOCAL_RANK)"
        )
    if launch.local_rank >= torch.cuda.device_count():
        raise UserError(
            f"torchrun started local rank {launch.local_rank} but this node has {torch.cuda.device_count()} "
            "GPU(s); lower --nproc_per_node"
        )
    return torch.device("cuda", launch.local_rank)


def setup(device_name: str, timeout_s: float) -> torch.device:
    """Initialize the process group once (when launched by torchrun) and return this rank's device."""
    launch = launch_env()
    device = select_rank_device(device_name, launch)
    if launch is None or active():
        return device
    if device.type == "cuda":
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    timeout = datetime.timedelta(seconds=timeout_s)
    # torchrun's store outlives an elastic restart: without a per-attempt prefix a restarted rank can read the
    # dead attempt's addresses and fail to connect
    store, _, _ = next(dist.rendezvous("env://", timeout=timeout))
    store = dist.PrefixStore(f"archsearch/attempt_{launch.restart}", store)
    dist.init_process_group(backend, store=store, rank=launch.rank, world_size=launch.world_size, timeout=timeout)
    atexit.register(teardown)
    _install_sigterm()
    return device


def teardown() -> None:
    if active():
        with contextlib.suppress(Exception):  # a peer already gone: nothing left to tear down cleanly
            dist.destroy_process_group()


def _install_sigterm() -> None:
    """torchrun stops the surviving ranks with SIGTERM when one fails: one line each, no traceback."""

    def on_sigterm(signum, frame) -> None:  # noqa: ARG001 - signal handler signature
        if _reported:  # already ending with its own line about the lost rank
            os._exit(1)
        sys.stderr.write(
            f"error: rank {rank()} stopped by SIGTERM (torchrun sends it when another rank of the job ended, and "
            "its report names that rank); the last finished epoch's checkpoint is kept: rerun with "
            "--common.resume true\n"
        )
        sys.stderr.flush()
        os._exit(128 + signal.SIGTERM)

    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, on_sigterm)


PEER_ERROR_MARKERS = ("gloo", "NCCL", "nccl", "Connection reset by peer", "Connection closed by peer")


def lost_peer(error: BaseException) -> bool:
    """An exception from a collective whose peer died or hung (gloo raises plain RuntimeErrors naming itself)."""
    if not active() or world_size() == 1:
        return False
    return isinstance(error, dist.DistError) or (
        isinstance(error, RuntimeError) and any(m in str(error) for m in PEER_ERROR_MARKERS)
    )


_reported: list[str] = []  # the one line this rank printed about the job's end (the SIGTERM handler adds none)


def lost_rank_message(error: BaseException) -> str:
    first = (str(error).strip().splitlines() or [type(error).__name__])[0][:120]
    _reported.append(first)
    return (
        f"error: rank {rank()} of {world_size()} lost contact with the other ranks ({first}); one of them ended "
        "(torchrun's report names it); the last finished epoch's checkpoint is kept: rerun with "
        "--common.resume true"
    )


def barrier() -> None:
    if active() and world_size() > 1:
        dist.barrier()


# ---- collectives ---------------------------------------------------------------------------------------
def _comm_device() -> torch.device:
    """Where collective tensors live: NCCL reduces CUDA tensors only, gloo CPU ones."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum `tensor` over the ranks, in place (on its own device when the backend takes it); returns it."""
    if not active() or world_size() == 1:
        return tensor
    comm = _comm_device()
    if tensor.device == comm:
        dist.all_reduce(tensor)
        return tensor
    moved = tensor.to(comm)
    dist.all_reduce(moved)
    tensor.copy_(moved)
    return tensor


def average_gradients(grads: Sequence[torch.Tensor | None], n_local: int | None = None) -> None:
    """Replace every gradient by its average over the ranks, in place, with one all-reduce.

    With `n_local` (this rank's number of samples) every rank's gradient is weighted by its share of the
    global batch, sum_r n_r g_r / sum_r n_r: exactly the gradient of the global batch's mean loss, also for an
    uneven last batch. None entries (parameters this step did not use; the same on every rank, which all run
    the same architecture) are skipped.
    """
    if not active() or world_size() == 1:
        return
    present = [g for g in grads if g is not None]
    if not present:
        return
    dtype = torch.float64 if any(g.dtype == torch.float64 for g in present) else torch.float32
    ones = torch.ones(1, device=present[0].device, dtype=dtype)  # its sum is the global sample count
    flat = torch.cat([g.detach().reshape(-1).to(dtype) for g in present] + [ones])
    flat.mul_(1.0 if n_local is None else float(n_local))
    all_reduce_sum(flat)
    flat.div_(flat[-1].clone())
    offset = 0
    for g in present:
        n = g.numel()
        g.copy_(flat[offset : offset + n].view_as(g))
        offset += n


def averaged(grads: Sequence[torch.Tensor], n_local: int | None = None) -> list[torch.Tensor]:
    """`average_gradients` for gradients returned by `torch.autograd.grad` (tuples of fresh tensors)."""
    out = [g.clone() for g in grads]
    average_gradients(out, n_local)
    return out


def average_buffers(module: nn.Module) -> None:
    """Average floating-point buffers (BatchNorm running statistics) over the ranks, so every rank holds the
    same model. A running mean is an exponential average, linear in the batch means, so the average of the
    ranks' running means equals the running mean of the global batches' means (equal shards)."""
    if not active() or world_size() == 1:
        return
    buffers = [b for b in module.buffers() if b.is_floating_point()]
    if not buffers:
        return
    flat = torch.cat([b.detach().reshape(-1).float() for b in buffers])
    all_reduce_sum(flat).div_(world_size())
    offset = 0
    for b in buffers:
        b.copy_(flat[offset : offset + b.numel()].view_as(b))
        offset += b.numel()


def broadcast_ints(values: Sequence[int], src: int = 0) -> list[int]:
    """Rank `src`'s list of ints on every rank (the same length on all: an ENAS arc)."""
    if not active() or world_size() == 1:
        return list(values)
    t = torch.tensor(list(values), dtype=torch.int64, device=_comm_device())
    dist.broadcast(t, src)
    return t.tolist()


def broadcast_object(obj, src: int = 0):
    """Rank `src`'s picklable object on every rank."""
    if not active() or world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src)
    return box[0]


def all_gather_object(obj) -> list:
    if not active() or world_size() == 1:
        return [obj]
    out: list = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


# ---- identical state on every rank ----------------------------------------------------------------------
def tensors_digest(tensors: Iterable[torch.Tensor]) -> str:
    """sha256 of the tensors' exact bytes (bit-identical tensors, identical digest)."""
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def check_identical(what: str, digest: str) -> list[str]:
    """Every rank's `digest` of `what`; RanksDiverged naming the ranks when they differ."""
    digests = all_gather_object(digest)
    if len(set(digests)) > 1:
        differ = [r for r, d in enumerate(digests) if d != digests[0]]
        raise RanksDiverged(
            f"{what} differ between ranks: rank 0 has sha256 {digests[0][:12]}..., ranks "
            f"{', '.join(map(str, differ))} have {', '.join(digests[r][:12] + '...' for r in differ)}"
        )
    return digests


_UNWRITTEN: dict[str, str] = {}  # path -> sha256 of the bytes a non-writing rank would have written there


def note_unwritten(path: os.PathLike | str, data: bytes) -> None:
    _UNWRITTEN[os.path.abspath(path)] = hashlib.sha256(data).hexdigest()


def file_digest(path: os.PathLike | str) -> str:
    """sha256 of the file at `path` as this rank made it: its bytes on rank 0, what it would have written on
    the other ranks ('' when it wrote nothing there)."""
    if is_writer():
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    return _UNWRITTEN.get(os.path.abspath(path), "")


def check_same_file(what: str, path: os.PathLike | str) -> list[str]:
    return check_identical(what, file_digest(path))


def per_rank_batch(batch_size: int, key: str) -> int:
    """The batch one rank loads: the configured (global) batch over the world size, which must divide it."""
    world = launched_world_size()
    if batch_size % world:
        raise ConfigError(
            f"config {key}: {batch_size} does not divide among {world} ranks (the configured batch is the "
            f"global batch; each rank takes batch / world size); use a multiple of {world}, e.g. "
            f"{max(world, batch_size // world * world)}"
        )
    return batch_size // world
