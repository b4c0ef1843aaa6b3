"""What run control costs per env step: the EpisodeGuard wrapper every training env runs through.

Two measurements, each the best of several repeats (the least disturbed by other jobs):
- the wrapper alone, around a stub env whose step returns a ready tuple: its own nanoseconds;
- one ALE/Pong-v5 step (frameskip 4, the pong preset's ALE setting), to put them in proportion.
(Timing Pong with and without the wrapper directly measures the machine's noise, not the
wrapper: its cost is three orders of magnitude below a Pong step.)

Run:  OMP_NUM_THREADS=1 python benchmarks/run_control_overhead.py
"""

from __future__ import annotations

import os
import subprocess
import timeit

import gymnasium as gym
import numpy as np

from dirtyrl.envs import check_env_id
from dirtyrl.runcontrol import EpisodeGuard


class Stub(gym.Env):
    observation_space = gym.spaces.Box(0.0, 1.0, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)
    result = (np.zeros(2, np.float32), 0.0, False, False, {})

    def reset(self, *, seed=None, options=None):
        return np.zeros(2, np.float32), {}

    def step(self, action):
        return self.result


def per_step_ns(env: gym.Env, n: int, repeat: int) -> float:
    env.reset(seed=0)

    def steps() -> None:
        for _ in range(n):
            if any(env.step(0)[2:4]):
                env.reset()

    return min(timeit.repeat(steps, number=1, repeat=repeat)) / n * 1e9


def main() -> None:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    print(next((line for line in lscpu.splitlines() if line.startswith("Model name")), "Model name: unknown"))
    print(f"load average: {os.getloadavg()}")
    bare = per_step_ns(Stub(), 200_000, 7)
    guarded = per_step_ns(EpisodeGuard(Stub(), 10**9, 10**12), 200_000, 7)
    print(f"stub env: {bare:.0f} ns/step bare, {guarded:.0f} ns/step guarded: the wrapper costs {guarded - bare:.0f} ns")
    check_env_id("ALE/Pong-v5")
    pong = per_step_ns(gym.make("ALE/Pong-v5"), 2000, 5)
    share = (guarded - bare) / pong
    print(f"ALE/Pong-v5: {pong / 1e3:.0f} us/step bare; the wrapper adds {share:.2%} to a Pong step")


if __name__ == "__main__":
    main()
