"""Check that a run fits the machine *before* it takes anything.

A replay buffer, a batch of episodes or a worker count that cannot fit in memory or on the
cores is refused up front with one line that gives the numbers (needed against available),
before any run directory is created or an earlier result touched. Without this, a buffer too
big for the machine ends in numpy's ``_ArrayMemoryError`` traceback, or worse: ``np.zeros``
reserves lazily, so an over-committed buffer is granted and the kernel's OOM killer ends the
run hours later, when the buffer has filled.

The functions that decide are pure (numbers in, a message or None out); the ``check_*``
wrappers read the machine and raise ``UserError``. Nothing here imports numpy or torch.
"""

from __future__ import annotations

import os
from pathlib import Path

from dirtyrl.errors import UserError

# Resident memory of one training process before it stores anything: Python, numpy, torch,
# Gymnasium and the TensorBoard writer. Measured with `/usr/bin/time -v` on `train vpg`:
# 352 MiB on CartPole-v1, 379 MiB on pong (ALE loaded), torch 2.13 CPU build.
PROCESS_BYTES = 400 * 2**20
# A machine's memory is never all ours: leave this share of MemAvailable to everything else
# (page cache that must stay, the shell, other processes that grow).
HEADROOM = 0.10


def format_bytes(n: float) -> str:
    """Bytes in binary units with three significant digits, as ``free -h`` prints them.

    >>> format_bytes(512), format_bytes(7064), format_bytes(706_400_000_000)
    ('512 B', '6.90 KiB', '658 GiB')
    """
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            value = n / scale
            decimals = 0 if value >= 100 else 1 if value >= 10 else 2
            return f"{value:,.{decimals}f} {unit}"
    return f"{int(n)} B"


def parse_meminfo(text: str) -> int | None:
    """Bytes of ``MemAvailable`` in the text of /proc/meminfo (None if the line is missing).

    MemAvailable is the kernel's estimate of what a new process can get without swapping:
    free memory plus the reclaimable page cache. MemFree alone would understate it badly.

    >>> parse_meminfo("MemTotal:       24683656 kB\\nMemFree: 1000 kB\\nMemAvailable:   24327196 kB\\n")
    24911048704
    >>> parse_meminfo("MemTotal: 1 kB\\n") is None
    True
    """
    for line in text.splitlines():
        if line.startswith("MemAvailable:"):
            fields = line.split()
            return int(fields[1]) * (1024 if len(fields) > 2 and fields[2] == "kB" else 1)
    return None


def available_memory(meminfo: str | Path = "/proc/meminfo") -> int | None:
    """Bytes of memory a new allocation can get: MemAvailable on Linux, else a portable guess.

    The fallback (macOS, BSD) is the free physical pages from ``sysconf``; None when even that
    is unknown, and then no memory check is made.
    """
    try:
        found = parse_meminfo(Path(meminfo).read_text())
        if found is not None:
            return found
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def usable_cores() -> int:
    """Cores this process may run on: its CPU affinity where the OS has one, else all of them."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def memory_refusal(what: str, needed: int, available: int | None, detail: str, fix: str) -> str | None:
    """The one-line refusal when ``needed`` bytes exceed the usable share of ``available``, else None.

    >>> memory_refusal("the replay buffer", 100, 1000, "10 x 10 B", "lower --buffer-size") is None
    True
    >>> print(memory_refusal("the replay buffer", 2**31, 2**30, "2 x 1 GiB", "lower --buffer-size"))
    ... # doctest: +NORMALIZE_WHITESPACE
    the replay buffer needs 2.00 GiB (2 x 1 GiB) but this machine has 922 MiB of memory available
    (90% of MemAvailable 1.00 GiB); lower --buffer-size
    >>> memory_refusal("anything", 10**15, None, "", "") is None  # unknown memory: no check
    True
    """
    if available is None:
        return None
    usable = int(available * (1.0 - HEADROOM))
    if needed <= usable:
        return None
    return (
        f"{what} needs {format_bytes(needed)} ({detail}) but this machine has {format_bytes(usable)} of memory "
        f"available ({1.0 - HEADROOM:.0%} of MemAvailable {format_bytes(available)}); {fix}"
    )


def replay_refusal(capacity: int, bytes_per_slot: int, frame_shape: tuple[int, ...], available: int | None) -> str | None:
    """Refusal for a DQN replay buffer of ``capacity`` slots that does not fit, else None.

    The need counts the buffer plus one process's own memory; the fix names the largest
    capacity that fits.

    >>> print(replay_refusal(100_000_000, 7064, (1, 84, 84), 24 * 2**30))  # doctest: +NORMALIZE_WHITESPACE
    --buffer-size 100000000 needs 658 GiB (100,000,000 transitions x 7,064 bytes: one (1, 84, 84) frame
    plus action, reward and flags, and 400 MiB for the process) but this machine has 21.6 GiB of memory
    available (90% of MemAvailable 24.0 GiB); lower --buffer-size to at most 3,223,866
    >>> replay_refusal(1_000_000, 7064, (1, 84, 84), 24 * 2**30) is None  # the Atari default, 6.58 GiB
    True
    """
    usable = 0 if available is None else int(available * (1.0 - HEADROOM))
    fits = max(0, usable - PROCESS_BYTES) // bytes_per_slot
    return memory_refusal(
        f"--buffer-size {capacity}",
        capacity * bytes_per_slot + PROCESS_BYTES,
        available,
        f"{capacity:,} transitions x {bytes_per_slot:,} bytes: one {tuple(frame_shape)} frame plus action, reward "
        f"and flags, and {format_bytes(PROCESS_BYTES)} for the process",
        f"lower --buffer-size to at most {fits:,}",
    )


def vpg_batch_bytes(episodes_per_rank: int, max_episode_steps: int, bytes_per_step: int) -> int:
    """Worst case of one rank's batch: every episode runs to the env's time limit.

    The worst case is not far-fetched: an Atari agent that never presses FIRE plays until the
    time limit (27,000 steps for an ALE v5 game).

    >>> format_bytes(vpg_batch_bytes(4, 27_000, 4 * 84 * 84 * 4))  # 4 stacked 84x84 frames as float32
    '11.4 GiB'
    """
    return episodes_per_rank * max_episode_steps * bytes_per_step


def workers_refusal(workers: int, cores: int, per_worker: int, available: int | None) -> str | None:
    """Refusal for ``--workers`` that exceeds the cores or the memory of this machine, else None.

    >>> workers_refusal(2, 2, 400 * 2**20, 24 * 2**30) is None
    True
    >>> print(workers_refusal(8, 2, 400 * 2**20, 24 * 2**30))  # doctest: +NORMALIZE_WHITESPACE
    --workers 8 needs 8 cores (one process per worker, each playing and learning on a core of its own)
    but this process may use 2; use --workers 2 or fewer, or spread the workers over machines with torchrun
    >>> print(workers_refusal(2, 2, 20 * 2**30, 24 * 2**30))  # doctest: +NORMALIZE_WHITESPACE
    --workers 2 needs 40.0 GiB (2 processes x 20.0 GiB: the process itself plus its share of the batch)
    but this machine has 21.6 GiB of memory available (90% of MemAvailable 24.0 GiB); use --workers 1
    or fewer, or lower --batch-episodes
    """
    if workers > cores:
        return (
            f"--workers {workers} needs {workers} cores (one process per worker, each playing and learning on a core "
            f"of its own) but this process may use {cores}; use --workers {cores} or fewer, or spread the workers "
            "over machines with torchrun"
        )
    usable = None if available is None else int(available * (1.0 - HEADROOM))
    fits = max(1, (usable or 0) // max(per_worker, 1))
    return memory_refusal(
        f"--workers {workers}",
        workers * per_worker,
        available,
        f"{workers} processes x {format_bytes(per_worker)}: the process itself plus its share of the batch",
        f"use --workers {fits} or fewer, or lower --batch-episodes",
    )


def replay_bytes_per_slot(frame_shape: tuple[int, ...], history: int, frame_dtype: object, n_actions: int) -> int:
    """Bytes per slot of the replay buffer DQN would build, read from a tiny one of the same kind.

    Asking the buffer class itself keeps this figure right when its layout changes.

    >>> replay_bytes_per_slot((1, 84, 84), 4, "uint8", 6)  # 7,056 frame bytes + action, reward, flags, position
    7064
    """
    from dirtyrl.buffers import FrameReplayBuffer

    return FrameReplayBuffer(history + 1, frame_shape, history, frame_dtype, n_actions).bytes_per_slot


def check_replay_buffer(
    capacity: int, frame_shape: tuple[int, ...], history: int, frame_dtype: object, n_actions: int
) -> None:
    """UserError (one line, exit 2) when a replay buffer of ``capacity`` slots cannot fit in memory."""
    per_slot = replay_bytes_per_slot(frame_shape, history, frame_dtype, n_actions)
    refusal = replay_refusal(capacity, per_slot, frame_shape, available_memory())
    if refusal:
        raise UserError(refusal)


def vpg_step_bytes(obs_dim: int, sparse: bool, per_step_path: bool, hidden: int) -> int | None:
    """Bytes VPG keeps per step of a batch until the update; None when it depends on the data.

    The batched path stores each observation as float32 (plus its action and reward); the
    per-step path keeps each step's autograd graph instead: the float32 input, the hidden
    pre-activation and ReLU output, and the logits. Sparse difference frames (Pong, Atari)
    store only their non-zero pixels, whose count depends on the game: no worst case is
    claimed for them.

    >>> vpg_step_bytes(4, sparse=False, per_step_path=False, hidden=64)  # CartPole
    32
    >>> vpg_step_bytes(6400, sparse=True, per_step_path=False, hidden=200) is None
    True
    """
    if per_step_path:
        return obs_dim * 4 + 4 * hidden * 4
    if sparse:
        return None
    return obs_dim * 4 + 8 + 8


def check_cores(workers_here: int) -> None:
    """UserError when more worker processes would run here than this process has cores for."""
    refusal = workers_refusal(workers_here, usable_cores(), 0, None)
    if refusal:
        raise UserError(refusal)


def check_vpg_batch(
    episodes_per_rank: int, max_episode_steps: int | None, bytes_per_step: int | None, workers_here: int
) -> None:
    """UserError when this machine cannot hold its workers and their batches (worst case).

    ``max_episode_steps`` None (an env without a time limit) or ``bytes_per_step`` None (sparse
    frames) leave the batch out: its worst case is unbounded or data-dependent, and the
    long-episode warning speaks up instead.
    """
    batch = 0
    if max_episode_steps and bytes_per_step:
        batch = vpg_batch_bytes(episodes_per_rank, max_episode_steps, bytes_per_step)
    available = available_memory()
    if workers_here > 1:
        refusal = workers_refusal(workers_here, usable_cores(), PROCESS_BYTES + batch, available)
    elif batch:
        refusal = memory_refusal(
            f"--batch-episodes {episodes_per_rank}",
            PROCESS_BYTES + batch,
            available,
            f"{episodes_per_rank} episodes x up to {max_episode_steps:,} steps x {format_bytes(bytes_per_step)} "
            f"per stored step, when every episode runs to the env's time limit, and {format_bytes(PROCESS_BYTES)} "
            "for the process",
            "lower --batch-episodes",
        )
    else:
        refusal = None
    if refusal:
        raise UserError(refusal)
