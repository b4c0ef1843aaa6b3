"""Atari screens for VPG on any game: Karpathy's difference frames, generalised.

Karpathy's Pong input is the difference of two binarised 80x80 frames (envs/pong.py). Other
games have no single background colour to erase, so the general-game equivalent here is:

- the ALE's own luminance screen (210x160 uint8), area-averaged to 80x80;
- the *sign* of the change since the previous agent step, an (80, 80) int8 in {-1, 0, +1}:
  what moved and in which direction its brightness changed. Static scenery cancels out, so
  the frame is sparse like Pong's and VPG's sparse path (one W1 row per non-zero pixel) keeps
  acting cheap. On binarised Pong frames this is exactly Karpathy's difference.
- ``ALE/Pong-v5`` itself gets the seed's crop and binarisation (envs/pong.py) with the full
  minimal action set, so the generic id and the ``pong`` preset see the same pixels.
- FIRE on reset, and after every lost life, for games whose action 1 is FIRE (Breakout,
  SpaceInvaders serve only after FIRE): a near-random agent can otherwise stand still until
  the 108,000-frame limit, and every such episode teaches nothing. Off for Pong, which serves
  by itself.

Frame skip and sticky actions are the ALE v5 defaults (4 and 0.25, Machado et al. 2018), as
for the ``pong`` preset; ``--sticky`` sets the latter, ``--env-kwargs frameskip=N`` the former.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from PIL import Image

from dirtyrl.envs.pong import PongDifferenceFrames

SIZE = 80


def gray80(screen: np.ndarray) -> np.ndarray:
    """(210, 160) uint8 luminance -> (80, 80) uint8, area-averaged (a box filter).

    >>> gray80(np.full((210, 160), 9, np.uint8)).shape, int(gray80(np.full((210, 160), 9, np.uint8)).max())
    ((80, 80), 9)
    """
    return np.asarray(Image.fromarray(screen).resize((SIZE, SIZE), Image.BOX))


def sign_difference(current: np.ndarray, previous: np.ndarray | None) -> np.ndarray:
    """(H, W) int8 in {-1, 0, 1}: sign of the brightness change; zeros on an episode's first step.

    >>> sign_difference(np.array([[9, 5, 5]], np.uint8), np.array([[5, 5, 9]], np.uint8)).tolist()
    [[1, 0, -1]]
    """
    if previous is None:
        return np.zeros(current.shape, np.int8)
    return np.sign(current.astype(np.int16) - previous.astype(np.int16)).astype(np.int8)


def atari_game(env: gym.Env) -> str:
    """The ROM name of an ``ale_py`` env made by gym.make, e.g. 'breakout'."""
    return env.unwrapped.spec.kwargs["game"]


def fire_action(env: gym.Env) -> int | None:
    """Index of FIRE in the env's action set when the game needs it to serve, else None.

    The test OpenAI baselines' FireResetEnv uses: action 1 is FIRE. Pong has FIRE at 1 too
    but serves by itself; pressing it on reset would only shift every episode by one step.
    """
    meanings = env.unwrapped.get_action_meanings()
    if meanings[1:2] != ["FIRE"] or atari_game(env) == "pong":
        return None
    return 1


class FireOnReset(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Press FIRE after ``reset`` and after every lost life, for games that wait for it."""

    def __init__(self, env: gym.Env, fire: int = 1) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, fire=fire)
        gym.Wrapper.__init__(self, env)
        self.fire = fire
        self.lives = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        obs, _, terminated, truncated, info = self.env.step(self.fire)
        if terminated or truncated:  # a game over on the serve itself: start again, unseeded
            obs, info = self.env.reset()
        self.lives = self.env.unwrapped.ale.lives()
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        lives = self.env.unwrapped.ale.lives()
        if lives < self.lives and not (terminated or truncated):
            obs, extra, terminated, truncated, info = self.env.step(self.fire)
            reward += extra  # the serve's reward belongs to this agent step
        self.lives = lives
        return obs, reward, terminated, truncated, info


class AtariDifferenceFrames(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Observation: ``sign_difference`` of consecutive gray 80x80 screens, (80, 80) int8.

    Keeps ``raw_frame`` (the 210x160 luminance screen) and ``processed_frame`` (its 80x80
    average) so the preprocessing inspector shows exactly what the agent saw.
    """

    def __init__(self, env: gym.Env) -> None:
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.Wrapper.__init__(self, env)
        self.ale = env.unwrapped.ale
        self.observation_space = gym.spaces.Box(-1, 1, (SIZE, SIZE), np.int8)
        self.raw_frame: np.ndarray | None = None
        self.processed_frame: np.ndarray | None = None

    def _observe(self, first: bool) -> np.ndarray:
        # Read the luminance screen from the ALE itself: whatever obs_type the env was made with.
        raw = self.ale.getScreenGrayscale()
        processed = gray80(raw)
        diff = sign_difference(processed, None if first else self.processed_frame)
        self.raw_frame, self.processed_frame = raw, processed
        return diff

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        _, info = self.env.reset(seed=seed, options=options)
        return self._observe(first=True), info

    def step(self, action):
        _, reward, terminated, truncated, info = self.env.step(action)
        return self._observe(first=False), reward, terminated, truncated, info


def wrap_atari_vpg(env: gym.Env) -> gym.Env:
    """An ``ale_py`` env made by gym.make -> difference frames (+ FIRE where the game needs it)."""
    if atari_game(env) == "pong" and len(env.observation_space.shape) == 3:  # the seed's crop needs RGB
        return PongDifferenceFrames(env, actions=6)  # 6: the whole minimal action set, in ALE's order
    fire = fire_action(env)
    if fire is not None:
        env = FireOnReset(env, fire)
    return AtariDifferenceFrames(env)
