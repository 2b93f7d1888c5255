"""ENAS on a user model: the ENAS controller samples one child per training step and is trained with
REINFORCE on the child's accuracy on the arch split; the user's model is the weight-sharing supernet
(each mutable runs the sampled decision). `EnasTrainer` and `ReinforceTrainer` are reused as they are:
`EnasChildren` offers what an ENAS supernet offers (`space.token_spec()`, `set_arc`).

Token layout, one controller "layer" per key that has something to decide, in the model's key order:
- LayerChoice of n candidates: one op token over the candidates (names as the op names: choices with the same
  candidate names share one softmax head, as ENAS shares its op softmax across layers);
- InputChoice of one of n inputs: one op token over the inputs;
- InputChoice of k of n inputs: one op token over the C(n, k) subsets (at most MAX_COMBINATIONS), in
  itertools.combinations order, so the subset is exactly k distinct inputs;
- InputChoice of any number (n_chosen=None): one drop/keep op token per input.
The controller uses the ENAS macro preset (no attention over cell inputs), overridden by
nas.search.trainer.controller.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from archsearch.algos.enas.trainer import EnasTrainer
from archsearch.algos.user_model.runner import UserModelRunner, UserSupernet
from archsearch.common.errors import ArchitectureError
from archsearch.nas.exp_runner import USER_MODEL_RUNNERS
from archsearch.nas.trainer import Trainer
from archsearch.spaces.mutables import Choices, Decision, MutableSpace
from archsearch.spaces.token_space import Token, check_arc

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

    def set_arc(self, arc_seq: Sequence[Any]) -> None:
        self.space.set_choices(self.space.decode_arc(arc_seq))

    def final_choices(self, trainer: Trainer, conf_search) -> tuple[Choices, dict[str, Any]]:
        """The best of `final.n_samples` sampled children by accuracy on the arch split (as EnasSearcher)."""
        conf_final = conf_search["final"]
        assert isinstance(trainer, EnasTrainer)
        arc, reward = trainer.reinforce.best_of(
            conf_final["n_samples"], lambda a: trainer.child_accuracy(a, conf_final["eval_batches"])
        )
        return self.space.decode_arc(arc), {"final_child_val_top1": reward, "final_arc_seq": arc}


@USER_MODEL_RUNNERS.register("enas")
class EnasUserModelRunner(UserModelRunner):
    name = "enas"
    summary = "ENAS on a user model: LSTM controller samples one token per choice, REINFORCE on val accuracy"
    supernet_class = EnasChildren

    def trainer_class(self) -> type[Trainer]:
        return EnasTrainer
