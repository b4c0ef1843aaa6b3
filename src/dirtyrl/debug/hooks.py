"""Forward, full-backward and parameter-gradient hooks on chosen modules, as a context manager.

The seed's third way of watching gradients: "register to callbacks on parameter updates and on
operation backward or forward updates. This gives you access to feature-maps (activations)
gradients". Every hook is per module or per tensor (never the global
``register_module_forward_hook``), its ``RemovableHandle`` is kept, and leaving the ``with``
block removes them all::

    with HookRecorder(policy, ["fc1", "fc2"]) as rec:
        loss = compute_loss(policy, batch)
        loss.backward()
    print(rec.stats()["fc2/activation"]["zero_frac"])
    # here every hook is gone: policy._forward_hooks is empty again

Statistics accumulate over every call since the last ``reset()`` (a module called once per
env step sums over the steps): mean, std and the fraction of exact zeros. For activations the
recorder also counts *dead units*: features (Linear) or channels (Conv) that were exactly zero
for every sample seen, the signature of dead ReLUs downstream of this module.

One trap: a module that is bypassed is never called, so it records nothing. KarpathyPolicy
multiplies sparse Pong batches by ``fc1.weight`` directly, so on Pong hook ``fc2`` (whose
input is the hidden layer) rather than ``fc1``.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from dirtyrl.errors import UserError


def unit_alive(x: torch.Tensor) -> torch.Tensor:
    """Per unit, was any entry non-zero? Units are dim 1 of (B, C, ...) maps, the last dim otherwise.

    >>> unit_alive(torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 2.0]])).tolist()
    [False, True, True]
    >>> unit_alive(torch.zeros(2, 4, 3, 3)).shape
    torch.Size([4])
    """
    nonzero = x.detach() != 0
    if nonzero.dim() >= 3:  # (B, C, H, W): a unit is a channel
        return nonzero.transpose(0, 1).reshape(nonzero.shape[1], -1).any(dim=1)
    return nonzero.reshape(-1, nonzero.shape[-1]).any(dim=0)


class RunningStats:
    """Mean, std and zero fraction over every tensor added since the last reset (float64 sums)."""

    def __init__(self, track_units: bool = False) -> None:
        self.track_units = track_units
        self.reset()

    def reset(self) -> None:
        self.count = 0
        self.total = 0.0
        self.total_sq = 0.0
        self.zeros = 0
        self.calls = 0
        self.alive: torch.Tensor | None = None

    def add(self, x: torch.Tensor) -> None:
        x = x.detach()
        if x.is_sparse or x.layout != torch.strided or not x.is_floating_point():
            return
        x64 = x.double()
        self.count += x.numel()
        self.total += float(x64.sum())
        self.total_sq += float((x64 * x64).sum())
        self.zeros += int((x == 0).sum())
        self.calls += 1
        if self.track_units and x.dim() >= 1:
            alive = unit_alive(x)
            if self.alive is None or self.alive.shape != alive.shape:
                self.alive = alive
            else:
                self.alive |= alive

    def summary(self) -> dict[str, float]:
        if self.count == 0:
            return {}
        mean = self.total / self.count
        var = max(self.total_sq / self.count - mean * mean, 0.0)
        out = {"mean": mean, "std": var**0.5, "zero_frac": self.zeros / self.count, "calls": float(self.calls)}
        if self.alive is not None:
            out["dead_frac"] = 1.0 - float(self.alive.float().mean())
        return out


def resolve_modules(model: nn.Module, names: Iterable[str]) -> dict[str, nn.Module]:
    """Look up modules by their ``named_modules`` name; a UserError lists the valid names."""
    available = dict(model.named_modules())
    chosen = {}
    for name in names:
        if name not in available or name == "":
            valid = ", ".join(n for n in available if n) or "(none)"
            raise UserError(f"--debug.hooks: no module named '{name}' in {type(model).__name__}; modules are: {valid}")
        chosen[name] = available[name]
    return chosen


class HookRecorder:
    """Activation, activation-gradient and parameter-gradient statistics of chosen modules.

    ``attach()`` registers the hooks and keeps the handles; ``remove()`` (or leaving the
    ``with`` block) removes every one of them. ``log(logger, step)`` writes the statistics as
    ``debug/activation/<module>/<stat>``, ``debug/activation_grad/<module>/<stat>`` and
    ``debug/param_grad/<param>/<stat>``, then starts new sums.
    """

    def __init__(self, model: nn.Module, module_names: Iterable[str], param_grads: bool = True) -> None:
        self.model = model
        self.modules = resolve_modules(model, module_names)
        self.param_grads = param_grads
        self.handles: list[RemovableHandle] = []
        self.activations = {name: RunningStats(track_units=True) for name in self.modules}
        self.activation_grads = {name: RunningStats() for name in self.modules}
        self.params: dict[str, RunningStats] = {}
        self._warning_filter: tuple | None = None

    # -- hooks ------------------------------------------------------------------------------
    def _on_forward(self, name: str):
        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            if isinstance(output, torch.Tensor):
                self.activations[name].add(output)

        return hook

    def _on_backward(self, name: str):
        def hook(module: nn.Module, grad_input: Any, grad_output: Any) -> None:
            # grad_output[0]: dLoss/d(activation), the feature-map gradient the seed asks for.
            if grad_output and isinstance(grad_output[0], torch.Tensor):
                self.activation_grads[name].add(grad_output[0])

        return hook

    def _on_param_grad(self, name: str):
        def hook(grad: torch.Tensor) -> None:
            self.params[name].add(grad)  # returns None: the gradient is left unchanged

        return hook

    # -- lifecycle ----------------------------------------------------------------------------
    def attach(self) -> HookRecorder:
        if self.handles:
            return self
        # A hooked first layer has no input that requires grad, and torch warns at every such
        # backward that the hook sees only grad_output; that is all we read, so silence it
        # while attached (the filter entry is removed again like a hook handle).
        warnings.filterwarnings("ignore", message="Full backward hook is firing when gradients are computed with respect")
        self._warning_filter = warnings.filters[0]
        for name, module in self.modules.items():
            self.handles.append(module.register_forward_hook(self._on_forward(name)))
            self.handles.append(module.register_full_backward_hook(self._on_backward(name)))
            if self.param_grads:
                for pname, param in module.named_parameters():
                    full = f"{name}.{pname}"
                    if param.requires_grad and full not in self.params:
                        self.params[full] = RunningStats()
                        self.handles.append(param.register_hook(self._on_param_grad(full)))
        return self

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()
        if self._warning_filter in warnings.filters:
            warnings.filters.remove(self._warning_filter)  # "ignore" results are never cached
        self._warning_filter = None

    def __enter__(self) -> HookRecorder:
        return self.attach()

    def __exit__(self, *exc: object) -> None:
        self.remove()

    # -- results ------------------------------------------------------------------------------
    def stats(self) -> dict[str, dict[str, float]]:
        """``{"<module>/activation": {...}, "<module>/activation_grad": {...}, "<param>/grad": {...}}``."""
        out = {}
        for name in self.modules:
            out[f"{name}/activation"] = self.activations[name].summary()
            out[f"{name}/activation_grad"] = self.activation_grads[name].summary()
        for name, stats in self.params.items():
            out[f"{name}/grad"] = stats.summary()
        return out

    def reset(self) -> None:
        for stats in (*self.activations.values(), *self.activation_grads.values(), *self.params.values()):
            stats.reset()

    def log(self, logger: Any, step: int) -> None:
        groups = (("activation", self.activations), ("activation_grad", self.activation_grads), ("param_grad", self.params))
        for kind, table in groups:
            for name, stats in table.items():
                for stat, value in stats.summary().items():
                    if stat != "calls":
                        logger.scalar(f"debug/{kind}/{name}/{stat}", value, step)
        self.reset()
