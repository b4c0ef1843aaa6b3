"""The pong-fast DQN run's learning curve: a small CSV and a two-panel PNG, against CleanRL's curve.

Reads the run's TensorBoard events (``charts/episode_return``, one point per episode at its
final env step). Wall-clock seconds count only time the run was running: a gap of more than
3 minutes between two episodes is a stop and resume, and is removed. Episodes written twice
(played after the last checkpoint, then replayed after a resume) keep their later copy.

Panels: episode return (and the mean of the last 20) against agent steps, with CleanRL's
``dqn_atari.py`` curve digitised from its published 3-seed plot (-14 at 1M, 0 at 2M, +19.5 at
4M, 20.25 at 10M); and against wall-clock minutes.

``--compare CSV=LABEL`` (repeatable) adds the mean-of-20 curve of an earlier run, read from the
CSV this script wrote for it, to both panels.

Run:  python benchmarks/plot_dqn_pong.py [RUN_DIR] [--csv benchmarks/dqn_pong_fast_curve.csv]
      [--png benchmarks/dqn_pong_fast_curve.png] [--label pong-fast] [--compare CSV=LABEL ...]
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

CLEANRL_ANCHORS = [(1_000_000, -14.0), (2_000_000, 0.0), (4_000_000, 19.5), (10_000_000, 20.25)]
RESUME_GAP_SECONDS = 180.0  # the longest Pong episode seen, under load, took well under a minute
WINDOW = 20
COMPARE_COLORS = ("tab:gray", "tab:green", "tab:purple", "tab:red", "tab:brown", "tab:pink", "tab:olive", "tab:cyan")
HERE = Path(__file__).resolve().parent


def read_episodes(run_dir: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(env_step, wall_seconds, episode_return) per episode, resumes de-duplicated."""
    acc = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    events = sorted(acc.Scalars("charts/episode_return"), key=lambda e: e.wall_time)
    kept: list = []
    for e in events:
        while kept and kept[-1].step >= e.step:  # a resume replays from an earlier step
            kept.pop()
        kept.append(e)
    steps = np.array([e.step for e in kept], np.int64)
    wall = np.array([e.wall_time for e in kept])
    gaps = np.diff(wall, prepend=wall[0])
    gaps[gaps > RESUME_GAP_SECONDS] = 0.0
    returns = np.array([e.value for e in kept])
    return steps, np.cumsum(gaps), returns


def mean_last(returns: np.ndarray, n: int = WINDOW) -> np.ndarray:
    """Mean of the last ``n`` returns at each episode (fewer at the start), as summary.json counts it."""
    c = np.cumsum(np.insert(returns, 0, 0.0))
    idx = np.arange(1, len(returns) + 1)
    lo = np.maximum(idx - n, 0)
    return (c[idx] - c[lo]) / (idx - lo)


def first_crossing(values: np.ndarray, threshold: float, after: int = WINDOW) -> int | None:
    """Index of the first episode (with a full window behind it) whose mean reached ``threshold``."""
    hits = np.nonzero(values[after - 1 :] >= threshold)[0]
    return int(hits[0]) + after - 1 if len(hits) else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, nargs="?", default=HERE / "out" / "pong-fast")
    parser.add_argument("--csv", type=Path, default=HERE / "dqn_pong_fast_curve.csv")
    parser.add_argument("--png", type=Path, default=HERE / "dqn_pong_fast_curve.png")
    parser.add_argument("--label", default="pong-fast", help="name of this run in the legend")
    parser.add_argument("--compare", action="append", default=[], metavar="CSV=LABEL", help="an earlier run's CSV")
    args = parser.parse_args()
    if len(args.compare) > len(COMPARE_COLORS):
        parser.error(f"at most {len(COMPARE_COLORS)} --compare curves, got {len(args.compare)}")

    steps, wall, returns = read_episodes(args.run_dir)
    if len(steps) == 0:
        raise SystemExit(f"{args.run_dir}: no episodes logged yet")
    mean20 = mean_last(returns)
    with args.csv.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["env_step", "wall_seconds", "episode_return", "mean_last_20"])
        for row in zip(steps, wall, returns, mean20, strict=True):
            writer.writerow([int(row[0]), f"{row[1]:.1f}", f"{row[2]:g}", f"{row[3]:.2f}"])

    print(
        f"{args.run_dir}: {len(steps)} episodes, {steps[-1]:,} steps, {wall[-1] / 60:.1f} min, last-20 mean {mean20[-1]:+.2f}"
    )
    for threshold in (0.0, 18.0):
        i = first_crossing(mean20, threshold)
        if i is None:
            print(f"last-20 mean >= {threshold:+g}: not yet (best {mean20[WINDOW - 1 :].max(initial=-21):+.2f})")
        else:
            print(f"last-20 mean >= {threshold:+g}: at step {steps[i]:,}, {wall[i] / 60:.1f} min (episode {i + 1})")

    fig, (ax_steps, ax_wall) = plt.subplots(1, 2, figsize=(12, 4.5))
    ax_steps.plot(steps, returns, ".", ms=3, alpha=0.35, color="tab:blue", label="episode return")
    ax_steps.plot(steps, mean20, color="tab:blue", label=f"{args.label}, mean of last 20")
    anchor_x, anchor_y = zip(*CLEANRL_ANCHORS, strict=True)
    ax_steps.plot(anchor_x, anchor_y, "s--", color="tab:orange", label="CleanRL dqn_atari.py (digitised)")
    ax_steps.set_xscale("log")
    ax_steps.set_xlim(1e4, max(1.2e7, steps[-1]))
    ax_steps.set_xlabel("agent steps (4 frames each; log scale)")
    ax_wall.plot(wall / 60, returns, ".", ms=3, alpha=0.35, color="tab:blue")
    ax_wall.plot(wall / 60, mean20, color="tab:blue", label=f"{args.label}, mean of last 20")
    ax_wall.set_xlabel("wall-clock minutes of training")
    for spec, color in zip(args.compare, COMPARE_COLORS[: len(args.compare)], strict=True):
        path, _, label = spec.partition("=")
        old = np.genfromtxt(path, delimiter=",", names=True)
        ax_steps.plot(old["env_step"], old["mean_last_20"], color=color, lw=1, label=f"{label}, mean of last 20")
        ax_wall.plot(old["wall_seconds"] / 60, old["mean_last_20"], color=color, lw=1, label=f"{label}, mean of last 20")
    for ax in (ax_steps, ax_wall):
        ax.axhline(0, color="gray", lw=0.8)
        ax.axhline(18, color="gray", lw=0.8, ls=":")
        ax.set_ylim(-21.5, 21.5)
        ax.set_ylabel("episode return")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize=8)
    fig.suptitle(f"DQN {args.label} on Pong ({args.run_dir.name}): {steps[-1]:,} steps, {wall[-1] / 60:.0f} min")
    fig.tight_layout()
    fig.savefig(args.png, dpi=90)
    print(f"wrote {args.csv} and {args.png}")


if __name__ == "__main__":
    main()
