"""The env factory: one ``make_env`` used by training, evaluation, inspection and rendering,
so what you inspect is exactly what the agent sees.

``--env`` takes any registered Gymnasium id with a discrete action space, the preset ``pong``
(see ``envs/pong.py`` for the ALE variant and why), or a probe env ``dirtyrl/ProbeN-v0``.
"""

from __future__ import annotations

import difflib

import gymnasium as gym

from dirtyrl.envs.pong import make_pong
from dirtyrl.envs.probes import register_probes
from dirtyrl.errors import UserError

PONG = "pong"


def is_pong(env_id: str) -> bool:
    return env_id == PONG


def _register_all() -> None:
    register_probes()
    try:
        import ale_py

        gym.register_envs(ale_py)
    except ImportError:  # Atari is optional for the classic-control envs
        pass


def check_env_id(env_id: str) -> None:
    """A one-line UserError for an id that is not registered, with the closest matches."""
    if is_pong(env_id):
        return
    _register_all()
    if env_id in gym.registry:
        return
    close = difflib.get_close_matches(env_id, [PONG, *gym.registry.keys()], n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else "; try CartPole-v1 or pong"
    raise UserError(f"unknown env '{env_id}'{hint}")


def make_env(env_id: str, *, actions: int = 3, sticky: float = 0.25, render_mode: str | None = None) -> gym.Env:
    """Build one env; the action space must be Discrete (a UserError otherwise).

    Seeding is done by the caller through ``reset(seed=...)`` at every episode start, so an
    episode is reproducible from (seed, rank, episode index) alone; that is what makes exact
    resume possible without pickling emulator state.
    """
    check_env_id(env_id)
    if is_pong(env_id):
        return make_pong(actions, sticky, render_mode)
    try:
        env = gym.make(env_id, render_mode=render_mode)
    except gym.error.DependencyNotInstalled as exc:
        raise UserError(f"env '{env_id}' needs an extra package: {exc}") from exc
    if not isinstance(env.action_space, gym.spaces.Discrete):
        kind = type(env.action_space).__name__
        env.close()
        raise UserError(
            f"env '{env_id}' has a {kind} action space; dirty-rl's algorithms need a Discrete one "
            "(try CartPole-v1, LunarLander-v3 or pong)"
        )
    return env


def reward_threshold(env_id: str) -> float | None:
    """The env spec's reward threshold (None for Pong, whose spec has none)."""
    if is_pong(env_id):
        return None
    _register_all()
    return gym.spec(env_id).reward_threshold


def solved_threshold(env_id: str, target_return: float | None) -> float | None:
    """``--target-return`` when given, else the env spec's reward threshold (None for Pong)."""
    return target_return if target_return is not None else reward_threshold(env_id)


def episode_seed(seed: int, rank: int, episode: int) -> int:
    """Seed of one episode: distinct per (seed, rank, episode), reproducible from counters alone.

    >>> episode_seed(1, 0, 0) == episode_seed(1, 0, 0) != episode_seed(1, 1, 0)
    True
    """
    import numpy as np

    return int(np.random.SeedSequence([seed, rank, episode]).generate_state(1)[0])
