"""DQN on Pong: learning-phase agent steps/s against the network's compute floor, 1 and 2 cores.

Each variant is the real ``dqn.train``, run in this process and pinned to its cores with
``sched_setaffinity`` (one core: {0}; two: {0, 1}): Nature CNN, a gradient step every 4 agent
steps, batch 32, epsilon fixed at 0.01 so that (almost) every step runs the acting forward, as
late in training. Its learning-phase speed is taken between the first and last ``charts/sps``
log points after the heat-up, both in wall-clock time and per second of CPU time consumed
(the machine is shared: CPU time is what the loop would do on cores it had to itself).

The floor is measured in the same run, pinned to core 0, with the same network settings, in
CPU time of its thread: bare batch-1 forward (acting) + one quarter of a bare training step
(the real ``td_loss``, backward and Adam step on a ready-made uint8 batch; no replay sampling,
no env, no bookkeeping). ``loop / floor`` says how much of the time the loop spends on the
network.

Run:  python benchmarks/dqn_pong_speed.py [STEPS] [ROUNDS] [VARIANT ...]
      variants: 1t (one thread), 1t-nocl (channels-last off), 1t-bf16, 2t (--learner-threads 2), 2t-bf16
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
    "1t": ({0}, {"channels_last": "on"}),
    "1t-nocl": ({0}, {"channels_last": "off"}),
    "1t-bf16": ({0}, {"autocast": "bf16"}),
    "2t": ({0, 1}, {"learner_threads": 2}),
    "2t-bf16": ({0, 1}, {"learner_threads": 2, "autocast": "bf16"}),
}
LEARNING_STARTS = 1000


def loop_sps(variant: str, steps: int, run_dir: Path) -> tuple[float, float]:
    """Learning-phase (wall, CPU) agent steps/s of the real ``dqn.train``, pinned to the variant's cores.

    The run happens in this process, so that the CPU time it consumed can be read beside the
    wall clock at every ``charts/sps`` log point: CPU-time steps/s is what the loop would do on
    cores it had to itself, wall-clock steps/s what it did on the shared machine.
    """
    from dirtyrl.algos import dqn
    from dirtyrl.config import EnvConfig, RunConfig
    from dirtyrl.telemetry import RunLogger

    cores, extra = VARIANTS[variant]
    marks: list[tuple[int, float, float]] = []
    scalar = RunLogger.scalar

    def recording_scalar(self, tag, value, step):
        if tag == "charts/sps" and step > LEARNING_STARTS + 200:
            marks.append((step, time.perf_counter(), time.process_time()))
        scalar(self, tag, value, step)

    os.sched_setaffinity(0, cores)
    RunLogger.scalar = recording_scalar
    try:
        run = RunConfig(total_steps=steps, run_dir=str(run_dir), progress="off")
        dqn.train(
            dqn.Config(
                env=EnvConfig(env="pong"),
                run=run,
                net="nature",
                train_every=4,
                batch_size=32,
                buffer_size=20_000,
                learning_starts=LEARNING_STARTS,
                eps_start=0.01,
                eps_end=0.01,
                log_every=25,
                **extra,
            )
        )
    finally:
        RunLogger.scalar = scalar
        os.sched_setaffinity(0, {0})
    (s0, w0, c0), (s1, w1, c1) = marks[0], marks[-1]
    return (s1 - s0) / (w1 - w0), (s1 - s0) / (c1 - c0)


def floor_sps(channels_last: bool, bf16: bool, repeats: int = 30) -> tuple[float, float, float]:
    """(floor steps/s, forward ms, training step ms), one thread, this process pinned to core 0."""
    import numpy as np
    import torch

    from dirtyrl.algos import dqn
    from dirtyrl.buffers import Batch
    from dirtyrl.config import EnvConfig

    os.sched_setaffinity(0, {0})
    torch.set_num_threads(1)
    layout = "on" if channels_last else "off"
    cfg = dqn.resolve(dqn.Config(env=EnvConfig(env="pong"), channels_last=layout, autocast="bf16" if bf16 else "off"))
    device = torch.device("cpu")
    q, target = dqn.build_nets(cfg, (4, 84, 84), 3, device)
    learner = dqn.Learner(q, target, cfg, device)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (32, 4, 84, 84), dtype=np.uint8)
    batch = Batch(
        frames,
        rng.integers(0, 3, 32),
        rng.normal(size=32).astype(np.float32),
        frames[::-1].copy(),
        np.zeros(32, bool),
        np.zeros(32, bool),
        np.arange(32),
    )
    obs = frames[0]

    def timed(fn, n):
        for _ in range(3):
            fn()
        t0 = time.thread_time()  # CPU time of this thread: robust to other jobs on the core
        for _ in range(n):
            fn()
        return (time.thread_time() - t0) / n

    def train_step():
        learner.start(batch)
        learner.finish()

    forward = min(timed(lambda: dqn.greedy_action(q, obs, device, cfg), 100) for _ in range(3))
    step = min(timed(train_step, repeats) for _ in range(3))
    return 1.0 / (forward + step / 4), forward * 1e3, step * 1e3


def main() -> None:
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    variants = sys.argv[3:] or ["1t", "2t", "1t-nocl", "1t-bf16", "2t-bf16"]
    print(f"load average before: {os.getloadavg()}")
    loops: dict[str, list[tuple[float, float]]] = {v: [] for v in variants}
    floors: dict[tuple, list[tuple]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        # Rounds alternate the variants, so that machine noise hits them alike; medians are reported.
        for r in range(rounds):
            for variant in variants:
                key = ("nocl" not in variant, "bf16" in variant)
                if len(floors.setdefault(key, [])) <= r:
                    floors[key].append(floor_sps(*key))
                with contextlib.redirect_stdout(io.StringIO()):
                    loops[variant].append(loop_sps(variant, steps, Path(tmp) / f"{variant}-{r}"))
                wall, cpu = loops[variant][-1]
                print(
                    f"round {r} {variant}: {wall:.1f} steps/s wall, {cpu:.1f} per CPU second "
                    f"(floor {floors[key][-1][0]:.1f}), load {os.getloadavg()[0]:.2f}",
                    flush=True,
                )
    print(f"load average after: {os.getloadavg()}")
    median = statistics.median
    base = median(w for w, _ in loops["1t"]) if "1t" in loops else None
    print(
        "| variant | loop steps/s (wall) | per CPU s | floor steps/s | forward ms | train step ms | wall / floor | "
        "CPU / floor | wall vs 1t |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for variant in variants:
        key = ("nocl" not in variant, "bf16" in variant)
        wall, cpu = median(w for w, _ in loops[variant]), median(c for _, c in loops[variant])
        floor, fwd, step = (median(f[i] for f in floors[key]) for i in range(3))
        ratio = f"{wall / base:.2f}x" if base else "-"
        print(
            f"| {variant} | {wall:.1f} | {cpu:.1f} | {floor:.1f} | {fwd:.2f} | {step:.1f} | {wall / floor:.2f} | "
            f"{cpu / floor:.2f} | {ratio} |"
        )


if __name__ == "__main__":
    main()
