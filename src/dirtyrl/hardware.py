"""Hardware-aware choices made once at the start of a run: bf16 autocast and the conv memory format.

bf16 autocast pays off only on CPUs that execute bf16 natively (AVX512_BF16 or AMX). Elsewhere
oneDNN emulates it, and a DQN training step ran 6.5x *slower* on an AVX2-only AMD EPYC (Zen 3).
So ``--autocast bf16`` on a CPU without those flags measures the slowdown on a tiny conv, says
so in one line, and runs in fp32. The channels-last (NHWC) layout is a win on some CPUs and
nets and a loss on others, so ``--channels-last auto`` times one training step of the run's own
network in both layouts and keeps the faster one.

The decisions are pure functions of what was detected or measured (tests import them); the
measuring functions only gather those inputs.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

BF16_FLAGS = ("avx512_bf16", "amx_bf16")
CHANNELS_LAST_MARGIN = 0.95  # NHWC must be at least 5% faster: below that it is noise on a shared machine


def cpu_info(path: str = "/proc/cpuinfo") -> tuple[str, set[str]]:
    """(model name, flags) of the first CPU listed in /proc/cpuinfo; ("unknown", set()) elsewhere."""
    model, flags = "unknown", set()
    try:
        text = Path(path).read_text()
    except OSError:
        return model, flags
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and model == "unknown":
            model = value.strip()
        elif key.strip() == "flags" and not flags:
            flags = set(value.split())
    return model, flags


def native_bf16(flags: set[str]) -> bool:
    """Whether the CPU executes bf16 arithmetic natively.

    >>> native_bf16({"avx2", "avx512f", "avx512_bf16"}), native_bf16({"avx2", "fma"})
    (True, False)
    """
    return any(f in flags for f in BF16_FLAGS)


def decide_autocast(requested: str, device_type: str, native: bool, slowdown: float | None) -> tuple[str, str]:
    """(mode to run, why). ``requested``: off, bf16, or auto (bf16 only where it is native).

    A GPU always gets what was asked (bf16 there is native). On a CPU without native bf16 an
    explicit ``bf16`` runs in fp32 instead, and the reason quotes the measured slowdown.

    >>> decide_autocast("bf16", "cpu", False, 6.5)
    ('off', 'no native bf16 on this CPU (no avx512_bf16/amx_bf16): bf16 autocast measured 6.5x slower, running in fp32')
    >>> decide_autocast("bf16", "cpu", True, None)[0], decide_autocast("auto", "cpu", False, None)[0]
    ('bf16', 'off')
    """
    if requested == "off":
        return "off", "fp32 (--autocast off)"
    if device_type != "cpu":
        return "bf16", f"bf16 on {device_type} (--autocast {requested})"
    if native:
        return "bf16", f"the CPU has native bf16 ({'/'.join(BF16_FLAGS)}): bf16 autocast (--autocast {requested})"
    if requested == "auto":
        return "off", "fp32: no native bf16 on this CPU (--autocast auto)"
    measured = f"bf16 autocast measured {slowdown:.1f}x slower" if slowdown is not None else "bf16 would be emulated"
    return "off", f"no native bf16 on this CPU (no avx512_bf16/amx_bf16): {measured}, running in fp32"


def decide_channels_last(requested: str, conv_net: bool, seconds: tuple[float, float] | None) -> tuple[bool, str]:
    """(use NHWC, why). ``seconds`` = (NCHW, NHWC) time of one training step, measured for ``auto``.

    >>> decide_channels_last("auto", True, (0.010, 0.007))
    (True, 'channels-last: a training step took 7.0 ms in NHWC vs 10.0 ms in NCHW (--channels-last auto)')
    >>> decide_channels_last("auto", True, (0.010, 0.0099))[0], decide_channels_last("on", False, None)[0]
    (False, False)
    """
    if not conv_net:
        return False, "no convolutions: the memory format does not apply"
    if requested in ("on", "off"):
        return requested == "on", f"channels-last {requested} (--channels-last {requested})"
    if seconds is None:
        raise ValueError("--channels-last auto needs the measured step times")
    nchw, nhwc = seconds
    timing = f"a training step took {nhwc * 1e3:.1f} ms in NHWC vs {nchw * 1e3:.1f} ms in NCHW (--channels-last auto)"
    if nhwc < CHANNELS_LAST_MARGIN * nchw:
        return True, f"channels-last: {timing}"
    return False, f"contiguous NCHW: {timing}"


def _thread_seconds(fn, repeats: int) -> float:
    """Best-of-``repeats`` CPU time of this thread: what ``fn`` costs on a core of its own."""
    fn()  # warm-up: oneDNN picks and caches its kernels on the first call
    best = float("inf")
    for _ in range(repeats):
        start = time.thread_time()
        fn()
        best = min(best, time.thread_time() - start)
    return best


def measure_layouts(net: nn.Module, batch: torch.Tensor, repeats: int = 5) -> tuple[float, float]:
    """(NCHW, NHWC) seconds of one forward + backward of a copy of ``net`` on ``batch`` (uint8).

    The copy leaves the run's own network, its RNG and its gradients untouched.
    """
    times = []
    for enabled in (False, True):
        trial = copy.deepcopy(net).use_channels_last(enabled)

        def step(trial=trial) -> None:
            trial(batch).square().mean().backward()
            trial.zero_grad(set_to_none=True)

        times.append(_thread_seconds(step, repeats))
    return times[0], times[1]


def measure_bf16_slowdown(repeats: int = 5) -> float:
    """How many times slower a tiny conv + matmul runs under CPU bf16 autocast than in fp32."""
    generator = torch.Generator().manual_seed(0)  # leaves the global RNG stream alone
    x = torch.rand(32, 4, 40, 40, generator=generator)
    w1 = torch.rand(16, 4, 8, 8, generator=generator)
    w2 = torch.rand(16 * 9 * 9, 256, generator=generator)

    def run() -> None:
        h = F.relu(F.conv2d(x, w1, stride=4))  # (32, 16, 9, 9)
        h.flatten(1) @ w2

    def run_bf16() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            run()

    return _thread_seconds(run_bf16, repeats) / _thread_seconds(run, repeats)
