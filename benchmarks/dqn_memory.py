"""DQN replay memory: bytes per stored transition, and the peak memory of a Pong run.

1. Bytes per stored transition, from the buffer's own arrays (one 84x84 frame is 7,056 bytes).
2. Peak resident memory (max RSS) of ``dirtyrl train dqn --env pong`` with a 200,000-transition
   buffer filled to the brim (200k steps of heat-up, then a stretch of learning), against the
   same run with a 2,000-transition buffer; the difference divided by the extra transitions is
   what one stored transition really costs, allocator and page tables included.

Run:  python benchmarks/dqn_memory.py [TRANSITIONS]
"""

from __future__ import annotations

import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FRAME = 84 * 84


def peak_rss_bytes(buffer_size: int, steps: int, run_dir: Path) -> tuple[int, float]:
    """Max RSS of one training run in a child process, and its wall seconds."""
    code = (
        "import resource, sys\n"
        "from dirtyrl.cli import main\n"
        "rc = main(sys.argv[1:])\n"
        "print('MAXRSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
        "sys.exit(rc)\n"
    )
    flags = f"--env pong --buffer-size {buffer_size} --learning-starts {steps - 2000} --total-steps {steps} --progress off"
    cmd = [sys.executable, "-c", code, "train", "dqn", *flags.split(), "--run-dir", str(run_dir)]
    t0 = time.monotonic()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    kib = int(next(line.split()[1] for line in out.splitlines() if line.startswith("MAXRSS")))
    return kib * 1024, time.monotonic() - t0


def main() -> None:
    from dirtyrl.buffers import FrameReplayBuffer

    transitions = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    buf = FrameReplayBuffer(1_000_000, (1, 84, 84), history=4, n_actions=6)
    print(
        f"bytes per stored transition: {buf.bytes_per_slot} = frame {FRAME} + {buf.bytes_per_slot - FRAME} "
        f"({buf.bytes_per_slot / FRAME:.4f} frames); 1M transitions: {buf.nbytes / 2**30:.2f} GiB"
    )
    with tempfile.TemporaryDirectory() as tmp:
        small, t_small = peak_rss_bytes(2000, 6000, Path(tmp) / "small")
        big, t_big = peak_rss_bytes(transitions, transitions + 2000, Path(tmp) / "big")
    per = (big - small) / (transitions - 2000)
    print("| run | buffer | peak RSS | wall s |")
    print("|---|---:|---:|---:|")
    print(f"| baseline | 2,000 | {small / 2**20:,.0f} MiB | {t_small:.0f} |")
    print(f"| full buffer | {transitions:,} | {big / 2**20:,.0f} MiB | {t_big:.0f} |")
    print(f"\nmeasured per transition: {per:,.0f} bytes = {per / FRAME:.3f} frames (target within 5% of one frame)")
    print(
        f"peak RSS of the full run: {big / 2**30:.2f} GiB; ru_maxrss of this process: "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10:.0f} MiB"
    )


if __name__ == "__main__":
    main()
