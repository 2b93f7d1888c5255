"""BANANAS' performance predictor: an ensemble of feed-forward networks trained on (encoding, objective) pairs,
whose spread across members is the uncertainty Thompson sampling draws from (White, Neiswanger, Savani,
"BANANAS: Bayesian Optimization with Neural Architectures for Neural Architecture Search", AAAI 2021).

Their meta neural network (naszilla `meta_neural_net.py`, `params.py` 'standard'): each member 10 hidden ReLU
layers of width 20 and a linear output, Glorot-uniform weights and zero biases (Keras' defaults), Adam with
learning rate 0.01 and betas (0.9, 0.99), mean absolute error, 150 epochs of mini-batches of 32; 5 members,
differing only in their initial weights and batch order. Here the members are trained together, as one module
whose weights carry a leading member axis (a batched matrix product per layer): the same arithmetic as five
separate networks, one fifth of the Python overhead, which is what a CPU fit of such tiny networks costs.

Deviation: the targets are standardized (each output's mean and standard deviation over the training set,
undone on prediction). The paper fits raw validation errors in percent; any metric the search names (a
fraction, a loss, a parameter count) must train alike with one learning rate. MAE on standardized targets is
MAE on the raw ones divided by a constant, so the fitted function is the same up to the optimizer's step size.

Everything is seeded by the caller: one seed gives the same weights, batches and predictions (CPU float32).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class PredictorSettings:
    members: int = 5
    layers: int = 10
    width: int = 20
    lr: float = 0.01
    epochs: int = 150
    batch_size: int = 32


class MLPEnsemble:
    """`settings.members` MLPs fitted to the same data; `predict` gives every member's predictions."""

    def __init__(self, settings: PredictorSettings, seed: int) -> None:
        self.settings, self.seed = settings, seed
        self.weights: list[torch.Tensor] = []
        self.biases: list[torch.Tensor] = []
        self.y_mean = np.zeros(1)
        self.y_std = np.ones(1)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (members, batch, features) -> (members, batch, outputs)."""
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            x = torch.baddbmm(b, x, w)
            if i < last:
                x = torch.relu(x)
        return x

    def fit(self, x: np.ndarray, y: np.ndarray) -> float:
        """Train on x (n, features) and y (n, outputs); the mean absolute training error, in y's units."""
        s = self.settings
        x = np.asarray(x, dtype=np.float32)
        y = np.asarray(y, dtype=np.float64).reshape(len(x), -1)
        self.y_mean = y.mean(axis=0)
        std = y.std(axis=0)
        self.y_std = np.where(std > 0, std, 1.0)
        gen = torch.Generator().manual_seed(self.seed)
        sizes = [x.shape[1], *[s.width] * s.layers, y.shape[1]]
        self.weights, self.biases = [], []
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            bound = math.sqrt(6.0 / (fan_in + fan_out))  # Glorot uniform, Keras' Dense default
            w = (torch.rand(s.members, fan_in, fan_out, generator=gen) * 2 - 1) * bound
            self.weights.append(w.requires_grad_())
            self.biases.append(torch.zeros(s.members, 1, fan_out, requires_grad=True))
        xt = torch.from_numpy(x)
        yt = torch.from_numpy(((y - self.y_mean) / self.y_std).astype(np.float32))
        # Keras' Adam: epsilon 1e-7
        optimizer = torch.optim.Adam([*self.weights, *self.biases], lr=s.lr, betas=(0.9, 0.99), eps=1e-7)
        n = len(xt)
        for _ in range(s.epochs):
            # each member its own shuffle of the data, as separately trained networks have
            order = torch.argsort(torch.rand(s.members, n, generator=gen), dim=1)
            for start in range(0, n, s.batch_size):
                idx = order[:, start : start + s.batch_size]
                optimizer.zero_grad(set_to_none=True)
                # each member's own mean absolute error; summed, every member gets exactly its own gradient
                loss = (self._forward(xt[idx]) - yt[idx]).abs().mean(dim=(1, 2)).sum()
                loss.backward()
                optimizer.step()
        train = self.predict(x).mean(axis=0)
        return float(np.abs(train - y).mean())

    def predict(self, x: np.ndarray) -> np.ndarray:
        """(members, n, outputs): each member's prediction of x (n, features), in y's units."""
        if not self.weights:
            raise RuntimeError("the ensemble is not fitted")
        xt = torch.from_numpy(np.asarray(x, dtype=np.float32)).expand(self.settings.members, -1, -1)
        with torch.no_grad():
            out = self._forward(xt).numpy().astype(np.float64)
        return out * self.y_std + self.y_mean
