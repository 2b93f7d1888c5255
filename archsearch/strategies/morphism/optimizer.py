"""The trial queue of a morphism search (what NNI's NetworkMorphismTuner does), without a framework.

``propose()`` hands out ``(trial_id, graph, father_id)``; ``report(trial_id, metric)`` feeds the result back.
Differences from NNI's tuner: proposals made before any result are distinct (the seed, then random
morphism children), not copies of the seed; a failed trial (``None``/NaN metric) is recorded instead of
crashing the GP; a child inherits its father's weights whenever the father's graph carries them (NNI's
JSON round trip dropped them, so children always trained from scratch).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from archsearch.common.errors import ArchitectureError, ConfigError
from archsearch.spaces.morphism.constants import (
    BETA,
    COOLING,
    KERNEL_LAMBDA,
    MODEL_LEN,
    MODEL_WIDTH,
    T_INIT,
    T_MIN,
)
from archsearch.spaces.morphism.descriptor import NetworkDescriptor
from archsearch.spaces.morphism.generators import TASKS
from archsearch.spaces.morphism.graph import Graph
from archsearch.strategies.morphism.bayesian import DEFAULT_MAX_CANDIDATES, OPTIMIZE_MODES, BayesianOptimizer
from archsearch.strategies.morphism.transformer import MorphismLimits, transform


class SearchExhausted(RuntimeError):
    """No architecture that has not been tried yet could be found."""


@dataclass
class MorphismTrial:
    trial_id: int
    graph: Graph
    father_id: int
    metric: float | None = None
    status: str = "pending"  # pending -> done | failed
    descriptor: NetworkDescriptor = field(init=False)

    def __post_init__(self) -> None:
        # The structure never changes after a proposal (training only sets weights), so compute it once.
        self.descriptor = self.graph.extract_descriptor()


class MorphismSearchStrategy:
    """Bayesian network-morphism search state. Constructor arguments are the config keys (NNI defaults).

    task: "cv" (CnnGenerator seed, input_shape (H, W, C) or any 1-3 spatial dims) or "common"
    (MlpGenerator seed, input_shape (n_features,)).
    """

    def __init__(
        self,
        n_output_node: int = 10,
        input_shape: Sequence[int] = (32, 32, 3),
        task: str = "cv",
        optimize_mode: str = "maximize",
        beta: float = BETA,
        t_min: float = T_MIN,
        t_init: float = T_INIT,
        cooling: float = COOLING,
        model_len: int = MODEL_LEN,
        model_width: int = MODEL_WIDTH,
        limits: MorphismLimits | None = None,
        max_candidates: int = DEFAULT_MAX_CANDIDATES,
        kernel_lambda: float = KERNEL_LAMBDA,
        seed: int | np.random.Generator = 0,
    ) -> None:
        if task not in TASKS:
            raise ConfigError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
        if optimize_mode not in OPTIMIZE_MODES:
            raise ConfigError(f"optimize_mode must be 'maximize' or 'minimize', got {optimize_mode!r}")
        self.rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        self.generator = TASKS[task](n_output_node, input_shape)
        self.model_len, self.model_width = model_len, model_width
        self.optimize_mode = optimize_mode
        self.limits = limits or MorphismLimits()
        self.optimizer = BayesianOptimizer(
            t_min,
            optimize_mode,
            beta,
            t_init=t_init,
            cooling=cooling,
            limits=self.limits,
            max_candidates=max_candidates,
            kernel_lambda=kernel_lambda,
            rng=self.rng,
        )
        self.trials: dict[int, MorphismTrial] = {}
        self._next_id = 0
        self._keys: set = set()

    @classmethod
    def from_config(cls, section: Mapping[str, Any], **overrides: Any) -> MorphismSearchStrategy:
        """Build from a config section: the constructor's keys, with the limits' keys (max_model_size,
        max_layer_width, max_layers, n_neighbours) at the same level. Unknown keys are an error."""
        values = {**section, **overrides}
        limit_keys = ("max_model_size", "max_layer_width", "max_layers", "n_neighbours")
        known = set(inspect.signature(cls.__init__).parameters) - {"self", "limits"}
        unknown = sorted(set(values) - known - set(limit_keys))
        if unknown:
            raise ConfigError(
                f"unknown morphism config key {unknown[0]!r}; known keys: {', '.join(sorted(known | set(limit_keys)))}"
            )
        limits = MorphismLimits(**{k: values.pop(k) for k in limit_keys if k in values})
        if "input_shape" in values:
            values["input_shape"] = tuple(values["input_shape"])
        return cls(limits=limits, **values)

    # ------------------------------------------------------------------------------------ the queue
    def seed_graph(self) -> Graph:
        return self.generator.generate(self.model_len, self.model_width)

    def propose(self) -> tuple[int, Graph, int]:
        """The next architecture to train: ``(trial_id, graph, father_id)`` (father -1 for the seed)."""
        if not self.trials:
            graph, father_id = self.seed_graph(), -1
        else:
            graph, father_id = self._from_optimizer()
            if graph is None:
                graph, father_id = self._random_child()
        trial_id = self._next_id
        self._next_id += 1
        trial = self.trials[trial_id] = MorphismTrial(trial_id, graph, father_id)
        self._keys.add(trial.descriptor.key)
        return trial_id, graph, father_id

    def _from_optimizer(self) -> tuple[Graph | None, int]:
        if not any(t.status == "done" for t in self.trials.values()):
            return None, -1
        candidate, father_id = self.optimizer.generate(self._descriptors())
        if candidate is None or father_id is None:
            return None, -1
        # The optimizer morphed an unweighted copy; replaying its operations on the father's own graph
        # carries the father's trained weights into the child, function-preserving.
        child = self.trials[father_id].graph.copy()
        try:
            child.apply_operations(candidate.operation_history, self.rng)
        except ArchitectureError:  # cannot happen for a faithful replay; fall back rather than stop
            return None, -1
        return child, father_id

    def _random_child(self) -> tuple[Graph, int]:
        """A random not-yet-seen child, trying the best finished trials first, then the others (so
        proposals made while everything is still training differ from each other)."""
        for trial in self._fathers_by_preference():
            for child in transform(trial.graph, self.limits, self.rng):
                if child.extract_descriptor().key not in self._keys:
                    return child, trial.trial_id
        raise SearchExhausted("no untried morphism child is left within the limits; raise the limits or stop")

    def _fathers_by_preference(self) -> list[MorphismTrial]:
        sign = 1.0 if self.optimize_mode == "maximize" else -1.0
        done = sorted((t for t in self.trials.values() if t.status == "done"), key=lambda t: -sign * t.metric)
        others = sorted((t for t in self.trials.values() if t.status != "done"), key=lambda t: t.trial_id)
        return done + others

    def _descriptors(self) -> list[NetworkDescriptor]:
        return [t.descriptor for t in self.trials.values()]

    def report(self, trial_id: int, metric: float | None) -> None:
        """Record a trial's final metric; ``None`` or a non-finite value marks it failed."""
        trial = self.trials.get(trial_id)
        if trial is None:
            raise ValueError(f"unknown trial id {trial_id}; report ids returned by propose()")
        if trial.status != "pending":
            raise ValueError(f"trial {trial_id} was already reported ({trial.status})")
        self._record(trial, metric)

    def _record(self, trial: MorphismTrial, metric: float | None) -> None:
        if metric is None or not math.isfinite(float(metric)):
            trial.status = "failed"
            return
        trial.metric, trial.status = float(metric), "done"
        self.optimizer.fit([trial.graph], [trial.metric], model_ids=[trial.trial_id])
        self.optimizer.add_child(trial.father_id, trial.trial_id)

    def restore(self, trial_id: int, graph: Graph, father_id: int, metric: float | None) -> None:
        """Re-register a finished trial (resuming a search); trial ids continue after the largest one."""
        if trial_id in self.trials:
            raise ValueError(f"trial {trial_id} is already registered")
        trial = self.trials[trial_id] = MorphismTrial(trial_id, graph, father_id)
        self._keys.add(trial.descriptor.key)
        self._next_id = max(self._next_id, trial_id + 1)
        self._record(trial, metric)

    def adopt(self, trial_id: int, graph: Graph, father_id: int) -> None:
        """Re-register a trial proposed but not finished before the search was killed (a parallel search):
        pending, as when it was proposed; `report` takes its result."""
        if trial_id in self.trials:
            raise ValueError(f"trial {trial_id} is already registered")
        trial = self.trials[trial_id] = MorphismTrial(trial_id, graph, father_id)
        self._keys.add(trial.descriptor.key)
        self._next_id = max(self._next_id, trial_id + 1)

    def rng_state(self) -> dict[str, Any]:
        """The generator's state (shared with the Bayesian optimizer) as plain ints, for the trial index."""
        return _plain_ints(self.rng.bit_generator.state)

    def set_rng_state(self, state: Mapping[str, Any]) -> None:
        # in place: the Bayesian optimizer holds the same Generator object
        self.rng.bit_generator.state = dict(state)

    # ---------------------------------------------------------------------------------------- results
    @property
    def best_trial(self) -> MorphismTrial | None:
        done = [t for t in self.trials.values() if t.status == "done"]
        if not done:
            return None
        pick = max if self.optimize_mode == "maximize" else min
        return pick(done, key=lambda t: t.metric)

    def get_best_model_id(self) -> int | None:
        best = self.best_trial
        return None if best is None else best.trial_id


def _plain_ints(value: Any) -> Any:
    """numpy ints in a bit generator's state -> Python ints (YAML- and weights_only-safe)."""
    if isinstance(value, Mapping):
        return {str(k): _plain_ints(v) for k, v in value.items()}
    return int(value) if isinstance(value, (int, np.integer)) else value
