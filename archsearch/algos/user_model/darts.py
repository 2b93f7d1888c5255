"""DARTS on a user model: every choice becomes a softmax-weighted mixture with its own alphas, and the alphas
take DARTS' bilevel step (first or second order, `BilevelOptimizer`) in the shared trainer's pre_step hook.

Per key (mutables sharing a key share one alpha table; initialized as DARTS does, 1e-3 * N(0, 1)):
- LayerChoice of n candidates: a (1, n) table; output = sum_i softmax(alpha)_i * candidate_i(x).
  Final choice: the argmax.
- InputChoice choosing k of n (k < n): a (1, n) table; output = k * sum_i softmax(alpha)_i * x_i for `sum`
  (the scale of a sum of k inputs), sum_i softmax(alpha)_i * x_i for `mean`. Final choice: the top k.
- InputChoice of any number (n_chosen=None): an (n, 2) table, one [drop, keep] softmax per input:
  output = sum_i keep_i * x_i for `sum`, that divided by sum_i keep_i for `mean`. Final choice: the inputs
  whose keep weight exceeds their drop weight (possibly none).
`concat` and `none` reductions have no mixture of fixed shape: DARTS refuses them unless every input is chosen.
Choices with nothing to decide (one candidate, all inputs) get no table and run as they are.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from archsearch.algos.darts.trainer import BilevelArchTrainer
from archsearch.algos.user_model.runner import UserModelRunner, UserSupernet
from archsearch.common.errors import ArchitectureError
from archsearch.nas.exp_runner import USER_MODEL_RUNNERS
from archsearch.nas.trainer import Trainer
from archsearch.spaces.mutables import ChoiceGroup, Choices, InputChoice, LayerChoice, MutableSpace


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

    def final_choices(self, trainer: Trainer, conf_search) -> tuple[Choices, dict[str, Any]]:
        return self.current_choices(), {}


class UserModelBilevelTrainer(BilevelArchTrainer):
    """BilevelArchTrainer as it is; only what it logs per epoch differs (choices instead of a genotype)."""

    def log_architecture(self, epoch: int) -> None:
        choices = self.model.space.to_json(self.model.current_choices())
        self.log.info(f"[search] epoch {epoch + 1} choices: {choices}")
        self.log.record("choices", epoch=epoch + 1, choices=choices)

    def arch_column_names(self) -> dict[str, list[str]]:
        return self.model.column_names()


@USER_MODEL_RUNNERS.register("darts")
class DartsUserModelRunner(UserModelRunner):
    name = "darts"
    summary = "DARTS on a user model: softmax-weighted mixture per choice, bilevel gradient search"
    supernet_class = DartsSupernet

    def trainer_class(self) -> type[Trainer]:
        return UserModelBilevelTrainer
