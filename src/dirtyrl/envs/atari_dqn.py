"""Atari preprocessing for DQN (Mnih et al. 2015, "Human-level control through deep RL").

Variant: ``ALE/Pong-v5`` built with ``frameskip=1`` and sticky actions from ``--sticky``
(ALE v5's 0.25 by default, Machado et al. 2018); the frame skip happens here, because DQN's
preprocessing needs the last two raw frames of every skip to take their max.
``PongNoFrameskip-v4`` would do the same with sticky actions off; ``--sticky 0`` gives that.

Each step, its default, and why:

- no-op starts, up to 30 raw frames: the emulator is deterministic, so without a random start
  every episode would begin in the same state and the agent could memorise one trajectory.
- frame skip 4 with a max over the last two frames: Atari draws some objects only on every
  other frame (flicker); the max keeps them. Skipping makes each decision cover 4 frames, 4x
  fewer forward passes per second of game.
- 84x84 grayscale (area interpolation of the whole 210x160 screen), or the seed's 80x80 RGB:
  the playing field cropped and subsampled by 2. Colour triples the input for Pong and adds
  nothing but it is the seed's variant, kept for comparison. ``gray80`` is the same crop in
  grey; ``gray40`` max-pools it 2x2 more (the pong-fast preset): a 4x smaller input, and the
  max keeps the ball (1x2 pixels at 80x80) that averaging would fade into the background.
- frame history of 4: one frame shows where the ball is, not where it is going. Missing
  history at an episode start is zero-filled, exactly as the replay buffer rebuilds it.
- reward clipping to {-1, 0, +1} and end-of-life as terminal: applied by the learner to what
  it stores, never here, so the episode return it reports is always the real game score.
  Pong has no lives; the flag matters for games such as Breakout.
- fire on reset (and after a lost life) for games that wait for FIRE to serve (Breakout);
  off for Pong, which serves by itself.

The frame-skip loop talks to the ALE interface directly (``ale.act`` and the screen getters),
as gymnasium's own ``AtariPreprocessing`` does for the screens: going through ``env.step``
four times per agent step would fetch and copy a full RGB frame each time.
"""

from __future__ import annotations

import ale_py
import gymnasium as gym
import numpy as np
from PIL import Image

from dirtyrl.envs.pong import ACTION_NAMES, ACTION_SETS, FIELD_BOTTOM, FIELD_TOP, PONG_ID

SCREENS = ("gray84", "rgb80", "gray80", "gray40")
SCREEN_SHAPES = {"gray84": (1, 84, 84), "rgb80": (3, 80, 80), "gray80": (1, 80, 80), "gray40": (1, 40, 40)}


def is_atari(env_id: str) -> bool:
    """The DQN Atari path: the preset ``pong`` or any ``ALE/<Game>-v5`` id."""
    return env_id == "pong" or env_id.startswith("ALE/")


def gray84(frame: np.ndarray) -> np.ndarray:
    """(210, 160) uint8 luminance -> (1, 84, 84) uint8, area-averaged (a box filter).

    >>> gray84(np.full((210, 160), 7, np.uint8)).shape, int(gray84(np.full((210, 160), 7, np.uint8)).max())
    ((1, 84, 84), 7)
    """
    return np.asarray(Image.fromarray(frame).resize((84, 84), Image.BOX))[None]


def rgb80(frame: np.ndarray, pong_field: bool) -> np.ndarray:
    """(210, 160, 3) uint8 RGB -> (3, 80, 80) uint8, channels first.

    Pong: the seed's crop of the playing field (rows 34..193, see envs/pong.py) subsampled by
    2. Other games: the whole screen area-averaged to 80x80.

    >>> rgb80(np.zeros((210, 160, 3), np.uint8), pong_field=True).shape
    (3, 80, 80)
    """
    if pong_field:
        small = frame[FIELD_TOP:FIELD_BOTTOM:2, ::2]
    else:
        small = np.asarray(Image.fromarray(frame).resize((80, 80), Image.BOX))
    return np.ascontiguousarray(small.transpose(2, 0, 1))


def gray_small(frame: np.ndarray, size: int, pong_field: bool) -> np.ndarray:
    """(210, 160) uint8 luminance -> (1, size, size) uint8, size 80 or 40.

    Pong: the seed's field crop subsampled by 2 (80x80), then for 40 a 2x2 max-pool, so a
    one-pixel ball survives. Other games: the whole screen area-averaged.

    >>> frame = np.zeros((210, 160), np.uint8); frame[100, 50] = 236  # a ball pixel in the field
    >>> small = gray_small(frame, 40, pong_field=True)
    >>> small.shape, int(small.max()), np.argwhere(small[0]).tolist()
    ((1, 40, 40), 236, [[16, 12]])
    """
    if not pong_field:
        return np.asarray(Image.fromarray(frame).resize((size, size), Image.BOX))[None]
    small = frame[FIELD_TOP:FIELD_BOTTOM:2, ::2]  # (80, 80)
    if size == 40:
        small = small.reshape(40, 2, 40, 2).max(axis=(1, 3))
    return np.ascontiguousarray(small)[None]


class AtariDQNPreprocessing(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """No-op starts, frame skip with a max over the last two frames, resize, fire on reset.

    Observations are single frames, (1, 84, 84) or (3, 80, 80) uint8; ``FrameHistory``
    stacks them. ``raw_frame`` and ``processed_frame`` keep the last input and output so the
    preprocessing inspector shows exactly what the agent saw.
    """

    def __init__(
        self,
        env: gym.Env,
        action_set: tuple[int, ...] | None = None,
        noop_max: int = 30,
        frame_skip: int = 4,
        screen: str = "gray84",
        fire_reset: bool = False,
        pong_field: bool = False,
    ) -> None:
        # Recorded so that ``env.spec`` can rebuild this wrapper (Gymnasium's wrapper convention).
        gym.utils.RecordConstructorArgs.__init__(
            self,
            action_set=action_set,
            noop_max=noop_max,
            frame_skip=frame_skip,
            screen=screen,
            fire_reset=fire_reset,
            pong_field=pong_field,
        )
        gym.Wrapper.__init__(self, env)
        if screen not in SCREENS:
            raise ValueError(f"screen must be one of {SCREENS}, got {screen!r}")
        self.ale = env.unwrapped.ale
        minimal = self.ale.getMinimalActionSet()
        self.ale_actions = [minimal[i] for i in (action_set if action_set is not None else range(len(minimal)))]
        self.noop_action, self.fire_action = ale_py.Action.NOOP, ale_py.Action.FIRE
        self.action_space = gym.spaces.Discrete(len(self.ale_actions))
        self.noop_max, self.frame_skip, self.screen = noop_max, frame_skip, screen
        self.fire_reset, self.pong_field = fire_reset, pong_field
        rgb = screen == "rgb80"
        self.observation_space = gym.spaces.Box(0, 255, SCREEN_SHAPES[screen], np.uint8)
        h, w = self.ale.getScreenDims()
        self._screens = np.zeros((2, h, w, 3) if rgb else (2, h, w), np.uint8)  # the last two raw frames
        self.lives = 0
        self.raw_frame: np.ndarray | None = None
        self.processed_frame: np.ndarray | None = None

    def _grab(self, slot: int) -> None:
        if self.screen == "rgb80":
            self.ale.getScreenRGB(self._screens[slot])
        else:
            self.ale.getScreenGrayscale(self._screens[slot])

    def _observe(self) -> np.ndarray:
        self.raw_frame = np.maximum(self._screens[0], self._screens[1])  # de-flicker
        if self.screen == "rgb80":
            self.processed_frame = rgb80(self.raw_frame, self.pong_field)
        elif self.screen == "gray84":
            self.processed_frame = gray84(self.raw_frame)
        else:
            self.processed_frame = gray_small(self.raw_frame, SCREEN_SHAPES[self.screen][1], self.pong_field)
        return self.processed_frame

    def _act(self, ale_action) -> float:
        """One agent step: ``frame_skip`` emulator frames; grabs the last two screens."""
        reward = 0.0
        for i in range(self.frame_skip):
            reward += self.ale.act(ale_action, 1.0)
            if i >= self.frame_skip - 2:
                self._grab(i - self.frame_skip + 2)
            if self.ale.game_over():
                # Ended mid-skip: the last screen is the final one, max it with itself.
                self._grab(1)
                if i < self.frame_skip - 2:
                    self._screens[0] = self._screens[1]
                break
        return reward

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        _, info = self.env.reset(seed=seed, options=options)
        noops = int(self.env.unwrapped.np_random.integers(1, self.noop_max + 1)) if self.noop_max > 0 else 0
        for _ in range(noops):
            self.ale.act(self.noop_action, 1.0)
            if self.ale.game_over():
                self.ale.reset_game()
        if self.fire_reset:
            self._act(self.fire_action)
        self._grab(0)
        self._screens[1] = self._screens[0]
        self.lives = self.ale.lives()
        info["lives"] = self.lives
        return self._observe(), info

    def step(self, action):
        reward = self._act(self.ale_actions[int(action)])
        terminated = self.ale.game_over(with_truncation=False)
        truncated = self.ale.game_truncated()
        lives = self.ale.lives()
        if self.fire_reset and lives < self.lives and not terminated:
            reward += self._act(self.fire_action)
        self.lives = lives
        return self._observe(), reward, terminated, truncated, {"lives": lives}


class FrameHistory(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """Stack the last k frames along the channel axis; zeros before the episode's first frame.

    Zero padding, not gymnasium's default of repeating the reset frame: the replay buffer
    rebuilds histories with zeros, and the agent must act on the same input it learns from.

    >>> env = FrameHistory(gym.make("CartPole-v1"), 3)
    >>> obs, _ = env.reset(seed=0)
    >>> obs.shape, bool((obs[:8] == 0).all())
    ((12,), True)
    """

    def __init__(self, env: gym.Env, k: int) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, k=k)
        gym.ObservationWrapper.__init__(self, env)
        space = env.observation_space
        self.frame_channels = space.shape[0]
        shape = (k * space.shape[0], *space.shape[1:])
        self.observation_space = gym.spaces.Box(
            np.broadcast_to(np.concatenate([space.low] * k), shape),
            np.broadcast_to(np.concatenate([space.high] * k), shape),
            shape,
            space.dtype,
        )
        self.stack = np.zeros(shape, space.dtype)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        self.stack[:] = 0
        return super().reset(seed=seed, options=options)

    def observation(self, frame: np.ndarray) -> np.ndarray:
        c = self.frame_channels
        self.stack[:-c] = self.stack[c:]
        self.stack[-c:] = frame
        return self.stack.copy()  # a fresh array: the caller may keep it while we shift ours


def make_atari_dqn(
    env_id: str = "pong",
    *,
    actions: int = 3,
    sticky: float = 0.25,
    noop_max: int = 30,
    frame_skip: int = 4,
    screen: str = "gray84",
    frame_stack: int = 4,
    fire_reset: bool | None = None,
    render_mode: str | None = None,
    env_kwargs: list[str] | dict | None = None,
) -> gym.Env:
    """The DQN Atari env: ``pong`` (ALE/Pong-v5, reduced action sets) or any ``ALE/<Game>-v5``.

    ``fire_reset=None`` means: on when the game has a FIRE action, except for Pong.
    ``env_kwargs`` (``--env-kwargs``, e.g. ``mode=1``) go to gym.make, except those a flag sets.
    """
    from dirtyrl.envs import gym_make, parse_env_kwargs, refuse_kwargs

    gym.register_envs(ale_py)
    pong = env_id == "pong"
    kwargs = parse_env_kwargs(env_kwargs)
    refuse_kwargs(
        kwargs,
        {"frameskip": "--frame-skip", "repeat_action_probability": "--sticky", "full_action_space": "the minimal action set"},
    )
    env = gym_make(
        PONG_ID if pong else env_id,
        kwargs,
        render_mode,
        frameskip=1,
        repeat_action_probability=sticky,
        full_action_space=False,
    )
    if fire_reset is None:
        fire_reset = not pong and env.unwrapped.get_action_meanings()[1:2] == ["FIRE"]  # baselines' test
    env = AtariDQNPreprocessing(
        env, ACTION_SETS[actions] if pong else None, noop_max, frame_skip, screen, fire_reset, pong_field=pong
    )
    if pong:
        env.action_names = ACTION_NAMES[actions]
    return FrameHistory(env, frame_stack)
