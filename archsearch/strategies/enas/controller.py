"""The ENAS controller: a one-layer LSTM that samples an arc sequence one token at a time.

It follows melodyguan/enas (micro_controller.py, general_controller.py) and works for any token spec
(`archsearch.spaces.token_space.Token`). Per layer of a spec group it runs:

- one LSTM step per `input` token: attention over the anchors (hidden states) of the earlier states,
  `v . tanh(W1 anchor + W2 h)`; the chosen state's anchor is the next input (zeros for cell inputs);
- one LSTM step per `op` token: softmax over `W_soft h + b`; the op's embedding is the next input;
- one more step fed the last op's embedding, whose output is the layer's anchor; with `skip` tokens it
  also queries every earlier anchor for an independent skip/no-skip choice (logits `[-q, q]`), and the
  next input is the mean of the chosen anchors (divided by 1 + count) instead of the start embedding.

Groups (the micro space's normal and reduction cells) continue the LSTM state but start a fresh anchor
list, with one LSTM step (and a zero anchor) per cell input. Logits are divided by `temperature`, then
squashed to `tanh_constant * tanh(.)` (ops use `tanh_constant / op_tanh_reduce`). `sample()` returns the
sequence with its summed log-probability (differentiable), its summed entropy (detached, as ENAS adds it
to the reward) and the skip KL penalty toward `skip_target`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import torch
from torch import nn

from archsearch.common.errors import ConfigError
from archsearch.spaces.token_space import Token, check_arc


@dataclass(frozen=True)
class ControllerConfig:
    lstm_size: int = 64
    temperature: float | None = None  # logits / temperature (None: not applied)
    tanh_constant: float | None = None  # logits -> c * tanh(logits) (None: not applied)
    op_tanh_reduce: float = 1.0  # op logits use tanh_constant / op_tanh_reduce
    op_bias_init: float = 0.0  # learnable op bias of the first n_favored_ops ops (ENAS micro: 10)
    fixed_op_bias: float = 0.0  # +b for favored ops, -b for the rest, in group 0 only (ENAS micro normal cell)
    n_favored_ops: int = 2  # ENAS micro favors its first two ops, the separable convs
    skip_target: float = 0.4  # skip probability the KL penalty pulls toward
    lr: float = 1e-3  # for the REINFORCE optimizer
    skip_weight: float = 0.0  # weight of the skip penalty in the REINFORCE loss

    @classmethod
    def enas(cls, kind: str, **overrides: Any) -> ControllerConfig:
        """The original's settings for `kind` "micro" or "macro" (its cifar10_*_search.sh), with overrides."""
        if kind not in ENAS_PRESETS:
            raise ConfigError(f"controller preset {kind!r}: use micro or macro")
        return replace(ENAS_PRESETS[kind], **overrides)

    @staticmethod
    def preset_for(spec: Sequence[Token]) -> str:
        """The ENAS preset that fits a spec: micro when it chooses inputs, macro otherwise."""
        return "micro" if any(t.kind == "input" for t in spec) else "macro"

    @classmethod
    def for_spec(cls, spec: Sequence[Token], **overrides: Any) -> ControllerConfig:
        return cls.enas(cls.preset_for(spec), **overrides)

    @classmethod
    def from_conf(cls, conf: Mapping, kind: str) -> ControllerConfig:
        """The preset with the keys of a config section that name fields here (others are ignored)."""
        names = {f.name for f in fields(cls)}
        return cls.enas(kind, **{k: v for k, v in conf.items() if k in names})


ENAS_PRESETS = {
    # micro: cifar10_micro_search.sh (tanh 1.10, op_tanh_reduce 2.5, lr 0.0035) and micro_controller.py's
    # op biases; temperature 5.0 as the paper (the released script leaves it unset)
    "micro": ControllerConfig(
        temperature=5.0, tanh_constant=1.10, op_tanh_reduce=2.5, op_bias_init=10.0, fixed_op_bias=0.25, lr=3.5e-3
    ),
    # macro: cifar10_macro_search.sh (tanh 1.5, lr 0.001, skip target 0.4, weight 0.8, no temperature);
    # general_controller.py ignores op_tanh_reduce
    "macro": ControllerConfig(tanh_constant=1.5, skip_target=0.4, skip_weight=0.8, lr=1e-3),
}


@dataclass
class ControllerSample:
    arc: list[int]
    log_prob: torch.Tensor  # scalar, differentiable
    entropy: torch.Tensor  # scalar, detached
    skip_penalty: torch.Tensor  # scalar, differentiable; mean KL over layers with skip tokens
    skip_count: int
    n_skip_tokens: int

    @property
    def skip_rate(self) -> float:
        return self.skip_count / self.n_skip_tokens if self.n_skip_tokens else 0.0


@dataclass
class _Layer:
    inputs: list[int]  # arc positions, in slot order
    ops: list[int]
    skips: list[int]


@dataclass
class _Group:
    index: int
    n_init: int  # pre-existing states (cell inputs) the input tokens may pick
    layers: list[_Layer]


def _plan(spec: Sequence[Token]) -> list[_Group]:
    """Group the arc positions by group and layer, in the order the LSTM visits them."""
    groups: dict[int, dict[int, _Layer]] = {}
    for pos, token in enumerate(spec):
        layer = groups.setdefault(token.group, {}).setdefault(token.layer, _Layer([], [], []))
        {"input": layer.inputs, "op": layer.ops, "skip": layer.skips}[token.kind].append(pos)
    plan = []
    for g, layers in groups.items():
        ordered = [layers[k] for k in sorted(layers)]
        n_init = max([spec[p].n_choices - spec[p].layer for lay in ordered for p in lay.inputs], default=0)
        for i, lay in enumerate(ordered):
            lay.inputs.sort(key=lambda p: spec[p].slot)
            lay.ops.sort(key=lambda p: spec[p].slot)
            lay.skips.sort(key=lambda p: spec[p].slot)
            for p in lay.inputs:
                if spec[p].n_choices > n_init + i:
                    raise ValueError(
                        f"token {p} chooses among {spec[p].n_choices} states, only {n_init + i} precede it"
                    )
            for p in lay.skips:
                if spec[p].slot >= i:
                    raise ValueError(f"skip token {p} connects layer {spec[p].slot}, not before layer {i}")
        plan.append(_Group(g, n_init, ordered))
    return plan


class Controller(nn.Module):
    def __init__(
        self,
        token_spec: Sequence[Token],
        config: ControllerConfig | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.spec = list(token_spec)
        self.config = config or ControllerConfig.for_spec(self.spec)
        self.generator = generator
        self._groups = _plan(self.spec)
        size = self.config.lstm_size
        self.lstm = nn.LSTMCell(size, size, bias=False)  # the original's LSTM has no bias
        self.g_emb = nn.Parameter(torch.empty(1, size))  # the start input
        self.w_attn_1 = nn.Linear(size, size, bias=False)  # anchors
        self.w_attn_2 = nn.Linear(size, size, bias=False)  # query
        self.v_attn = nn.Linear(size, 1, bias=False)
        # one softmax and embedding per distinct candidate list (ENAS shares them across layers)
        self._head_of: dict[tuple[str, ...] | int, int] = {}
        widths: list[int] = []
        for token in self.spec:
            key = token.choices or token.n_choices
            if token.kind == "op" and key not in self._head_of:
                self._head_of[key] = len(widths)
                widths.append(token.n_choices)
        self.w_soft = nn.ModuleList(nn.Linear(size, n, bias=False) for n in widths)
        self.b_soft = nn.ParameterList(nn.Parameter(torch.zeros(1, n)) for n in widths)
        self.w_emb = nn.ModuleList(nn.Embedding(n, size) for n in widths)
        self.reset_parameters()
        self.register_buffer("skip_targets", torch.tensor([1.0 - self.config.skip_target, self.config.skip_target]))

    def reset_parameters(self) -> None:
        for p in self.parameters():
            nn.init.uniform_(p, -0.1, 0.1)  # the original's initializer
        k, b = self.config.n_favored_ops, self.config.op_bias_init
        with torch.no_grad():
            for bias in self.b_soft:
                bias.zero_()
                bias[:, :k] = b

    # ---- sampling ------------------------------------------------------------------------------
    def forward(
        self, forced_arc: Sequence[int] | None = None, generator: torch.Generator | None = None
    ) -> ControllerSample:
        return self.sample(forced_arc, generator)

    @torch.no_grad()
    def sample_arc(self, generator: torch.Generator | None = None) -> list[int]:
        """Just a sequence, without building a graph (to pick the child for a shared-weight step)."""
        return self.sample(generator=generator).arc

    def sample(
        self, forced_arc: Sequence[int] | None = None, generator: torch.Generator | None = None
    ) -> ControllerSample:
        """Sample an arc, or with `forced_arc` score that arc (same log-prob and entropy as sampling it)."""
        forced = None if forced_arc is None else check_arc(forced_arc, self.spec, "the controller's token spec")
        generator = generator or self.generator
        cfg = self.config
        arc = [0] * len(self.spec)
        h = c = torch.zeros_like(self.g_emb)
        log_prob = self.g_emb.new_zeros(())
        entropy = self.g_emb.new_zeros(())
        penalties: list[torch.Tensor] = []
        skip_count = 0

        def choose(positions: list[int], logits: torch.Tensor) -> torch.Tensor:
            """One categorical choice per row of logits, written to arc[positions]."""
            nonlocal log_prob, entropy
            # logsumexp, not F.log_softmax: the latter's threaded CPU kernel stalls on tiny [n, 2] inputs
            log_p = logits - torch.logsumexp(logits, dim=-1, keepdim=True)
            if forced is None:
                index = torch.multinomial(log_p.detach().exp(), 1, generator=generator).view(-1)
            else:
                index = torch.tensor([forced[p] for p in positions], device=logits.device)
            log_prob = log_prob + log_p.gather(1, index.view(-1, 1)).sum()
            entropy = entropy - (log_p.exp() * log_p).sum().detach()
            for p, i in zip(positions, index.tolist()):
                arc[p] = i
            return index

        for group in self._groups:
            inputs = self.g_emb
            anchors: list[torch.Tensor] = []
            anchors_w: list[torch.Tensor] = []
            for _ in range(group.n_init):  # the cell inputs: an LSTM step each, zero anchors
                h, c = self.lstm(inputs, (h, c))
                anchors.append(torch.zeros_like(h))
                anchors_w.append(self.w_attn_1(h))
            for layer in group.layers:
                for pos in layer.inputs:
                    h, c = self.lstm(inputs, (h, c))
                    n = self.spec[pos].n_choices
                    query = torch.tanh(torch.cat(anchors_w[:n]) + self.w_attn_2(h))
                    logits = self._squash(self.v_attn(query).view(1, n), cfg.tanh_constant)
                    inputs = anchors[int(choose([pos], logits))]
                for pos in layer.ops:
                    h, c = self.lstm(inputs, (h, c))
                    token = self.spec[pos]
                    k = self._head_of[token.choices or token.n_choices]
                    tanh_c = None if cfg.tanh_constant is None else cfg.tanh_constant / cfg.op_tanh_reduce
                    logits = self._squash(self.w_soft[k](h) + self.b_soft[k], tanh_c)
                    if group.index == 0 and cfg.fixed_op_bias:
                        logits = logits + self._fixed_bias(token.n_choices, logits)
                    inputs = self.w_emb[k](choose([pos], logits))
                h, c = self.lstm(inputs, (h, c))  # the layer's anchor
                if layer.skips:
                    sources = [group.n_init + self.spec[p].slot for p in layer.skips]
                    query = torch.tanh(torch.cat([anchors_w[s] for s in sources]) + self.w_attn_2(h))
                    q = self.v_attn(query)
                    logits = self._squash(torch.cat([-q, q], dim=1), cfg.tanh_constant)
                    bits = choose(layer.skips, logits)
                    # the original's penalty: sigmoid of both logits against [1 - target, target]
                    skip_prob = torch.sigmoid(logits)
                    penalties.append((skip_prob * torch.log(skip_prob / self.skip_targets)).sum())
                    skip_count += int(bits.sum())
                    chosen = bits.to(h.dtype).view(1, -1)
                    inputs = chosen @ torch.cat([anchors[s] for s in sources]) / (1.0 + chosen.sum())
                else:
                    inputs = self.g_emb
                anchors.append(h)
                anchors_w.append(self.w_attn_1(h))

        skip_penalty = torch.stack(penalties).mean() if penalties else self.g_emb.new_zeros(())
        n_skip_tokens = sum(t.kind == "skip" for t in self.spec)
        return ControllerSample(arc, log_prob, entropy, skip_penalty, skip_count, n_skip_tokens)

    def _squash(self, logits: torch.Tensor, tanh_constant: float | None) -> torch.Tensor:
        if self.config.temperature is not None:
            logits = logits / self.config.temperature
        if tanh_constant is not None:
            logits = tanh_constant * torch.tanh(logits)
        return logits

    def _fixed_bias(self, n: int, like: torch.Tensor) -> torch.Tensor:
        b = self.config.fixed_op_bias
        k = self.config.n_favored_ops
        return like.new_tensor([b if i < k else -b for i in range(n)]).view(1, n)


__all__ = ["Controller", "ControllerConfig", "ControllerSample", "ENAS_PRESETS"]
