"""Multi-process VPG scaling on this machine: Pong training steps/s with 1 and 2 workers.

Each round runs ``dirtyrl train vpg --env pong --workers W`` through the real CLI (so the
2-worker run goes through the elastic launcher, gloo, and every collective of a real run),
alternating W = 1 and W = 2 so that machine noise hits both alike; the ratio of the medians is
reported. Steps/s is ``summary.json``'s ``steps_per_second``: global env steps over rank 0's
training time (process start-up and imports excluded; they are shown separately as "wall").
Both runs use Pong's preset batch of 10 episodes per update, so 2 workers play 5 each.

Run:  python benchmarks/vpg_scaling.py [ROUNDS] [EPISODES]      (defaults: 3 rounds, 20 episodes)
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(workers: int, episodes: int, run_dir: Path, seed: int) -> tuple[float, float, int]:
    """(training steps/s, wall seconds including start-up, env steps) of one CLI run."""
    cmd = [sys.executable, "-m", "dirtyrl", "train", "vpg", "--env", "pong", "--workers", str(workers)]
    cmd += ["--seed", str(seed), "--total-episodes", str(episodes), "--run-dir", str(run_dir), "--progress", "off"]
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}  # the CLI picks cores // workers
    start = time.monotonic()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    wall = time.monotonic() - start
    summary = json.loads((run_dir / "summary.json").read_text())
    return summary["steps_per_second"], wall, summary["env_steps"]


def main(rounds: int = 3, episodes: int = 20) -> None:
    results: dict[int, list[tuple[float, float, int]]] = {1: [], 2: []}
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(rounds):
            for workers in (1, 2):
                results[workers].append(run(workers, episodes, Path(tmp) / f"w{workers}-{i}", seed=i + 1))
    print(
        f"cores: {os.cpu_count()}, {episodes} Pong episodes per run (batch 10), "
        f"1-min load average before/after: {load_before:.2f}/{os.getloadavg()[0]:.2f}\n"
    )
    print("| round | 1 worker steps/s | 2 workers steps/s | speed-up | 1 worker wall s | 2 workers wall s |")
    print("|---:|---:|---:|---:|---:|---:|")
    for i, (one, two) in enumerate(zip(results[1], results[2], strict=True)):
        print(f"| {i} | {one[0]:.0f} | {two[0]:.0f} | {two[0] / one[0]:.2f}x | {one[1]:.1f} | {two[1]:.1f} |")
    one = statistics.median(r[0] for r in results[1])
    two = statistics.median(r[0] for r in results[2])
    print(f"| median | {one:.0f} | {two:.0f} | **{two / one:.2f}x** | | |")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
