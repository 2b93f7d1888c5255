"""Network-morphism architecture search (Autokeras / NNI NetworkMorphism tuner style), framework-free.

NNI-style trial code keeps working (and NNI's own tuner API: see archsearch.compat.nni)::

    from archsearch.strategies.morphism import json_to_graph
    model = json_to_graph(text).produce_torch_model()
"""

from archsearch.spaces.morphism import space as _space  # noqa: F401, E402 - registers the morphism search space
from archsearch.spaces.morphism.descriptor import NetworkDescriptor
from archsearch.spaces.morphism.generators import CnnGenerator, MlpGenerator
from archsearch.spaces.morphism.graph import Graph, Node
from archsearch.spaces.morphism.ir_json import graph_to_dict, graph_to_json, json_to_graph
from archsearch.spaces.morphism.layers import (
    StubAdd,
    StubBatchNormalization1d,
    StubBatchNormalization2d,
    StubBatchNormalization3d,
    StubConcatenate,
    StubConv1d,
    StubConv2d,
    StubConv3d,
    StubDense,
    StubDropout1d,
    StubDropout2d,
    StubDropout3d,
    StubFlatten,
    StubGlobalPooling1d,
    StubGlobalPooling2d,
    StubGlobalPooling3d,
    StubLayer,
    StubPooling1d,
    StubPooling2d,
    StubPooling3d,
    StubReLU,
    StubSoftmax,
)
from archsearch.spaces.morphism.torch_model import TorchModel
from archsearch.strategies.morphism.bayesian import BayesianOptimizer, IncrementalGaussianProcess, SearchTree
from archsearch.strategies.morphism.distance import edit_distance, layer_distance, skip_connection_distance
from archsearch.strategies.morphism.nni_tuner import NetworkMorphismTuner
from archsearch.strategies.morphism.optimizer import MorphismSearchStrategy, MorphismTrial, SearchExhausted
from archsearch.strategies.morphism.strategy import Morphism, MorphismTrials  # registers --algos morphism
from archsearch.strategies.morphism.transformer import (
    MorphismLimits,
    to_deeper_graph,
    to_skip_connection_graph,
    to_wider_graph,
    transform,
)

__all__ = [
    "BayesianOptimizer",
    "CnnGenerator",
    "Graph",
    "IncrementalGaussianProcess",
    "MlpGenerator",
    "Morphism",
    "MorphismLimits",
    "MorphismSearchStrategy",
    "MorphismTrials",
    "NetworkMorphismTuner",
    "NetworkDescriptor",
    "Node",
    "SearchExhausted",
    "SearchTree",
    "StubAdd",
    "StubBatchNormalization1d",
    "StubBatchNormalization2d",
    "StubBatchNormalization3d",
    "StubConcatenate",
    "StubConv1d",
    "StubConv2d",
    "StubConv3d",
    "StubDense",
    "StubDropout1d",
    "StubDropout2d",
    "StubDropout3d",
    "StubFlatten",
    "StubGlobalPooling1d",
    "StubGlobalPooling2d",
    "StubGlobalPooling3d",
    "StubLayer",
    "StubPooling1d",
    "StubPooling2d",
    "StubPooling3d",
    "StubReLU",
    "StubSoftmax",
    "TorchModel",
    "MorphismTrial",
    "edit_distance",
    "graph_to_dict",
    "graph_to_json",
    "json_to_graph",
    "layer_distance",
    "skip_connection_distance",
    "to_deeper_graph",
    "to_skip_connection_graph",
    "to_wider_graph",
    "transform",
]
