"""Pong VPG loop speed against the env's own speed, side by side in one run on one core.

ratio = VPG training steps/s / random-action steps/s, both on the same env config (ALE/Pong-v5,
frameskip 4, sticky 0.25, the same preprocessing wrapper). Rounds alternate the two so that
machine noise hits both alike; the ratio of the medians is reported.
Run:  OMP_NUM_THREADS=1 taskset -c 0 python benchmarks/vpg_pong_speed.py [ROUNDS] [EPISODES]
"""

import statistics
import sys
import tempfile
from pathlib import Path

import torch

from dirtyrl.algos import random_policy, vpg
from dirtyrl.config import EnvConfig, RunConfig


def steps_per_second(module, episodes: int, run_dir: Path, seed: int) -> float:
    run = RunConfig(seed=seed, total_episodes=episodes, run_dir=str(run_dir), progress="off")
    module.train(module.Config(env=EnvConfig(env="pong"), run=run))
    import json

    return json.loads((run_dir / "summary.json").read_text())["steps_per_second"]


def main(rounds: int = 3, episodes: int = 20) -> None:
    torch.set_num_threads(1)
    random_sps, vpg_sps = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(rounds):
            random_sps.append(steps_per_second(random_policy, episodes, Path(tmp) / f"random{i}", seed=i))
            vpg_sps.append(steps_per_second(vpg, episodes, Path(tmp) / f"vpg{i}", seed=i))
    print("| round | random steps/s | VPG training steps/s | ratio |")
    print("|---:|---:|---:|---:|")
    for i, (r, v) in enumerate(zip(random_sps, vpg_sps, strict=True)):
        print(f"| {i} | {r:.0f} | {v:.0f} | {v / r:.3f} |")
    r, v = statistics.median(random_sps), statistics.median(vpg_sps)
    print(f"| median | {r:.0f} | {v:.0f} | **{v / r:.3f}** |")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
