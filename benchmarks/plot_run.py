"""Learning curve of a run against episodes and wall-clock time, read from its TensorBoard events.

Prints the EMA return at milestones (a markdown table) and writes a two-panel PNG; with
``--csv`` also one row per episode (episode, env step, running hours, return, EMA, mean of the
last 20), small enough to commit.
Run:  python benchmarks/plot_run.py RUN_DIR OUT.png [--baseline -20.7] [--csv OUT.csv]
"""

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from dirtyrl.telemetry import ema_update


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--baseline", type=float, default=None, help="random-policy mean return, drawn as a line")
    parser.add_argument("--ema", type=float, default=0.99)
    parser.add_argument("--csv", type=Path, default=None, help="write the curve's data here, one row per episode")
    args = parser.parse_args()

    acc = EventAccumulator(str(args.run_dir / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    events = acc.Scalars("charts/episode_return")
    returns = np.array([e.value for e in events])
    # Wall time counts only time spent running: gaps between a stop and its resume are removed.
    wall = np.array([e.wall_time for e in events])
    gaps = np.diff(wall, prepend=wall[0])
    gaps[gaps > 600] = 0.0
    hours = np.cumsum(gaps) / 3600
    ema, smoothed = None, []
    for r in returns:
        ema = ema_update(ema, r, args.ema)
        smoothed.append(ema)
    episodes = np.arange(1, len(returns) + 1)

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), dpi=100)
    for ax, x, label in ((axes[0], episodes, "episode"), (axes[1], hours, "wall-clock hours (running)")):
        ax.plot(x, returns, ".", ms=2, alpha=0.3, label="episode return")
        ax.plot(x, smoothed, "-", lw=2, label=f"EMA ({args.ema})")
        if args.baseline is not None:
            ax.axhline(args.baseline, color="gray", ls="--", label=f"random policy ({args.baseline})")
        ax.set_xlabel(label)
        ax.set_ylabel("return")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
    fig.suptitle(f"{args.run_dir.name}: {len(returns)} episodes")
    fig.tight_layout()
    fig.savefig(args.out)

    if args.csv is not None:
        last20 = [returns[max(0, i - 19) : i + 1].mean() for i in range(len(returns))]
        with args.csv.open("w") as f:
            f.write("episode,env_step,hours,return,ema,mean_last_20\n")
            for i, e in enumerate(events):
                f.write(f"{i + 1},{e.step},{hours[i]:.4f},{returns[i]:g},{smoothed[i]:.3f},{last20[i]:.2f}\n")
        first = next((i for i, m in enumerate(last20) if i >= 19 and m >= 0), None)
        if first is not None:
            step, h = events[first].step, hours[first]
            print(f"mean of the last 20 first >= 0 at episode {first + 1}, env step {step}, {h:.2f} h")

    print("| episodes | hours | EMA return |")
    print("|---:|---:|---:|")
    step = max(1, len(returns) // 10)
    for i in sorted({*range(step - 1, len(returns), step), len(returns) - 1}):
        print(f"| {i + 1} | {hours[i]:.2f} | {smoothed[i]:.2f} |")


if __name__ == "__main__":
    main()
