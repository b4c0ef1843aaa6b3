"""Weight and gradient monitoring: histograms, norms and update-to-weight ratios.

The seed's advice, as an instrument: "plot the weights and gradients distribution and
histograms — look at the gradient sizes and ranges: do they make sense?" Insanely large
gradients are a red light; weights whose histogram keeps the same shape for a long stretch of
training mean a layer that is not learning. The update-to-weight ratio ``|dW| / |W|`` puts a
number on that: around 1e-3 per step is healthy for SGD-like optimisers (Karpathy, CS231n);
1e-6 is a frozen layer, 1e-1 a layer being thrown around.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def grad_norms(model: nn.Module) -> tuple[dict[str, float], float]:
    """Per-parameter L2 gradient norms and the global norm (sqrt of the sum of squares).

    Parameters without a gradient are left out.

    >>> m = nn.Linear(2, 1, bias=False)
    >>> m.weight.grad = torch.tensor([[3.0, 4.0]])
    >>> grad_norms(m)
    ({'weight': 5.0}, 5.0)
    """
    norms = {name: float(p.grad.detach().norm()) for name, p in model.named_parameters() if p.grad is not None}
    return norms, sum(v * v for v in norms.values()) ** 0.5


class GradientMonitor:
    """Every ``every`` updates: histograms, per-parameter and global gradient norms, update ratios.

    Tags: ``debug/weight/<param>`` and ``debug/grad/<param>`` (histograms),
    ``debug/grad_norm/<param>``, ``debug/global_grad_norm``, ``debug/weight_norm/<param>`` and,
    after the optimizer step, ``debug/update_ratio/<param>``.
    """

    def __init__(self, model: nn.Module, logger: Any, every: int) -> None:
        self.model = model
        self.logger = logger
        self.every = every
        self._before: dict[str, torch.Tensor] | None = None
        self._step = 0

    def after_backward(self, update: int, env_step: int) -> None:
        if update % self.every:
            return
        norms, total = grad_norms(self.model)
        for name, p in self.model.named_parameters():
            self.logger.histogram(f"debug/weight/{name}", p.detach().cpu(), env_step)
            self.logger.scalar(f"debug/weight_norm/{name}", float(p.detach().norm()), env_step)
            if p.grad is not None:
                self.logger.histogram(f"debug/grad/{name}", p.grad.detach().cpu(), env_step)
                self.logger.scalar(f"debug/grad_norm/{name}", norms[name], env_step)
        self.logger.scalar("debug/global_grad_norm", total, env_step)
        # Keep a copy of the weights so after_step can measure what the optimizer did to them.
        self._before = {name: p.detach().clone() for name, p in self.model.named_parameters()}
        self._step = env_step

    def after_step(self) -> None:
        if self._before is None:
            return
        for name, p in self.model.named_parameters():
            before = self._before[name]
            ratio = float((p.detach() - before).norm()) / (float(before.norm()) + 1e-12)
            self.logger.scalar(f"debug/update_ratio/{name}", ratio, self._step)
        self._before = None
