"""Debugging instruments, attached to a training run with one call.

``attach(cfg.debug, ...)`` returns an ``Instruments`` object whose hook points the algorithms
call; with every flag off each hook point returns at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from dirtyrl.config import DebugConfig
from dirtyrl.telemetry import RunLogger


class Instruments:
    """Hook points called by the algorithms; the instruments behind them come from flags."""

    def __init__(self, cfg: DebugConfig, model: torch.nn.Module, logger: RunLogger, run_dir: Path | None) -> None:
        self.cfg = cfg
        self.model = model
        self.logger = logger
        self.run_dir = run_dir

    def on_env_step(self, env: Any, env_step: int) -> None:
        """After every env step of the main process (inspection, rendering, video)."""

    def on_episode_end(self, episode: int) -> None:
        """After every episode of the main process."""

    def after_backward(self, update: int, env_step: int, loss: torch.Tensor, entropy: float | None = None) -> None:
        """After the backward pass, before the optimizer step (traps, gradient statistics)."""

    def after_step(self, update: int, env_step: int) -> None:
        """After the optimizer step (update-to-weight ratios)."""

    def close(self) -> None:
        """Remove every hook and close files."""


def attach(cfg: DebugConfig, model: torch.nn.Module, logger: RunLogger, run_dir: Path | None = None) -> Instruments:
    return Instruments(cfg, model, logger, run_dir)
