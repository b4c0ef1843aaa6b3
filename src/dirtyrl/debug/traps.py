"""Traps for anomalous training states, checked after every backward pass.

The seed's trap, grown up::

    for name, param in q_behavior.named_parameters():
        if param.grad.data.abs().sum() == 0:
            debug = True  # Trap

Checks (name: what trips it):

- ``nan_loss``: the loss is NaN or Inf.
- ``nan_grad`` / ``nan_param``: a gradient or a parameter holds a NaN or an Inf. Parameters are
  also checked right after the optimizer step, so a step that produced NaNs stops the run
  before the algorithm can write them into a checkpoint.
- ``zero_grad``: a trainable parameter whose gradient is all zeros, or which got no gradient at
  all, for ``zero_grad_patience`` consecutive updates. Patience 2, not 1, because one all-zero
  update is expected: with the last layer zero-initialised (Schulman's maximum-entropy init),
  the first layer's gradient ``W2^T dL/dlogits`` is exactly zero until the first step moves W2.
- ``grad_norm``: the global gradient norm is above ``--debug.trap-grad-norm``.
- ``entropy_collapse``: the policy entropy fell below ``--debug.trap-min-entropy`` before update
  ``--debug.trap-entropy-until`` (deterministic too early: usually a too-large learning rate).
- ``dead_units``: more than ``--debug.trap-dead-fraction`` of a hidden layer's units were exactly
  zero for every sample since the last check (dead ReLUs). Measured on the input of every
  Linear/Conv layer whose input is computed from parameters (so never on the observation).

Modes: ``warn`` prints and logs, then training goes on; ``stop`` writes a dump (which check
tripped, where, the batch, parameter and gradient statistics) and raises ``TrapTripped``, which
the algorithms let propagate (no checkpoint is written after it, so the last good one stays);
``break`` opens pdb in the algorithm's frame, with the loss, batch and model in reach.
"""

from __future__ import annotations

import math
import pdb
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from dirtyrl.debug.gradients import grad_norms
from dirtyrl.debug.hooks import unit_alive

CHECKS = ("nan_loss", "nan_grad", "nan_param", "zero_grad", "grad_norm", "entropy_collapse", "dead_units")


@dataclass(frozen=True)
class Trip:
    """One tripped check: which one, where (a parameter, a layer or ``loss``), the numbers."""

    check: str
    where: str
    detail: str

    def __str__(self) -> str:
        return f"{self.check} on {self.where}: {self.detail}"


class TrapTripped(RuntimeError):
    """Raised by ``--debug.trap stop``; the CLI prints it as one line and exits with status 3."""

    def __init__(self, trips: list[Trip], update: int, env_step: int, dump_dir: Path | None) -> None:
        self.trips = trips
        self.update = update
        self.env_step = env_step
        self.dump_dir = dump_dir
        where = f"; dump in {dump_dir}" if dump_dir is not None else ""
        more = f" (+{len(trips) - 1} more)" if len(trips) > 1 else ""
        super().__init__(
            f"stopped at update {update} (env step {env_step}): {trips[0]}{more}{where}; the last checkpoint is untouched"
        )


def tensor_stats(t: torch.Tensor | None) -> dict[str, Any]:
    """Summary of a tensor for the dump; NaN and Inf are counted, the moments use finite values.

    >>> s = tensor_stats(torch.tensor([0.0, 2.0, float("nan")]))
    >>> s["nan"], s["zero_frac"], s["mean"]
    (1, 0.3333333333333333, 1.0)
    """
    if t is None:
        return {"shape": None}
    t = t.detach().double().cpu()
    finite = t[torch.isfinite(t)]
    out: dict[str, Any] = {
        "shape": tuple(t.shape),
        "nan": int(torch.isnan(t).sum()),
        "inf": int(torch.isinf(t).sum()),
        "zero_frac": float((t == 0).double().mean()) if t.numel() else 0.0,
    }
    if finite.numel():
        out.update(
            mean=float(finite.mean()),
            std=float(finite.std(unbiased=False)),
            min=float(finite.min()),
            max=float(finite.max()),
            norm=float(finite.norm()),
        )
    return out


def _format_stats(s: dict[str, Any]) -> str:
    if s.get("shape") is None:
        return "(no gradient)"
    if "mean" not in s:
        return f"all non-finite: nan={s['nan']} inf={s['inf']}"
    return (
        f"mean {s['mean']:+.3e} std {s['std']:.3e} min {s['min']:+.3e} max {s['max']:+.3e} "
        f"norm {s['norm']:.3e} zeros {100 * s['zero_frac']:.1f}% nan {s['nan']} inf {s['inf']}"
    )


def _frame_outside_debug() -> Any:
    """The innermost frame that is not in dirtyrl.debug: the training loop that called us."""
    frame = sys._getframe(1)
    while frame.f_back is not None and frame.f_globals.get("__name__", "").startswith("dirtyrl.debug"):
        frame = frame.f_back
    return frame


def open_pdb() -> None:
    pdb.Pdb().set_trace(_frame_outside_debug())


class Traps:
    """The checks above, for one model; ``attach()`` adds the dead-unit forward hooks."""

    def __init__(
        self,
        model: nn.Module,
        logger: Any,
        mode: str = "warn",
        run_dir: Path | None = None,
        *,
        max_grad_norm: float = 1e3,
        min_entropy: float = 0.01,
        entropy_until: int = 100,
        dead_fraction: float = 0.99,
        zero_grad_patience: int = 2,
        debugger: Callable[[], None] = open_pdb,
    ) -> None:
        if mode not in ("warn", "stop", "break"):
            raise ValueError(f"trap mode must be warn, stop or break, got {mode!r}")
        self.model = model
        self.logger = logger
        self.mode = mode
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.max_grad_norm = max_grad_norm
        self.min_entropy = min_entropy
        self.entropy_until = entropy_until
        self.dead_fraction = dead_fraction
        self.zero_grad_patience = zero_grad_patience
        self.debugger = debugger
        self.handles: list[RemovableHandle] = []
        self.alive: dict[str, torch.Tensor] = {}
        self.zero_streak: dict[str, int] = {}
        self.seen: dict[tuple[str, str], int] = {}
        self.trips: list[Trip] = []  # every trip so far, for tests and post-mortems

    # -- dead units: forward hooks on the layers --------------------------------------------
    def attach(self) -> Traps:
        if self.handles:
            return self
        for name, module in self.model.named_modules():
            if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
                self.handles.append(module.register_forward_hook(self._record_alive(name or "model")))
        return self

    def _record_alive(self, name: str):
        def hook(module: nn.Module, inputs: tuple, output: Any) -> None:
            x = inputs[0] if inputs else None
            # Only inputs computed from parameters (a hidden layer), and only forwards that will
            # be backpropagated: acting under no_grad is not what the next update learns from.
            if not isinstance(x, torch.Tensor) or not x.requires_grad or x.layout != torch.strided:
                return
            alive = unit_alive(x)
            previous = self.alive.get(name)
            self.alive[name] = alive if previous is None or previous.shape != alive.shape else previous | alive

        return hook

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()

    # -- the checks ----------------------------------------------------------------------------
    def check_backward(self, update: int, loss: torch.Tensor | float | None, entropy: float | None) -> list[Trip]:
        trips: list[Trip] = []
        if loss is not None:
            value = float(loss.detach().sum()) if isinstance(loss, torch.Tensor) else float(loss)
            if not math.isfinite(value):
                trips.append(Trip("nan_loss", "loss", f"loss = {value}"))
        for name, p in self.model.named_parameters():
            if not p.requires_grad:
                continue
            g = p.grad
            if g is not None and not bool(torch.isfinite(g).all()):
                trips.append(Trip("nan_grad", name, f"{int((~torch.isfinite(g)).sum())} of {g.numel()} entries are NaN/Inf"))
            zero = g is None or not bool(g.any())
            self.zero_streak[name] = self.zero_streak.get(name, 0) + 1 if zero else 0
            if zero and self.zero_streak[name] >= self.zero_grad_patience:
                why = "no gradient reached it (detached, unused, or under no_grad)" if g is None else "gradient is all zeros"
                trips.append(Trip("zero_grad", name, f"{why}, {self.zero_streak[name]} updates in a row"))
        trips += self.check_params()
        _, total = grad_norms(self.model)
        if total > self.max_grad_norm:
            trips.append(Trip("grad_norm", "model", f"global gradient norm {total:.3e} > {self.max_grad_norm:g}"))
        if entropy is not None and update < self.entropy_until and entropy < self.min_entropy:
            trips.append(
                Trip(
                    "entropy_collapse",
                    "policy",
                    f"entropy {entropy:.3g} < {self.min_entropy:g} at update {update} (before {self.entropy_until})",
                )
            )
        for name, alive in self.alive.items():
            dead = 1.0 - float(alive.float().mean())
            if dead > self.dead_fraction:
                trips.append(Trip("dead_units", f"{name} input", f"{dead:.1%} of {alive.numel()} units zero for every sample"))
        self.alive.clear()
        return trips

    def check_params(self) -> list[Trip]:
        trips = []
        for name, p in self.model.named_parameters():
            if not bool(torch.isfinite(p.detach()).all()):
                bad = int((~torch.isfinite(p.detach())).sum())
                trips.append(Trip("nan_param", name, f"{bad} of {p.numel()} entries are NaN/Inf"))
        return trips

    # -- hook points ---------------------------------------------------------------------------
    def after_backward(
        self,
        update: int,
        env_step: int,
        loss: torch.Tensor | float | None,
        entropy: float | None = None,
        batch: Mapping[str, Any] | Callable[[], Mapping[str, Any]] | None = None,
    ) -> None:
        trips = self.check_backward(update, loss, entropy)
        if trips:
            self._handle(trips, update, env_step, loss, entropy, batch)

    def after_step(self, update: int, env_step: int) -> None:
        trips = self.check_params()
        if trips:
            self._handle(trips, update, env_step, None, None, None)

    def _handle(self, trips: list[Trip], update: int, env_step: int, loss: Any, entropy: Any, batch: Any) -> None:
        self.trips += trips
        for trip in trips:
            key = (trip.check, trip.where)
            self.seen[key] = self.seen.get(key, 0) + 1
            n = self.seen[key]
            self.logger.scalar(f"debug/trap/{trip.check}", 1.0, env_step)
            # Warn on the 1st, 2nd, 4th, 8th ... time, so a persistent condition does not flood.
            if n & (n - 1) == 0:
                times = f" (seen {n} times)" if n > 1 else ""
                message = f"update {update}, env step {env_step}: {trip}{times}"
                self.logger.text("debug/trap", message, env_step)
                if self.mode != "stop":  # stop says it in one line (TrapTripped) and in the dump
                    print(f"dirtyrl: trap ({self.mode}): {message}", file=sys.stderr, flush=True)
        if self.mode == "stop":
            dump_dir = None
            if self.run_dir is not None:
                dump_dir = write_dump(
                    self.run_dir / "traps" / f"update-{update:06d}",
                    trips,
                    update,
                    env_step,
                    loss,
                    entropy,
                    batch() if callable(batch) else batch,
                    self.model,
                )
            raise TrapTripped(trips, update, env_step, dump_dir)
        if self.mode == "break":
            print("dirtyrl: trap: opening pdb in the training loop ('c' continues, 'q' quits)", file=sys.stderr)
            self.debugger()


def write_dump(
    dump_dir: Path,
    trips: list[Trip],
    update: int,
    env_step: int,
    loss: Any,
    entropy: float | None,
    batch: Mapping[str, Any] | None,
    model: nn.Module,
) -> Path:
    """``report.txt`` for a person and ``dump.pt`` with everything (weights, grads, batch)."""
    dump_dir.mkdir(parents=True, exist_ok=True)
    params = {name: p.detach().cpu().clone() for name, p in model.named_parameters()}
    grads = {name: p.grad.detach().cpu().clone() for name, p in model.named_parameters() if p.grad is not None}
    stats = {name: {"param": tensor_stats(p), "grad": tensor_stats(p.grad)} for name, p in model.named_parameters()}
    loss_value = float(loss.detach().sum()) if isinstance(loss, torch.Tensor) else loss
    torch.save(
        {
            "trips": [vars(t) for t in trips],
            "update": update,
            "env_step": env_step,
            "loss": loss_value,
            "entropy": entropy,
            "batch": dict(batch) if batch is not None else None,
            "params": params,
            "grads": grads,
            "stats": stats,
        },
        dump_dir / "dump.pt",
    )
    lines = [
        "dirty-rl trap report",
        f"update {update}, env step {env_step}, loss {loss_value}, entropy {entropy}",
        "",
        "tripped:",
        *(f"  {t}" for t in trips),
        "",
        "parameters:",
    ]
    for name, s in stats.items():
        lines += [f"  {name} {s['param']['shape']}", f"    weight: {_format_stats(s['param'])}"]
        lines.append(f"    grad:   {_format_stats(s['grad'])}")
    lines += ["", "batch:"]
    for key, value in (batch or {}).items():
        shape = getattr(value, "shape", None)
        size = f" {tuple(shape)}" if shape is not None else (f" (len {len(value)})" if hasattr(value, "__len__") else "")
        lines.append(f"  {key}: {type(value).__name__}{size}")
    if not batch:
        lines.append("  (not passed by the algorithm)")
    lines += ["", f"everything above, as tensors: torch.load('{dump_dir / 'dump.pt'}', weights_only=False)"]
    (dump_dir / "report.txt").write_text("\n".join(lines) + "\n")
    return dump_dir
