"""Debugging instruments, attached to a training run with one call.

``instruments = attach(cfg.debug, model, logger, run_dir)`` builds only the instruments whose
flags are on and returns an ``Instruments`` object whose hook points the algorithms call. With
every flag off each hook point returns at once (benchmarks/instruments_overhead.py measures
it). Every hook it registers is per module or per tensor and is kept as a ``RemovableHandle``;
``close()`` removes them all, restores the terminal and finishes the video files, and the
algorithms call it in a ``finally:``. It is also a context manager::

    with attach(cfg.debug, policy, logger, run_dir) as instruments:
        ...  # instruments.after_backward(update, env_step, loss, entropy)

Which flag switches on which instrument (docs/DEBUGGING.md has the details and every tag):

==========================  ==========================  ============================================
flag                         module                      hook points it uses
==========================  ==========================  ============================================
--debug.inspect-every N      debug/inspect.py            on_env_step, on_episode_end
--debug.render               debug/render.py             on_env_step, on_episode_end
--debug.video-every N        debug/render.py             on_env_step, on_episode_end
--debug.grad-stats-every N   debug/gradients.py          after_backward, after_step
--debug.hooks NAME ...       debug/hooks.py              forward/backward hooks; logged at after_backward
--debug.trap warn|stop|...   debug/traps.py              before_backward, check_actions, after_backward, after_step
                                                         (+ forward hooks)
==========================  ==========================  ============================================
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from dirtyrl.config import DebugConfig
from dirtyrl.debug.traps import TrapTripped, Trip
from dirtyrl.telemetry import RunLogger

__all__ = ["Instruments", "TrapTripped", "Trip", "attach"]


class Instruments:
    """Hook points called by the algorithms; the instruments behind them come from flags.

    Instruments that write files (inspection, rendering, videos) need ``run_dir``; on a
    non-main rank it is None and they stay off, while traps still guard every rank.
    """

    def __init__(self, cfg: DebugConfig, model: torch.nn.Module, logger: RunLogger, run_dir: Path | None) -> None:
        self.cfg = cfg
        self.model = model
        self.logger = logger
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.inspector = self.renderer = self.gradients = self.hooks = self.traps = None
        try:
            self._build(cfg)
        except BaseException:
            self.close()  # a bad flag (unknown module name) must not leave hooks behind
            raise
        self._on_step = tuple(i for i in (self.inspector, self.renderer) if i is not None)
        self._on_backward = any(i is not None for i in (self.gradients, self.hooks, self.traps))
        self._on_update = any(i is not None for i in (self.gradients, self.traps))

    def _build(self, cfg: DebugConfig) -> None:
        # Optional dependencies (Pillow, pygame) are imported only when their flag is on.
        if cfg.inspect_every > 0 and self.run_dir is not None:
            from dirtyrl.debug.inspect import PreprocessInspector

            self.inspector = PreprocessInspector(self.run_dir / "inspect", self.logger, cfg.inspect_every)
        if (cfg.render or cfg.video_every > 0) and self.run_dir is not None:
            from dirtyrl.debug.render import Renderer

            self.renderer = Renderer(self.run_dir, render=cfg.render, video_every=cfg.video_every)
        if cfg.grad_stats_every > 0:
            from dirtyrl.debug.gradients import GradientMonitor

            self.gradients = GradientMonitor(self.model, self.logger, cfg.grad_stats_every)
        if cfg.hooks:
            from dirtyrl.debug.hooks import HookRecorder

            self.hooks = HookRecorder(self.model, cfg.hooks).attach()
        if cfg.trap != "off":
            from dirtyrl.debug.traps import Traps

            self.traps = Traps(
                self.model,
                self.logger,
                cfg.trap,
                self.run_dir,
                max_grad_norm=cfg.trap_grad_norm,
                min_entropy=cfg.trap_min_entropy,
                entropy_until=cfg.trap_entropy_until,
                dead_fraction=cfg.trap_dead_fraction,
            ).attach()

    @property
    def active(self) -> bool:
        return bool(self._on_step or self._on_backward)

    @property
    def watches_steps(self) -> bool:
        """Whether an instrument looks at every env step (inspection, rendering, video)."""
        return bool(self._on_step)

    def on_env_step(self, env: Any, env_step: int) -> None:
        """After every env step of the main process (inspection, rendering, video)."""
        if not self._on_step:
            return
        for instrument in self._on_step:
            instrument.on_env_step(env, env_step)

    def on_episode_end(self, episode: int) -> None:
        """After every episode of the main process; ``episode`` is the index of the one that ended."""
        if not self._on_step:
            return
        for instrument in self._on_step:
            instrument.on_episode_end(episode)

    @property
    def checks_actions(self) -> bool:
        """Whether ``check_actions`` does anything (a trap mode is on): skip building its inputs otherwise."""
        return self.traps is not None

    def before_backward(self, update: int, env_step: int) -> None:
        """Just before an update's first backward pass, after zero_grad (traps: stale gradients)."""
        if self.traps is not None:
            self.traps.before_backward(update, env_step)

    def check_actions(self, update: int, env_step: int, logits: torch.Tensor, actions: Any) -> None:
        """Policy gradient: the batch's logits (before the step) and the actions played (traps)."""
        if self.traps is not None:
            self.traps.check_actions(update, env_step, logits, actions)

    def after_backward(
        self,
        update: int,
        env_step: int,
        loss: torch.Tensor | float | None,
        entropy: float | None = None,
        batch: Mapping[str, Any] | Callable[[], Mapping[str, Any]] | None = None,
        replay: Callable[[], Any] | None = None,
    ) -> None:
        """After the backward pass, before the optimizer step (traps, gradient statistics).

        ``batch`` (a dict, or a function returning one, so that building it costs nothing
        unless a trap needs it) goes into the ``--debug.trap stop`` dump; ``replay`` (recompute
        the loss and backward on the same batch) lets a NaN trap name the op that made it. Statistics are logged
        before the traps run, so a run that stops still has the numbers of its last update.
        """
        if not self._on_backward:
            return
        if self.hooks is not None:
            self.hooks.log(self.logger, env_step)
        if self.gradients is not None:
            self.gradients.after_backward(update, env_step)
        if self.traps is not None:
            self.traps.after_backward(update, env_step, loss, entropy, batch, replay)

    def after_step(self, update: int, env_step: int) -> None:
        """After the optimizer step (update-to-weight ratios; NaN parameters before any checkpoint)."""
        if not self._on_update:
            return
        if self.gradients is not None:
            self.gradients.after_step()
        if self.traps is not None:
            self.traps.after_step(update, env_step)

    def close(self) -> None:
        """Remove every hook, restore the terminal and finish video files; safe to call twice."""
        for instrument in (self.hooks, self.traps):
            if instrument is not None:
                instrument.remove()
        if self.renderer is not None:
            self.renderer.close()

    def __enter__(self) -> Instruments:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def attach(cfg: DebugConfig, model: torch.nn.Module, logger: RunLogger, run_dir: Path | None = None) -> Instruments:
    """Build the instruments that ``cfg`` switches on, hooked to ``model``; call ``close()`` at the end."""
    return Instruments(cfg, model, logger, run_dir)
