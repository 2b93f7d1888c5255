"""The two supernets of a user model: the user's own module with its mutables driven by a strategy.

`DartsSupernet` (differentiable): every choice becomes a softmax-weighted mixture with its own alphas, which
take DARTS' bilevel step. Per key (mutables sharing a key share one alpha table; initialized as DARTS does,
1e-3 * N(0, 1)):
- LayerChoice of n candidates: a (1, n) table; output = sum_i softmax(alpha)_i * candidate_i(x).
  Final choice: the argmax.
- InputChoice choosing k of n (k < n): a (1, n) table; output = k * sum_i softmax(alpha)_i * x_i for `sum`
  (the scale of a sum of k inputs), sum_i softmax(alpha)_i * x_i for `mean`. Final choice: the top k.
- InputChoice of any number (n_chosen=None): an (n, 2) table, one [drop, keep] softmax per input:
  output = sum_i keep_i * x_i for `sum`, that divided by sum_i keep_i for `mean`. Final choice: the inputs
  whose keep weight exceeds their drop weight (possibly none).
`concat` and `none` reductions have no mixture of fixed shape: DARTS refuses them unless every input is chosen.
Choices with nothing to decide (one candidate, all inputs) get no table and run as they are.

`EnasChildren` (sampled): each mutable runs the decision `set_arch(choice JSON)` set. Its token layout
(`EnasMutableSpace.token_spec`), one controller "layer" per key that has something to decide, in the
model's key order:
- LayerChoice of n candidates: one op token over the candidates (names as the op names: choices with the same
  candidate names share one softmax head, as ENAS shares its op softmax across layers);
- InputChoice of one of n inputs: one op token over the inputs;
- InputChoice of k of n inputs: one op token over the C(n, k) subsets (at most MAX_COMBINATIONS), in
  itertools.combinations order, so the subset is exactly k distinct inputs;
- InputChoice of any number (n_chosen=None): one drop/keep op token per input.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from archsearch.common.errors import ArchitectureError
from archsearch.spaces.mutables import ChoiceGroup, Choices, Decision, InputChoice, LayerChoice, MutableSpace
from archsearch.spaces.token_space import Token, check_arc


class UserSupernet(nn.Module):
    """The user's model as a strategy searches it: `forward` is the model's, the mutables driven by the strategy."""

    def __init__(self, model: nn.Module, space: MutableSpace) -> None:
        super().__init__()
        self.model = model
        self.space = space  # not a module: it only points at the model's mutables

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.model(*args, **kwargs)


class DartsSupernet(UserSupernet):
    def __init__(self, model: nn.Module, space: MutableSpace) -> None:
        super().__init__(model, space)
        self.alphas = nn.ParameterList()
        self.alpha_keys: list[str] = []
        for group in space.searched():
            if not group.is_layer and group.first.reduction in ("concat", "none"):  # type: ignore[union-attr]
                raise ArchitectureError(
                    f"DARTS cannot mix InputChoice {group.key!r} with reduction {group.first.reduction!r} "  # type: ignore[union-attr]
                    f"unless it chooses every input; use sum or mean, or search it with enas or random"
                )
            shape = (
                (group.n_candidates, 2) if not group.is_layer and group.n_chosen is None else (1, group.n_candidates)
            )
            self.alphas.append(nn.Parameter(1e-3 * torch.randn(shape)))
            self.alpha_keys.append(group.key)
            mix = self.mix_layer if group.is_layer else self.mix_inputs
            for mutable in group.mutables:
                mutable.set_driver(functools.partial(mix, len(self.alphas) - 1))

    # ---- what the DARTS trainer and ArchTrainer read -------------------------------------------
    @property
    def arch_tables(self) -> dict[str, nn.Parameter]:
        return dict(zip(self.alpha_keys, self.alphas))

    def arch_params(self) -> list[nn.Parameter]:
        return list(self.alphas)

    def nonarch_params(self) -> list[nn.Parameter]:
        return list(self.model.parameters())

    def column_names(self) -> dict[str, list[str]]:
        groups = self.space.groups
        return {key: self._columns(groups[key]) for key in self.alpha_keys}

    @staticmethod
    def _columns(group: ChoiceGroup) -> list[str]:
        if group.is_layer:
            return group.names
        return ["drop", "keep"] if group.n_chosen is None else [f"input{i}" for i in range(group.n_candidates)]

    # ---- the mixtures --------------------------------------------------------------------------
    def mix_layer(self, index: int, choice: LayerChoice, *args: Any, **kwargs: Any) -> torch.Tensor:
        weights = F.softmax(self.alphas[index][0], dim=-1)
        out = None
        for w, candidate in zip(weights, choice.candidates):
            y = w * candidate(*args, **kwargs)
            out = y if out is None else out + y
        return out

    def mix_inputs(self, index: int, choice: InputChoice, inputs: list[torch.Tensor]) -> torch.Tensor:
        alpha = self.alphas[index]
        if choice.n_chosen is None:
            weights = F.softmax(alpha, dim=-1)[:, 1]  # each input's keep weight
            scale = 1.0 / weights.sum() if choice.reduction == "mean" else 1.0
        else:
            weights = F.softmax(alpha[0], dim=-1)
            scale = choice.n_chosen if choice.reduction == "sum" else 1.0
        out = None
        for w, x in zip(weights, inputs):
            out = w * x if out is None else out + w * x
        return out * scale

    # ---- the result ----------------------------------------------------------------------------
    @torch.no_grad()
    def current_choices(self) -> Choices:
        choices = self.space.default_choices()
        for key, alpha in self.arch_tables.items():
            group = self.space.groups[key]
            if group.is_layer:
                choices[key] = int(alpha[0].argmax())
            elif group.n_chosen is None:
                choices[key] = tuple(i for i in range(group.n_candidates) if alpha[i, 1] > alpha[i, 0])
            else:
                choices[key] = tuple(sorted(alpha[0].topk(group.n_chosen).indices.tolist()))
        return choices

    def derive_arch(self) -> dict[str, Any]:
        """The DifferentiableSupernet protocol: the choice JSON the current alphas stand for."""
        return self.space.to_json(self.current_choices())

    def log_view(self) -> dict[str, Any]:
        return {"choices": self.derive_arch()}  # log.yaml's per-epoch "choices" record


MAX_COMBINATIONS = 4096


class EnasMutableSpace(MutableSpace):
    """A MutableSpace that also speaks ENAS tokens: EnasTrainer asks its supernet's `space` for `token_spec()`."""

    def token_spec(self) -> list[Token]:
        spec: list[Token] = []
        for layer, g in enumerate(self.searched()):
            n, k = g.n_candidates, g.n_chosen
            if g.is_layer:
                spec.append(Token("op", layer, n, choices=tuple(g.names), label="choice"))
            elif k is None:
                spec.extend(Token("op", layer, 2, slot=i, choices=("drop", "keep"), label="choice") for i in range(n))
            elif k == 1:
                spec.append(Token("op", layer, n, choices=tuple(f"input {i}" for i in range(n)), label="choice"))
            else:
                subsets = input_subsets(n, k, g.key)
                spec.append(Token("op", layer, len(subsets), choices=tuple(map(str, subsets)), label="choice"))
        return spec

    def decode_arc(self, arc_seq: Sequence[Any]) -> Choices:
        tokens = iter(check_arc(arc_seq, self.token_spec(), self.describe()))
        choices = self.default_choices()
        for g in self.searched():
            n, k = g.n_candidates, g.n_chosen
            if g.is_layer:
                choices[g.key] = next(tokens)
            elif k is None:
                choices[g.key] = tuple(i for i in range(n) if next(tokens))
            elif k == 1:
                choices[g.key] = (next(tokens),)
            else:
                choices[g.key] = input_subsets(n, k, g.key)[next(tokens)]
        return choices

    def encode_arc(self, choices: Mapping[str, Decision]) -> list[int]:
        """The inverse of decode_arc."""
        arc: list[int] = []
        for g in self.searched():
            decision, n, k = choices[g.key], g.n_candidates, g.n_chosen
            if isinstance(decision, int):
                arc.append(decision)
            elif k is None:
                arc.extend(int(i in decision) for i in range(n))
            elif k == 1:
                arc.append(decision[0])
            else:
                arc.append(input_subsets(n, k, g.key).index(tuple(decision)))
        return arc


def input_subsets(n: int, k: int, key: str) -> list[tuple[int, ...]]:
    if math.comb(n, k) > MAX_COMBINATIONS:
        raise ArchitectureError(
            f"InputChoice {key!r} chooses {k} of {n} inputs: {math.comb(n, k)} subsets are too many for one ENAS "
            f"token (at most {MAX_COMBINATIONS}); use n_chosen=None or fewer candidates"
        )
    return list(itertools.combinations(range(n), k))


class EnasChildren(UserSupernet):
    space: EnasMutableSpace

    def __init__(self, model: nn.Module, space: MutableSpace) -> None:
        super().__init__(model, EnasMutableSpace(model, space.name))
        if not self.space.token_spec():
            raise ArchitectureError(f"{space.name} has nothing to search: every choice has a single option")

    def set_arch(self, arch: Mapping[str, Any]) -> None:
        """The SampledSupernet protocol: every mutable runs the decision of the choice JSON `arch`."""
        self.space.set_choices(self.space.parse(arch))
