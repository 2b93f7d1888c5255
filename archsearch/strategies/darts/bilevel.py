"""BilevelOptimizer: DARTS' architecture step (Liu et al., 2019, eq. 6-8; architect.py of the original).

first order:  grad_alpha = d L_val(w, alpha) / d alpha
second order: w' = w - xi * (grad_w L_train(w, alpha) + momentum buffer + weight decay * w)  (the virtual
              step of the weight optimizer, xi = its current lr)
              grad_alpha = d L_val(w', alpha)/d alpha - xi * (g+ - g-) / (2 eps),
              g+- = d L_train(w +- eps * dw', alpha)/d alpha, dw' = d L_val(w', alpha)/d w', eps = 0.01 / ||dw'||

Unlike the original, the unrolled model is not a deep copy: the virtual step is applied to the weights in
place and undone afterwards (BatchNorm running statistics included), which saves a model's worth of
memory and the copy's time. The second-order step runs in float32 even under AMP: the finite-difference
perturbation is far below bfloat16's resolution.

Under torchrun every gradient is averaged over the ranks where it is computed (a no-op without torchrun): the
architecture gradient (first order); the train gradient before the virtual step, the val gradients at w'
(dalpha and dw', so eps is the same everywhere) and both finite-difference terms (second order). Each rank
then takes the same step as one process on the global batch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping

import torch
from torch import nn

from archsearch.common import distributed
from archsearch.train.trainer import build_optimizer

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x, y) -> scalar loss of the model
Objective = Callable[[torch.Tensor], torch.Tensor]  # validation loss -> architecture objective


class BilevelOptimizer:
    def __init__(
        self,
        conf_arch_optimizer: Mapping,
        arch_params: list[nn.Parameter],
        weight_params: list[nn.Parameter],
        weight_optimizer: torch.optim.Optimizer,
        model: nn.Module,
        order: str,
        fd_radius: float = 0.01,
    ) -> None:
        if order not in ("first", "second"):
            raise ValueError(f"order must be first or second, got {order!r}")
        self.arch_params, self.weight_params = arch_params, weight_params
        self.weight_optimizer, self.model, self.order, self.fd_radius = weight_optimizer, model, order, fd_radius
        self.optimizer = build_optimizer(conf_arch_optimizer, arch_params)

    def step(
        self,
        loss_fn: LossFn,
        x_train: torch.Tensor,
        y_train: torch.Tensor,
        x_val: torch.Tensor,
        y_val: torch.Tensor,
        lr: float,
        penalty: torch.Tensor | None = None,
        objective: Objective | None = None,
    ) -> torch.Tensor:
        """One architecture update; returns the validation loss it used (detached). `penalty`, a scalar of the
        architecture parameters alone (beta-DARTS' weighted beta-decay loss), is added to the objective.
        `objective` maps the validation loss to the architecture objective (the expected-cost term, cost.py); it is
        called right after the forward that computed the loss. In the second order its gradient is taken by the
        chain rule through the loss: d objective / d loss times the unrolled gradient, plus its direct gradient."""
        self.optimizer.zero_grad(set_to_none=True)
        if self.order == "first":
            loss = loss_fn(x_val, y_val)
            total = loss if objective is None else objective(loss)
            if penalty is not None:
                total = total + penalty
            # no weight gradients: cheaper than backward(); an alpha the loss does not reach gets zeros
            grads = _grads(total, self.arch_params)
            grads = distributed.averaged(grads, x_val.shape[0])  # torchrun: the global val batch's gradient
        else:
            loss, grads = self.second_order_grads(loss_fn, x_train, y_train, x_val, y_val, lr)
            if objective is not None:  # chain rule through the loss' value: the unrolled gradient stands for d loss
                leaf = loss.detach().requires_grad_(True)
                d_loss, *direct = _grads(objective(leaf), [leaf, *self.arch_params])
                grads = [d_loss * g + d for g, d in zip(grads, direct)]
            if penalty is not None:  # independent of the weights: its gradient adds to the unrolled one
                grads = [g + pg for g, pg in zip(grads, _grads(penalty, self.arch_params))]
        for p, g in zip(self.arch_params, grads):
            p.grad = g
        self.optimizer.step()
        return loss.detach()

    def second_order_grads(self, loss_fn: LossFn, x_train, y_train, x_val, y_val, lr: float):
        weights, alphas = self.weight_params, self.arch_params
        with self.bn_stats_restored():
            saved = [w.detach().clone() for w in weights]
            try:
                # the virtual weight step w' = w - xi * (weight optimizer's step direction)
                train_grads = _grads(loss_fn(x_train, y_train), weights)
                train_grads = distributed.averaged(train_grads, x_train.shape[0])  # torchrun: all ranks, one w'
                with torch.no_grad():
                    for w, step in zip(weights, self.virtual_step_terms(weights, train_grads)):
                        w.sub_(lr * step)
                val_loss = loss_fn(x_val, y_val)
                grads = distributed.averaged(_grads(val_loss, [*alphas, *weights]), x_val.shape[0])
                dalpha, dw = grads[: len(alphas)], grads[len(alphas) :]
                # Hessian-vector product by central differences around the original w
                eps = self.fd_radius / torch.cat([g.flatten() for g in dw]).norm()
                alpha_grads_at = []
                for sign in (1.0, -1.0):
                    with torch.no_grad():
                        for w, s, d in zip(weights, saved, dw):
                            w.copy_(s + sign * eps * d)
                    g_at = _grads(loss_fn(x_train, y_train), alphas)
                    alpha_grads_at.append(distributed.averaged(g_at, x_train.shape[0]))
            finally:
                with torch.no_grad():
                    for w, s in zip(weights, saved):
                        w.copy_(s)
        g_plus, g_minus = alpha_grads_at
        return val_loss, [da - lr * (gp - gm) / (2 * eps) for da, gp, gm in zip(dalpha, g_plus, g_minus)]

    def virtual_step_terms(self, weights, grads) -> Iterator[torch.Tensor]:
        """The update direction of the weight optimizer (SGD with momentum and weight decay) for each weight."""
        group = self.weight_optimizer.param_groups[0]
        momentum, decay = group.get("momentum", 0.0), group.get("weight_decay", 0.0)
        for w, g in zip(weights, grads):
            buf = self.weight_optimizer.state.get(w, {}).get("momentum_buffer")
            step = g + decay * w
            if buf is not None and momentum:
                step = step + momentum * buf
            yield step

    @contextlib.contextmanager
    def bn_stats_restored(self):
        """Virtual forward passes must not move BatchNorm running statistics."""
        buffers = [b for b in self.model.buffers()]
        saved = [b.clone() for b in buffers]
        try:
            yield
        finally:
            for b, s in zip(buffers, saved):
                b.copy_(s)

    def state_dict(self) -> dict:
        return self.optimizer.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state)


def _grads(loss: torch.Tensor, params: list[nn.Parameter]) -> list[torch.Tensor]:
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]
