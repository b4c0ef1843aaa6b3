"""Pong VPG: the one-env loop, the episodes side by side (--num-envs), and the random agent.

Three configurations, run side by side in one run, rounds alternating so that machine noise
hits all alike (the medians are reported):

- random:  ``train random --env pong`` on one core (``taskset -c 0``), the env's own speed;
- one-env: ``train vpg --env pong`` on the same core, the seed's loop (``--num-envs 1``);
- N envs:  ``train vpg --env pong --num-envs N`` on both cores, with each ``--vector-env``:
  ``procs`` (the one-env loop's envs in one worker process per core, each acting for its own
  games a chunk of steps at a time) and ``ale`` (ale-py's C++ vector env, its threads in the
  trainer's process, all games in lockstep);
- 2 workers: ``train vpg --env pong --workers 2`` on both cores, the other way to use them.

Ratios: one-env / random (the loop against the env's own speed on one core; target >= 0.9)
and each two-core configuration / one-env (target >= 1.7 for N envs). steps/s is
summary.json's ``steps_per_second``: env steps over training wall time, updates included.

Run:  python benchmarks/vpg_num_envs.py [ROUNDS] [EPISODES] [NUM_ENVS]
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def cpu() -> str:
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")), "?")
    flags = next((line.split(":", 1)[1].split() for line in out.splitlines() if line.startswith("Flags")), [])
    simd = sorted(f for f in flags if f.startswith(("avx2", "avx512", "amx")))
    return f"{model}; {os.cpu_count()} cores; {' '.join(simd)}"


def run(args: list[str], cores: str, run_dir: Path) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = ["taskset", "-c", cores, sys.executable, "-m", "dirtyrl", "train", *args]
    cmd += ["--env", "pong", "--threads", "1", "--progress", "off", "--run-dir", str(run_dir)]
    subprocess.run(cmd, check=True, capture_output=True, env=env)
    return json.loads((run_dir / "summary.json").read_text())


def main(rounds: int = 3, episodes: int = 40, num_envs: int = 10) -> None:
    print(cpu(), flush=True)
    both = f"0-{os.cpu_count() - 1}"
    configs = {
        "random": (["random"], "0"),
        "one-env": (["vpg"], "0"),
        f"{num_envs} envs procs": (["vpg", "--num-envs", str(num_envs), "--vector-env", "procs"], both),
        f"{num_envs} envs ale": (["vpg", "--num-envs", str(num_envs), "--vector-env", "ale"], both),
        "2 workers": (["vpg", "--workers", "2"], both),
    }
    sps: dict[str, list[float]] = {name: [] for name in configs}
    idle: dict[str, list[float]] = {name: [] for name in configs}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            for name, (args, cores) in configs.items():
                seed = ["--seed", str(r + 1), "--total-episodes", str(episodes)]
                summary = run([*args, *seed], cores, Path(tmp) / f"{name.replace(' ', '-')}-{r}")
                sps[name].append(summary["steps_per_second"])
                if "idle_env_steps" in summary:
                    idle[name].append(summary["idle_env_steps"] / (summary["idle_env_steps"] + summary["env_steps"]))
            print(f"round {r}: " + ", ".join(f"{n} {v[-1]:.0f}" for n, v in sps.items()), flush=True)
    names = list(configs)
    ratios = " | one-env / random | procs / one-env | ale / one-env | workers / one-env |"
    print("| round | " + " | ".join(f"{n} steps/s" for n in names) + ratios)
    print("|---:|" + "---:|" * (len(names) + 5))
    rows = [(str(r), [sps[n][r] for n in names], "") for r in range(rounds)]
    rows.append(("median", [statistics.median(sps[n]) for n in names], "**"))
    for label, (a, b, c, d, e), bold in rows:
        ratio = f"{bold}{b / a:.3f}{bold} | " + " | ".join(f"{bold}{x / b:.2f}{bold}" for x in (c, d, e))
        print(f"| {label} | {a:.0f} | {b:.0f} | {c:.0f} | {d:.0f} | {e:.0f} | {ratio} |")
    for name in names[2:4]:
        print(f"idle env steps, {name}: {100 * statistics.median(idle[name]):.1f}% of all env steps (median)")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:4]))
