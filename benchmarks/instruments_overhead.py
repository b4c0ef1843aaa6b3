"""Do the debug instruments cost anything when they are off?

Trains VPG with the same seed in three ways, interleaved (A B C, B C A, C A B, ...) so that
machine noise and order effects hit all of them alike, and compares wall time per env step:

- bare: ``vpg.attach`` replaced by an object whose hook points are empty functions, the floor
  of "no instruments at all";
- off: the real ``attach`` with every flag off (the default);
- on: every instrument on (gradient statistics every update, hooks on both layers, traps in
  warn mode, and on Pong preprocessing inspection every 1000 frames), for reference.

bare and off play identical trajectories (instruments that are off touch no RNG), so their
time ratio is the overhead of the hook points. Both wall time and process CPU time are
reported: on a shared machine the CPU time is the steadier of the two. CartPole is the worst case: its env step is the
cheapest, so a per-step cost shows most. Also measured: the cost of one call of each hook
point with everything off.

    OMP_NUM_THREADS=1 python benchmarks/instruments_overhead.py --env CartPole-v1 --steps 20000 --reps 7
    OMP_NUM_THREADS=1 python benchmarks/instruments_overhead.py --env pong --episodes 1 --reps 3
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy and torch load

import argparse
import contextlib
import io
import json
import statistics
import tempfile
import time
import timeit
from pathlib import Path

import torch

from dirtyrl import debug
from dirtyrl.algos import vpg
from dirtyrl.config import DebugConfig, EnvConfig, RunConfig
from dirtyrl.telemetry import RunLogger


class Bare:
    """Hook points that do nothing at all: the floor."""

    def on_env_step(self, env, env_step):
        pass

    def on_episode_end(self, episode):
        pass

    def after_backward(self, update, env_step, loss, entropy=None, batch=None):
        pass

    def after_step(self, update, env_step):
        pass

    def close(self):
        pass


def all_on(pong: bool) -> DebugConfig:
    return DebugConfig(
        grad_stats_every=1,
        hooks=["fc2"] if pong else ["fc1", "fc2"],
        trap="warn",
        inspect_every=1000 if pong else 0,
        trap_entropy_until=0,
    )


def train_once(mode: str, args: argparse.Namespace, workdir: Path, rep: int) -> dict:
    pong = args.env == "pong"
    cfg = vpg.Config(
        env=EnvConfig(env=args.env),
        run=RunConfig(
            seed=args.seed,
            total_steps=args.steps,
            total_episodes=args.episodes,
            run_dir=str(workdir / f"{mode}-{rep}"),
            progress="off",
            checkpoint_every=10**9,
        ),
        debug=all_on(pong) if mode == "on" else DebugConfig(),
        batch_episodes=1 if pong else None,
    )
    real_attach = vpg.attach
    if mode == "bare":
        vpg.attach = lambda *a, **k: Bare()
    try:
        start, cpu_start = time.perf_counter(), time.process_time()
        with contextlib.redirect_stdout(io.StringIO()):
            run_dir = vpg.train(cfg)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    finally:
        vpg.attach = real_attach
    summary = json.loads((run_dir / "summary.json").read_text())
    n = summary["env_steps"]
    return {"seconds": seconds, "cpu": cpu, "env_steps": n, "us_per_step": 1e6 * seconds / n, "cpu_us_per_step": 1e6 * cpu / n}


def hook_point_costs() -> dict[str, float]:
    """Nanoseconds per call of each hook point with every flag off."""
    policy = torch.nn.Linear(4, 2)
    instruments = debug.attach(DebugConfig(), policy, RunLogger(None), None)
    loss = torch.tensor(0.0)
    calls = {
        "on_env_step": lambda: instruments.on_env_step(None, 1),
        "on_episode_end": lambda: instruments.on_episode_end(1),
        "after_backward": lambda: instruments.after_backward(1, 1, loss, 0.5),
        "after_step": lambda: instruments.after_step(1, 1),
    }
    bare = Bare()
    calls["bare on_env_step"] = lambda: bare.on_env_step(None, 1)
    n = 200_000
    return {name: 1e9 * min(timeit.repeat(fn, number=n, repeat=5)) / n for name, fn in calls.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("--steps", type=int, default=None, help="env steps per training run")
    parser.add_argument("--episodes", type=int, default=None, help="episodes per training run")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if args.steps is None and args.episodes is None:
        args.steps = 20_000
    torch.set_num_threads(1)
    print("hook point cost with every flag off (ns per call):")
    for name, ns in hook_point_costs().items():
        print(f"  {name:18s} {ns:7.1f}")
    modes = ("bare", "off", "on")
    results: dict[str, list[dict]] = {m: [] for m in modes}
    with tempfile.TemporaryDirectory() as tmp:
        train_once("off", args, Path(tmp), -1)  # warm-up: imports, ROM, TensorBoard
        for rep in range(args.reps):
            for mode in modes[rep % 3 :] + modes[: rep % 3]:  # rotate the order: no mode always runs first
                results[mode].append(train_once(mode, args, Path(tmp), rep))
    steps = {m: {r["env_steps"] for r in results[m]} for m in modes}
    print(f"\n{args.env}: {args.reps} interleaved reps per mode, env steps per run: {steps}")
    for clock, key, total in (("wall", "us_per_step", "seconds"), ("CPU", "cpu_us_per_step", "cpu")):
        median = {m: statistics.median(r[key] for r in results[m]) for m in modes}
        print(f"{clock} time per env step:")
        for m in modes:
            per_rep = " ".join(f"{r[key]:.2f}" for r in results[m])
            print(f"  {m:5s} median {median[m]:8.2f} us   (reps: {per_rep})")
        ratios = [o[total] / b[total] for o, b in zip(results["off"], results["bare"], strict=True)]
        print(f"  off / bare ratio: median {statistics.median(ratios):.4f} (per rep: {' '.join(f'{r:.3f}' for r in ratios)})")
        print(f"  on / bare ratio:  median {median['on'] / median['bare']:.3f}")


if __name__ == "__main__":
    main()
