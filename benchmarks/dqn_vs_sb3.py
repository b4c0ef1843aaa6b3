"""DQN on Pong, one core: dirty-rl's cleanrl preset against Stable-Baselines3's DQN, side by side.

Both sides train the Nature CNN (512 hidden units, 6 actions) on Pong without sticky actions
(SB3: ``PongNoFrameskip-v4`` with its ``AtariWrapper`` and a 4-frame ``VecFrameStack``;
dirty-rl: ``--env pong --preset cleanrl --sticky 0 --actions 6``), a gradient step every 4 agent
steps on a batch of 32, Adam at 1e-4, a target copy every 1000 steps, a 10k replay buffer,
1000 random heat-up steps, then epsilon fixed at 0.01 (almost every step runs the acting
forward, as late in training). Each side runs in this process, pinned to core 0 with one torch
thread; rounds alternate the two, so machine noise hits both alike. Reported: learning-phase
agent steps/s, in wall-clock time and per second of CPU time consumed (what the loop would do
on a core of its own), medians over rounds, and the ratio dirty-rl / SB3.

SB3 (and OpenCV, which its AtariWrapper resizes with) are benchmark-only dependencies, not dirty-rl's:
    .venv/bin/pip install stable-baselines3==2.9.2 opencv-python-headless

Run:  python benchmarks/dqn_vs_sb3.py [LEARNING_STEPS] [ROUNDS]
"""

from __future__ import annotations

import contextlib
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy and torch load

LEARNING_STARTS = 1000
BUFFER = 10_000
WARMUP = 200  # learning steps before the timing starts (kernel selection, first allocations)


def cpu_banner() -> str:
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")), "unknown")
    flags = next((line.split(":", 1)[1].split() for line in out.splitlines() if line.startswith("Flags")), [])
    relevant = [f for f in flags if f.startswith(("avx", "amx", "fma"))]
    return f"CPU: {model}; flags: {' '.join(relevant)}"


def rate(marks: list[tuple[int, float, float]]) -> tuple[float, float]:
    (s0, w0, c0), (s1, w1, c1) = marks[0], marks[-1]
    return (s1 - s0) / (w1 - w0), (s1 - s0) / (c1 - c0)


def dirtyrl_sps(steps: int, run_dir: Path) -> tuple[float, float]:
    """(wall, CPU) learning-phase steps/s of the real ``dqn.train`` with the cleanrl preset."""
    from dirtyrl.algos import dqn
    from dirtyrl.config import EnvConfig, RunConfig
    from dirtyrl.telemetry import RunLogger

    marks: list[tuple[int, float, float]] = []
    scalar = RunLogger.scalar

    def recording_scalar(self, tag, value, step):
        if tag == "charts/sps" and step >= LEARNING_STARTS + WARMUP:
            marks.append((step, time.perf_counter(), time.process_time()))
        scalar(self, tag, value, step)

    RunLogger.scalar = recording_scalar
    try:
        dqn.train(
            dqn.Config(
                env=EnvConfig(env="pong", sticky=0.0, actions=6),
                run=RunConfig(total_steps=LEARNING_STARTS + steps, run_dir=str(run_dir), progress="off", threads=1),
                preset="cleanrl",
                buffer_size=BUFFER,
                learning_starts=LEARNING_STARTS,
                eps_start=0.01,
                eps_end=0.01,
                log_every=25,  # every 100 agent steps
            )
        )
    finally:
        RunLogger.scalar = scalar
    return rate(marks)


def sb3_sps(steps: int) -> tuple[float, float]:
    """(wall, CPU) learning-phase steps/s of SB3's DQN with the same settings."""
    import ale_py
    import gymnasium as gym
    from stable_baselines3 import DQN
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_atari_env
    from stable_baselines3.common.vec_env import VecFrameStack

    gym.register_envs(ale_py)
    marks: list[tuple[int, float, float]] = []

    class Marks(BaseCallback):
        def _on_step(self) -> bool:
            if self.num_timesteps >= LEARNING_STARTS + WARMUP and self.num_timesteps % 100 == 0:
                marks.append((self.num_timesteps, time.perf_counter(), time.process_time()))
            return True

    env = VecFrameStack(make_atari_env("PongNoFrameskip-v4", n_envs=1, seed=1), n_stack=4)
    model = DQN(
        "CnnPolicy",
        env,
        learning_rate=1e-4,
        buffer_size=BUFFER,
        learning_starts=LEARNING_STARTS,
        batch_size=32,
        gamma=0.99,
        train_freq=4,
        gradient_steps=1,
        target_update_interval=1000,
        exploration_fraction=0.01,
        exploration_initial_eps=0.01,
        exploration_final_eps=0.01,
        device="cpu",
        seed=1,
        verbose=0,
    )
    model.learn(total_timesteps=LEARNING_STARTS + steps, callback=Marks())
    env.close()
    return rate(marks)


def main() -> None:
    try:
        import cv2  # noqa: F401  (SB3's AtariWrapper needs it at the first reset)
        import stable_baselines3
    except ImportError:
        sys.exit(
            "dqn_vs_sb3.py needs Stable-Baselines3 and OpenCV, benchmark-only dependencies: "
            ".venv/bin/pip install stable-baselines3==2.9.2 opencv-python-headless"
        )
    import torch

    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 1500
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    print(cpu_banner())
    print(f"torch {torch.__version__}, stable-baselines3 {stable_baselines3.__version__}; load average {os.getloadavg()}")
    os.sched_setaffinity(0, {0})
    torch.set_num_threads(1)
    results: dict[str, list[tuple[float, float]]] = {"dirty-rl": [], "sb3": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            for name in ("dirty-rl", "sb3"):
                with contextlib.redirect_stdout(io.StringIO()):
                    sps = dirtyrl_sps(steps, Path(tmp) / f"run-{r}") if name == "dirty-rl" else sb3_sps(steps)
                results[name].append(sps)
                print(
                    f"round {r} {name}: {sps[0]:.1f} steps/s wall, {sps[1]:.1f} per CPU second, load {os.getloadavg()[0]:.2f}",
                    flush=True,
                )
    median = statistics.median
    ours = [median(x[i] for x in results["dirty-rl"]) for i in range(2)]
    theirs = [median(x[i] for x in results["sb3"]) for i in range(2)]
    print("| one core, learning phase | dirty-rl steps/s | SB3 steps/s | ratio |")
    print("|---|---:|---:|---:|")
    print(f"| wall clock | {ours[0]:.1f} | {theirs[0]:.1f} | {ours[0] / theirs[0]:.2f}x |")
    print(f"| per CPU second | {ours[1]:.1f} | {theirs[1]:.1f} | {ours[1] / theirs[1]:.2f}x |")


if __name__ == "__main__":
    main()
