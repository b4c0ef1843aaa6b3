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
        # "ALE/Pong-v5" and "module:EnvId" would make a nested or shell-unfriendly path.
        safe_env = env.replace("/", "_").replace(":", "_")
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


def _number(x: float) -> str:
    """A return as people write it: no trailing zeros, at most 2 decimals.

    >>> _number(475.0), _number(-20.35), _number(0.125)
    ('475', '-20.35', '0.12')
    """
    return f"{x:.2f}".rstrip("0").rstrip(".")


def ending_line(summary: dict[str, Any]) -> str:
    """What happened, in one line, from a run's summary.json fields.

    >>> base = {"episodes": 57, "solved_threshold": 475.0, "mean_return_last_20": 480.1}
    >>> print(ending_line({**base, "solved_at_env_step": 12880, "solved_at_seconds": 9.37,
    ...                    "solved_mean_return_last_20": 478.5, "best_mean_return_last_20": 500.0}))
    solved at env step 12880 after 9.4 s (mean of the last 20 returns 478.5 >= threshold 475)
    >>> print(ending_line({**base, "solved_at_env_step": None, "best_mean_return_last_20": 212.25}))
    not solved: best mean of 20 was 212.25 (threshold 475)
    >>> print(ending_line({**base, "episodes": 7, "solved_at_env_step": None, "best_mean_return_last_20": None,
    ...                    "mean_return_last_20": 22.0}))
    not solved: only 7 episodes, fewer than the 20 the solved test averages (their mean was 22; threshold 475)
    >>> print(ending_line({"episodes": 30, "solved_threshold": None, "solved_at_env_step": None,
    ...                    "best_mean_return_last_20": -20.35, "mean_return_last_20": -20.5}))
    no solved threshold (set --target-return): best mean of 20 was -20.35
    >>> print(ending_line({"episodes": 0, "solved_threshold": None, "mean_return_last_20": None}))
    no episode finished
    """
    episodes, threshold = summary.get("episodes", 0), summary.get("solved_threshold")
    best = summary.get("best_mean_return_last_20")
    if summary.get("solved_at_env_step") is not None:
        mean = summary.get("solved_mean_return_last_20")
        mean_text = f"mean of the last {SUMMARY_WINDOW} returns {_number(mean)} >= " if mean is not None else ""
        return (
            f"solved at env step {summary['solved_at_env_step']} after {summary['solved_at_seconds']:.1f} s "
            f"({mean_text}threshold {_number(threshold)})"
        )
    if not episodes:
        return "no episode finished"
    if best is not None:
        found = f"best mean of {SUMMARY_WINDOW} was {_number(best)}"
    else:
        found = f"their mean was {_number(summary['mean_return_last_20'])}"
    if threshold is None:
        if best is None:
            return f"no solved threshold (set --target-return): only {episodes} episode{'s' * (episodes != 1)}, {found}"
        return f"no solved threshold (set --target-return): {found}"
    if best is None:
        return (
            f"not solved: only {episodes} episode{'s' * (episodes != 1)}, fewer than the {SUMMARY_WINDOW} "
            f"the solved test averages ({found}; threshold {_number(threshold)})"
        )
    return f"not solved: {found} (threshold {_number(threshold)})"


def announce(run_dir: Path | None, interrupted: bool = False) -> None:
    """Tell the user what happened and where the results are (or how to resume); silent on non-main ranks.

    The ending line is read back from summary.json, which every algorithm writes just before.
    """
    if run_dir is None:
        return
    latest = run_dir / "checkpoints" / "latest.pt"
    if interrupted:
        print(f"interrupted: checkpoint at {latest} (resume with --resume {latest})")
        return
    summary_path = run_dir / "summary.json"
    if summary_path.is_file():
        print(ending_line(json.loads(summary_path.read_text())))
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
        self.solved_mean: float | None = None  # the mean of 20 that first reached the threshold
        self.best_mean: float | None = None  # the best mean of 20 consecutive returns so far

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
        if len(self.returns) >= SUMMARY_WINDOW:
            mean = self.mean_last()
            self.best_mean = mean if self.best_mean is None else max(self.best_mean, mean)
            if self.threshold is not None and not self.solved and mean >= self.threshold:
                self.solved_at_env_step = env_step
                self.solved_at_seconds = seconds
                self.solved_mean = mean

    def state_dict(self) -> dict[str, Any]:
        keys = ("returns", "lengths", "ema", "solved_at_env_step", "solved_at_seconds", "solved_mean", "best_mean")
        return {k: getattr(self, k) for k in keys}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            setattr(self, key, value)
        # Checkpoints written before best_mean and solved_mean existed: both follow from the
        # returns, which every checkpoint holds in full, so the resumed run is still exact.
        if "best_mean" not in state or "solved_mean" not in state:
            means = window_means(self.returns)
            self.best_mean = max(means) if means else None
            if self.solved and self.threshold is not None:
                self.solved_mean = next((m for m in means if m >= self.threshold), None)


def window_means(returns: list[float], n: int = SUMMARY_WINDOW) -> list[float]:
    """The mean of every ``n`` consecutive returns, in order (empty with fewer than ``n``).

    >>> window_means([1.0, 2.0, 3.0, 4.0], n=2)
    [1.5, 2.5, 3.5]
    """
    return [float(np.mean(returns[i - n : i])) for i in range(n, len(returns) + 1)]


def summary_dict(
    algo: str, env: str, seed: int, env_steps: int, wall_seconds: float, stats: EpisodeStats, workers: int = 1
) -> dict[str, Any]:
    """The fields of summary.json: DESIGN.md's list (other tools read these), then two added ones."""
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
        # Added later; existing tools read only the fields above.
        "best_mean_return_last_20": stats.best_mean,
        "solved_mean_return_last_20": stats.solved_mean,
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
