"""Run control: stop conditions inside a batch, and episodes that do not end.

The rules (docs/algorithms.md, "Run control", says them to the user):

- ``--total-steps`` and ``--total-episodes`` are checked after every episode by every
  algorithm; VPG also checks between the episodes of a batch (``vpg_share_done``) and then
  learns from the partial batch, so a run ends within one episode of its limit.
- The episode in progress when a limit is reached is played to its end: the final checkpoint
  then sits at an episode boundary (DQN resumes exactly from it) and every logged return is a
  whole episode's.
- An episode that lasts ``--long-episode-warning`` steps gets one warning line, the first time
  (the agent may be waiting for FIRE). If the run's step limit has passed by then, the episode
  is cut there (reported as a truncation, like a time limit), so a run on an env whose episodes
  never end still stops: ``EpisodeGuard`` does both.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any, TextIO

import gymnasium as gym


def vpg_share_done(
    total_steps: int | None,
    total_episodes: int | None,
    env_steps: int,
    episodes: int,
    my_episodes: int,
    my_steps: int,
    my_position: int,
    world_size: int,
) -> bool:
    """Whether a VPG rank stops playing its share of the batch before its next episode.

    ``env_steps`` and ``episodes`` are the global counts at the start of the batch; this rank
    has played ``my_episodes`` episodes and ``my_steps`` steps of the batch so far, and its next
    episode would be episode ``my_position`` of the batch in episode order (ranks fill the batch
    in rank order). Every rank plays at least one episode per batch (the update needs one from
    each). Each of the ``world_size`` ranks takes its own steps times ``world_size`` as its
    estimate of the global count, so N workers stop within about one episode each of the
    limit; one process stops within one episode of it.

    >>> vpg_share_done(1000, None, env_steps=900, episodes=30, my_episodes=2, my_steps=120, my_position=2, world_size=1)
    True
    >>> vpg_share_done(1000, None, env_steps=900, episodes=30, my_episodes=2, my_steps=60, my_position=2, world_size=1)
    False
    >>> vpg_share_done(None, 10, env_steps=0, episodes=8, my_episodes=2, my_steps=50, my_position=2, world_size=1)
    True
    >>> vpg_share_done(None, 10, env_steps=0, episodes=10, my_episodes=0, my_steps=0, my_position=3, world_size=2)
    False
    """
    if my_episodes == 0:
        return False
    return (total_steps is not None and env_steps + my_steps * world_size >= total_steps) or (
        total_episodes is not None and episodes + my_position >= total_episodes
    )


def batch_share(
    first: int,
    count: int,
    played: list[Any],
    run: Any,
    env_steps: int,
    episodes: int,
    batch_start: int,
    world_size: int,
) -> Iterator[int]:
    """Episode indices ``first .. first + count - 1`` of a VPG rank's share of a batch, while
    ``vpg_share_done`` allows another: the loop stops early when a limit is reached.

    ``played`` is the list the caller appends each finished episode to (each has ``actions``),
    ``run`` holds ``total_steps`` and ``total_episodes``; ``env_steps``, ``episodes`` and
    ``batch_start`` (the global index of the batch's first episode) are counted before it.

    >>> from types import SimpleNamespace as NS
    >>> played = []
    >>> for index in batch_share(8, 4, played, NS(total_steps=None, total_episodes=10), 0, 8, 8, 1):
    ...     played.append(NS(actions=[0] * 50))
    >>> len(played)  # episodes 8 and 9: the run stops at 10 episodes, in the middle of the batch
    2
    """
    for index in range(first, first + count):
        steps = sum(len(ep.actions) for ep in played)
        if vpg_share_done(
            run.total_steps, run.total_episodes, env_steps, episodes, len(played), steps, index - batch_start, world_size
        ):
            return
        yield index


def steps_left(total_steps: int | None, env_steps: int, world_size: int = 1) -> int | None:
    """This process's share of the steps the run may still take (None: no step limit).

    >>> steps_left(1000, 400), steps_left(1000, 400, world_size=4), steps_left(None, 400)
    (600, 150, None)
    """
    if total_steps is None:
        return None
    return max(0, -(-(total_steps - env_steps) // world_size))


def long_episode_message(bound: int, fire: bool) -> str:
    """The one warning line for the first episode that lasts ``bound`` steps.

    >>> print(long_episode_message(10_000, fire=True))  # doctest: +NORMALIZE_WHITESPACE
    dirtyrl: warning: an episode has lasted 10000 steps without ending (--long-episode-warning 10000);
    the agent may be waiting for FIRE: this game serves only after it is pressed
    """
    why = (
        "the agent may be waiting for FIRE: this game serves only after it is pressed"
        if fire
        else "the agent may be stuck where the env never ends an episode (or waiting for FIRE)"
    )
    return f"dirtyrl: warning: an episode has lasted {bound} steps without ending (--long-episode-warning {bound}); {why}"


def cut_message(episode_steps: int) -> str:
    """The line printed when an episode is cut because the run's step limit has passed.

    >>> print(cut_message(12_000))
    dirtyrl: the run's --total-steps has passed; the episode in progress is cut at step 12000 (a truncation)
    """
    return (
        f"dirtyrl: the run's --total-steps has passed; the episode in progress is cut at step {episode_steps} (a truncation)"
    )


def needs_fire(env: gym.Env) -> bool:
    """Whether the env is an Atari game whose action set has FIRE (it may wait for it to serve)."""
    meanings = getattr(env.unwrapped, "get_action_meanings", None)
    try:
        return callable(meanings) and "FIRE" in meanings()
    except Exception:  # an env whose get_action_meanings needs state it lacks: no hint, not a crash
        return False


class LongEpisodes:
    """The rules for episodes that do not end: one warning for the first that lasts ``bound``
    steps, and a cut (a truncation) for any such episode once the step budget is spent.

    ``bound`` 0 turns both off. ``steps_left`` is this process's share of the run's step budget
    (None: no step limit); ``step`` spends one step of it. One object serves one env
    (``EpisodeGuard``) or all the episodes VPG plays side by side (``--num-envs``).
    """

    def __init__(self, bound: int, steps_left: int | None, fire: bool, stream: TextIO | None = None) -> None:
        self.bound = bound
        self.steps_left = steps_left
        self.fire = fire
        self.stream = stream
        self.warned = False

    def step(self, episode_steps: int, done: bool) -> bool:
        """After one step of an episode now ``episode_steps`` long; True: cut it here."""
        if self.steps_left is not None:
            self.steps_left -= 1
        if not self.bound or episode_steps < self.bound or done:
            return False
        stream = self.stream or sys.stderr
        if not self.warned:
            self.warned = True
            print(long_episode_message(self.bound, self.fire), file=stream, flush=True)
        if self.steps_left is not None and self.steps_left <= 0:
            print(cut_message(episode_steps), file=stream, flush=True)
            return True
        return False


class EpisodeGuard(gym.Wrapper):
    """Counts the steps of each episode and applies ``LongEpisodes`` to them.

    A cut episode is a truncation, exactly like a time limit: VPG's rewards-to-go stop there,
    DQN still bootstraps from it.
    """

    def __init__(self, env: gym.Env, bound: int, steps_left: int | None, stream: TextIO | None = None) -> None:
        super().__init__(env)
        self.rules = LongEpisodes(bound, steps_left, needs_fire(env), stream)
        self.episode_steps = 0

    def reset(self, **kwargs: Any) -> tuple[Any, dict]:
        self.episode_steps = 0
        return self.env.reset(**kwargs)

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.episode_steps += 1
        truncated = truncated or self.rules.step(self.episode_steps, terminated or truncated)
        return obs, reward, terminated, truncated, info
