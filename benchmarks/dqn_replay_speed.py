"""Replay cost per gradient step: uniform against prioritized sampling, side by side.

Fills a replay buffer of 40x40 grey frames (the pong-fast screen; 4-frame history, 3-step
returns) to half its capacity, then times what the loop does around each gradient step of the
pong-fast preset: two ``add`` calls (a step every 2 agent steps), one ``sample`` of 32 and, for
prioritized replay, one ``update_priorities`` with fresh TD errors. Rounds alternate the two
buffers; medians. Wall-clock microseconds on one thread.

Run:  python benchmarks/dqn_replay_speed.py [CAPACITY ...]     (default: 100000 1000000)
"""

from __future__ import annotations

import statistics
import sys
import time

import numpy as np

from dirtyrl.buffers import FrameReplayBuffer
from dirtyrl.hardware import cpu_info
from dirtyrl.prioritized import PrioritizedReplayBuffer

FRAME = (1, 40, 40)
BATCH, N_STEP, HISTORY = 32, 3, 4


def filled(kind: str, capacity: int) -> FrameReplayBuffer:
    if kind == "uniform":
        buf = FrameReplayBuffer(capacity, FRAME, HISTORY)
    else:
        buf = PrioritizedReplayBuffer(capacity, FRAME, HISTORY, alpha=0.6, n_step=N_STEP)
    frame = np.zeros(FRAME, np.uint8)
    for _ in range(capacity // 2 // 1000):
        buf.start_episode(frame)
        for t in range(1000):
            buf.add(t % 3, 0.0, frame, False, t == 999)
    return buf


def per_step_us(buf: FrameReplayBuffer, rng: np.random.Generator, steps: int = 2000) -> float:
    frame = np.zeros(FRAME, np.uint8)
    prioritized = isinstance(buf, PrioritizedReplayBuffer)
    start = time.perf_counter()
    for _ in range(steps):
        buf.add(0, 0.0, frame, False, False)
        buf.add(0, 0.0, frame, False, False)
        batch = buf.sample(BATCH, rng, N_STEP, 0.99)
        if prioritized:
            buf.update_priorities(batch.indices, rng.normal(size=BATCH))
    return (time.perf_counter() - start) / steps * 1e6


def main() -> None:
    capacities = [int(a) for a in sys.argv[1:]] or [100_000, 1_000_000]
    model, flags = cpu_info()
    print(f"CPU: {model}; avx512f: {'avx512f' in flags}")
    rng = np.random.default_rng(0)
    print("| capacity | uniform µs per gradient step | prioritized µs | extra µs |")
    print("|---:|---:|---:|---:|")
    for capacity in capacities:
        buffers = {kind: filled(kind, capacity) for kind in ("uniform", "prioritized")}
        times: dict[str, list[float]] = {kind: [] for kind in buffers}
        for _ in range(3):
            for kind, buf in buffers.items():
                times[kind].append(per_step_us(buf, rng))
        uniform, prioritized = (statistics.median(times[k]) for k in ("uniform", "prioritized"))
        print(f"| {capacity:,} | {uniform:.0f} | {prioritized:.0f} | {prioritized - uniform:.0f} |", flush=True)


if __name__ == "__main__":
    main()
