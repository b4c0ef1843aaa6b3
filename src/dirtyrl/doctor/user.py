"""``dirtyrl doctor --agent module:function`` and ``dirtyrl doctor --env ID``.

``--agent`` trains your agent on each probe through your own function (the protocol is in
doctor/agents.py and docs/doctor.md) and judges it exactly as the project's own algorithms are
judged: probabilities, Q-values, greedy actions, and the training-versus-evaluation returns
whose gap is the signature of an acting bug. A probe is skipped when your agent's interface
cannot be judged on it (probes 1-3 and 8 need ``q_values``).

``--env`` checks an environment before any agent meets it: Gymnasium's own ``check_env``,
determinism (two copies reset with one seed and driven by one action sequence must agree
exactly), and a random-policy baseline (mean return and episode length, and whether episodes
end at all).
"""

from __future__ import annotations

import re
import time
import warnings
from typing import Any

import numpy as np

from dirtyrl.doctor.agents import evaluate, load_agent_factory
from dirtyrl.doctor.checks import Result
from dirtyrl.doctor.probes import PROBES, judge
from dirtyrl.doctor.signatures import diagnose
from dirtyrl.doctor.witnessing import ProbeWatch, witness_rows
from dirtyrl.doctor.wrappers import check_wrappers
from dirtyrl.errors import UserError

DEFAULT_AGENT_STEPS = 3000
AGENT_PROBES = [1, 2, 3, 4, 5, 6, 7, 8, 10]  # 9 needs a frame history the agent keeps itself: ask for it with --probes


def _judgeable(probe_number: int, agent: Any) -> bool:
    probe = PROBES[probe_number]
    has_q, has_p = hasattr(agent, "q_values"), hasattr(agent, "action_probs")
    return bool((probe.values and has_q) or (probe.right and (has_q or has_p)) or probe.optimum is not None)


def agent_results(spec: str, steps: int | None, seed: int, probes: list[int] | None = None) -> list[Result]:
    """Every applicable probe, each with an agent freshly made by ``spec`` (``module:function``)."""
    from dirtyrl.envs import make_env
    from dirtyrl.envs.probes import register_probes

    register_probes()  # so that the agent's own gym.make("dirtyrl/ProbeN-v0") finds them
    factory = load_agent_factory(spec)
    steps = steps or DEFAULT_AGENT_STEPS
    if steps < 1:
        raise UserError(f"--steps must be >= 1, got {steps}")
    results = []
    for number in probes or AGENT_PROBES:
        probe = PROBES[number]
        start = time.monotonic()
        with ProbeWatch() as watch:  # what the agent does while it trains, not what it reports
            agent = factory(probe.env_id, steps, seed)
        if not hasattr(agent, "act"):
            raise UserError(f"--agent {spec}: the object it returned has no act(obs) method (docs/doctor.md)")
        if not _judgeable(number, agent):
            continue
        if number == 9 and hasattr(agent, "q_values"):
            probe = type(probe)(9, threshold=probe.threshold, optimum=probe.optimum)  # judged by returns: obs are not stacks
        env = make_env(probe.env_id)
        try:
            gamma = float(getattr(agent, "gamma", 0.99))
            witness = watch.result(agent, int(env.action_space.n))
            results.append(judge("agent", probe, agent, gamma, env, seed, time.monotonic() - start, witness))
        finally:
            env.close()
    return diagnose(results + witness_rows("agent", results))


def check_env_results(
    env_id: str, seed: int, episodes: int = 20, max_steps: int = 10_000, env_kwargs: list[str] | None = None
) -> list[Result]:
    """env checker, determinism and a random baseline for ``env_id`` (any id make_env accepts),
    made with ``env_kwargs`` (``--env-kwargs KEY=VALUE ...``, as ``train`` takes them)."""
    from gymnasium.utils.env_checker import check_env

    from dirtyrl.envs import make_env

    results = []
    start = time.monotonic()
    env = make_env(env_id, env_kwargs=env_kwargs)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            check_env(env, skip_render_check=True)
        # Gymnasium colours its warnings for terminals; the table is plain text.
        notes = sorted({re.sub(r"\x1b\[[0-9;]*m", "", str(w.message)).splitlines()[0][:80] for w in caught})
        measured = "passed" + (f"; {len(notes)} warning(s): {notes[0]}" if notes else "")
        results.append(
            Result("env", "env checker", True, measured, "gymnasium check_env passes", "", time.monotonic() - start)
        )
    except Exception as exc:  # check_env raises AssertionError (and others) with the rule broken
        msg = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:150]
        results.append(
            Result(
                "env", "env checker", False, msg, "gymnasium check_env passes", "the env's API: spaces, reset/step, seeding"
            )
        )
    finally:
        env.close()
    results.append(check_wrappers(env_id, seed, env_kwargs))
    results.append(_determinism(env_id, seed, env_kwargs))
    results.append(_random_baseline(env_id, seed, episodes, max_steps, env_kwargs))
    return results


def _rollout(env_id: str, seed: int, steps: int, env_kwargs: list[str] | None) -> list[tuple]:
    from dirtyrl.envs import make_env

    env = make_env(env_id, env_kwargs=env_kwargs)
    rng = np.random.default_rng(seed)
    trace = []
    try:
        obs, _ = env.reset(seed=seed)
        trace.append(("reset", np.asarray(obs).copy()))
        for _ in range(steps):
            obs, reward, terminated, truncated, _ = env.step(int(rng.integers(env.action_space.n)))
            trace.append((np.asarray(obs).copy(), float(reward), bool(terminated), bool(truncated)))
            if terminated or truncated:
                obs, _ = env.reset()
                trace.append(("reset", np.asarray(obs).copy()))
    finally:
        env.close()
    return trace


def _determinism(env_id: str, seed: int, env_kwargs: list[str] | None, steps: int = 300) -> Result:
    start = time.monotonic()
    a, b = _rollout(env_id, seed, steps, env_kwargs), _rollout(env_id, seed, steps, env_kwargs)
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        same = all(np.array_equal(u, v) if isinstance(u, np.ndarray) else u == v for u, v in zip(x, y, strict=True))
        if not same:
            return Result(
                "env",
                "determinism",
                False,
                f"two runs from seed {seed} differ at record {i}",
                "identical under one seed",
                "seeding: use self.np_random (seeded by reset(seed=...)), not random/np.random or the clock",
                time.monotonic() - start,
            )
    return Result(
        "env", "determinism", True, f"{steps} steps identical twice", "identical under one seed", "", time.monotonic() - start
    )


def _random_baseline(env_id: str, seed: int, episodes: int, max_steps: int, env_kwargs: list[str] | None) -> Result:
    from dirtyrl.envs import make_env

    start = time.monotonic()
    env = make_env(env_id, env_kwargs=env_kwargs)
    rng = np.random.default_rng(seed)

    class Random:
        def act(self, obs: Any) -> int:
            return int(rng.integers(env.action_space.n))

    lengths: list[int] = []
    returns: list[float] = []
    try:
        for i in range(episodes):
            obs, _ = env.reset(seed=seed * 1000 + i)
            total, n, done = 0.0, 0, False
            while not done and n < max_steps:
                obs, reward, terminated, truncated, _ = env.step(Random().act(obs))
                total, n, done = total + float(reward), n + 1, terminated or truncated
                if not np.isfinite(reward):
                    return Result(
                        "env",
                        "random baseline",
                        False,
                        f"reward {reward} at step {n}",
                        "finite rewards",
                        "the env's reward computation",
                        time.monotonic() - start,
                    )
            if not done:
                return Result(
                    "env",
                    "random baseline",
                    False,
                    f"episode {i} still running after {max_steps} steps",
                    "episodes end",
                    "episode end: no termination and no time limit (register with max_episode_steps)",
                    time.monotonic() - start,
                )
            returns.append(total)
            lengths.append(n)
    finally:
        env.close()
    measured = f"return {np.mean(returns):+.3g} +- {np.std(returns):.3g}, length {np.mean(lengths):.1f} ({episodes} episodes)"
    return Result("env", "random baseline", True, measured, "episodes end, rewards finite", "", time.monotonic() - start)


__all__ = ["agent_results", "check_env_results", "evaluate"]
