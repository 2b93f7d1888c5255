"""NNI's NetworkMorphismTuner API on archsearch's morphism queue (strategy.MorphismSearchStrategy).

Code written against NNI's tuner runs unchanged (`archsearch.compat.nni` aliases NNI's module paths): the
tuner hands out NNI JSON graphs with `generate_parameters`, takes metrics with `receive_trial_result`, and
keeps NNI's bookkeeping (`history`, `total_data`, `training_queue`, `descriptors`, `model_count`, `bo`,
`<path>/<model_id>.json`, `<path>/best_model.txt`). The search logic is the queue's, so the tuner proposes
what `--algos morphism` would; differences from NNI are the queue's (distinct proposals before any result,
failed trials recorded) and: `generate_parameters` starts the search once rather than whenever the history
is empty, `receive_trial_result` reads the graph it handed out instead of NNI's `bo.searcher` (a reference
to the tuner itself there), and `import_data` registers NNI's exported trials instead of ignoring them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from typing import Any

from archsearch.spaces.morphism.constants import BETA, MAX_MODEL_SIZE, MODEL_LEN, MODEL_WIDTH, T_MIN
from archsearch.spaces.morphism.generators import TASKS
from archsearch.spaces.morphism.graph import Graph
from archsearch.spaces.morphism.ir_json import graph_to_json, json_to_graph, load_graph_file
from archsearch.strategies.morphism.optimizer import MorphismSearchStrategy
from archsearch.strategies.morphism.transformer import MorphismLimits

logger = logging.getLogger("NetworkMorphism_AutoML")  # NNI's logger name


def extract_scalar_reward(value: Any, scalar_key: str = "default") -> float:
    """NNI's rule: a number, or a dict holding the number under "default"."""
    reward = value.get(scalar_key) if isinstance(value, Mapping) else value
    if isinstance(reward, bool) or not isinstance(reward, (int, float)):
        raise RuntimeError(f"Incorrect final result: the final result should be float/int, or a dict which has a "
                           f"key named '{scalar_key}' whose value is float/int; got {value!r}")  # fmt: skip
    return float(reward)


class NetworkMorphismTuner:
    def __init__(
        self,
        task: str = "cv",
        input_width: int = 32,
        input_channel: int = 3,
        n_output_node: int = 10,
        algorithm_name: str = "Bayesian",
        optimize_mode: str = "maximize",
        path: str = "model_path",
        verbose: bool = True,
        beta: float = BETA,
        t_min: float = T_MIN,
        max_model_size: int = MAX_MODEL_SIZE,
        default_model_len: int = MODEL_LEN,
        default_model_width: int = MODEL_WIDTH,
        seed: int = 0,  # ours: NNI drew from the global numpy RNG
    ) -> None:
        if task not in TASKS:
            raise NotImplementedError(f'{task} task not supported in List ["cv","common"]')
        os.makedirs(path, exist_ok=True)
        self.path = os.path.join(os.getcwd(), path)
        self.generators = [TASKS[task]]
        self.n_classes, self.input_shape = n_output_node, (input_width, input_width, input_channel)
        self.t_min, self.beta, self.algorithm_name, self.optimize_mode = t_min, beta, algorithm_name, optimize_mode
        self.verbose, self.json, self.total_data = verbose, None, {}
        self.max_model_size, self.default_model_len, self.default_model_width = (
            max_model_size, default_model_len, default_model_width
        )  # fmt: skip
        self.queue = MorphismSearchStrategy(
            n_output_node,
            self.input_shape,
            task,
            optimize_mode,
            beta,
            t_min,
            model_len=default_model_len,
            model_width=default_model_width,
            limits=MorphismLimits(max_model_size=max_model_size),
            seed=seed,
        )
        self.bo = self.queue.optimizer  # NNI's tests read bo.search_tree
        self.training_queue: list[tuple[Graph, int, int]] = []
        self.descriptors: list[Any] = []
        self.history: list[dict[str, Any]] = []
        self.search_space: Any = {}

    @property
    def model_count(self) -> int:
        return len(self.queue.trials)

    def update_search_space(self, search_space: Any) -> None:
        """NNI's network morphism has no search space file; kept for the Tuner interface."""
        self.search_space = search_space

    def init_search(self) -> None:
        """Queue the seed network (model 0)."""
        if self.verbose:
            logger.info("Initializing search.")
        self._enqueue(*self.queue.propose())

    def _enqueue(self, model_id: int, graph: Graph, father_id: int) -> None:
        self.training_queue.append((graph, father_id, model_id))
        self.descriptors.append(graph.extract_descriptor())

    def generate(self) -> tuple[int, Graph]:
        """The next architecture: (father id, graph); it is registered with the queue as the next model id."""
        _, graph, father_id = self.queue.propose()
        return father_id, graph

    def generate_parameters(self, parameter_id: Any, **kwargs: Any) -> str:
        """The NNI JSON graph of the next trial; also written to <path>/<model_id>.json."""
        if not self.model_count:
            self.init_search()
        if not self.training_queue:
            father_id, graph = self.generate()
            self._enqueue(self.model_count - 1, graph, father_id)  # the queue numbers models in order
        graph, father_id, model_id = self.training_queue.pop(0)
        json_out = graph_to_json(graph, os.path.join(self.path, f"{model_id}.json"))
        self.total_data[parameter_id] = (json_out, father_id, model_id)
        return json_out

    def receive_trial_result(self, parameter_id: Any, parameters: Any, value: Any, **kwargs: Any) -> None:
        reward = extract_scalar_reward(value)
        if parameter_id not in self.total_data:
            raise RuntimeError("Received parameter_id not in total_data.")
        _, father_id, model_id = self.total_data[parameter_id]
        graph = self.load_model_by_id(model_id)
        self.add_model(reward, model_id)
        self.update(father_id, graph, reward, model_id)

    def update(self, other_info: int, graph: Graph, metric_value: float, model_id: int) -> None:
        """Feed a result to the optimizer: a model the tuner handed out, or any graph under a new id."""
        trial = self.queue.trials.get(model_id)
        if trial is not None and trial.status == "pending":
            self.queue.report(model_id, metric_value)
        else:
            self.queue.restore(model_id, graph, other_info, metric_value)

    def add_model(self, metric_value: float, model_id: int) -> dict[str, Any]:
        """Record a result in the history (and <path>/best_model.txt when it is the best so far)."""
        ret = {"model_id": model_id, "metric_value": metric_value}
        self.history.append(ret)
        if model_id == self.get_best_model_id():
            with open(os.path.join(self.path, "best_model.txt"), "w") as file:
                file.write(f"best model: {model_id}")
        return ret

    def get_best_model_id(self) -> int:
        pick = max if self.optimize_mode == "maximize" else min
        return pick(self.history, key=lambda item: item["metric_value"])["model_id"]

    def load_model_by_id(self, model_id: int) -> Graph:
        return load_graph_file(os.path.join(self.path, f"{model_id}.json"))

    def load_best_model(self) -> Graph:
        return self.load_model_by_id(self.get_best_model_id())

    def get_metric_value_by_id(self, model_id: int) -> float | None:
        return next((item["metric_value"] for item in self.history if item["model_id"] == model_id), None)

    def import_data(self, data: Iterable[Mapping[str, Any]]) -> None:
        """Register finished trials exported by NNI ({"parameter": graph JSON, "value": metric}) as new models."""
        for item in data:
            model_id, reward = self.model_count, extract_scalar_reward(item["value"])
            graph_to_json(json_to_graph(item["parameter"]), os.path.join(self.path, f"{model_id}.json"))
            self.add_model(reward, model_id)
            self.update(-1, self.load_model_by_id(model_id), reward, model_id)
