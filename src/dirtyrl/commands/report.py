"""``dirtyrl report RUN_DIR``: one PNG page of a run, for a quick look without TensorBoard.

Across the top, episode returns (dots) with their EMA and the mean of the last 20 returns
(the ``summary.json`` number), against the random policy on the same env: the seed's first
tip, a baseline that tells learning from noise. ``--baseline RUN_DIR`` names a random run;
without it the report plays one (``RUN_DIR/baseline-random/``, reused next time).

Under it, one small panel per curve, each on its own y scale, in a grid that grows with their
number (each only when the run logged it): every ``policy/*`` tag (entropy with log A as the
ceiling), every ``losses/*`` tag, the gradient norm (``debug/global_grad_norm`` from
``--debug.grad-stats-every``, else any ``*grad_norm`` tag), and epsilon (``charts/epsilon``, DQN).

``write_report(run_dir, out)`` is the function other commands call; ``draw_report`` returns the
figure and its axes by name, for tests. The run's TensorBoard event files are read with
TensorBoard's own ``EventAccumulator``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dirtyrl.errors import UserError
from dirtyrl.telemetry import SUMMARY_WINDOW, window_means

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

RETURN = "charts/episode_return"
EMA = "charts/return_ema"
ENTROPY = "policy/entropy"
EPSILON = "charts/epsilon"
GRAD_NORM = "debug/global_grad_norm"


def read_scalars(run_dir: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every scalar tag of the run: ``{tag: (steps, values)}``, all events (no down-sampling)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tb = Path(run_dir) / "tb"
    if not tb.is_dir():
        raise UserError(f"{run_dir} has no tb/ directory; is it a dirty-rl run directory?")
    acc = EventAccumulator(str(tb), size_guidance={"scalars": 0})
    acc.Reload()
    out = {}
    for tag in acc.Tags()["scalars"]:
        events = acc.Scalars(tag)
        out[tag] = (np.array([e.step for e in events]), np.array([e.value for e in events]))
    return out


def ema(values: np.ndarray, factor: float) -> np.ndarray:
    """The same EMA the runs log (started at the first value).

    >>> ema(np.array([0.0, 1.0]), 0.5).tolist()
    [0.0, 0.5]
    """
    out, acc = np.empty(len(values)), None
    for i, v in enumerate(values):
        acc = v if acc is None else factor * acc + (1 - factor) * v
        out[i] = acc
    return out


def random_baseline(run_dir: Path, config: dict, episodes: int) -> Path:
    """A random-policy run on the run's env config, made once in ``RUN_DIR/baseline-random``."""
    out = Path(run_dir) / "baseline-random"
    if (out / "tb").is_dir() and (out / "summary.json").exists():
        return out
    from dirtyrl.algos import random_policy
    from dirtyrl.config import EnvConfig, RunConfig

    env_cfg = config.get("env", {})
    cfg = random_policy.Config(
        env=EnvConfig(**{k: env_cfg[k] for k in ("env", "env_kwargs", "actions", "sticky") if k in env_cfg}),
        run=RunConfig(seed=config.get("run", {}).get("seed", 1), total_episodes=episodes, run_dir=str(out), progress="off"),
    )
    with contextlib.redirect_stdout(io.StringIO()):
        random_policy.train(cfg)
    return out


def panel_tags(scalars: dict[str, tuple[np.ndarray, np.ndarray]]) -> list[str]:
    """The small panels after the returns, one tag each, in page order.

    Every ``policy/*`` tag (entropy first), every ``losses/*`` tag, the gradient norm and epsilon,
    each where the run logged it. One tag per axis: a TD loss near 0.001 drawn beside Q-values
    of +-1.5 on a shared axis reads as a flat line.

    >>> tags = ["losses/td_loss", "charts/epsilon", "losses/q_values", "policy/entropy", "debug/global_grad_norm"]
    >>> panel_tags({t: None for t in tags + ["charts/episode_return", "debug/grad_norm/fc.weight"]})
    ['policy/entropy', 'losses/q_values', 'losses/td_loss', 'debug/global_grad_norm', 'charts/epsilon']
    """
    policy = sorted((t for t in scalars if t.startswith("policy/")), key=lambda t: (t != ENTROPY, t))
    losses = sorted(t for t in scalars if t.startswith("losses/"))
    grad = [GRAD_NORM] if GRAD_NORM in scalars else sorted(t for t in scalars if t.endswith("grad_norm"))
    return policy + losses + grad + ([EPSILON] if EPSILON in scalars else [])


def grid_shape(panels: int) -> tuple[int, int]:
    """(rows, columns) of the small panels: one column for one curve, two up to four, then three.

    >>> [grid_shape(n) for n in (0, 1, 2, 4, 5, 7)]
    [(0, 1), (1, 1), (1, 2), (2, 2), (2, 3), (3, 3)]
    """
    cols = 1 if panels <= 1 else 2 if panels <= 4 else 3
    return -(-panels // cols), cols


PAGE_WIDTH = 10.0  # inches, at DPI: a 1000-pixel page
RETURNS_HEIGHT = 3.6  # the returns panel, across the page
PANEL_HEIGHT = 2.3  # each row of small panels
MARGIN_HEIGHT = 0.8  # title and x labels
DPI = 100


def page_size(panels: int) -> tuple[int, int]:
    """The PNG's (width, height) in pixels for ``panels`` small panels under the returns.

    >>> page_size(0), page_size(3)
    ((1000, 440), (1000, 900))
    """
    rows, _ = grid_shape(panels)
    return round(PAGE_WIDTH * DPI), round((RETURNS_HEIGHT + rows * PANEL_HEIGHT + MARGIN_HEIGHT) * DPI)


def _fmt(x: float) -> str:
    """A value for a legend: 4 significant digits, no scientific notation for ordinary returns.

    >>> _fmt(14.35), _fmt(-1.2), _fmt(0.0012345), _fmt(475.0)
    ('14.35', '-1.2', '0.001234', '475')
    """
    return f"{x:.4g}"


def draw_report(
    scalars: dict[str, tuple[np.ndarray, np.ndarray]],
    base_scalars: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
    ema_factor: float = 0.99,
    title: str = "",
) -> tuple[Figure, dict[str, Axes]]:
    """The report page as a matplotlib figure, and its axes by name (``"returns"`` and each panel tag).

    The returns panel spans the page: episode returns (dots), their EMA and the mean of the last
    20 returns (``telemetry.window_means``, the number ``summary.json`` calls
    ``mean_return_last_20``), each labelled with its final value, and the random policy's mean
    +- std when ``base_scalars`` holds one. The two smoothers disagree on purpose: a 0.99 EMA
    remembers ~100 episodes, so on a run that improved late it can sit far below the recent
    mean (a Pong run whose last 20 episodes averaged +14.35 ended with its EMA at -1.2).
    Under it, one small panel per ``panel_tags`` tag, each on its own y scale, all on one
    env-step range.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    base_scalars = base_scalars or {}
    tags = panel_tags(scalars)
    rows, cols = grid_shape(len(tags))
    width, height = page_size(len(tags))
    fig = plt.figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    grid = fig.add_gridspec(1 + rows, cols, height_ratios=[RETURNS_HEIGHT] + [PANEL_HEIGHT] * rows)
    axes = {"returns": fig.add_subplot(grid[0, :])}
    for i, tag in enumerate(tags):
        axes[tag] = fig.add_subplot(grid[1 + i // cols, i % cols])
    last_step = max((int(steps.max()) for steps, _ in scalars.values() if len(steps)), default=0)

    ax = axes["returns"]
    if RETURN in scalars and len(scalars[RETURN][1]):
        steps, values = scalars[RETURN]
        smoothed = ema(values, ema_factor)
        ax.plot(steps, values, ".", ms=3, alpha=0.35, color="C0", label=f"episode return ({len(values)} episodes)")
        ax.plot(steps, smoothed, "-", lw=1.5, color="C1", label=f"EMA {ema_factor}: final {_fmt(smoothed[-1])}")
        means = window_means(values.tolist())
        if means:
            # Window i ends at episode i + 19: draw each mean at the step of its last episode.
            ax.plot(
                steps[SUMMARY_WINDOW - 1 :],
                means,
                "-",
                lw=2.2,
                color="C2",
                label=f"mean of last {SUMMARY_WINDOW}: final {_fmt(means[-1])}",
            )
        else:
            ax.plot(
                [], [], " ", label=f"mean of last {SUMMARY_WINDOW}: only {len(values)} episodes, mean {_fmt(values.mean())}"
            )
    else:
        ax.text(0.5, 0.5, f"no {RETURN} logged yet", ha="center", transform=ax.transAxes)
    b_values = base_scalars.get(RETURN, (np.array([]), np.array([])))[1]
    if len(b_values):
        mean, std = float(b_values.mean()), float(b_values.std())
        ax.axhline(mean, color="gray", ls="--", label=f"random policy {_fmt(mean)} ± {_fmt(std)} ({len(b_values)} episodes)")
        ax.axhspan(mean - std, mean + std, color="gray", alpha=0.15)
    ax.set_ylabel("return")
    ax.set_xlabel("env step")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best", fontsize=8)
    ax.set_title(title, fontsize=10)

    for i, tag in enumerate(tags):
        ax = axes[tag]
        steps, values = scalars[tag]
        ax.plot(steps, values, "-" if len(values) > 1 else "o", lw=1.2, ms=3)
        ax.set_title(f"{tag}  (last {_fmt(values[-1])})" if len(values) else tag, fontsize=9)
        if tag == ENTROPY and ENTROPY in base_scalars:  # the random policy logs log A, the ceiling
            ceiling = float(base_scalars[ENTROPY][1][0])
            ax.axhline(ceiling, color="gray", ls=":", label=f"random policy (log A = {_fmt(ceiling)})")
            ax.legend(loc="best", fontsize=7)
        if tag == EPSILON:
            ax.set_ylim(0, 1.05)
        elif tag.endswith("grad_norm"):
            finite = values[np.isfinite(values)]
            # Log scale only where it helps: a norm spanning decades (an explosion, a vanishing).
            if len(finite) and finite.min() > 0 and finite.max() / finite.min() > 30:
                ax.set_yscale("log")
        ax.tick_params(labelsize=7)
        ax.yaxis.get_offset_text().set_fontsize(7)
        ax.xaxis.get_offset_text().set_fontsize(7)
        if i + cols >= len(tags):  # nothing below it in the grid
            ax.set_xlabel("env step", fontsize=8)
    for ax in axes.values():
        ax.grid(alpha=0.3)
        if last_step:
            ax.set_xlim(0, last_step * 1.02)
    fig.tight_layout()
    return fig, axes


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def write_report(run_dir: Path, out: Path | None = None, *, baseline: Path | bool = True) -> Path:
    """Draw ``run_dir``'s report page as a PNG and return its path (default ``RUN_DIR/report.png``).

    ``run_dir`` needs ``tb/``; ``config.json`` and ``summary.json`` are used when there (for the
    EMA factor and the title; extra summary fields are ignored). ``baseline``: a random-policy run
    directory (with ``tb/``) to draw beside the returns; ``True`` takes ``RUN_DIR/baseline-random/``
    when it exists and draws none otherwise (it never plays one: ``dirtyrl report`` does);
    ``False`` draws none.
    """
    run_dir = Path(run_dir)
    out = Path(out) if out is not None else run_dir / "report.png"
    scalars = read_scalars(run_dir)
    if baseline is True:
        auto = run_dir / "baseline-random"
        baseline = auto if (auto / "tb").is_dir() else False
    base_scalars = read_scalars(baseline) if baseline is not False else {}
    config, summary = _read_json(run_dir / "config.json"), _read_json(run_dir / "summary.json")
    env = config.get("env", {}).get("env") or summary.get("env", "?")
    title = f"{summary.get('algo', '?')} on {env}  ({run_dir})"
    if summary.get("episodes") is not None and summary.get("env_steps") is not None:
        title += f"\n{summary['episodes']} episodes, {summary['env_steps']} env steps"
        if summary.get("mean_return_last_20") is not None:
            title += f"; summary.json mean_return_last_20 {_fmt(summary['mean_return_last_20'])}"
    fig, _ = draw_report(scalars, base_scalars, config.get("run", {}).get("ema", 0.99), title)
    import matplotlib.pyplot as plt

    fig.savefig(out)
    plt.close(fig)
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", help="a run directory (holding tb/ and config.json)")
    parser.add_argument("--baseline", default=None, help="a random-policy run dir to compare with (default: run one)")
    parser.add_argument("--baseline-episodes", type=int, default=20, help="episodes of the random run made (default: 20)")
    parser.add_argument("--no-baseline", action="store_true", help="leave the random baseline out")
    parser.add_argument("--out", default=None, help="PNG to write (default: RUN_DIR/report.png)")


def run(args: argparse.Namespace) -> int:
    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise UserError(f"run dir {run_dir} does not exist")
    if args.baseline_episodes < 1:
        raise UserError(f"--baseline-episodes must be >= 1, got {args.baseline_episodes}")
    baseline = None
    if args.baseline:
        baseline = Path(args.baseline)
        if not (baseline / "tb").is_dir():
            raise UserError(f"--baseline {baseline} has no tb/ directory; is it a run directory?")
    elif not args.no_baseline and all((run_dir / "baseline-random" / f).exists() for f in ("tb", "summary.json")):
        baseline = run_dir / "baseline-random"  # made earlier (or by `dirtyrl watch`): no config.json needed
        print(f"random baseline: {baseline} (made earlier)")
    elif not args.no_baseline:
        config_path = run_dir / "config.json"
        if not config_path.exists():
            raise UserError(f"{run_dir} has no config.json to take the env from; pass --baseline or --no-baseline")
        print(f"random baseline: {run_dir / 'baseline-random'} ({args.baseline_episodes} episodes, made once)")
        baseline = random_baseline(run_dir, json.loads(config_path.read_text()), args.baseline_episodes)
    out = write_report(run_dir, Path(args.out) if args.out else None, baseline=baseline or False)
    print(f"report: {out}")
    return 0
