"""Search a user's own PyTorch model: its LayerChoice/InputChoice mutables (archsearch.spaces.mutables),
searched by DARTS, ENAS or random search. Importing this package registers the three strategies in
USER_MODEL_RUNNERS and the `user_model_json` architecture format with archsearch.load_model."""

from archsearch.algos.user_model.darts import DartsSupernet, DartsUserModelRunner
from archsearch.algos.user_model.enas import EnasChildren, EnasMutableSpace, EnasUserModelRunner
from archsearch.algos.user_model.model_ref import ARCH_FORMAT, FINAL_ARCH, UserModelArch, UserModelRef
from archsearch.algos.user_model.random import RandomUserModelRunner
from archsearch.algos.user_model.runner import UserModelRunner, UserSupernet

__all__ = [
    "ARCH_FORMAT",
    "FINAL_ARCH",
    "DartsSupernet",
    "DartsUserModelRunner",
    "EnasChildren",
    "EnasMutableSpace",
    "EnasUserModelRunner",
    "RandomUserModelRunner",
    "UserModelArch",
    "UserModelRef",
    "UserModelRunner",
    "UserSupernet",
]
