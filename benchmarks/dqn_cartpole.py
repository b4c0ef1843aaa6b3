"""CartPole-v1 DQN: env steps and seconds to solve, 3 seeds, one core, the default settings.

Solved = mean return of the last 20 training episodes >= 475 (the env spec's threshold),
epsilon-greedy exploration included. Seconds are training time from the first env step
(interpreter and torch start-up not included). CPU seconds (the child's user + system time,
start-up included) are printed beside them: on a shared machine they say what the run itself
consumed when wall time is stretched by other jobs.
Run:  OMP_NUM_THREADS=1 python benchmarks/dqn_cartpole.py [SEEDS...] [-- EXTRA FLAGS...]
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def main(seeds=(1, 2, 3), extra=()) -> None:
    rows = []
    print(f"load average before: {os.getloadavg()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            run_dir = Path(tmp) / f"seed{seed}"
            before = os.times()
            flags = f"--env CartPole-v1 --seed {seed} --threads 1 --stop-when-solved --total-steps 200000 --progress off"
            cmd = ["taskset", "-c", "0", sys.executable, "-m", "dirtyrl", "train", "dqn", *flags.split()]
            subprocess.run([*cmd, "--run-dir", str(run_dir), *extra], check=True, stdout=subprocess.DEVNULL)
            after = os.times()
            cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
            s = json.loads((run_dir / "summary.json").read_text())
            rows.append((seed, s["solved_at_env_step"], s["solved_at_seconds"], s["episodes"], cpu))
            print(rows[-1], flush=True)
    print(f"load average after: {os.getloadavg()}")
    print("| seed | env steps to solve | seconds to solve | episodes | CPU s (whole process) |")
    print("|---:|---:|---:|---:|---:|")
    for seed, steps, seconds, episodes, cpu in rows:
        print(f"| {seed} | {steps} | {seconds if seconds is None else f'{seconds:.1f}'} | {episodes} | {cpu:.1f} |")
    solved = [r for r in rows if r[1] is not None]
    if len(solved) == len(rows):
        print(
            f"| median | {statistics.median(r[1] for r in rows):.0f} | {statistics.median(r[2] for r in rows):.1f} | | "
            f"{statistics.median(r[4] for r in rows):.1f} |"
        )


if __name__ == "__main__":
    args = sys.argv[1:]
    split = args.index("--") if "--" in args else len(args)
    main(tuple(int(a) for a in args[:split]) or (1, 2, 3), tuple(args[split + 1 :]))
