"""Run directory, TensorBoard logger, episode statistics, summary.json, progress display.

One ``RunLogger`` is created in ``train()`` and passed explicitly to whatever logs; it writes
only on the main process (``enabled=False`` elsewhere), and every scalar carries the global
env step.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from dirtyrl.errors import UserError

SUMMARY_WINDOW = 20


def make_run_dir(algo: str, env: str, run_dir: str | None, resuming: bool = False) -> Path:
    """``run_dir`` if given, else ``runs/<algo>-<env>-<timestamp>``; created with checkpoints/.

    A fresh run never writes over an earlier run's checkpoint: that is a UserError unless the
    run is resuming.
    """
    if run_dir is None:
        safe_env = env.replace("/", "_")
        run_dir = os.path.join("runs", f"{algo}-{safe_env}-{time.strftime('%Y%m%d-%H%M%S')}")
    path = Path(run_dir)
    latest = path / "checkpoints" / "latest.pt"
    if latest.exists() and not resuming:
        raise UserError(f"run dir {path} already holds a run; continue it with --resume {latest} or pick another --run-dir")
    (path / "checkpoints").mkdir(parents=True, exist_ok=True)
    return path


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write then rename, so a reader (or a crash) never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def start_run(run_dir: Path | None, config: dict[str, Any], logger: RunLogger) -> None:
    """Save the resolved config as config.json and as TensorBoard text (main process only)."""
    if run_dir is None:
        return
    write_json_atomic(run_dir / "config.json", config)
    logger.text("config", "```\n" + json.dumps(config, indent=2) + "\n```")


def announce(run_dir: Path | None, interrupted: bool = False) -> None:
    """Tell the user where the results are (or how to resume); silent on non-main ranks."""
    if run_dir is None:
        return
    latest = run_dir / "checkpoints" / "latest.pt"
    if interrupted:
        print(f"interrupted: checkpoint at {latest} (resume with --resume {latest})")
        return
    print(
        f"run dir:        {run_dir}\n"
        f"tensorboard:    tensorboard --logdir {run_dir / 'tb'}\n"
        f"summary:        {run_dir / 'summary.json'}\n"
        f"learning curve: {run_dir / 'learning_curve.png'}"
    )


def ema_update(ema: float | None, value: float, factor: float) -> float:
    """Exponential moving average, started at the first value (Karpathy's running_reward).

    >>> ema_update(None, -21.0, 0.99)
    -21.0
    >>> round(ema_update(-21.0, -19.0, 0.99), 2)
    -20.98
    """
    return value if ema is None else factor * ema + (1.0 - factor) * value


class RunLogger:
    """TensorBoard writer for one run; a no-op when ``enabled`` is False (non-zero ranks)."""

    def __init__(self, run_dir: Path | None, enabled: bool = True) -> None:
        self.writer = None
        if enabled and run_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(run_dir / "tb"))

    def scalar(self, tag: str, value: float, step: int) -> None:
        if self.writer is not None:
            self.writer.add_scalar(tag, float(value), step)

    def histogram(self, tag: str, values: Any, step: int) -> None:
        if self.writer is not None:
            self.writer.add_histogram(tag, values, step)

    def image(self, tag: str, image_hwc: np.ndarray, step: int) -> None:
        if self.writer is not None:
            self.writer.add_image(tag, image_hwc, step, dataformats="HWC")

    def text(self, tag: str, text: str, step: int = 0) -> None:
        if self.writer is not None:
            self.writer.add_text(tag, text, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class EpisodeStats:
    """Returns of finished episodes, their EMA, and when the run first counted as solved.

    Solved means: the mean of the last 20 episode returns reached ``threshold``.
    """

    def __init__(self, ema_factor: float, threshold: float | None) -> None:
        self.ema_factor = ema_factor
        self.threshold = threshold
        self.returns: list[float] = []
        self.lengths: list[int] = []
        self.ema: float | None = None
        self.solved_at_env_step: int | None = None
        self.solved_at_seconds: float | None = None

    @property
    def episodes(self) -> int:
        return len(self.returns)

    def mean_last(self, n: int = SUMMARY_WINDOW) -> float | None:
        return float(np.mean(self.returns[-n:])) if self.returns else None

    @property
    def solved(self) -> bool:
        return self.solved_at_env_step is not None

    def add(self, episode_return: float, length: int, env_step: int, seconds: float) -> None:
        self.returns.append(float(episode_return))
        self.lengths.append(int(length))
        self.ema = ema_update(self.ema, float(episode_return), self.ema_factor)
        if (
            self.threshold is not None
            and not self.solved
            and len(self.returns) >= SUMMARY_WINDOW
            and self.mean_last() >= self.threshold
        ):
            self.solved_at_env_step = env_step
            self.solved_at_seconds = seconds

    def state_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("returns", "lengths", "ema", "solved_at_env_step", "solved_at_seconds")}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            setattr(self, key, value)


def summary_dict(
    algo: str, env: str, seed: int, env_steps: int, wall_seconds: float, stats: EpisodeStats, workers: int = 1
) -> dict[str, Any]:
    """The fields of summary.json, exactly as DESIGN.md lists them (other tools read these)."""
    return {
        "algo": algo,
        "env": env,
        "seed": seed,
        "env_steps": env_steps,
        "episodes": stats.episodes,
        "wall_seconds": round(wall_seconds, 3),
        "steps_per_second": round(env_steps / wall_seconds, 1) if wall_seconds > 0 else 0.0,
        "mean_return_last_20": stats.mean_last(),
        "return_ema": stats.ema,
        "solved_threshold": stats.threshold,
        "solved_at_env_step": stats.solved_at_env_step,
        "solved_at_seconds": stats.solved_at_seconds,
        "workers": workers,
    }


def plot_learning_curve(path: Path, returns: list[float], ema_factor: float, title: str) -> None:
    """Episode returns and their EMA against episodes, as a PNG (matplotlib, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    if returns:
        ema, smoothed = None, []
        for r in returns:
            ema = ema_update(ema, r, ema_factor)
            smoothed.append(ema)
        episodes = np.arange(1, len(returns) + 1)
        ax.plot(episodes, returns, ".", ms=3, alpha=0.4, label="episode return")
        ax.plot(episodes, smoothed, "-", lw=2, label=f"EMA ({ema_factor})")
        ax.legend(loc="lower right")
    ax.set_xlabel("episode")
    ax.set_ylabel("return")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _format_seconds(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class Progress:
    """Console progress: steps, SPS, EMA return, ETA; for Pong one mark per point.

    On a terminal it redraws one live line a few times a second; otherwise (CI, a log file) it
    prints a line every ``period`` seconds. Won points are green, lost ones red.
    """

    def __init__(
        self,
        mode: str,
        total_steps: int | None,
        total_episodes: int | None,
        points: bool = False,
        period: float = 10.0,
        stream: Any = None,
    ) -> None:
        self.stream = stream or sys.stdout
        self.points = points  # per-point marks: Pong, where every non-zero reward is a point
        self.enabled = mode != "off"
        self.live = mode == "auto" and self.stream.isatty()
        self.total_steps = total_steps
        self.total_episodes = total_episodes
        self.period = 0.25 if self.live else period
        self.last_draw = 0.0
        self.marks = ""

    def point(self, won: bool) -> None:
        """Record one Pong point for the current episode's mark string."""
        if not self.points:
            return
        if self.live:
            self.marks += "\033[32m●\033[0m" if won else "\033[31m●\033[0m"
        else:
            self.marks += "+" if won else "-"

    def episode_end(self, episode: int, episode_return: float) -> None:
        if self.enabled and self.marks:
            self._write(f"episode {episode:6d}  return {episode_return:+6.1f}  {self.marks}", final=True)
        self.marks = ""

    def update(
        self, env_step: int, episodes: int, sps: float, ema: float | None, extra: str = "", force: bool = False
    ) -> None:
        now = time.monotonic()
        if not self.enabled or (not force and now - self.last_draw < self.period):
            return
        self.last_draw = now
        remaining = []
        if self.total_steps:
            remaining.append((self.total_steps - env_step) / max(sps, 1e-9))
        if self.total_episodes and episodes:
            remaining.append((self.total_episodes - episodes) * env_step / episodes / max(sps, 1e-9))
        eta = _format_seconds(min(remaining)) if remaining else "-"
        goal = f"/{self.total_steps}" if self.total_steps else ""
        ema_text = f"{ema:8.2f}" if ema is not None else "       -"
        self._write(f"steps {env_step:>9d}{goal}  ep {episodes:6d}  sps {sps:7.0f}  ema {ema_text}  eta {eta}  {extra}")

    def _write(self, text: str, final: bool = False) -> None:
        if self.live:
            self.stream.write("\r\033[K" + text + ("\n" if final else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.live:
            self.stream.write("\n")
            self.stream.flush()
