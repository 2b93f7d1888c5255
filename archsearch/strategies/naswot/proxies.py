"""Zero-cost proxies: score an untrained network on one mini-batch, without training it.

Every proxy has the signature `fn(model, inputs, targets, loss_fn) -> float` (higher is better) and is
registered in `PROXIES`:

- `naswot` (Mellor et al., ICML 2021): for every ReLU, the binary code c = [input > 0] of each sample
  (flattened per sample); the kernel K = sum over ReLUs of C C^T + (1-C)(1-C)^T, i.e. the number of units
  on which two samples agree; score = log|det K|.
- `synflow`, `grad_norm`, `snip`, `jacob_cov`: as in SamsungLabs' zero-cost-nas (Abdelfattah et al.,
  ICLR 2021), summed over the weights of every Conv2d and Linear layer.

All proxies run the model in train mode, as both original code bases do (BatchNorm normalizes with the
batch's statistics; in eval mode a freshly built network's BN layers would be identities), and
leave the caller's model as they found it: train/eval mode, BN running stats, drop-path probability and
`.grad` are restored or never touched, and synflow, which needs |weights| in float64, works on a copy.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import math
from collections import OrderedDict
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from archsearch.common.errors import ArchitectureError
from archsearch.common.registry import Registry

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
ProxyFn = Callable[[nn.Module, torch.Tensor, torch.Tensor, LossFn], float]
PROXIES: Registry[ProxyFn] = Registry("proxy")

# Auxiliary towers are a training aid that runs only in train mode; their layers are not part of the
# architecture being ranked, so no proxy counts them.
_SKIPPED_PREFIX = "aux_tower"
# jacob_cov's stabilizer (zero-cost-nas `eval_score`)
_JACOB_COV_K = 1e-5
# float32 sums of 0/1 products are exact below 2**24 terms; wider activations fall back to float64
_FLOAT32_EXACT = 2**24


def model_device(model: nn.Module) -> torch.device:
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        return tensor.device
    return torch.device("cpu")


def _logits(output: torch.Tensor | tuple | list) -> torch.Tensor:
    # Model returns (logits, aux_logits) in train mode when it has an auxiliary tower
    return output[0] if isinstance(output, (tuple, list)) else output


def _scored_modules(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    for name, module in model.named_modules():
        if name == _SKIPPED_PREFIX or name.startswith(_SKIPPED_PREFIX + "."):
            continue
        yield name, module


def _layer_weights(model: nn.Module) -> list[torch.Tensor]:
    """Weights of the Conv2d and Linear layers, the ones zero-cost-nas sums its per-weight scores over."""
    return [
        m.weight for _, m in _scored_modules(model) if isinstance(m, (nn.Conv2d, nn.Linear)) and m.weight.requires_grad
    ]


@contextlib.contextmanager
def scoring_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Train mode without drop path for the duration; restores mode, buffers and drop path afterwards.

    Buffers are restored because a train-mode forward updates BN running stats, and a proxy must not
    change the model it scores.
    """
    was_training = model.training
    saved_buffers = [(b, b.detach().clone()) for b in model.buffers()]
    drop_path = getattr(model, "drop_path_prob", None)
    model.train()
    if drop_path is not None:
        model.drop_path_prob = 0.0
    try:
        yield model
    finally:
        with torch.no_grad():
            for buffer, saved in saved_buffers:
                buffer.copy_(saved)
        if drop_path is not None:
            model.drop_path_prob = drop_path
        model.train(was_training)


# ---- NASWOT ------------------------------------------------------------------------------------


class _HammingKernel:
    """Accumulates K = sum_relu [C C^T + (1-C)(1-C)^T] in float64 from forward hooks.

    Per ReLU, with G = C C^T and r = diag(G) (the ones in each code, as codes are 0/1) and d units,
    (1-C)(1-C)^T = d - r_i - r_j + G_ij, so the layer's term is 2G - r 1^T - 1 r^T + d: one matmul.
    Several ReLUs often read the same tensor (every conv edge leaving a NAS-Bench-201 node has its own
    ReLU); their terms are identical, so a term is computed once per distinct input and reused. The
    cache holds a reference to the input, so its address can not be reused by another tensor meanwhile.
    """

    def __init__(self, n: int, device: torch.device, cache_size: int = 4) -> None:
        self.kernel = torch.zeros(n, n, dtype=torch.float64, device=device)
        self.cache_size = cache_size
        self._cache: OrderedDict[tuple, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()
        self.n_relus = 0
        self.n_matmuls = 0

    def hook(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        # The original codes the ReLU's input; an in-place ReLU has overwritten it with its output by now,
        # which has the same sign pattern (relu(x) > 0 iff x > 0).
        x = inputs[0] if inputs and isinstance(inputs[0], torch.Tensor) else output
        self.n_relus += 1
        try:
            version = x._version
        except RuntimeError:  # an inference-mode tensor has no version counter: compute, don't cache
            self.kernel += self._term(x)
            return
        key = (x.data_ptr(), x.dtype, tuple(x.shape), tuple(x.stride()), version)
        cached = self._cache.get(key)
        if cached is None:
            cached = (x, self._term(x))
            self._cache[key] = cached
            if len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        self.kernel += cached[1]

    def _term(self, x: torch.Tensor) -> torch.Tensor:
        self.n_matmuls += 1
        flat = x.detach().reshape(x.shape[0], -1)
        units = flat.shape[1]
        codes = (flat > 0).to(torch.float32 if units < _FLOAT32_EXACT else torch.float64)
        gram = (codes @ codes.T).to(torch.float64)
        ones = gram.diagonal()
        return 2.0 * gram - ones[:, None] - ones[None, :] + float(units)

    def release(self) -> None:
        self._cache.clear()


def relu_by_class_name(module: nn.Module) -> bool:
    """The original's rule: hook every module whose class name contains "ReLU".

    That includes nn.ReLU, ReLU6, LeakyReLU, but also composite blocks such as `ReLUConvBN`, whose input
    is the input of the ReLU inside it: the original therefore counts each ReLU-conv-BN's code twice
    (and the network's last, bare ReLU once). We keep the rule so scores match the published ones.
    """
    return "ReLU" in type(module).__name__


def relu_activations_only(module: nn.Module) -> bool:
    """Every ReLU-family activation module exactly once (the paper's description, not its code)."""
    return isinstance(module, (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU))


def naswot_kernel(
    model: nn.Module, inputs: torch.Tensor, match: Callable[[nn.Module], bool] = relu_by_class_name
) -> torch.Tensor:
    """The NASWOT kernel (float64, batch x batch) of `model` on `inputs`, from one forward pass.

    `match` picks the modules whose input is coded (default: the original's class-name rule); functional
    relus are not seen. The model runs on its own device; `inputs` are moved there.
    """
    device = model_device(model)
    inputs = inputs.to(device)
    acc = _HammingKernel(inputs.shape[0], device)
    handles = [m.register_forward_hook(acc.hook) for _, m in _scored_modules(model) if match(m)]
    if not handles:
        raise ArchitectureError(
            f"naswot codes the inputs of ReLU modules, and {type(model).__name__} has none (a functional relu "
            "cannot be hooked): use nn.ReLU modules, or another proxy (--nas.search.naswot.proxy synflow)"
        )
    try:
        with torch.no_grad(), scoring_mode(model):
            model(inputs)
    finally:
        for handle in handles:
            handle.remove()
        acc.release()
    return acc.kernel


@PROXIES.register("naswot")
def naswot(
    model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor | None = None, loss_fn: LossFn | None = None
) -> float:
    """log|det K| of the NASWOT kernel; -inf when K is singular (e.g. two identical samples)."""
    _, logabsdet = torch.linalg.slogdet(naswot_kernel(model, inputs))
    return float(logabsdet)


@PROXIES.register("naswot_relu")
def naswot_relu(
    model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor | None = None, loss_fn: LossFn | None = None
) -> float:
    """NASWOT counting each ReLU activation module once (see `relu_activations_only`)."""
    _, logabsdet = torch.linalg.slogdet(naswot_kernel(model, inputs, relu_activations_only))
    return float(logabsdet)


# ---- gradient-based proxies (zero-cost-nas) ----------------------------------------------------


def _loss_grads(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, loss_fn: LossFn) -> list:
    """(weight, dloss/dweight) for every Conv2d/Linear weight; autograd.grad leaves `.grad` untouched."""
    device = model_device(model)
    weights = _layer_weights(model)
    with scoring_mode(model):
        loss = loss_fn(_logits(model(inputs.to(device))), targets.to(device))
        grads = torch.autograd.grad(loss, weights, allow_unused=True)
    return [(w, g) for w, g in zip(weights, grads) if g is not None]


@PROXIES.register("grad_norm")
def grad_norm(
    model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, loss_fn: LossFn = F.cross_entropy
) -> float:
    """Sum over layers of the L2 norm of the loss gradient w.r.t. the layer's weight."""
    return float(sum((g.norm() for _, g in _loss_grads(model, inputs, targets, loss_fn)), torch.tensor(0.0)))


@PROXIES.register("snip")
def snip(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, loss_fn: LossFn = F.cross_entropy) -> float:
    """Sum of |w * dL/dw| (SNIP's connection sensitivity |dL/dmask| at mask = 1, without the masks)."""
    pairs = _loss_grads(model, inputs, targets, loss_fn)
    return float(sum(((w.detach() * g).abs().sum() for w, g in pairs), torch.tensor(0.0)))


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


@PROXIES.register("synflow")
def synflow(
    model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor | None = None, loss_fn: LossFn | None = None
) -> float:
    """Sum of |w * dR/dw| with R = sum of the logits of an all-ones input through |weights| in float64,
    BatchNorm disabled (zero-cost-nas `synflow`, bn=False). Works on a deep copy of the model."""
    net = copy.deepcopy(model)
    for module in net.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.forward = _identity  # what zero-cost-nas does: BN would undo the linearization
    net.double().train()
    if hasattr(net, "drop_path_prob"):
        net.drop_path_prob = 0.0
    with torch.no_grad():
        for tensor in net.state_dict().values():
            if tensor.is_floating_point():
                tensor.abs_()
    device = model_device(net)
    ones = torch.ones((1, *inputs.shape[1:]), dtype=torch.float64, device=device)
    weights = _layer_weights(net)
    grads = torch.autograd.grad(_logits(net(ones)).sum(), weights, allow_unused=True)
    total = sum((float((w.detach() * g).abs().sum()) for w, g in zip(weights, grads) if g is not None), 0.0)
    del net
    return total


@PROXIES.register("jacob_cov")
def jacob_cov(
    model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor | None = None, loss_fn: LossFn | None = None
) -> float:
    """-sum(log(v + k) + 1/(v + k)) over the eigenvalues v of the correlation matrix of the per-sample
    input gradients of the summed logits (Mellor et al.'s first score, as in zero-cost-nas)."""
    device = model_device(model)
    x = inputs.detach().to(device).clone().requires_grad_(True)
    with scoring_mode(model):
        logits = _logits(model(x))
        (jacobian,) = torch.autograd.grad(logits, x, grad_outputs=torch.ones_like(logits), allow_unused=True)
    return jacob_cov_of(jacobian)


def jacob_cov_of(jacobian: torch.Tensor | None) -> float:
    """jacob_cov's score of the input gradients (batch first); NaN when there is none or it is constant."""
    if jacobian is None:
        return math.nan  # the output does not depend on the input (e.g. a cell of `none` ops)
    corr = torch.corrcoef(jacobian.reshape(jacobian.shape[0], -1).to(torch.float64))
    if not bool(torch.isfinite(corr).all()):
        return math.nan  # a constant jacobian row has no correlation (the original also returns nan)
    eigenvalues = torch.linalg.eigvalsh(corr)  # symmetric: real eigenvalues, unlike np.linalg.eig
    k = _JACOB_COV_K
    return float(-(torch.log(eigenvalues + k) + 1.0 / (eigenvalues + k)).sum())


def get_proxy(proxy: str | ProxyFn) -> ProxyFn:
    """A proxy by registry name, or the callable itself."""
    return PROXIES.get(proxy) if isinstance(proxy, str) else proxy


__all__ = [
    "PROXIES",
    "ProxyFn",
    "LossFn",
    "get_proxy",
    "model_device",
    "scoring_mode",
    "naswot_kernel",
    "relu_by_class_name",
    "relu_activations_only",
    "naswot",
    "naswot_relu",
    "synflow",
    "grad_norm",
    "snip",
    "jacob_cov",
]
