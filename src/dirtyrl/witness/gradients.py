"""The gradient witness: global torch hooks that see every optimizer and parameter of outside code.

Nothing in the watched code changes. While installed, ``GradientWitness`` holds:

- a global forward pre-hook on every ``nn.Module`` (``register_module_forward_pre_hook``): the
  first call of a module names its parameters (``<Class>.<path>``, from the outermost module
  called) and puts a tensor hook on each; later calls feed the dead-unit count (inputs of
  Linear/Conv layers computed from parameters) and the check that the network's input varies;
- a tensor hook on every parameter: the incoming gradient, *before* it is added to ``.grad``.
  At the first backward pass after an optimizer step, whatever ``.grad`` already holds was
  carried over from the previous update: measured exactly, not guessed from a curve;
- global optimizer step pre- and post-hooks (``register_optimizer_step_pre_hook``): which
  parameters each optimizer steps, their gradients at the step (all zeros, NaN/Inf, the global
  norm), the size of the step against the weights, and whether stepped parameters ever change.

Findings use the names of ``--debug.trap`` (``zero_grad``, ``nan_grad``, ``nan_param``,
``grad_norm``, ``dead_units``, ``stale_grad``) plus ``not_in_optimizer``, ``frozen_param``,
``update_size``, ``never_reached`` and ``constant_input``. ``mode="stop"`` raises ``WitnessTripped`` from inside
the hook that saw it, before the optimizer applies a bad step; ``"warn"`` prints one line
each; ``"record"`` only keeps them.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.optim.optimizer as optim_hooks
from torch import nn

from dirtyrl.debug.hooks import unit_alive
from dirtyrl.witness.findings import Finding, WitnessTripped

MODES = ("record", "warn", "stop")
# Optimizer steps at which the slower checks run (parameters that never change, gradients of
# parameters in no optimizer), then every CHECK_EVERY steps and at the end.
EARLY_CHECKS = (10, 30, 100)
CHECK_EVERY = 500
RATIO_STEPS = 20  # the size of every one of the first 20 steps is measured, then one in RATIO_EVERY
RATIO_EVERY = 10
CONSTANT_INPUT_CALLS = 200
FULL_CHECK_STEPS = 100  # with check_every > 1, every one of the first 100 optimizer steps is still checked
# Which finding names the root cause when one step trips several: the most specific first.
PRIORITY = (
    "nan_param",
    "nan_grad",
    "stale_grad",
    "not_in_optimizer",
    "dead_units",
    "update_size",
    "grad_norm",
    "constant_input",
    "zero_grad",
    "never_reached",
    "frozen_param",
)

CAUSES = {
    "stale_grad": "gradients carried over from the previous update: optimizer.zero_grad() is missing or misplaced, "
    "so every update adds the old gradient to the new one",
    "not_in_optimizer": "a layer left out of the optimizer: it gets gradients but no optimizer steps it "
    "(build the optimizer from model.parameters() after every layer exists)",
    "zero_grad": "no learning signal reaches it: a detached tensor, a zero loss or advantage, dead units upstream, "
    "or a layer the loss does not use",
    "never_reached": "a parameter the loss never reaches: an unused layer, a detached tensor, or a forward under no_grad",
    "nan_grad": "a NaN/Inf in the loss or its backward (a division by a zero std, log(0), an overflow)",
    "nan_param": "the weights became NaN/Inf: a step with NaN gradients or a learning rate that explodes",
    "grad_norm": "exploding gradients: a learning rate too large, unscaled rewards or returns, or no gradient clipping",
    "update_size": "the learning rate is far too large: one optimizer step moves the weights by more than their own size",
    "dead_units": "dead ReLUs: every unit of the layer is zero for every sample (a large negative bias, "
    "a too-large learning rate, or inputs on the wrong scale)",
    "frozen_param": "the optimizer steps it with non-zero gradients but its value never changes: a learning rate of 0, "
    "or the optimizer holds copies of the weights, not the weights the model uses",
    "constant_input": "the network's input never changes: a preprocessing step that returns a constant "
    "(zeros, a cached frame, the wrong variable), or the first observation reused",
}


@dataclass
class ParamRecord:
    """What the witness knows of one parameter."""

    name: str
    param: torch.Tensor
    optimizers: set[int] = field(default_factory=set)
    backwards: int = 0  # backward passes that reached it
    nonzero: int = 0  # ... with a gradient that was not all zeros
    pending: bool = False  # stepped since its last backward: the next backward checks .grad
    checked: int = 0  # backward passes checked for carried gradients
    carried: int = 0  # ... that found one
    carried_ratio: float = 0.0  # largest |carried| / |incoming| seen
    steps: int = 0  # optimizer steps that held it
    stepped_nonzero: int = 0  # ... with a non-zero gradient
    zero_streak: int = 0
    initial: torch.Tensor | None = None
    changed: bool = False


@dataclass
class ModuleRecord:
    name: str
    root: bool
    layer: bool  # Linear or Conv: counts dead units on its input
    calls: int = 0
    first_input: torch.Tensor | None = None
    input_varied: bool = False
    alive: torch.Tensor | None = None
    dead_streak: int = 0
    params: list[ParamRecord] = field(default_factory=list)


def _spot_finite(grad: torch.Tensor | None) -> bool:
    """One gradient's sum is finite: a cheap check at every update between the full ones. A NaN
    made in the loss reaches every gradient, so one of them shows it at the update it appears;
    the parameters are taken in turn from the last (nearest the loss) for one that does not."""
    if grad is None or grad.layout != torch.strided or not grad.is_floating_point():
        return True
    return math.isfinite(float(grad.detach().sum()))


def _all_finite(tensors: list[torch.Tensor]) -> bool:
    """Whether every entry of every tensor is finite, in a few ops (a NaN or Inf makes its norm so;
    a finite tensor whose norm overflows is sorted out by the exact check that follows)."""
    dense = [t.detach() for t in tensors if t.layout == torch.strided and t.is_floating_point()]
    if not dense:
        return True
    return bool(torch.isfinite(torch.stack(torch._foreach_norm(dense))).all())


class GradientWitness:
    """Global hooks on every module, parameter and optimizer while installed.

    ``every`` > 0 logs gradient norms and histograms of every stepped parameter every ``every``
    optimizer steps through ``logger`` (``debug/grad/<param>``, ``debug/grad_norm/<param>``,
    ``debug/global_grad_norm``, ``debug/weight/<param>``: the tags of ``--debug.grad-stats-every``);
    ``histogram_every`` logs the histograms only every that many optimizer steps (they cost far
    more than the norms: about 0.5 ms each).
    ``env_step`` stamps findings and logged values with the env step (the env witness's count).
    ``keep_inputs`` > 0 keeps that many image-shaped inputs (3 or more dimensions) of the first
    root module that gets one, one every ``input_every`` calls, in ``inputs`` as
    ``(module name, env step, one sample)``: what the network really sees, after every wrapper
    and preprocessing step of the watched code (``watch`` draws them as a contact sheet).

    ``check_every`` = 1 (the default) checks every optimizer step in full. ``check_every`` = k > 1
    (``watch``, to keep its cost small) checks the first ``FULL_CHECK_STEPS`` steps in full, then
    every k-th: the gradients (zero, NaN, norm), the weights after the step (NaN), the dead
    units (on the forward passes that update learns from) and the non-zero gradient count of
    parameters in an optimizer; the update size every ``RATIO_EVERY * k`` steps after the first
    ``RATIO_STEPS``; module calls are seen (named, their inputs sampled) only in the forward
    passes before a checked update. Gradients carried over (``stale_grad``) and gradients of
    parameters in no optimizer are still seen at every backward pass.
    """

    def __init__(
        self,
        mode: str = "record",
        *,
        every: int = 0,
        logger: Any = None,
        env_step: Callable[[], int] = lambda: 0,
        max_grad_norm: float = 1e3,
        max_update_ratio: float = 1.0,
        dead_fraction: float = 0.99,
        zero_grad_patience: int = 2,
        on_finding: Callable[[Finding], None] | None = None,
        keep_inputs: int = 0,
        input_every: int = 100,
        check_every: int = 1,
        histogram_every: int | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"witness mode must be one of {MODES}, got {mode!r}")
        self.mode = mode
        self.every = every
        self.logger = logger
        self.env_step = env_step
        self.max_grad_norm = max_grad_norm
        self.max_update_ratio = max_update_ratio
        self.dead_fraction = dead_fraction
        self.zero_grad_patience = zero_grad_patience
        self.on_finding = on_finding
        self.params: dict[int, ParamRecord] = {}
        self.modules: dict[int, ModuleRecord] = {}
        self.root_names: dict[str, int] = {}
        self.optimizers: dict[int, int] = {}  # id(optimizer) -> its steps
        self.steps = 0  # optimizer steps, all optimizers
        self.findings: list[Finding] = []
        self.failed: str | None = None  # the witness's own error, if one happened (the run went on)
        self.counts: dict[tuple[str, str], int] = {}
        self._before: dict[int, list[torch.Tensor]] = {}
        self._handles: list[Any] = []
        self._param_handles: list[Any] = []
        self._grad_hook = self._safe(self._on_grad)
        self._module_handle: Any = None
        self.keep_inputs = keep_inputs
        self.input_every = input_every
        self.inputs: list[tuple[str, int, torch.Tensor]] = []
        self._input_calls = 0
        self._input_root: str | None = None
        self.check_every = max(1, check_every)
        self.histogram_every = histogram_every  # None: with every logged norm
        self._check_next = True  # whether the coming optimizer step is checked in full
        self._fallback_named: set[int] = set()  # parameters named after their optimizer, waiting for their module
        self._records: dict[int, tuple[int, list[ParamRecord], list[torch.Tensor]]] = {}  # per optimizer

    # -- installing -----------------------------------------------------------------------------
    def install(self) -> GradientWitness:
        self._handles = [
            optim_hooks.register_optimizer_step_pre_hook(self._safe(self._step_pre)),
            optim_hooks.register_optimizer_step_post_hook(self._safe(self._step_post)),
        ]
        self._watch_modules(True)
        return self

    def remove(self) -> None:
        self._watch_modules(False)
        for handle in self._handles + self._param_handles:  # (check_every 1: param hooks made at first sight)
            handle.remove()
        self._handles.clear()
        self._param_handles.clear()

    def _watch_modules(self, on: bool) -> None:
        """The global forward pre-hook and the parameters' tensor hooks on or off.

        Any global module hook sends every module call of the process down torch's slow path (a
        few microseconds each), and each tensor hook is a call into Python per parameter per
        backward: the largest costs of a witnessed CartPole DQN. So with ``check_every`` > 1 they
        are on only from the optimizer step before a checked update to the one that ends it: the
        backward passes seen are exactly one update's, the first after a step among them, so
        carried gradients are still measured exactly on every checked update; modules are named
        at their first call in such a window.
        """
        if on and self._module_handle is None:
            self._module_handle = nn.modules.module.register_module_forward_pre_hook(self._safe(self._forward_pre))
            for rec in self.params.values():
                if rec.param.requires_grad:
                    self._param_handles.append(rec.param.register_hook(lambda g, r=rec: self._grad_hook(r, g)))
        elif not on and self._module_handle is not None:
            self._module_handle.remove()
            self._module_handle = None
            for handle in self._param_handles:
                handle.remove()
            self._param_handles.clear()

    def _safe(self, hook: Callable[..., Any]) -> Callable[..., Any]:
        """``hook``, except that an error of the witness's own never ends the watched run: it is
        said in one line, and the witness stands down for the rest of the run."""

        def guarded(*args: Any) -> None:
            if self.failed is not None:
                return
            try:
                hook(*args)
            except WitnessTripped:
                raise
            except Exception as exc:
                self.failed = f"{type(exc).__name__}: {exc}"
                print(
                    f"dirtyrl: witness: internal error in {hook.__name__} ({self.failed}); the gradient witness is "
                    "off for the rest of the run, which goes on",
                    file=sys.stderr,
                    flush=True,
                )

        return guarded

    def __enter__(self) -> GradientWitness:
        return self.install()

    def __exit__(self, *exc: Any) -> None:
        self.remove()

    # -- naming ---------------------------------------------------------------------------------
    def _param(self, p: torch.Tensor, name: str) -> ParamRecord:
        rec = self.params.get(id(p))
        if rec is not None and id(p) in self._fallback_named and not name.startswith("optimizer"):
            # First seen in an optimizer step while the module hook was off (check_every > 1):
            # its module's name, now that the module was called in a window.
            rec.name = name
            self._fallback_named.discard(id(p))
        if rec is None:
            rec = ParamRecord(name, p, initial=p.detach().clone())
            self.params[id(p)] = rec
            if p.requires_grad and (self._module_handle is not None or self.check_every == 1):
                self._param_handles.append(p.register_hook(lambda g, r=rec: self._grad_hook(r, g)))
        return rec

    def _see_module(self, module: nn.Module) -> ModuleRecord:
        """First call of ``module``: name it and every submodule and parameter not yet named."""
        root_name = type(module).__name__
        self.root_names[root_name] = self.root_names.get(root_name, 0) + 1
        if self.root_names[root_name] > 1:  # a second QNetwork (the target network) gets its own names
            root_name += f"#{self.root_names[root_name]}"
        root = None
        for path, sub in module.named_modules():
            if id(sub) in self.modules:
                continue
            layer = isinstance(sub, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d))
            rec = ModuleRecord(f"{root_name}.{path}" if path else root_name, root=sub is module, layer=layer)
            rec.params = [self._param(p, f"{rec.name}.{n}") for n, p in sub.named_parameters(recurse=False)]
            self.modules[id(sub)] = rec
            if sub is module:
                root = rec
        return root if root is not None else self.modules[id(module)]

    # -- hooks ----------------------------------------------------------------------------------
    def _forward_pre(self, module: nn.Module, args: tuple) -> None:
        rec = self.modules.get(id(module))
        if rec is None:
            rec = self._see_module(module)
        if not (rec.root or rec.layer):  # an activation, a container: nothing to see on its input
            return
        x = args[0] if args else None
        if not isinstance(x, torch.Tensor) or x.layout != torch.strided:
            return
        if self.keep_inputs and rec.root and x.dim() >= 3:
            self._keep_input(rec, x)
        if rec.layer and x.requires_grad and self._check_next:
            # Only inputs computed from parameters: a hidden layer seen by a forward that will
            # be backpropagated (acting under no_grad is not what the next update learns from).
            alive = unit_alive(x)
            rec.alive = alive if rec.alive is None or rec.alive.shape != alive.shape else rec.alive | alive
        if rec.root and not rec.input_varied and not x.requires_grad and x.numel():
            rec.calls += 1
            rows = x.detach().reshape(x.shape[0], -1) if x.dim() > 1 else x.detach().reshape(1, -1)
            if rec.first_input is None:
                rec.first_input = rows[0].clone()
            elif rows.shape[1] != rec.first_input.numel() or not bool((rows == rec.first_input).all()):
                rec.input_varied = True

    def _keep_input(self, rec: ModuleRecord, x: torch.Tensor) -> None:
        """One sample of an image-shaped network input now and then (one root module: one tile size)."""
        if self._input_root is None:
            self._input_root = rec.name
        if rec.name != self._input_root or len(self.inputs) >= self.keep_inputs:
            return
        self._input_calls += 1
        if (self._input_calls - 1) % self.input_every:
            return
        sample = x.detach()
        while sample.dim() > 3:  # (B, C, H, W) and (B, T, C, H, W): the batch's first
            sample = sample[0]
        self.inputs.append((rec.name, self.env_step(), sample.cpu().clone()))

    def _on_grad(self, rec: ParamRecord, grad: torch.Tensor) -> None:
        """Before accumulation: ``rec.param.grad`` is what this backward pass will add to."""
        rec.backwards += 1
        if (self._check_next or not rec.optimizers) and _nonzero(grad):
            rec.nonzero += 1
        if rec.pending:
            rec.pending = False
            rec.checked += 1
            old = rec.param.grad
            if old is not None and old.shape == grad.shape and _nonzero(old):
                rec.carried += 1
                carried, incoming = float(old.norm()), float(grad.norm())
                rec.carried_ratio = max(rec.carried_ratio, carried / max(incoming, 1e-30))
                self._emit(
                    [
                        self._finding(
                            "stale_grad",
                            rec.name,
                            f"gradient of norm {carried:.3e} carried over from the previous update into this backward "
                            f"(incoming {incoming:.3e})",
                        )
                    ]
                )

    def _step_pre(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        self.steps += 1
        key = id(optimizer)
        self.optimizers[key] = self.optimizers.get(key, 0) + 1
        records, group_params = self._stepped(optimizer)
        found = []
        if self._is_checked(self.steps, self.optimizers[key]):
            found += self._check_grads(records)
            found += self._check_dead_units()
        elif records and not _spot_finite(records[-1 - self.steps % len(records)].param.grad):
            found += self._check_grads(records)  # a NaN between full checks: named at the step it appears
        if self.steps in EARLY_CHECKS or self.steps % CHECK_EVERY == 0:
            found += self.slow_checks()
        if self._measure_ratio(key):
            self._before[key] = [p.detach().clone() for p in group_params]
        if self.every and self.steps % self.every == 0 and self.logger is not None:
            self._log(records)
        if found:
            self._emit(found)

    def _stepped(self, optimizer: torch.optim.Optimizer) -> tuple[list[ParamRecord], list[torch.Tensor]]:
        """The optimizer's parameters and their records, kept until its parameter count changes."""
        key = id(optimizer)
        count = sum(len(group["params"]) for group in optimizer.param_groups)
        cached = self._records.get(key)
        if cached is not None and cached[0] == count:
            return cached[1], cached[2]
        group_params = [p for group in optimizer.param_groups for p in group["params"]]
        records = []
        for i, p in enumerate(group_params):
            rec = self.params.get(id(p))
            if rec is None:
                rec = self._param(p, f"optimizer{len(self.optimizers) - 1}.param{i}{tuple(p.shape)}")
                if self.check_every > 1:
                    self._fallback_named.add(id(p))  # its module was not called in a window yet: open one
            rec.optimizers.add(key)
            records.append(rec)
        self._records[key] = (count, records, group_params)
        return records, group_params

    def _is_checked(self, step: int, own_step: int) -> bool:
        """Whether global optimizer step ``step`` (the ``own_step``-th of its optimizer) is checked
        in full: every one of each optimizer's first FULL_CHECK_STEPS (a second agent trained
        later in the same script gets its own), then every ``check_every``-th."""
        return self.check_every == 1 or own_step <= FULL_CHECK_STEPS or step % self.check_every == 0

    def _step_post(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        key = id(optimizer)
        found = []
        records, group_params = self._records[key][1:]  # as _stepped left them just before the step
        for rec in records:
            rec.pending = True
            rec.steps += 1
        if self._is_checked(self.steps, self.optimizers[key]) and not _all_finite(group_params):
            for rec, p in zip(records, group_params, strict=True):
                if not bool(torch.isfinite(p.detach()).all()):
                    bad = int((~torch.isfinite(p.detach())).sum())
                    found.append(
                        self._finding("nan_param", rec.name, f"{bad} of {p.numel()} entries are NaN/Inf after the step")
                    )
        before = self._before.pop(key, None)
        if before is not None:
            delta = sum(float((p.detach() - b).double().pow(2).sum()) for p, b in zip(group_params, before, strict=True))
            size = sum(float(b.double().pow(2).sum()) for b in before)
            ratio = (delta / size) ** 0.5 if size > 1e-12 else 0.0  # all-zero weights: no scale to compare with
            # One step is enough: a sane step moves the weights by 1e-4 to 1e-2 of their norm, and
            # after a step of 1x the weights are so large that the next steps look smaller.
            if ratio > self.max_update_ratio:
                found.append(
                    self._finding(
                        "update_size",
                        f"optimizer {type(optimizer).__name__}",
                        f"step {self.optimizers[key]} moved the weights by {ratio:.3g} times their norm "
                        f"(> {self.max_update_ratio:g}); lr {optimizer.param_groups[0].get('lr')}",
                    )
                )
        naming = bool(self._fallback_named)
        if naming and self._module_handle is not None:
            self._fallback_named.clear()  # a window has passed: a parameter still unnamed keeps its optimizer's name
            naming = False
        self._check_next = self._is_checked(self.steps + 1, self.optimizers[key] + 1) or naming
        if self.check_every > 1 and self._handles:
            self._watch_modules(self._check_next)
        if found:
            self._emit(found)

    # -- checks ---------------------------------------------------------------------------------
    def _check_grads(self, records: list[ParamRecord]) -> list[Finding]:
        found = []
        with_grad = [r for r in records if r.param.grad is not None and r.param.grad.layout == torch.strided]
        norms = torch._foreach_norm([r.param.grad.detach() for r in with_grad]) if with_grad else []
        values = torch.stack(norms).tolist() if with_grad else []  # one copy to Python for all of them
        norm_of = {id(r): v for r, v in zip(with_grad, values, strict=True)}
        for r in records:  # sparse gradients (nn.Embedding(sparse=True)): the norm of their stored values
            g = r.param.grad
            if g is not None and g.is_sparse:
                norm_of[id(r)] = float(g.detach().coalesce().values().norm())
        total_sq = 0.0
        for rec in records:
            norm = norm_of.get(id(rec))
            zero = norm is None or norm == 0.0
            if norm is not None and not (norm == norm and norm != float("inf")):
                g = rec.param.grad.coalesce().values() if rec.param.grad.is_sparse else rec.param.grad
                bad = int((~torch.isfinite(g)).sum())
                found.append(
                    self._finding(
                        "nan_grad", rec.name, f"{bad} of {rec.param.grad.numel()} entries are NaN/Inf; {self._nan_origin()}"
                    )
                )
                continue
            if not zero:
                rec.stepped_nonzero += 1
                total_sq += norm * norm
            rec.zero_streak = rec.zero_streak + 1 if zero else 0
            if zero and rec.zero_streak >= self.zero_grad_patience and rec.param.requires_grad:
                why = (
                    "no gradient reached it (detached, unused, or under no_grad)"
                    if rec.param.grad is None
                    else "gradient is all zeros"
                )
                found.append(self._finding("zero_grad", rec.name, f"{why}, {rec.zero_streak} optimizer steps in a row"))
        total = total_sq**0.5
        if total > self.max_grad_norm:
            found.append(
                self._finding("grad_norm", "model", f"global gradient norm {total:.3e} > {self.max_grad_norm:g} at a step")
            )
        if any(f.check == "zero_grad" for f in found):
            found += self._zero_inputs()
        return found

    def _zero_inputs(self) -> list[Finding]:
        """A network fed nothing but zeros: the root cause of its first layer's all-zero weight
        gradients, named as such (``constant_input`` ranks above ``zero_grad``) without waiting
        for CONSTANT_INPUT_CALLS calls."""
        found = []
        for m in self.modules.values():
            if m.root and not m.input_varied and m.calls >= 2 and m.first_input is not None and not bool(m.first_input.any()):
                found.append(
                    self._finding(
                        "constant_input",
                        m.name,
                        f"all zeros in all {m.calls} forward calls on data, so its first layer's weight gradients are zero",
                    )
                )
        return found

    def _nan_origin(self) -> str:
        """Where the NaN came from, as far as the state at the step tells."""
        if any(not bool(torch.isfinite(r.param.detach()).all()) for r in self.params.values()):
            return "the weights were already NaN/Inf"
        for m in self.modules.values():
            if m.root and m.first_input is not None and m.first_input.is_floating_point():
                if not bool(torch.isfinite(m.first_input).all()):
                    return f"the input of {m.name} held NaN/Inf"
        return "the weights and inputs were finite: the NaN was made in the loss or its backward"

    def _check_dead_units(self) -> list[Finding]:
        found = []
        for m in self.modules.values():
            if m.alive is None:
                continue
            dead = 1.0 - float(m.alive.float().mean())
            m.dead_streak = m.dead_streak + 1 if dead > self.dead_fraction else 0
            if m.dead_streak >= 2:
                found.append(
                    self._finding(
                        "dead_units",
                        f"{m.name} input",
                        f"{dead:.1%} of {m.alive.numel()} units zero for every sample, {m.dead_streak} steps in a row",
                    )
                )
            m.alive = None
        return found

    def slow_checks(self) -> list[Finding]:
        """Parameters in no optimizer, never changing, never reached; a network input that never varies."""
        found = []
        if not self.optimizers:
            return found
        for rec in self.params.values():
            if not rec.optimizers and rec.nonzero >= 2 and rec.param.requires_grad:
                found.append(
                    self._finding(
                        "not_in_optimizer",
                        rec.name,
                        f"received non-zero gradients in {rec.nonzero} backward passes, but no optimizer holds it "
                        f"({len(self.optimizers)} optimizer(s) stepped {self.steps} times)",
                    )
                )
            if rec.initial is not None and not rec.changed:
                rec.changed = not torch.equal(rec.initial, rec.param.detach())
                if not rec.changed and rec.stepped_nonzero >= 3:
                    found.append(
                        self._finding(
                            "frozen_param",
                            rec.name,
                            f"stepped {rec.stepped_nonzero} times with non-zero gradients and never changed",
                        )
                    )
        for m in self.modules.values():
            if m.root and not m.input_varied and m.calls >= CONSTANT_INPUT_CALLS and self.steps >= 10:
                found.append(self._finding("constant_input", m.name, f"the same input in all {m.calls} forward calls on data"))
        return found

    def _measure_ratio(self, key: int) -> bool:
        n = self.optimizers[key]
        return n <= RATIO_STEPS or n % (RATIO_EVERY * self.check_every) == 0

    def _log(self, records: list[ParamRecord]) -> None:
        step = self.env_step()
        total_sq = 0.0
        histograms = self.histogram_every is None or self.steps % self.histogram_every == 0
        for rec in records:
            p = rec.param
            if histograms:
                self.logger.histogram(f"debug/weight/{rec.name}", p.detach().cpu(), step)
            if p.grad is not None:
                grad = p.grad.detach().coalesce().values() if p.grad.is_sparse else p.grad.detach()
                norm = float(grad.norm())
                total_sq += norm * norm
                if histograms:
                    self.logger.histogram(f"debug/grad/{rec.name}", grad.cpu(), step)
                self.logger.scalar(f"debug/grad_norm/{rec.name}", norm, step)
        self.logger.scalar("debug/global_grad_norm", total_sq**0.5, step)

    # -- findings -------------------------------------------------------------------------------
    def _finding(self, check: str, where: str, detail: str) -> Finding:
        return Finding(check, where, detail, CAUSES[check], self.steps, self.env_step())

    def _emit(self, found: list[Finding]) -> None:
        """Keep the first of each (check, where); warn once each; stop on the most specific."""
        new = []
        for f in sorted(found, key=lambda f: PRIORITY.index(f.check)):
            key = (f.check, f.where)
            self.counts[key] = self.counts.get(key, 0) + 1
            if self.counts[key] == 1:
                self.findings.append(f)
                new.append(f)
                if self.on_finding is not None:
                    self.on_finding(f)
                if self.mode == "warn":
                    print(f"dirtyrl: witness: {f}", file=sys.stderr, flush=True)
        if new and self.mode == "stop":
            raise WitnessTripped(new[0])

    def close(self) -> list[Finding]:
        """The end-of-run checks, then every finding; the hooks are removed."""
        self.remove()
        if self.failed is not None:  # what it saw before its own error stands; nothing more is judged
            return self.findings
        found = self.slow_checks()
        for rec in self.params.values():
            if rec.optimizers and rec.steps >= 3 and rec.backwards == 0 and rec.param.requires_grad:
                found.append(
                    self._finding(
                        "never_reached",
                        rec.name,
                        f"in an optimizer stepped {rec.steps} times, but no gradient ever reached it",
                    )
                )
        mode, self.mode = self.mode, "record"  # the run is over: nothing left to stop
        self._emit(found)
        self.mode = mode
        return self.findings

    # -- evidence for diagnoses -------------------------------------------------------------------
    def carried_share(self) -> float:
        """Share of checked backward passes that found a gradient carried over (all parameters)."""
        checked = sum(r.checked for r in self.params.values())
        return sum(r.carried for r in self.params.values()) / checked if checked else 0.0

    def frozen_copies(self, min_steps: int = 50) -> list[str]:
        """Root modules that no optimizer holds, whose parameters have the shapes of a module an
        optimizer steps and never changed over ``min_steps`` optimizer steps: a target network
        that is never updated. Their first values are kept from the first forward on."""
        if self.steps < min_steps:
            return []
        stepped_shapes = []
        for m in self.modules.values():
            if m.root and any(p.optimizers for p in self._all_params(m)):
                stepped_shapes.append(sorted(tuple(p.param.shape) for p in self._all_params(m)))
        out = []
        for m in self.modules.values():
            params = self._all_params(m)
            if not m.root or not params or any(p.optimizers or p.backwards for p in params):
                continue
            if sorted(tuple(p.param.shape) for p in params) in stepped_shapes and all(
                p.initial is not None and torch.equal(p.initial, p.param.detach()) for p in params
            ):
                out.append(m.name)
        return out

    def _all_params(self, m: ModuleRecord) -> list[ParamRecord]:
        prefix = m.name + "."
        return [p for p in self.params.values() if p.name.startswith(prefix)]


def _nonzero(t: torch.Tensor) -> bool:
    """Any non-zero entry; sparse gradients (``nn.Embedding(sparse=True)``) by their stored values.

    >>> _nonzero(torch.zeros(3)), _nonzero(torch.tensor([0.0, 2.0]).to_sparse())
    (False, True)
    """
    if t.layout != torch.strided:
        return bool(t.coalesce().values().any()) if t.is_sparse else True
    return bool(t.any())
