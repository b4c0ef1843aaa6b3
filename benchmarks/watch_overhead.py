"""What does ``dirtyrl watch`` cost a training script?

Runs the example CleanRL-style DQN (examples/dqn_script.py, CartPole-v1) plain and under
``dirtyrl watch`` with its default settings, so that machine noise hits both alike: by default
both at once, one core each, the cores swapped every round; with ``--one-at-a-time``, one after
the other, the order alternating. It compares:

- the training loop's own CPU time, as the script prints it ("(X s, Y s CPU)": from its first
  env step to its last, the same code either way). The ratio watch / plain of this is the
  overhead of the witnesses: the target is at most 1.10. CPU time, not wall time, because on a
  shared VM the wall time of a 4 s loop moves by 20% with the neighbours (time the hypervisor
  gives to another guest is not this process's CPU time); the wall ratio is printed too;
- the whole command's wall and CPU time, for reference: watch also writes TensorBoard, plays
  the random baseline (skipped here: ``--baseline-episodes 0``) and draws the report at the end,
  a fixed cost that does not grow with the run.

CartPole is the worst case: its env step and its network are the cheapest, so a per-step cost
shows most. ``lscpu``'s model and flags are printed first.

    OMP_NUM_THREADS=1 python benchmarks/watch_overhead.py --steps 20000 --rounds 8
    taskset -c 1 env OMP_NUM_THREADS=1 python benchmarks/watch_overhead.py --one-at-a-time

Time on a shared VM is noisy; benchmarks/watch_instructions.py counts instructions instead.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "dqn_script.py"
LOOP_TIME = re.compile(r"\(([0-9.]+) s, ([0-9.]+) s CPU\)")


def cpu_model() -> str:
    """lscpu's model name and flags (the flags say which vector instructions torch can use)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "lscpu not available"
    keep = [line for line in out.splitlines() if line.startswith(("Model name", "CPU(s):", "Flags"))]
    return "\n".join(keep)


def start_run(watch: bool, steps: int, tmp: Path, index: int, core: int | None) -> tuple[subprocess.Popen, Path, float]:
    """Start one run (pinned to ``core`` when given); its output goes to a file in ``tmp``."""
    command = [sys.executable, str(SCRIPT), "--total-timesteps", str(steps)]
    if watch:
        flags = ["--run-dir", str(tmp / f"watch-{index}"), "--baseline-episodes", "0"]
        command = [sys.executable, "-m", "dirtyrl", "watch", *flags, *command[1:]]
    out = tmp / f"{'watch' if watch else 'plain'}-{index}.out"
    pin = (lambda: os.sched_setaffinity(0, {core})) if core is not None else None
    with out.open("w") as f:
        proc = subprocess.Popen(
            command, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, preexec_fn=pin
        )
    return proc, out, time.perf_counter()


def finish_run(proc: subprocess.Popen, out: Path, started: float) -> tuple[float, float, float, float]:
    """(loop CPU seconds and loop wall seconds as the script prints them, whole-command wall
    seconds, whole-command CPU seconds)."""
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    text = out.read_text()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, proc.args))} failed ({proc.returncode}):\n{text}")
    found = LOOP_TIME.search(text)
    if found is None:
        raise SystemExit(f"no loop time in the output of {' '.join(map(str, proc.args))}:\n{text}")
    return float(found.group(2)), float(found.group(1)), wall, usage.ru_utime + usage.ru_stime


def one_round(r: int, steps: int, tmp: Path, side_by_side: bool) -> dict[bool, tuple[float, float, float, float]]:
    """Plain and watched, at once on two cores (swapped each round) or one after the other."""
    if side_by_side:
        cores = sorted(os.sched_getaffinity(0))[:2]
        runs = {watch: start_run(watch, steps, tmp, r, cores[(r + watch) % 2]) for watch in (False, True)}
        return {watch: finish_run(*run) for watch, run in runs.items()}
    order = (False, True) if r % 2 == 0 else (True, False)
    return {watch: finish_run(*start_run(watch, steps, tmp, r, None)) for watch in order}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20000, help="env steps of each DQN run (default: 20000)")
    parser.add_argument("--rounds", type=int, default=4, help="rounds of (plain, watch) pairs (default: 4)")
    parser.add_argument(
        "--one-at-a-time",
        action="store_true",
        help="run plain and watched one after the other, order alternating (default: at once, one core each, "
        "swapped every round, so both meet the same neighbours; needs 2 cores)",
    )
    args = parser.parse_args()
    side_by_side = not args.one_at_a_time and len(os.sched_getaffinity(0)) >= 2
    print(cpu_model())
    print(f"load average before: {os.getloadavg()}; {'side by side' if side_by_side else 'one at a time'}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            got = one_round(r, args.steps, Path(tmp), side_by_side)
            rows.append((got[False], got[True]))
            plain, watch = got[False], got[True]
            print(
                f"round {r}: loop CPU {plain[0]:.2f} s plain, {watch[0]:.2f} s watched (x{watch[0] / plain[0]:.3f}); "
                f"loop wall {plain[1]:.2f} / {watch[1]:.2f} s (x{watch[1] / plain[1]:.3f}); "
                f"command wall {plain[2]:.2f} / {watch[2]:.2f} s, cpu {plain[3]:.2f} / {watch[3]:.2f} s",
                flush=True,
            )
    loop_ratios = [w[0] / p[0] for p, w in rows]
    print(f"load average after: {os.getloadavg()}")
    print(
        f"median loop CPU time: plain {statistics.median(p[0] for p, _ in rows):.2f} s, "
        f"watched {statistics.median(w[0] for _, w in rows):.2f} s"
    )
    print(f"loop overhead, CPU (median of the per-round ratios): x{statistics.median(loop_ratios):.3f}")
    # The fastest run of each is the one the neighbours disturbed least: the best estimate of cost.
    print(
        f"loop overhead, CPU (fastest watched / fastest plain): x{min(w[0] for _, w in rows) / min(p[0] for p, _ in rows):.3f}"
    )
    print(f"loop overhead, wall (median of the per-round ratios): x{statistics.median(w[1] / p[1] for p, w in rows):.3f}")
    print(
        f"whole command (median): wall x{statistics.median(w[2] / p[2] for p, w in rows):.3f}, "
        f"cpu x{statistics.median(w[3] / p[3] for p, w in rows):.3f}"
    )


if __name__ == "__main__":
    main()
