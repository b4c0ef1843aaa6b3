"""The pong-fast DQN on Pong: learning-phase speed with one core and with two, side by side.

Each variant is the real ``dqn.train`` with ``--preset pong-fast`` (plus the variant's flags),
run in this process, pinned with ``sched_setaffinity`` to core 0 (one-core variants) or cores
0 and 1. Epsilon is fixed at the preset's final 0.02, as in most of a long run. The speed is
taken between the first and the last ``charts/sps`` log points after the heat-up: agent steps
per second, gradient steps per second, and replayed samples per second (gradient steps times
the batch size), all in wall-clock time, since two cores are the point.

Variants:
  1t          the preset: one thread, a batch of 32 every 2 agent steps
  1t-per      the same with --prioritized
  te1, te4    one thread, a gradient step every agent step, or every 4 (replay ratio 32 or 8)
  b64         one thread, a batch of 64 every 2 agent steps (replay ratio 32)
  2t-b64      --learner-threads 2 --batch-size 64: each core computes the gradient of 32 rows
  2t-b64-per  the same with --prioritized

Run:  python benchmarks/dqn_pong_fast_speed.py [STEPS] [ROUNDS] [VARIANT ...]
"""

from __future__ import annotations

import contextlib
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

VARIANTS = {
    # name: (cores, extra config fields)
    "1t": ({0}, {}),
    "1t-per": ({0}, {"prioritized": True}),
    "te1": ({0}, {"train_every": 1}),
    "te4": ({0}, {"train_every": 4}),
    "b64": ({0}, {"batch_size": 64}),
    "2t-b64": ({0, 1}, {"learner_threads": 2, "batch_size": 64}),
    "2t-b64-per": ({0, 1}, {"learner_threads": 2, "batch_size": 64, "prioritized": True}),
}
LEARNING_STARTS = 1000


def loop_speed(variant: str, steps: int, run_dir: Path) -> tuple[float, float, float]:
    """Learning-phase (agent steps/s, gradient steps/s, samples/s) of the real ``dqn.train``."""
    from dirtyrl.algos import dqn
    from dirtyrl.config import EnvConfig, RunConfig
    from dirtyrl.telemetry import RunLogger

    cores, extra = VARIANTS[variant]
    marks: list[tuple[int, float, float]] = []  # (agent step, updates, wall time)
    scalar = RunLogger.scalar

    def recording_scalar(self, tag, value, step):
        if tag == "charts/updates" and step > LEARNING_STARTS + 200:
            marks.append((step, value, time.perf_counter()))
        scalar(self, tag, value, step)

    os.sched_setaffinity(0, cores)
    RunLogger.scalar = recording_scalar
    try:
        run = RunConfig(total_steps=steps, run_dir=str(run_dir), progress="off", threads=1)
        cfg = dqn.Config(
            env=EnvConfig(env="pong", sticky=0.0),
            run=run,
            preset="pong-fast",
            learning_starts=LEARNING_STARTS,
            eps_start=0.02,
            eps_end=0.02,
            log_every=25,
            **extra,
        )
        dqn.train(cfg)
    finally:
        RunLogger.scalar = scalar
        os.sched_setaffinity(0, {0, 1})
    (s0, u0, w0), (s1, u1, w1) = marks[0], marks[-1]
    batch = extra.get("batch_size", 32)
    return (s1 - s0) / (w1 - w0), (u1 - u0) / (w1 - w0), (u1 - u0) * batch / (w1 - w0)


def main() -> None:
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 4000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    variants = sys.argv[3:] or list(VARIANTS)
    from dirtyrl.hardware import cpu_info

    model, flags = cpu_info()
    print(f"CPU: {model}, {os.cpu_count()} cores, flags: {sorted(flags & {'avx2', 'avx512f', 'avx512_bf16', 'amx_bf16'})}")
    print(f"load average before: {os.getloadavg()}")
    results: dict[str, list[tuple[float, float, float]]] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory() as tmp:
        # Rounds alternate the variants, so that machine noise hits them alike; medians are reported.
        for r in range(rounds):
            for variant in variants:
                with contextlib.redirect_stdout(io.StringIO()):
                    results[variant].append(loop_speed(variant, steps, Path(tmp) / f"{variant}-{r}"))
                sps, ups, samples = results[variant][-1]
                print(
                    f"round {r} {variant}: {sps:.1f} steps/s, {ups:.1f} updates/s, {samples:.0f} samples/s, "
                    f"load {os.getloadavg()[0]:.2f}",
                    flush=True,
                )
    print(f"load average after: {os.getloadavg()}")
    median = statistics.median
    base = {i: median(r[i] for r in results["1t"]) for i in range(3)} if "1t" in results else None
    print("| variant | agent steps/s | updates/s | samples/s | steps/s vs 1t | samples/s vs 1t |")
    print("|---|---:|---:|---:|---:|---:|")
    for variant in variants:
        sps, ups, samples = (median(r[i] for r in results[variant]) for i in range(3))
        ratios = f"{sps / base[0]:.2f}x | {samples / base[2]:.2f}x" if base else "- | -"
        print(f"| {variant} | {sps:.1f} | {ups:.1f} | {samples:.0f} | {ratios} |")


if __name__ == "__main__":
    main()
