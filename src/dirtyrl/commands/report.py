"""``dirtyrl report RUN_DIR``: one PNG page of a run, for a quick look without TensorBoard.

Panels (each only when the run logged it):

- episode returns (dots) and their EMA, against the random policy on the same env: the
  seed's first tip, a baseline that tells learning from noise. ``--baseline RUN_DIR`` names a
  random run; without it the report plays one (``RUN_DIR/baseline-random/``, reused next time);
- policy entropy (``policy/entropy``), with log A as the ceiling;
- losses (every ``losses/*`` tag);
- gradient norm (``debug/global_grad_norm`` from ``--debug.grad-stats-every``, else any
  ``*grad_norm`` tag the algorithm logs);
- epsilon (``charts/epsilon``, DQN).

The run's TensorBoard event files are read with TensorBoard's own ``EventAccumulator``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
from pathlib import Path

import numpy as np

from dirtyrl.errors import UserError

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


def render_report(run_dir: Path, baseline: Path | None, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    scalars = read_scalars(run_dir)
    config = json.loads((run_dir / "config.json").read_text()) if (run_dir / "config.json").exists() else {}
    factor = config.get("run", {}).get("ema", 0.99)
    losses = sorted(t for t in scalars if t.startswith("losses/"))
    grad_tags = [GRAD_NORM] if GRAD_NORM in scalars else sorted(t for t in scalars if t.endswith("grad_norm"))
    panels = ["returns"] + [
        name
        for name, present in (
            ("entropy", ENTROPY in scalars),
            ("losses", bool(losses)),
            ("grad", bool(grad_tags)),
            ("epsilon", EPSILON in scalars),
        )
        if present
    ]
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 2.6 * len(panels) + 0.8), dpi=100, sharex=True, squeeze=False)
    ax_of = dict(zip(panels, axes[:, 0], strict=True))
    summary = json.loads((run_dir / "summary.json").read_text()) if (run_dir / "summary.json").exists() else {}
    title = f"{summary.get('algo', '?')} on {config.get('env', {}).get('env', '?')}  ({run_dir})"
    base_scalars = read_scalars(baseline) if baseline is not None else {}

    ax = ax_of["returns"]
    if RETURN in scalars:
        steps, values = scalars[RETURN]
        ax.plot(steps, values, ".", ms=3, alpha=0.35, label="episode return")
        ax.plot(steps, ema(values, factor), "-", lw=2, label=f"EMA ({factor})")
    else:
        ax.text(0.5, 0.5, f"no {RETURN} logged yet", ha="center", transform=ax.transAxes)
    if baseline is not None:
        b_values = base_scalars.get(RETURN, (np.array([]), np.array([])))[1]
        if len(b_values):
            mean, std = float(b_values.mean()), float(b_values.std())
            ax.axhline(mean, color="gray", ls="--", label=f"random policy {mean:.1f} ± {std:.1f} ({len(b_values)} episodes)")
            ax.axhspan(mean - std, mean + std, color="gray", alpha=0.15)
    ax.set_ylabel("return")
    ax.legend(loc="best", fontsize=8)
    ax.set_title(title, fontsize=10)

    if "entropy" in ax_of:
        ax = ax_of["entropy"]
        ax.plot(*scalars[ENTROPY], label="policy entropy (nats)")
        if ENTROPY in base_scalars:  # the random policy logs log A, the ceiling
            ax.axhline(float(base_scalars[ENTROPY][1][0]), color="gray", ls=":", label="random policy (log A)")
        ax.set_ylabel("entropy")
        ax.legend(loc="best", fontsize=8)
    if "losses" in ax_of:
        ax = ax_of["losses"]
        for tag in losses:
            ax.plot(*scalars[tag], label=tag)
        ax.set_ylabel("loss")
        ax.legend(loc="best", fontsize=8)
    if "grad" in ax_of:
        ax = ax_of["grad"]
        for tag in grad_tags:
            ax.plot(*scalars[tag], label=tag)
        ax.set_yscale("log")
        ax.set_ylabel("gradient norm")
        ax.legend(loc="best", fontsize=8)
    if "epsilon" in ax_of:
        ax = ax_of["epsilon"]
        ax.plot(*scalars[EPSILON], label="epsilon")
        ax.set_ylabel("epsilon")
        ax.set_ylim(0, 1.05)
    for ax in axes[:, 0]:
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("env step")
    fig.tight_layout()
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
    elif not args.no_baseline:
        config_path = run_dir / "config.json"
        if not config_path.exists():
            raise UserError(f"{run_dir} has no config.json to take the env from; pass --baseline or --no-baseline")
        print(f"random baseline: {run_dir / 'baseline-random'} ({args.baseline_episodes} episodes, made once)")
        baseline = random_baseline(run_dir, json.loads(config_path.read_text()), args.baseline_episodes)
    out = render_report(run_dir, baseline, Path(args.out) if args.out else run_dir / "report.png")
    print(f"report: {out}")
    return 0
