"""The current zero-cost proxies, computed together from as few passes as one network allows.

`measure(model, inputs, targets, loss_fn, names, options)` scores one network with every named proxy and
returns {name: score}. The proxies that look at the same pass share it:

- **one forward on the batch** (train mode, as every proxy here) with forward hooks that feed, at once, the
  NASWOT kernel (`naswot`, `naswot_relu`), SWAP's activation patterns (`swap`) and AZ-NAS's stage features
  (`az_expressivity`, `az_progressivity`, `az_trainability`);
- **backward passes on that forward's graph**: jacob_cov's input gradients, AZ-NAS's trainability (one
  small backward per pair of consecutive stages), then one backward per half-batch loss for ZiCo; `grad_norm`
  and `snip` use the full batch's gradient, which for a mean-reduced loss (cross entropy) is the halves'
  weighted mean (no extra pass);
- **one forward of a single sample** for MeCo (`meco`, `meco_opt`), as MeCo's code scores one image;
- `params`, `macs` and `az_complexity` (AZ-NAS's complexity is the network's FLOPs, i.e. MACs) count.

`jacob_cov`'s input gradients are one more backward on the shared forward (the input then needs a gradient).
`synflow` needs a pass of its own (|weights| in float64 on a copy of the network) and runs its registered
function. Each proxy is also registered alone in `PROXIES` (`fn(model, inputs, targets,
loss_fn) -> float`, higher is better), computed by `measure` with just that name, so a proxy scores the same
alone and inside an ensemble. Every pass runs under `scoring_mode` (train mode, no drop path, BN buffers and
mode restored) and takes gradients with `torch.autograd.grad`: the caller's model is left as it was.

Definitions (what the original code computes; docs/naswot.md lists where ours differs and why):

- `zico` (Li et al., ICLR 2023): sum over Conv2d/Linear layers of log(sum over the layer's weights of
  mean|g| / std(g)), the mean and (population) std taken over the gradients of two batches; weights whose
  std is 0 are left out, a layer whose sum is 0 adds nothing. The one batch is split in two halves, and each
  half's mean loss gives one gradient (both from the one forward: BatchNorm sees the whole batch).
- `meco` (Jiang et al., NeurIPS 2023): for every module's output on one sample (the batch's first), the
  channels x positions matrix's channel correlation matrix (NaN and inf entries set to 0), its smallest
  eigenvalue; summed over modules. `meco_opt` correlates 8 sampled channels of a wider layer and scales the
  eigenvalue by channels / 8 (MeCo_opt in their code). The channel sample is seeded: the score is
  deterministic.
- `swap` (Peng et al., ICLR 2024): the number of distinct sample-wise activation patterns: each ReLU unit
  (every nn.ReLU whose input is 4-d) has a pattern, its on/off state over the samples; the first
  `swap_samples` (16, their code's batch) samples of the batch are used. Times SWAP's parameter regulariser
  exp(-(P - mu)^2 / sigma), P the parameters in thousands, when `swap_mu` and `swap_sigma` are set.
- AZ-NAS (Lee & Ham, CVPR 2024) on the stage features (a `Model`'s stem outputs and cell outputs, as their
  NAS-Bench-201 code's cell features; another network's top-level blocks): `az_expressivity` = sum over stages
  of the entropy of the normalized eigenvalues of the channel covariance (positions and samples as
  observations); `az_progressivity` = the smallest increase of that entropy from one stage to the next;
  `az_trainability` = the mean over consecutive stages of -s - 1/s + 2, s the largest singular value of the
  (position-averaged) Jacobian between them, probed with a Rademacher vector (an identity stage scores -inf);
  `az_complexity` = MACs. NaN becomes -inf, as their code.
- `params`, `macs`: the network's weight count (model.network.count_params) and MACs of one input
  (model.stats.count_macs).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from archsearch.common.errors import ArchitectureError
from archsearch.model.network import Model, count_params
from archsearch.model.stats import count_macs
from archsearch.strategies.naswot.proxies import (
    PROXIES,
    LossFn,
    _HammingKernel,
    _layer_weights,
    _logits,
    _scored_modules,
    jacob_cov_of,
    model_device,
    relu_activations_only,
    relu_by_class_name,
    scoring_mode,
)

AZ_NAS = ("az_expressivity", "az_progressivity", "az_trainability", "az_complexity")
_FORWARD = {"naswot", "naswot_relu", "swap", "az_expressivity", "az_progressivity", "az_trainability", "jacob_cov"}
_GRADIENT = {"zico", "grad_norm", "snip"}
_MECO = {"meco", "meco_opt"}
_COUNTS = {"params", "macs", "az_complexity"}
SHARED = frozenset(_FORWARD | _GRADIENT | _MECO | _COUNTS)
_MATCH = {"naswot": relu_by_class_name, "naswot_relu": relu_activations_only}
# sample-wise patterns are packed into int64 words of this many samples (one bit each, sign bit unused)
_BITS = 62


@dataclass(frozen=True)
class ProxyOptions:
    """The proxies' own settings (nas.search.naswot.swap and .meco); the defaults are the original code's."""

    swap_samples: int = 16  # SWAP's correlation.py scores 16 input samples
    swap_mu: float | None = None  # SWAP's regulariser, in thousands of parameters (None: not regularised)
    swap_sigma: float | None = None
    meco_channels: int = 8  # MeCo_opt samples 8 channels of a wider layer
    seed: int = 0  # AZ-NAS trainability's Rademacher probes and MeCo_opt's channel sample


DEFAULT_OPTIONS = ProxyOptions()


# ---- stage features (AZ-NAS) ----------------------------------------------------------------------


def stage_modules(model: nn.Module) -> list[nn.Module]:
    """The modules whose outputs are AZ-NAS's "layer features": a Model's stems and cells (their NAS-Bench-201
    code's stem + cell outputs); another network's top-level blocks (the root's children, a ModuleList or
    Sequential expanded, descending while there is a single child)."""
    if isinstance(model, Model):
        return [*model.stems, *model.cells]
    module = model
    while True:
        children = [c for name, c in module.named_children() if not name.startswith("aux")]
        if len(children) != 1 or not list(children[0].children()):
            break
        module = children[0]
    blocks: list[nn.Module] = []
    for child in children:
        blocks.extend(child if isinstance(child, (nn.ModuleList, nn.Sequential)) else [child])
    return blocks


def _entropy_of_spectrum(feature: torch.Tensor) -> float:
    b, c, h, w = feature.shape
    flat = feature.detach().permute(0, 2, 3, 1).reshape(b * h * w, c)
    flat = flat - flat.mean(dim=0, keepdim=True)
    sigma = (flat.T @ flat / flat.shape[0]).to(torch.float64)
    s = torch.linalg.eigvalsh(sigma)
    p = s / s.sum()
    return float((-p * torch.log(p + 1e-8)).sum())


def _trainability(features: list[torch.Tensor], generator: torch.Generator) -> float:
    scores = []
    for i in reversed(range(1, len(features))):
        f_out, f_in = features[i], features[i - 1]
        if not (f_out.requires_grad and f_in.requires_grad):
            continue
        g_out = (torch.randint(0, 2, f_out.shape, generator=generator) * 2 - 1).to(f_out)
        (g_in,) = torch.autograd.grad(f_out, f_in, g_out, retain_graph=True, allow_unused=True)
        if g_in is None:
            continue  # not connected (a branch): no Jacobian between the two
        if g_in.shape == g_out.shape and torch.equal(g_in, g_out):
            scores.append(-math.inf)  # an identity stage, as the original
            continue
        if g_out.shape[2:] != g_in.shape[2:]:
            stride = g_in.shape[2] // g_out.shape[2]
            if stride < 1 or g_in.shape[2] != stride * g_out.shape[2] or g_in.shape[3] != stride * g_out.shape[3]:
                continue
            g_in = F.pixel_unshuffle(g_in, stride)
        bo, co, ho, wo = g_out.shape
        a = g_in.permute(0, 2, 3, 1).reshape(bo * ho * wo, -1)
        b = g_out.permute(0, 2, 3, 1).reshape(bo * ho * wo, co)
        mat = (a.T @ b / (bo * ho * wo)).to(torch.float64)
        if mat.shape[0] < mat.shape[1]:
            mat = mat.T
        top = float(torch.linalg.svdvals(mat).max())
        scores.append(-top - 1.0 / (top + 1e-6) + 2.0)
    return sum(scores) / len(scores) if scores else math.nan


# ---- SWAP -----------------------------------------------------------------------------------------


class _PatternCollector:
    """Packs each ReLU unit's on/off pattern over the first n samples into int64 words, layer by layer."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.packed: list[torch.Tensor] = []

    def hook(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        if not (inputs and isinstance(inputs[0], torch.Tensor) and inputs[0].dim() == 4):
            return  # the original counts ReLUs of feature maps only
        codes = (output.detach()[: self.n].reshape(min(self.n, output.shape[0]), -1) > 0).T.to(torch.int64)
        words = []
        for start in range(0, codes.shape[1], _BITS):
            chunk = codes[:, start : start + _BITS]
            weights = 2 ** torch.arange(chunk.shape[1], device=chunk.device, dtype=torch.int64)
            words.append((chunk * weights).sum(dim=1))
        self.packed.append(torch.stack(words, dim=1))

    def count(self) -> int:
        if not self.packed:
            return 0
        words = torch.cat(self.packed)
        if words.shape[1] == 1:  # up to 62 samples: one word per unit, a flat unique (much faster than dim=0)
            return int(torch.unique(words.reshape(-1)).shape[0])
        return int(torch.unique(words, dim=0).shape[0])


def swap_regulariser(n_params: int, mu: float | None, sigma: float | None) -> float:
    """exp(-(P - mu)^2 / sigma), P = parameters / 1000, as SWAP's code; 1 when mu or sigma is unset."""
    if mu is None or sigma is None:
        return 1.0
    return math.exp(-((n_params / 1e3 - mu) ** 2) / sigma)


# ---- MeCo -----------------------------------------------------------------------------------------


def _meco_terms(model: nn.Module, sample: torch.Tensor, want: set[str], options: ProxyOptions) -> dict[str, float]:
    generator = torch.Generator().manual_seed(options.seed)
    terms: dict[str, list[float]] = {name: [] for name in want}

    def hook(module: nn.Module, inputs: tuple, output: Any) -> None:
        if not isinstance(output, torch.Tensor) or output.dim() < 2:
            return
        fea = output.detach()[0]
        fea = fea.reshape(fea.shape[0], -1).to(torch.float64)
        n = fea.shape[0]
        for name in want:
            rows, scale = fea, 1.0
            if name == "meco_opt" and n > options.meco_channels:
                pick = torch.randperm(n, generator=generator)[: options.meco_channels].to(fea.device)
                rows, scale = fea[pick], n / options.meco_channels
            if rows.shape[1] < 2:
                terms[name].append(0.0)  # one position: every correlation is NaN, set to 0 -> eigenvalues 0
                continue
            corr = torch.nan_to_num(torch.corrcoef(rows), nan=0.0, posinf=0.0, neginf=0.0)
            terms[name].append(float(torch.linalg.eigvalsh(corr).min()) * scale)

    handles = [m.register_forward_hook(hook) for _, m in _scored_modules(model)]
    try:
        with torch.no_grad(), scoring_mode(model):
            model(sample)
    except ValueError as e:  # e.g. BatchNorm1d cannot normalize a batch of one
        raise ArchitectureError(f"meco scores one sample and this network cannot run a batch of one: {e}") from e
    finally:
        for handle in handles:
            handle.remove()
    return {name: float(sum(v for v in values if math.isfinite(v))) for name, values in terms.items()}


# ---- the shared passes ----------------------------------------------------------------------------


def _forward_and_backward(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor | None,
    loss_fn: LossFn | None,
    want: set[str],
    options: ProxyOptions,
) -> dict[str, float]:
    out: dict[str, float] = {}
    n = inputs.shape[0]
    kernels: dict[str, _HammingKernel] = {}
    handles = []
    scored = list(_scored_modules(model))
    for name, match in _MATCH.items():
        if name in want:
            if not any(match(m) for _, m in scored):
                raise ArchitectureError(
                    f"{name} codes the inputs of ReLU modules, and {type(model).__name__} has none (a functional "
                    "relu cannot be hooked): use nn.ReLU modules, or another proxy (--nas.search.naswot.proxy synflow)"
                )
            kernels[name] = _HammingKernel(n, inputs.device)
            handles += [m.register_forward_hook(kernels[name].hook) for _, m in scored if match(m)]
    patterns = None
    if "swap" in want:
        patterns = _PatternCollector(options.swap_samples)
        handles += [m.register_forward_hook(patterns.hook) for _, m in scored if isinstance(m, nn.ReLU)]
    features: list[torch.Tensor] = []
    if want & {"az_expressivity", "az_progressivity", "az_trainability"}:

        def keep(module: nn.Module, inputs_: tuple, output: Any) -> None:
            if isinstance(output, torch.Tensor) and output.dim() == 4:
                features.append(output)

        handles += [m.register_forward_hook(keep) for m in stage_modules(model)]
    needs_grad = bool(want & (_GRADIENT | {"az_trainability", "jacob_cov"}))
    if "jacob_cov" in want:  # its input gradients come from the same forward: the input needs a gradient
        inputs = inputs.detach().clone().requires_grad_(True)
    try:
        with scoring_mode(model), torch.set_grad_enabled(needs_grad):
            logits = _logits(model(inputs))
            for handle in handles:
                handle.remove()
            handles = []
            for name, kernel in kernels.items():
                out[name] = float(torch.linalg.slogdet(kernel.kernel)[1])
            if patterns is not None:
                factor = swap_regulariser(count_params(model), options.swap_mu, options.swap_sigma)
                out["swap"] = patterns.count() * factor
            if want & {"az_expressivity", "az_progressivity"}:
                entropies = [_entropy_of_spectrum(f) for f in features]
                expressivity = sum(entropies) if entropies else math.nan
                steps = [b - a for a, b in zip(entropies, entropies[1:])]
                progressivity = min(steps) if steps else math.nan
                out["az_expressivity"] = -math.inf if math.isnan(expressivity) else expressivity
                out["az_progressivity"] = -math.inf if math.isnan(progressivity) else progressivity
            if "jacob_cov" in want:
                (jacobian,) = torch.autograd.grad(
                    logits, inputs, torch.ones_like(logits), retain_graph=True, allow_unused=True
                )
                out["jacob_cov"] = jacob_cov_of(jacobian)
            if "az_trainability" in want:
                value = _trainability(features, torch.Generator().manual_seed(options.seed))
                out["az_trainability"] = -math.inf if math.isnan(value) else value
            if want & _GRADIENT:
                out.update(_gradient_scores(model, logits, targets, loss_fn, want))
    finally:
        for handle in handles:
            handle.remove()
        for kernel in kernels.values():
            kernel.release()
    return out


def _gradient_scores(
    model: nn.Module, logits: torch.Tensor, targets: torch.Tensor | None, loss_fn: LossFn | None, want: set[str]
) -> dict[str, float]:
    if targets is None:
        raise ArchitectureError(f"{', '.join(sorted(want & _GRADIENT))} need the batch's targets")
    loss_fn = loss_fn or F.cross_entropy
    weights = _layer_weights(model)
    out: dict[str, float] = {}
    n = logits.shape[0]
    full: list[torch.Tensor | None] | None = None
    if "zico" in want:
        half = n // 2
        if half < 1:
            raise ArchitectureError("zico needs a batch of at least 2 samples (it splits it in two halves)")
        g1 = torch.autograd.grad(loss_fn(logits[:half], targets[:half]), weights, retain_graph=True, allow_unused=True)
        last = not (want & {"grad_norm", "snip"}) or loss_fn is F.cross_entropy
        g2 = torch.autograd.grad(
            loss_fn(logits[half:], targets[half:]), weights, retain_graph=not last, allow_unused=True
        )
        total = 0.0
        for a, b in zip(g1, g2):
            if a is None or b is None:
                continue
            std = (a - b).abs().to(torch.float64) / 2  # population std of two values
            mean_abs = (a.abs() + b.abs()).to(torch.float64) / 2
            nonzero = std != 0
            ratio = float((mean_abs[nonzero] / std[nonzero]).sum())
            if ratio > 0:
                total += math.log(ratio)
        out["zico"] = total
        if loss_fn is F.cross_entropy:  # mean-reduced: the batch's gradient is the halves' weighted mean
            full = [None if a is None or b is None else (a * half + b * (n - half)) / n for a, b in zip(g1, g2)]
    if want & {"grad_norm", "snip"}:
        if full is None:
            full = list(torch.autograd.grad(loss_fn(logits, targets), weights, allow_unused=True))
        pairs = [(w.detach(), g) for w, g in zip(weights, full) if g is not None]
        if "grad_norm" in want:
            out["grad_norm"] = float(sum((g.norm() for _, g in pairs), torch.tensor(0.0)))
        if "snip" in want:
            out["snip"] = float(sum(((w * g).abs().sum() for w, g in pairs), torch.tensor(0.0)))
    return out


def measure(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor | None,
    loss_fn: LossFn | None,
    names: Iterable[str],
    options: ProxyOptions = DEFAULT_OPTIONS,
) -> dict[str, float]:
    """Every named proxy of one network, {name: score}, from shared passes (see the module's docstring)."""
    names = list(dict.fromkeys(names))
    for name in names:
        PROXIES.get(name)  # an unknown name is the registry's one-line error
    want = set(names) & SHARED
    device = model_device(model)
    inputs = inputs.to(device)
    targets = targets.to(device) if targets is not None else None
    out: dict[str, float] = {}
    if "params" in want:
        out["params"] = float(count_params(model))
    if want & {"macs", "az_complexity"}:
        with scoring_mode(model):  # count_macs runs in eval mode; scoring_mode restores drop path and buffers
            macs = float(count_macs(model, tuple(inputs.shape[1:]), device))
        out.update({k: macs for k in ("macs", "az_complexity") if k in want})
    if want & _MECO:
        out.update(_meco_terms(model, inputs[:1], want & _MECO, options))
    if want & (_FORWARD | _GRADIENT):
        out.update(_forward_and_backward(model, inputs, targets, loss_fn, want & (_FORWARD | _GRADIENT), options))
    for name in names:
        if name not in out:
            out[name] = float(PROXIES.get(name)(model, inputs, targets, loss_fn))
    return {name: out[name] for name in names}


def _register(name: str) -> None:
    def proxy(
        model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor | None = None, loss_fn: LossFn | None = None
    ) -> float:
        return measure(model, inputs, targets, loss_fn, [name])[name]

    proxy.__name__ = name
    proxy.__doc__ = f"The `{name}` proxy alone (archsearch.strategies.naswot.zero_cost.measure)."
    PROXIES.register(name)(proxy)


for _name in ("zico", "meco", "meco_opt", "swap", *AZ_NAS, "params", "macs"):
    _register(_name)


def all_proxy_names() -> list[str]:
    return list(PROXIES.names())


__all__ = [
    "AZ_NAS",
    "SHARED",
    "ProxyOptions",
    "DEFAULT_OPTIONS",
    "measure",
    "stage_modules",
    "swap_regulariser",
    "all_proxy_names",
]
