"""The doctor's "wrappers" row: what the wrappers between an env and the agent do to rewards
and to episode ends.

``gym.make`` wraps an env in whatever its registration adds (a time limit, the env checker,
wrappers named in ``additional_wrappers``), and dirty-rl adds its own (the observation policy,
Atari preprocessing). A wrapper that negates the reward, or ends episodes where the env does
not, breaks learning without a single error. This check plays the env as ``make_env`` builds
it and compares every step with what the base env (``env.unwrapped``) returned for the same
step, then names the difference: rewards unchanged, sign flipped, scaled, clipped, shifted;
ends unchanged, cut by a time limit (expected), or different.

Why one instance and not two: the base env's ``step`` is observed in place while the wrappers
call it, so both sides saw exactly the same dynamics by construction. A second, identically
seeded base env would drift as soon as a wrapper maps actions (Pong's 3 actions to ALE ids),
repeats them (DQN's frame skip: several base steps per agent step, whose rewards are summed
here), or steps during ``reset`` (no-op starts, FIRE).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from dirtyrl.doctor.checks import Result

EXPECTED = "the env's rewards and ends, or a stated transform"


def name_reward_transform(base: Sequence[float], wrapped: Sequence[float]) -> str:
    """Name what turned the env's rewards ``base`` into the agent's ``wrapped``, step by step.

    >>> name_reward_transform([1, -2, 0.5, 0], [1, -2, 0.5, 0])
    'unchanged'
    >>> name_reward_transform([1, -2, 0.5, 0], [-1, 2, -0.5, 0])
    'sign flipped'
    >>> name_reward_transform([1, -2, 0.5, 0], [0.1, -0.2, 0.05, 0])
    'scaled by 0.1'
    >>> name_reward_transform([1, -2, 0.5, 0], [1, -1, 0.5, 0])
    'clipped to [-1, 1]'
    >>> name_reward_transform([-0.05, 1, -0.05], [-0.05, 0.5, -0.05])  # only the upper bound reached
    'clipped to [-0.5, 0.5]'
    >>> name_reward_transform([3, -2, 0.5, 0], [1, -1, 1, 0])
    'replaced by its sign (-1, 0, +1)'
    >>> name_reward_transform([1, -2, 0.5, 0], [2, -1, 1.5, 1])
    'shifted by +1'
    >>> name_reward_transform([1, 1, 1], [-1, -1, -1])  # one value only: a flip and a shift look alike
    'sign flipped'
    >>> name_reward_transform([1, -2, 0.5], [1, 5, 0.5])
    'changed (no simple rule; step 1: -2 -> 5)'
    """
    b, w = np.asarray(base, np.float64), np.asarray(wrapped, np.float64)
    if b.shape != w.shape:
        raise ValueError(f"{len(b)} env rewards against {len(w)} wrapped ones")
    scale = max(1.0, float(np.abs(b).max(initial=0.0)), float(np.abs(w).max(initial=0.0)))

    def same(x: np.ndarray) -> bool:
        return bool(np.allclose(w, x, rtol=1e-5, atol=1e-6 * scale))

    if same(b):
        return "unchanged"
    if b.any() and same(-b):
        return "sign flipped"
    if np.ptp(b) > 0:  # with a single reward value, scaling, clipping and shifting look alike
        i = int(np.argmax(np.abs(b)))
        k = float(w[i] / b[i])
        if same(k * b):
            return f"sign flipped and scaled by {-k:.4g}" if k < 0 else f"scaled by {k:.4g}"
        # A bound is seen only where a reward reached it: try the symmetric [-c, c] first.
        c, lo, hi = float(np.abs(w).max()), float(w.min()), float(w.max())
        for low, high in ((-c, c), (lo, hi)):
            span = f"[-{high:.4g}, {high:.4g}]" if np.isclose(low, -high) else f"[{low:.4g}, {high:.4g}]"
            if same(np.clip(b, low, high)):
                return f"clipped to {span}"
            if same(np.clip(-b, low, high)):
                return f"sign flipped and clipped to {span}"
        if same(np.sign(b)):
            return "replaced by its sign (-1, 0, +1)"
    c = float(np.median(w - b))
    if same(b + c):
        return f"shifted by {c:+.4g}"
    j = int(np.argmax(~np.isclose(w, b, rtol=1e-5, atol=1e-6 * scale)))
    return f"changed (no simple rule; step {j}: {b[j]:.4g} -> {w[j]:.4g})"


def time_limit(env: Any) -> int | None:
    """The ``max_episode_steps`` of the first TimeLimit wrapper in ``env``'s chain, or None."""
    while isinstance(env, gym.Wrapper):
        if isinstance(env, gym.wrappers.TimeLimit):
            return int(env._max_episode_steps)
        env = env.env
    return None


def _end(terminated: bool, truncated: bool) -> str:
    """How an episode stands after a step; terminated wins (a time limit may add truncated to it)."""
    return "terminated" if terminated else "truncated" if truncated else "goes on"


def wrappers_result(env: gym.Env, seed: int, label: str = "", steps: int = 1000, seconds: float = 2.0) -> Result:
    """Play ``env`` (as ``make_env`` built it) with random actions; compare every step with its base env's.

    At most ``steps`` agent steps or about ``seconds``; ``label`` (an env's name) starts the
    measured text when given. The env is left open for the caller.
    """
    prefix = f"{label}: " if label else ""
    start = time.monotonic()
    base = env.unwrapped
    calls: list[tuple[float, bool, bool]] = []  # (reward, terminated, truncated) of each base step
    original: Callable = base.step

    def observed_step(action: Any):
        out = original(action)
        calls.append((float(out[1]), bool(out[2]), bool(out[3])))
        return out

    base.step = observed_step  # an instance attribute: what every wrapper's self.env.step reaches
    rng = np.random.default_rng(seed)
    limit = time_limit(env)
    base_rewards: list[float] = []
    wrapped_rewards: list[float] = []
    notes: list[str] = []
    broken = ""
    broken_pair = ("", "")
    blind = False
    episodes = t = 0
    try:
        env.reset(seed=seed)
        calls.clear()  # steps a wrapper takes while resetting (no-op starts) are no agent step's
        for _ in range(steps):
            _, reward, terminated, truncated, _ = env.step(int(rng.integers(env.action_space.n)))
            t += 1
            if not calls:  # the wrappers drive the base some other way (e.g. the emulator directly)
                blind = True
                break
            base_rewards.append(sum(c[0] for c in calls))
            wrapped_rewards.append(float(reward))
            env_end = _end(any(c[1] for c in calls), any(c[2] for c in calls))
            calls.clear()
            agent_end = _end(bool(terminated), bool(truncated))
            if agent_end != env_end:
                if env_end == "goes on" and agent_end == "truncated" and t == limit:
                    note = f"truncated at {limit} steps by a time limit (expected)"
                elif env_end == "goes on":
                    note = f"ends earlier: {agent_end} at step {t} of an episode where the env goes on"
                else:
                    broken = f"at step {t} of an episode the env {env_end}, the agent is told it {agent_end}"
                    broken_pair = (env_end, agent_end)
                    break
                if note not in notes:
                    notes.append(note)
            if terminated or truncated:
                env.reset()
                calls.clear()
                episodes, t = episodes + 1, 0
            if time.monotonic() - start > seconds:
                break
    finally:
        if vars(base).get("step") is observed_step:
            del base.step
    if blind:
        measured = f"{prefix}not measured: the wrappers step the base env without calling its step()"
        return Result("env", "wrappers", True, measured, EXPECTED, "", time.monotonic() - start, {"rewards": "", "ends": []})
    rewards = name_reward_transform(base_rewards, wrapped_rewards)
    ends = "; ".join(notes) if notes else "ends unchanged"
    if not notes and limit is not None:
        ends += f", time limit {limit} not reached"
    measured = f"{prefix}rewards {rewards}; {ends} ({len(base_rewards)} steps, {episodes} episodes)"
    data = {"rewards": rewards, "ends": notes, "broken_end": broken}
    elapsed = time.monotonic() - start
    if broken:
        suspect = {
            ("truncated", "terminated"): "a wrapper turns the env's truncation into termination (a time-limit cut "
            "treated as terminal)",
            ("terminated", "truncated"): "a wrapper turns the env's termination into truncation (the learner "
            "bootstraps through terminal states)",
        }.get(broken_pair, "a wrapper hides the env's episode end: the agent plays on past it")
        return Result("env", "wrappers", False, prefix + broken, EXPECTED, suspect, elapsed, data)
    if "sign flipped" in rewards:
        suspect = "a wrapper negates the reward (sign flipped): the agent is trained to lose"
        return Result("env", "wrappers", False, measured, EXPECTED, suspect, elapsed, data)
    return Result("env", "wrappers", True, measured, EXPECTED, "", elapsed, data)


def check_wrappers(env_id: str, seed: int, env_kwargs: list[str] | None = None) -> Result:
    """The wrappers row of ``dirtyrl doctor --env``: ``env_id`` as ``make_env`` builds it."""
    from dirtyrl.envs import make_env

    env = make_env(env_id, env_kwargs=env_kwargs)
    try:
        return wrappers_result(env, seed)
    finally:
        env.close()


def own_env_builders() -> dict[str, Callable[[], gym.Env]]:
    """dirty-rl's own env construction, a few presets: what the "env wrappers" self-test plays.

    DQN's Atari pipeline is not among them: it drives the emulator itself (``ale.act`` in Python,
    or ale-py's C++ vector env), so there is no base ``step`` to compare with. It does not clip
    rewards either: the learner clips Atari rewards to their sign on purpose (``--clip-rewards``,
    docs/environments.md), and the logged return stays the game's score.
    """
    from dirtyrl.envs import make_env

    return {
        "CartPole-v1": lambda: make_env("CartPole-v1"),
        "dirtyrl/Probe6-v0": lambda: make_env("dirtyrl/Probe6-v0"),
        "dirtyrl/Probe8-v0": lambda: make_env("dirtyrl/Probe8-v0"),  # a 3-step time limit
        "pong": lambda: make_env("pong"),
    }


def check_own_wrappers(seed: int = 0, steps: int = 300) -> tuple[bool, str, str, dict]:
    """The "env wrappers" self-test: every ``own_env_builders`` env gives the agent the game's own
    rewards, and ends its episodes where the env does, or at the registered time limit."""
    expected = "rewards unchanged; ends unchanged or at the time limit"
    limited = []
    for label, build in own_env_builders().items():
        env = build()
        try:
            result = wrappers_result(env, seed, label, steps)
        finally:
            env.close()
        time_limit_only = all(note.endswith("by a time limit (expected)") for note in result.data["ends"])
        if not result.passed or result.data["rewards"] != "unchanged" or not time_limit_only:
            return False, result.measured, expected, {"bug": result.suspect or "a wrapper changes rewards or ends"}
        if result.data["ends"]:
            limited.append(label)
    cut = f"; cut at the time limit: {', '.join(limited)}" if limited else ""
    return True, f"{len(own_env_builders())} envs: rewards unchanged{cut}", expected, {}
