"""CartPole-v1 VPG: env steps and wall seconds to solve, 3 seeds, one core.

Solved = mean return of the last 20 training episodes >= 475 (the env spec's threshold).
Run:  OMP_NUM_THREADS=1 taskset -c 0 python benchmarks/vpg_cartpole.py
"""

import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def main(seeds=(1, 2, 3)) -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            run_dir = Path(tmp) / f"seed{seed}"
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "dirtyrl",
                    "train",
                    "vpg",
                    "--env",
                    "CartPole-v1",
                    "--seed",
                    str(seed),
                    "--threads",
                    "1",
                    "--stop-when-solved",
                    "--total-steps",
                    "2000000",
                    "--progress",
                    "off",
                    "--run-dir",
                    str(run_dir),
                ],
                check=True,
                stdout=subprocess.DEVNULL,
            )
            s = json.loads((run_dir / "summary.json").read_text())
            rows.append((seed, s["solved_at_env_step"], s["solved_at_seconds"], s["episodes"]))
    print("| seed | env steps to solve | seconds to solve | episodes |")
    print("|---:|---:|---:|---:|")
    for seed, steps, seconds, episodes in rows:
        print(f"| {seed} | {steps} | {seconds:.2f} | {episodes} |")
    print(f"| median | {statistics.median(r[1] for r in rows):.0f} | {statistics.median(r[2] for r in rows):.2f} | |")


if __name__ == "__main__":
    main()
