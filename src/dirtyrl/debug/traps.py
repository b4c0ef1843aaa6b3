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

Gradient hygiene, on in every mode (the algorithms make one extra call for each):

- ``stale_grad``: just before an update's first backward pass (``before_backward``), a
  parameter already holds a non-zero gradient: the previous update's gradient was not cleared
  (``optimizer.zero_grad()`` missing or misplaced), so this update adds to it. Learning curves
  hide it (CartPole still reaches ~460); the check costs one ``any()`` per parameter.
- ``off_policy_actions``: a policy-gradient batch whose actions are not samples of the policy
  being differentiated (``check_actions``). For actions a_t ~ pi(.|s_t), E[log pi(a_t|s_t)] is
  -H(pi(.|s_t)) and E[pi(a_t|s_t)] is sum_a pi(a|s_t)^2; both sums over the batch are compared
  with their expectation in units of their own standard deviation (computed exactly from the
  logits), and the check trips only when both are beyond ``OFF_POLICY_Z`` in the same
  direction: taken actions far more likely than sampling gives (argmax, a fixed action) or far
  less likely (actions from another policy, a stale observation, a wrong action index).
- ``nan_loss`` / ``nan_grad`` are followed by a replay of the tripping batch (when the algorithm
  passes ``replay``) under ``torch.autograd.detect_anomaly`` with every torch call watched, and
  the trip's message names the first operation whose output was NaN/Inf while its inputs were
  finite (file:line), or the op where a NaN that came in with the batch or the weights first
  showed, or the backward function anomaly detection stopped at.

Modes: ``warn`` prints and logs, then training goes on; ``stop`` writes a dump (which check
tripped, where, the batch, parameter and gradient statistics) and raises ``TrapTripped``, which
the algorithms let propagate (no checkpoint is written after it, so the last good one stays);
``break`` opens pdb in the algorithm's frame, with the loss, batch and model in reach.
"""

from __future__ import annotations

import math
import pdb
import sys
import traceback
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils.hooks import RemovableHandle

from dirtyrl.debug.gradients import grad_norms
from dirtyrl.debug.hooks import unit_alive

CHECKS = (
    "nan_loss",
    "nan_grad",
    "nan_param",
    "zero_grad",
    "grad_norm",
    "entropy_collapse",
    "dead_units",
    "stale_grad",
    "off_policy_actions",
)
OFF_POLICY_Z = 6.0  # standard deviations; both statistics must pass it (far fewer than 1e-6 false alarms)
MIN_OFF_POLICY_STEPS = 32


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


def off_policy_scores(logits: torch.Tensor, actions: torch.Tensor) -> tuple[float, float]:
    """z-scores of the taken actions' summed log-probability and probability against sampling.

    Positive: the actions were more likely under pi than samples of pi would be (argmax, a
    fixed action); negative: less likely (actions from some other distribution). 0 when the
    policy gives no spread (uniform or deterministic: nothing to test).

    >>> logits = torch.tensor([[1.0, 0.0]] * 400)
    >>> z_log, z_p = off_policy_scores(logits, torch.zeros(400, dtype=torch.long))  # always the likelier action
    >>> z_log > 6 and z_p > 6
    True
    """
    log_p = torch.log_softmax(logits.detach().double(), -1)
    p = log_p.exp()
    taken = log_p.gather(1, actions.long().reshape(-1, 1)).squeeze(1)
    scores = []
    for value, per_action in ((taken, log_p), (taken.exp(), p)):
        mean = (p * per_action).sum(-1)  # E[f(a)] under pi, per state
        var = (p * per_action**2).sum(-1) - mean**2
        spread = float(var.clamp(min=0).sum().sqrt())
        scores.append(float((value - mean).sum()) / spread if spread > 1e-9 else 0.0)
    return scores[0], scores[1]


def _non_finite(x: Any) -> bool:
    if isinstance(x, torch.Tensor):
        return x.is_floating_point() and x.numel() > 0 and not bool(torch.isfinite(x.detach()).all())
    if isinstance(x, (list, tuple)):
        return any(_non_finite(v) for v in x)
    return False


def _user_frame() -> str:
    """file:line of the innermost caller outside torch and this module: where the op was written."""
    for frame in reversed(traceback.extract_stack()):
        if "/torch/" not in frame.filename and frame.filename != __file__:
            return f"{Path(frame.filename).name}:{frame.lineno} ({frame.line})"
    return "unknown place"


class _FirstNonFinite(TorchFunctionMode):
    """Watches every torch call; remembers the first whose output is NaN/Inf while its inputs are finite."""

    def __init__(self) -> None:
        super().__init__()
        self.found: str | None = None
        self.made: set[int] = set()  # ids of tensors computed under this mode (not data, not parameters)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if self.found is None and _non_finite(out):
            inputs = [x for x in list(args) + list((kwargs or {}).values()) if _non_finite(x)]
            name = getattr(func, "__name__", None) or repr(func)
            if not inputs:
                self.found = f"{name} at {_user_frame()}"
            elif any(isinstance(x, torch.Tensor) and id(x) not in self.made for x in inputs):
                self.found = (
                    f"{name} at {_user_frame()}, whose input was already NaN/Inf: it came in with the batch or the weights"
                )
        if isinstance(out, torch.Tensor):
            self.made.add(id(out))
        return out


def first_nonfinite_op(model: nn.Module, replay: Callable[[], Any]) -> str | None:
    """Replay a batch under anomaly detection; the first op that made a NaN/Inf, forward or backward.

    The model's gradients are saved and put back, so a replay in ``warn`` mode changes nothing.
    """
    saved = {name: None if p.grad is None else p.grad.clone() for name, p in model.named_parameters()}
    mode = _FirstNonFinite()
    found = None
    try:
        with warnings.catch_warnings(record=True) as caught, torch.autograd.detect_anomaly(check_nan=True):
            warnings.simplefilter("always")
            try:
                with mode:
                    replay()
            except RuntimeError as exc:  # anomaly mode: a backward function returned NaN
                trace = " ".join(str(w.message) for w in caught)
                lines = [line.strip() for line in trace.splitlines() if line.strip().startswith("File ")]
                origin = f"; its forward: {lines[-1]}" if lines else ""
                found = f"backward: {str(exc).splitlines()[0]}{origin}"
        if mode.found is not None:
            found = f"forward: {mode.found}"
    finally:
        for name, p in model.named_parameters():
            p.grad = saved[name]
    return found


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

    def check_stale_grads(self) -> list[Trip]:
        trips = []
        for name, p in self.model.named_parameters():
            if p.grad is not None and bool(p.grad.any()):
                trips.append(
                    Trip(
                        "stale_grad",
                        name,
                        f"gradient of norm {float(p.grad.norm()):.3e} left from the previous update before this "
                        "update's backward: call optimizer.zero_grad() before backward, every update",
                    )
                )
        return trips

    def check_off_policy(self, logits: torch.Tensor, actions: torch.Tensor) -> list[Trip]:
        if len(actions) < MIN_OFF_POLICY_STEPS:
            return []
        z_log, z_p = off_policy_scores(logits, actions)
        if min(z_log, z_p) > OFF_POLICY_Z or max(z_log, z_p) < -OFF_POLICY_Z:
            how = "MORE likely than samples (argmax or a fixed action?)" if z_log > 0 else "LESS likely than samples"
            detail = (
                f"the {len(actions)} actions of this batch are {how} of the policy being trained: "
                f"log-prob z = {z_log:+.1f}, prob z = {z_p:+.1f} (|z| > {OFF_POLICY_Z:g}); acting must sample "
                "pi(.|current obs) and the batch must pair each action with the observation it was chosen on"
            )
            return [Trip("off_policy_actions", "policy", detail)]
        return []

    # -- hook points ---------------------------------------------------------------------------
    def before_backward(self, update: int, env_step: int) -> None:
        """Just before an update's first backward pass: every gradient must be cleared."""
        trips = self.check_stale_grads()
        if trips:
            self._handle(trips, update, env_step, None, None, None)

    def check_actions(self, update: int, env_step: int, logits: torch.Tensor, actions: Any) -> None:
        """Policy-gradient batches: are the actions played samples of the policy being trained?"""
        trips = self.check_off_policy(logits, torch.as_tensor(actions))
        if trips:
            self._handle(trips, update, env_step, None, None, None)

    def after_backward(
        self,
        update: int,
        env_step: int,
        loss: torch.Tensor | float | None,
        entropy: float | None = None,
        batch: Mapping[str, Any] | Callable[[], Mapping[str, Any]] | None = None,
        replay: Callable[[], Any] | None = None,
    ) -> None:
        """``replay`` recomputes this update's loss and backward on the same batch; it runs only
        when a NaN/Inf tripped, to name the operation that produced it."""
        trips = self.check_backward(update, loss, entropy)
        first_nan = next((i for i, t in enumerate(trips) if t.check in ("nan_loss", "nan_grad")), None)
        if replay is not None and first_nan is not None:
            origin = first_nonfinite_op(self.model, replay)
            if origin is not None:
                t = trips[first_nan]
                trips[first_nan] = Trip(t.check, t.where, f"{t.detail}; first NaN/Inf: {origin}")
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
