"""Atari Pong for VPG, preprocessed the way the seed (and Karpathy's Pong from pixels) does it.

Variant: ``ALE/Pong-v5`` with frameskip 4 and sticky actions 0.25 (ALE's v5 defaults, the
evaluation protocol of Machado et al. 2018). A fixed frameskip of 4 plays 4x fewer decisions
per game than frameskip 1 at the same difficulty; sticky actions keep the game from being a
memorisable deterministic sequence. ``--sticky 0`` gives the deterministic game.
``PongNoFrameskip-v4`` is not used here: without frameskip each episode is 4x longer for VPG.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

PONG_ID = "ALE/Pong-v5"

# ALE's minimal Pong action set is NOOP, FIRE, RIGHT, LEFT, RIGHTFIRE, LEFTFIRE; in Pong
# RIGHT moves the paddle up and LEFT moves it down (Karpathy's actions 2 and 3).
ACTION_SETS: dict[int, tuple[int, ...]] = {2: (2, 3), 3: (0, 2, 3), 6: (0, 1, 2, 3, 4, 5)}
ACTION_NAMES: dict[int, tuple[str, ...]] = {
    2: ("UP", "DOWN"),
    3: ("NOOP", "UP", "DOWN"),
    6: ("NOOP", "FIRE", "UP", "DOWN", "UPFIRE", "DOWNFIRE"),
}

# The playing field: rows 34..193 lie between the score bar and the bottom border. After
# downsampling by 2 that is rows 17..96 of 105, an 80x80 crop. The geometric centre crop
# (rows 12..91) would keep part of the score bar and cut off the bottom 10 rows of the field,
# where the ball and paddles still play.
FIELD_TOP, FIELD_BOTTOM = 34, 194
BACKGROUND_RED = (144, 109)  # red channel of the two background colours


def preprocess_pong(frame: np.ndarray) -> np.ndarray:
    """(210, 160, 3) uint8 RGB -> (80, 80) uint8: 255 where a paddle or the ball is, else 0.

    One channel (red, where the background colours are unique), downsampled by 2, cropped to
    the playing field, background erased.
    """
    red = frame[FIELD_TOP:FIELD_BOTTOM:2, ::2, 0]
    foreground = (red != BACKGROUND_RED[0]) & (red != BACKGROUND_RED[1])
    return foreground.astype(np.uint8) * 255


def difference_frame(current: np.ndarray, previous: np.ndarray | None) -> np.ndarray:
    """Motion image: (80, 80) int8 in {-1, 0, 1}; zeros for the first step of an episode.

    int8 keeps the frame one byte per pixel all the way to the network.
    """
    if previous is None:
        return np.zeros(current.shape, np.int8)
    return (current > 0).astype(np.int8) - (previous > 0).astype(np.int8)


class PongDifferenceFrames(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Observation: the difference of consecutive preprocessed frames; actions: a reduced set.

    The wrapper keeps the last raw and processed frames (``raw_frame``, ``processed_frame``)
    so the preprocessing inspector shows exactly what the agent saw.
    """

    def __init__(self, env: gym.Env, actions: int = 3) -> None:
        # Recording the constructor arguments lets ``env.spec`` rebuild the wrapped env (gym.make(env.spec)).
        gym.utils.RecordConstructorArgs.__init__(self, actions=actions)
        gym.Wrapper.__init__(self, env)
        self.action_map = np.array(ACTION_SETS[actions])
        self.action_names = ACTION_NAMES[actions]
        self.action_space = gym.spaces.Discrete(len(self.action_map))
        self.observation_space = gym.spaces.Box(-1, 1, (80, 80), np.int8)
        self.raw_frame: np.ndarray | None = None
        self.processed_frame: np.ndarray | None = None

    def _observe(self, raw: np.ndarray, first: bool) -> np.ndarray:
        processed = preprocess_pong(raw)
        diff = difference_frame(processed, None if first else self.processed_frame)
        self.raw_frame, self.processed_frame = raw, processed
        return diff

    def reset(self, **kwargs):
        raw, info = self.env.reset(**kwargs)
        return self._observe(raw, first=True), info

    def step(self, action):
        raw, reward, terminated, truncated, info = self.env.step(int(self.action_map[action]))
        return self._observe(raw, first=False), reward, terminated, truncated, info


def make_pong(
    actions: int = 3, sticky: float = 0.25, render_mode: str | None = None, env_kwargs: dict | None = None
) -> gym.Env:
    """The ``pong`` preset; ``env_kwargs`` (e.g. ``mode``, ``difficulty``) go to gym.make."""
    import ale_py

    gym.register_envs(ale_py)
    make_kwargs = {"frameskip": 4, **(env_kwargs or {})}
    if render_mode is not None:  # passed only when rendering, as envs.gym_make does
        make_kwargs["render_mode"] = render_mode
    env = gym.make(PONG_ID, repeat_action_probability=sticky, full_action_space=False, **make_kwargs)
    return PongDifferenceFrames(env, actions)
