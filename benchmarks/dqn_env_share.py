"""DQN on Pong: the share of the training loop's time spent in the env, before and after the vector env.

Arms, each the real ``dqn.train`` run in this process, alternated round by round so that
machine noise hits them alike (medians are reported):

- ``python``: the Python pipeline as it was before the vector env, ``src/dirtyrl/envs/atari_dqn.py``
  read from git at commit ``BEFORE`` (frame skip through ``ale.act``, max-pool, Pillow resize).
  It has no ``send``, so the loop steps it in order, exactly as the loop did then.
- ``vector``: today's ``make_atari_dqn``: ale-py's C++ vector env; the loop sends the action,
  finishes the update due while the emulator plays, then collects the frame.
- ``vector-nosend``: the vector env stepped in order (its ``send`` hidden from the loop): what the
  C++ pipeline alone gives, without the overlap.
- ``python-2t``, ``vector-2t`` (only when the process may use two cores or more): the same two
  envs under ``--learner-threads 2``, the two-core mode, which never sends.

Env time is the wall time the loop's thread spends inside env calls: ``reset``, ``step`` (for the
vector env: the wait for the frame) and ``send``; the outermost wrapper is timed, so frame
stacking counts as env. Loop time runs from the end of the heat-up (``LEARNING_STARTS`` steps
of random play) to the last step. Settings: the preset's net, screen and update schedule, a
20k replay buffer, epsilon fixed at the preset's final value (acting runs the forward pass on
almost every step, as late in training), channels-last off, one torch thread.

Before the arms, the script prints how far Pillow's BOX resize (before) is from OpenCV's
INTER_AREA (the vector env's, and the Python pipeline's now) on the same max-pooled Pong screens,
and what an agent step costs each env alone (random actions, no learning) beside the bare
emulator's cost per frame and per grey grab.

Run:  OMP_NUM_THREADS=1 taskset -c 0 python benchmarks/dqn_env_share.py [STEPS] [ROUNDS] [PRESET ...]
      (presets: default pong-fast; drop taskset to give the emulator thread a core of its own)
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BEFORE = "0a15823"  # the last commit with the Python pipeline as DQN's only Atari path
LEARNING_STARTS = 1000
ROOT = Path(__file__).resolve().parent.parent
PRESETS = {"default": None, "pong-fast": "pong-fast"}
ARMS = ("python", "vector", "vector-nosend")
TWO_CORE_ARMS = ("python-2t", "vector-2t")


def cpu_model() -> str:
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")), "unknown")
    flags = next((line.split(":", 1)[1].split() for line in out.splitlines() if line.startswith("Flags")), [])
    wanted = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    return f"{model} (flags: {' '.join(wanted) or 'none of avx2/avx512'})"


def load_before():
    """envs/atari_dqn.py as of BEFORE, imported as its own module."""
    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{BEFORE}:src/dirtyrl/envs/atari_dqn.py"], capture_output=True, text=True, check=True
    ).stdout
    path = Path(tempfile.mkdtemp()) / "atari_dqn_before.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("atari_dqn_before", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def resize_difference(steps: int = 400) -> str:
    """Pillow BOX vs OpenCV INTER_AREA, 210x160 -> 84x84, on max-pooled Pong screens from random play."""
    import numpy as np
    from PIL import Image

    from dirtyrl.envs.atari_dqn import VectorAtariFrames, area_resize

    env = VectorAtariFrames("pong", None, sticky=0.0, noop_max=0, raw_frames=True)
    env.reset(seed=5)
    rng = np.random.default_rng(0)
    differing, largest, total = 0, 0, 0
    for _ in range(steps):
        env.step(int(rng.integers(6)))
        frame = env.raw_frame
        box = np.asarray(Image.fromarray(frame).resize((84, 84), Image.BOX)).astype(np.int16)
        diff = np.abs(box - area_resize(frame, 84))
        differing += int((diff > 0).sum())
        largest = max(largest, int(diff.max()))
        total += diff.size
    env.close()
    return f"{differing / total:.1%} of 84x84 pixels differ, by up to {largest} grey levels ({steps} Pong screens)"


def step_costs(before, steps: int = 2000) -> str:
    """Milliseconds per agent step of each env alone (random actions, no learning), and the bare
    emulator's cost per frame and per grey grab, on the cores this process may use."""
    import ale_py
    import numpy as np
    from ale_py import roms

    from dirtyrl.envs.atari_dqn import make_atari_dqn

    def per_step(env) -> float:
        env.reset(seed=1)
        actions = np.random.default_rng(0).integers(3, size=steps)
        t0 = time.perf_counter()
        for action in actions:
            *_, terminated, truncated, _ = env.step(int(action))
            if terminated or truncated:
                env.reset()
        env.close()
        return (time.perf_counter() - t0) / steps * 1e3

    parts = []
    for screen in ("gray84", "gray40"):
        old, new = per_step(before.make_atari_dqn("pong", screen=screen)), per_step(make_atari_dqn("pong", screen=screen))
        parts.append(f"{screen}: python {old:.3f} ms, vector {new:.3f} ms per agent step")
    ale = ale_py.ALEInterface()
    ale.setFloat("repeat_action_probability", 0.25)
    ale.loadROM(roms.get_rom_path("pong"))
    minimal = ale.getMinimalActionSet()
    t0 = time.perf_counter()
    for action in np.random.default_rng(0).integers(3, size=4 * steps):
        ale.act(minimal[int(action)])
        if ale.game_over():
            ale.reset_game()
    frame_ms = (time.perf_counter() - t0) / (4 * steps) * 1e3
    screen = np.zeros((210, 160), np.uint8)
    t0 = time.perf_counter()
    for _ in range(steps):
        ale.getScreenGrayscale(screen)
    grab_ms = (time.perf_counter() - t0) / steps * 1e3
    parts.append(f"bare ALE: {frame_ms:.3f} ms per frame, {grab_ms:.3f} ms per grey grab")
    return "; ".join(parts)


class EnvTimer:
    """Wraps the env DQN gets and sums the wall time spent in its calls after the heat-up."""

    def __init__(self, env, send_visible: bool) -> None:
        self.env = env
        self.steps = 0
        self.env_seconds = 0.0
        self.start = self.end = None
        self.window_steps = 0
        base = env.unwrapped
        if hasattr(base, "send"):
            base.send = self._timed(base.send) if send_visible else None

    def _timed(self, fn):
        def call(*args, **kwargs):
            t0 = time.perf_counter()
            out = fn(*args, **kwargs)
            if self.start is not None:
                self.env_seconds += time.perf_counter() - t0
            return out

        return call

    def wrap(self):
        import gymnasium as gym

        timer = self

        class Timed(gym.Wrapper):
            def reset(self, **kwargs):
                return timer._timed(self.env.reset)(**kwargs)

            def step(self, action):
                out = timer._timed(self.env.step)(action)
                timer.steps += 1
                now = time.perf_counter()
                if timer.steps == LEARNING_STARTS:
                    timer.start = now
                elif timer.start is not None:
                    timer.end, timer.window_steps = now, timer.window_steps + 1
                return out

        return Timed(self.env)


def run_arm(arm: str, preset: str | None, steps: int, run_dir: Path, before) -> tuple[float, float]:
    """(env share of the loop, loop steps/s) over the learning phase of one real dqn.train run."""
    from dirtyrl.algos import dqn
    from dirtyrl.config import EnvConfig, RunConfig

    original = dqn.make_dqn_env
    timers: list[EnvTimer] = []

    def make_env(cfg, raw_frames: bool = False):
        if arm.startswith("python"):
            env = before.make_atari_dqn(
                cfg.env.env,
                actions=cfg.env.actions,
                sticky=cfg.env.sticky,
                noop_max=cfg.noop_max,
                frame_skip=cfg.frame_skip,
                screen=cfg.screen,
                frame_stack=cfg.frame_stack,
            )
        else:
            env = original(cfg, raw_frames)
        timers.append(EnvTimer(env, send_visible=arm == "vector"))
        return timers[-1].wrap()

    resolved = dqn.resolve(dqn.Config(env=EnvConfig(env="pong"), preset=preset))
    dqn.make_dqn_env = make_env
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            dqn.train(
                dqn.Config(
                    env=EnvConfig(env="pong"),
                    run=RunConfig(total_steps=steps, run_dir=str(run_dir), progress="off", threads=1, checkpoint_every=10**9),
                    preset=preset,
                    buffer_size=20_000,
                    learning_starts=LEARNING_STARTS,
                    eps_start=resolved.eps_end,
                    eps_end=resolved.eps_end,
                    channels_last="off",
                    learner_threads=2 if arm.endswith("-2t") else 1,
                )
            )
    finally:
        dqn.make_dqn_env = original
    timer = timers[-1]
    loop = timer.end - timer.start
    return timer.env_seconds / loop, timer.window_steps / loop


def main() -> None:
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 2500
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    presets = sys.argv[3:] or list(PRESETS)
    print(f"CPU: {cpu_model()}")
    print(f"cores this process may use: {sorted(os.sched_getaffinity(0))}; load average before: {os.getloadavg()}")
    print(f"resize filters: {resize_difference()}", flush=True)
    before = load_before()
    print(f"env alone: {step_costs(before)}", flush=True)
    arms = ARMS + (TWO_CORE_ARMS if len(os.sched_getaffinity(0)) >= 2 else ())
    results: dict[tuple[str, str], list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            for preset in presets:
                for arm in arms:
                    share, sps = run_arm(arm, PRESETS[preset], steps, Path(tmp) / f"{preset}-{arm}-{r}", before)
                    results.setdefault((preset, arm), []).append((share, sps))
                    print(
                        f"round {r} {preset} {arm}: env share {share:.1%}, {sps:.1f} steps/s, load {os.getloadavg()[0]:.2f}",
                        flush=True,
                    )
    print(f"load average after: {os.getloadavg()}")
    median = statistics.median
    print("| preset | env | env share of the loop | env ms per step | loop steps/s | share vs python | steps/s vs python |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for preset in presets:
        base_share = median(s for s, _ in results[(preset, "python")])
        base_sps = median(v for _, v in results[(preset, "python")])
        for arm in arms:
            share, sps = median(s for s, _ in results[(preset, arm)]), median(v for _, v in results[(preset, arm)])
            print(
                f"| {preset} | {arm} | {share:.1%} | {share / sps * 1e3:.2f} | {sps:.1f} | {share / base_share:.2f}x | "
                f"{sps / base_sps:.2f}x |"
            )


if __name__ == "__main__":
    main()
