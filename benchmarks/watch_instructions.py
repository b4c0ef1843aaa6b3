"""What does ``dirtyrl watch`` cost a training loop, counted in instructions?

Wall and CPU time of a 4 s CartPole run move by 20-40% with the neighbours on a shared VM, more
than the 10% being measured (benchmarks/watch_overhead.py). Instructions do not: callgrind
counts them the same, run after run, whatever else the machine does. So this runs the example
CleanRL-style DQN (examples/dqn_script.py) under ``valgrind --tool=callgrind`` four times:
plain and watched, each for a short and a long run. The difference between the two lengths is
the training loop's own count (start-up, imports and, for watch, the end-of-run report cancel
out), and

    overhead = (watched long - watched short) / (plain long - plain short)

is the loop's instruction overhead with watch's default settings: the env and gradient
witnesses and the TensorBoard logging, all of what runs per step. An instruction is not a
nanosecond (a syscall or a cache miss costs more than an add), so the CPU-time ratio of
watch_overhead.py stays the figure of record; this one is the repeatable cross-check.

    OMP_NUM_THREADS=1 python benchmarks/watch_instructions.py --short 2000 --long 6000

Each run takes a few minutes under valgrind; two run at a time.
"""

from __future__ import annotations

import argparse
import os
import re
import runpy
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "dqn_script.py"
COLLECTED = re.compile(r"Collected : (\d+)")


def inner(mode: str, steps: int) -> None:
    """One run, inside valgrind: the script plain, or under watch's witnesses with the report skipped
    (the end-of-run work is the same for both lengths, but skipping it keeps valgrind's run short)."""
    argv = ["--total-timesteps", str(steps)]
    if mode == "plain":
        sys.argv = [str(SCRIPT), *argv]
        runpy.run_path(str(SCRIPT), run_name="__main__")
        return
    from dirtyrl.cli import build_parser
    from dirtyrl.commands.watch import Watch

    run_dir = Path(tempfile.mkdtemp(prefix="watch-instructions-"))
    argv = ["watch", "--run-dir", str(run_dir), "--baseline-episodes", "0", str(SCRIPT), *argv]
    args = build_parser(argv).parse_args(argv)
    watch = Watch(args, run_dir)
    watch.finish = lambda *a: None  # the loop is what is measured
    try:
        watch.run()
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def count(mode: str, steps: int) -> int:
    """Instructions of one whole run under callgrind."""
    with tempfile.TemporaryDirectory() as tmp:
        command = [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={tmp}/out",
            sys.executable,
            __file__,
            "--inner",
            mode,
            str(steps),
        ]
        out = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    found = COLLECTED.search(out.stderr)
    if out.returncode != 0 or found is None:
        raise SystemExit(f"{' '.join(command)} failed ({out.returncode}):\n{out.stdout}\n{out.stderr[-3000:]}")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", type=int, default=2000, help="env steps of the short runs (default: 2000)")
    parser.add_argument("--long", type=int, default=6000, help="env steps of the long runs (default: 6000)")
    parser.add_argument("--inner", nargs=2, metavar=("MODE", "STEPS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner:
        inner(args.inner[0], int(args.inner[1]))
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    if args.long <= args.short:
        raise SystemExit(f"--long ({args.long}) must be more than --short ({args.short})")
    from watch_overhead import cpu_model  # this folder is on sys.path when run as a script

    print(cpu_model())
    runs = [(mode, steps) for mode in ("plain", "watch") for steps in (args.short, args.long)]
    print(f"4 runs under callgrind ({args.short} and {args.long} env steps, plain and watched), two at a time", flush=True)
    with ThreadPoolExecutor(max_workers=2) as pool:
        counts = dict(zip(runs, pool.map(lambda run: count(*run), runs), strict=True))
    for (mode, steps), n in counts.items():
        print(f"{mode:5} {steps:6} steps: {n:,} instructions")
    span = args.long - args.short
    plain = (counts["plain", args.long] - counts["plain", args.short]) / span
    watched = (counts["watch", args.long] - counts["watch", args.short]) / span
    print(f"per env step of the loop: plain {plain:,.0f}, watched {watched:,.0f} instructions")
    print(f"loop instruction overhead: x{watched / plain:.3f}")


if __name__ == "__main__":
    main()
