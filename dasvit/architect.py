"""Bilevel optimisation of alpha (DARTS): alpha minimises the search-validation loss of weights trained on the
train split. Alpha has its own Adam (lr 3e-4, betas (0.5, 0.999), weight decay 1e-3) and is never touched by the
weight optimiser.

* First order: grad_alpha L_val(w, alpha).
* Second order: grad_alpha L_val(w', alpha) - xi * d2 L_train(w, alpha) / (d alpha d w) . grad_w' L_val(w', alpha),
  with the one-step unrolled weights w' = w - xi * grad_w L_train(w, alpha) (a plain SGD step of size xi) and the
  Hessian-vector product by central finite differences at w +- eps * grad_w' L_val, eps = 0.01 / ||grad_w' L_val||.

The fairness penalty ``lambda * R(alpha)`` (see ``dasvit.fairness``) is added to the alpha loss in both modes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from dasvit.distributed import average_gradients_
from dasvit.fairness import skip_excess_penalty
from dasvit.supernet import Supernet
from dasvit.vocabulary import validate_lambda

Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass
class AlphaStepResult:
    val_loss: float
    val_correct: int
    val_count: int
    fairness: float


@contextmanager
def _shifted(params: list[torch.Tensor], direction: list[torch.Tensor], scale: float) -> Iterator[None]:
    """Temporarily move ``params`` by ``scale * direction`` in place; restore them bit for bit afterwards."""
    saved = [p.detach().clone() for p in params]
    with torch.no_grad():
        for p, d in zip(params, direction):
            p.add_(d, alpha=scale)
    try:
        yield
    finally:
        with torch.no_grad():
            for p, s in zip(params, saved):
                p.copy_(s)


class Architect:
    def __init__(
        self,
        model: Supernet,
        lr: float = 3e-4,
        betas: tuple[float, float] = (0.5, 0.999),
        weight_decay: float = 1e-3,
        fairness_lambda: float = 0.0,
        second_order: bool = False,
        forward: Callable[..., torch.Tensor] | None = None,
    ):
        self.model = model
        self.forward = forward if forward is not None else model  # the step's (maybe compiled) supernet call
        self.fairness_lambda = validate_lambda(fairness_lambda)  # as Supernet validates its keep ratio
        self.second_order = second_order
        self.families = model.space.families
        self.optimizer = torch.optim.Adam(model.arch_parameters(), lr=lr, betas=betas, weight_decay=weight_decay)

    def _loss(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = batch
        logits = self.forward(images)
        return F.cross_entropy(logits, labels), logits

    def fairness_penalty(self) -> torch.Tensor:
        return skip_excess_penalty(self.model.arch_parameters(), self.model.masks, self.families)

    def alpha_gradient(
        self, train_batch: Batch, val_batch: Batch, xi: float
    ) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """The validation-loss gradient w.r.t. alpha (no fairness term), the val loss and the val logits."""
        alphas = self.model.arch_parameters()
        if not self.second_order:
            val_loss, logits = self._loss(val_batch)
            return list(torch.autograd.grad(val_loss, alphas)), val_loss.detach(), logits.detach()
        weights = self.model.weight_parameters()
        train_grads = torch.autograd.grad(self._loss(train_batch)[0], weights)
        with _shifted(weights, train_grads, -xi):
            val_loss, logits = self._loss(val_batch)
            grads = torch.autograd.grad(val_loss, alphas + weights)
        alpha_grads, unrolled_weight_grads = list(grads[: len(alphas)]), grads[len(alphas) :]
        norm = torch.sqrt(sum(g.pow(2).sum() for g in unrolled_weight_grads))
        eps = 0.01 / (norm.item() + 1e-12)
        with _shifted(weights, unrolled_weight_grads, eps):
            grads_plus = torch.autograd.grad(self._loss(train_batch)[0], alphas)
        with _shifted(weights, unrolled_weight_grads, -eps):
            grads_minus = torch.autograd.grad(self._loss(train_batch)[0], alphas)
        for g, gp, gm in zip(alpha_grads, grads_plus, grads_minus):
            g.sub_((gp - gm) / (2 * eps), alpha=xi)
        return alpha_grads, val_loss.detach(), logits.detach()

    def step(self, train_batch: Batch, val_batch: Batch, xi: float) -> AlphaStepResult:
        alpha_grads, val_loss, logits = self.alpha_gradient(train_batch, val_batch, xi)
        average_gradients_(alpha_grads)  # data-parallel: every rank takes the same alpha step
        alphas = self.model.arch_parameters()
        penalty = self.fairness_penalty()
        if self.fairness_lambda > 0 and penalty.requires_grad:  # no skip op in the space: nothing to penalise
            penalty_grads = torch.autograd.grad(self.fairness_lambda * penalty, alphas)
            alpha_grads = [g + pg for g, pg in zip(alpha_grads, penalty_grads)]
        self.optimizer.zero_grad(set_to_none=True)
        for alpha, grad in zip(alphas, alpha_grads):
            alpha.grad = grad
        self.optimizer.step()
        labels = val_batch[1]
        return AlphaStepResult(
            val_loss=float(val_loss),
            val_correct=int((logits.argmax(1) == labels).sum()),
            val_count=len(labels),
            fairness=float(penalty.detach()),
        )
