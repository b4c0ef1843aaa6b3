"""Atari preprocessing for DQN (Mnih et al. 2015, "Human-level control through deep RL").

The frames come from ale-py's C++ vector env (``ale_py.vector_env.AtariVectorEnv``, one env):
frame skip, the max over the last two frames, grayscale, the 84x84 resize, no-op starts, sticky
actions and FIRE on reset all run in its C++ thread, with the GIL released. DQN's loop sends an
action, finishes its gradient step while the emulator plays, then collects the frame
(``VectorAtariFrames.send``; algos/dqn.py). Frame stacking stays here (``FrameHistory``, zero
padded) and the replay buffer keeps single frames, so the vector env stacks nothing.

Variant: ALE v5's Pong (``ALE/Pong-v5``'s ROM, minimal action set) with sticky actions from
``--sticky`` (0.25 by default, Machado et al. 2018). ``PongNoFrameskip-v4`` is the same game
with sticky actions off; ``--sticky 0`` gives that.

Each step, its default, and why:

- no-op starts, up to 30 raw frames: the emulator is deterministic, so without a random start
  every episode would begin in the same state and the agent could memorise one trajectory.
- frame skip 4 with a max over the last two frames: Atari draws some objects only on every
  other frame (flicker); the max keeps them. Skipping makes each decision cover 4 frames, 4x
  fewer forward passes per second of game.
- 84x84 grayscale (OpenCV's INTER_AREA resize of the whole 210x160 screen), or the seed's 80x80
  RGB: the playing field cropped and subsampled by 2. Colour triples the input for Pong and adds
  nothing but it is the seed's variant, kept for comparison. ``gray80`` is the same crop in
  grey; ``gray40`` max-pools it 2x2 more (the pong-fast preset): a 4x smaller input, and the
  max keeps the ball (1x2 pixels at 80x80) that averaging would fade into the background. The
  vector env cannot crop, so for these three it returns the max-pooled 210x160 screen and the
  crop happens here in numpy; skip, max, no-ops and sticky actions stay in C++.
- frame history of 4: one frame shows where the ball is, not where it is going. Missing
  history at an episode start is zero-filled, exactly as the replay buffer rebuilds it.
- reward clipping to {-1, 0, +1} and end-of-life as terminal: applied by the learner to what
  it stores, never here, so the episode return it reports is always the real game score.
  Pong has no lives; the flag matters for games such as Breakout.
- fire on reset (in C++: one FIRE frame before the no-ops) and after a lost life (here: one
  agent step of FIRE) for games that wait for FIRE to serve (Breakout); off for Pong, which
  serves by itself.

Where the vector env's frames differ from the Python pipeline below (``AtariDQNPreprocessing``),
and why it does not matter (tests/test_dqn_atari.py measures each):

- the same seed gives other no-op counts and other sticky repeats: the vector env draws both
  from its own generator. Each is still uniform and reproducible from the episode's seed.
- when the game ends in the middle of a frame skip, the vector env stops before grabbing that
  frame, so the terminal observation is an older screen. DQN never bootstraps from a
  terminal observation (the TD target is r alone), so the network never learns from it.
- FIRE on reset comes before the no-ops instead of after them: either way the first
  observation shows a ball in play after a random number of frames.
- episodes that reach ALE's 108,000-frame limit are cut by the vector env's own frame count
  (the agent's frames, not the no-ops): a few frames' difference once in 27,000 steps.

Earlier versions resized with Pillow's BOX filter, which averages the 2 or 3 whole source pixels
whose centres fall in each output cell; INTER_AREA weights partly covered pixels by their
overlap. On Pong 5% of the 84x84 pixels differ, by up to 57 grey levels at object edges
(benchmarks/dqn_env_share.py prints the figures). Both are area averages of the same screen;
what matters is that acting, learning, ``play`` and ``inspect`` all see one filter, and now they
do: the Python pipeline resizes with the same OpenCV call. A network trained before this change
sees slightly softer edges when it plays now.

The Python pipeline (the emulator driven frame by frame through ``ale.act``) remains for what
the vector env cannot do: ``--env-kwargs`` other than ``max_num_frames_per_episode`` (game
modes, difficulties), and a ``render_mode`` (the gym env draws its own colour screen).
"""

from __future__ import annotations

from typing import ClassVar

import ale_py
import gymnasium as gym
import numpy as np

from dirtyrl.envs.pong import ACTION_NAMES, ACTION_SETS, FIELD_BOTTOM, FIELD_TOP, PONG_ID

SCREENS = ("gray84", "rgb80", "gray80", "gray40")
SCREEN_SHAPES = {"gray84": (1, 84, 84), "rgb80": (3, 80, 80), "gray80": (1, 80, 80), "gray40": (1, 40, 40)}
VECTOR_KWARGS = ("max_num_frames_per_episode",)  # the --env-kwargs the vector env takes; others need gym's env
SEED_MASK = 2**31 - 1  # the vector env's seeds are C ints


def is_atari(env_id: str) -> bool:
    """The DQN Atari path: the preset ``pong`` or any ``ALE/<Game>-v5`` id."""
    return env_id == "pong" or env_id.startswith("ALE/")


def area_resize(frame: np.ndarray, size: int) -> np.ndarray:
    """(210, 160) or (210, 160, 3) uint8 -> (size, size[, 3]) uint8 with OpenCV's INTER_AREA.

    The vector env's own C++ resize is this same call, so a frame resized here equals the one
    it returns (tests/test_dqn_atari.py).

    >>> area_resize(np.full((210, 160), 7, np.uint8), 84).shape, int(area_resize(np.full((210, 160), 7, np.uint8), 84).max())
    ((84, 84), 7)
    """
    import cv2  # imported here: only the raw-frame and Python paths need it

    return cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA)


def screen_from_frame(frame: np.ndarray, screen: str, pong_field: bool) -> np.ndarray:
    """A max-pooled 210x160 screen (luminance, or RGB for rgb80) -> the agent's frame, channels first.

    Pong's rgb80, gray80 and gray40: the seed's crop of the playing field (rows 34..193, see
    envs/pong.py) subsampled by 2, and for gray40 a 2x2 max-pool, so a one-pixel ball survives.
    Everything else: the whole screen area-resized.

    >>> frame = np.zeros((210, 160), np.uint8); frame[100, 50] = 236  # a ball pixel in the field
    >>> small = screen_from_frame(frame, "gray40", pong_field=True)
    >>> small.shape, int(small.max()), np.argwhere(small[0]).tolist()
    ((1, 40, 40), 236, [[16, 12]])
    >>> frame = np.random.default_rng(0).integers(0, 256, (210, 160), np.uint8)
    >>> field = frame[34:194:2, ::2]  # the 80x80 field; gray40 is its 2x2 max-pool
    >>> bool((screen_from_frame(frame, "gray40", True)[0] == field.reshape(40, 2, 40, 2).max(axis=(1, 3))).all())
    True
    >>> screen_from_frame(np.zeros((210, 160, 3), np.uint8), "rgb80", pong_field=True).shape
    (3, 80, 80)
    """
    size = SCREEN_SHAPES[screen][1]
    if pong_field and screen == "gray40":
        # The 2x2 max over the 80x80 field as four strided views of the screen: a reshape and
        # a max over two axes of the strided field costs ~20x more (0.13 ms a frame).
        top, bottom = frame[FIELD_TOP:FIELD_BOTTOM:4], frame[FIELD_TOP + 2 : FIELD_BOTTOM : 4]
        small = np.maximum(np.maximum(top[:, 0::4], top[:, 2::4]), np.maximum(bottom[:, 0::4], bottom[:, 2::4]))
    elif pong_field and screen != "gray84":
        small = frame[FIELD_TOP:FIELD_BOTTOM:2, ::2]  # (80, 80) or (80, 80, 3)
    else:
        small = area_resize(frame, size)
    if small.ndim == 3:
        return np.ascontiguousarray(small.transpose(2, 0, 1))
    return np.ascontiguousarray(small)[None]


class AtariDQNPreprocessing(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """The Python pipeline: no-op starts, frame skip with a max over the last two frames, resize,
    fire on reset, driven frame by frame through the ALE interface of a gym env.

    Used where the vector env cannot go: game modes and difficulties (``--env-kwargs``) and a
    ``render_mode``. Observations are single frames, (1, 84, 84) or (3, 80, 80) uint8;
    ``FrameHistory`` stacks them. ``raw_frame`` and ``processed_frame`` keep the last input and
    output so the preprocessing inspector shows exactly what the agent saw.

    The frame-skip loop talks to the ALE interface directly (``ale.act`` and the screen getters),
    as gymnasium's own ``AtariPreprocessing`` does for the screens: going through ``env.step``
    four times per agent step would fetch and copy a full RGB frame each time.
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
        self.processed_frame = screen_from_frame(self.raw_frame, self.screen, self.pong_field)
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


class VectorAtariFrames(gym.Env):
    """One Atari game on ale-py's C++ vector env (``AtariVectorEnv``, num_envs=1).

    The C++ side does the frame skip, the max over the last two frames, grayscale, whole-screen
    resizes, no-op starts, sticky actions and FIRE on reset. Observations are single frames like
    ``AtariDQNPreprocessing``'s; ``FrameHistory`` stacks them.

    ``send(action)`` starts a step in the emulator's thread and returns at once; the next
    ``step(action)`` (through any wrappers) collects it. DQN's loop uses the gap for its update.

    ``raw_frames=True`` asks the vector env for the max-pooled 210x160 screen and does the
    resize here with the same OpenCV call (identical observations, tested), so that ``inspect``,
    ``play`` and the render instrument have the screen (``raw_frame``, ``render()``). Pong's field
    crops always take this route: the vector env cannot crop.
    """

    metadata: ClassVar[dict] = {"render_modes": [], "render_fps": 15}  # 60 Hz / 4 frames per step

    def __init__(
        self,
        game: str = "pong",
        action_set: tuple[int, ...] | None = None,
        sticky: float = 0.25,
        noop_max: int = 30,
        frame_skip: int = 4,
        screen: str = "gray84",
        fire_reset: bool = False,
        pong_field: bool = False,
        max_num_frames_per_episode: int = 108_000,
        raw_frames: bool = False,
    ) -> None:
        from ale_py.vector_env import AtariVectorEnv

        if screen not in SCREENS:
            raise ValueError(f"screen must be one of {SCREENS}, got {screen!r}")
        self.screen, self.pong_field, self.fire_reset = screen, pong_field, fire_reset
        rgb = screen == "rgb80"
        # Cropping, and raw frames for the instruments, need the full screen; any other screen is
        # resized in C++ (the same INTER_AREA area_resize calls).
        self.full_frames = raw_frames or (pong_field and screen != "gray84")
        height, width = (210, 160) if self.full_frames else SCREEN_SHAPES[screen][1:]
        self.vector = AtariVectorEnv(
            game,
            1,
            num_threads=1,
            img_height=height,
            img_width=width,
            grayscale=not rgb,
            stack_num=1,  # FrameHistory stacks, with the zero padding the replay buffer rebuilds
            frameskip=frame_skip,
            maxpool=True,
            noop_max=noop_max,
            use_fire_reset=fire_reset,
            episodic_life=False,  # life losses are the learner's business (info["lives"])
            reward_clipping=False,  # the return logged is the game's score; the learner clips
            repeat_action_probability=sticky,
            full_action_space=False,
            max_num_frames_per_episode=max_num_frames_per_episode,
            autoreset_mode="NextStep",  # never triggered: every episode starts with reset(seed)
        )
        minimal = self.vector.ale.get_action_set()
        self.action_indices = tuple(action_set) if action_set is not None else tuple(range(len(minimal)))
        self.ale_actions = [minimal[i] for i in self.action_indices]
        self.fire_index = minimal.index(ale_py.Action.FIRE) if ale_py.Action.FIRE in minimal else None
        self.fire_reset = fire_reset and self.fire_index is not None
        self.minimal_names = [a.name for a in minimal]
        self.action_space = gym.spaces.Discrete(len(self.action_indices))
        self.observation_space = gym.spaces.Box(0, 255, SCREEN_SHAPES[screen], np.uint8)
        if raw_frames:
            self.metadata = {**self.metadata, "render_modes": ["rgb_array"]}
            self.raw_frame: np.ndarray | None = None
            self.processed_frame: np.ndarray | None = None
        self.render_mode: str | None = None
        self.lives = 0
        self._sent: int | None = None
        self._action = np.zeros(1, np.int64)
        self.spec = gym.envs.registration.EnvSpec(
            "dirtyrl/AtariVectorFrames-v0",
            entry_point=f"{__name__}:VectorAtariFrames",
            kwargs={
                "game": game,
                "action_set": action_set,
                "sticky": sticky,
                "noop_max": noop_max,
                "frame_skip": frame_skip,
                "screen": screen,
                "fire_reset": fire_reset,
                "pong_field": pong_field,
                "max_num_frames_per_episode": max_num_frames_per_episode,
                "raw_frames": raw_frames,
            },
            order_enforce=False,
            disable_env_checker=True,
        )

    def get_action_meanings(self) -> list[str]:
        """The game's minimal action set, as ALE names it (what runcontrol's FIRE hint reads)."""
        return list(self.minimal_names)

    def _observe(self, batch: np.ndarray) -> np.ndarray:
        frame = batch[0, 0]  # (H, W) or (H, W, 3): env 0, the one frame of its stack
        if not self.full_frames:
            return np.ascontiguousarray(frame.transpose(2, 0, 1)) if frame.ndim == 3 else frame[None].copy()
        processed = screen_from_frame(frame, self.screen, self.pong_field)
        if "raw_frame" in vars(self):
            self.raw_frame, self.processed_frame = frame.copy(), processed
        return processed

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if self._sent is not None:  # a step sent and never collected (an interrupted loop)
            self.vector.recv()
            self._sent = None
        # A seeded reset reloads the ROM (~160 ms); an unseeded one continues the env's generator.
        seeds = None if seed is None else np.array([seed & SEED_MASK], np.int64)
        batch, info = self.vector.reset(seed=seeds)
        self.lives = int(info["lives"][0])
        return self._observe(batch), {"lives": self.lives, "episode_frame_number": int(info["episode_frame_number"][0])}

    def send(self, action: int) -> None:
        """Start this action's frames in the emulator's thread; ``step(action)`` collects them."""
        self._send(action)

    def _send(self, action: int) -> None:
        self._action[0] = self.action_indices[int(action)]
        self.vector.send(self._action)
        self._sent = int(action)

    def _collect(self) -> tuple[np.ndarray, float, bool, bool, dict]:
        batch, reward, terminated, truncated, info = self.vector.recv()
        return batch, float(reward[0]), bool(terminated[0]), bool(truncated[0]), info

    def step(self, action):
        if self._sent is None:
            self._send(action)
        elif self._sent != int(action):
            raise RuntimeError(f"step({int(action)}) after send({self._sent}): collect the action that was sent")
        self._sent = None
        batch, reward, terminated, truncated, info = self._collect()
        lives = int(info["lives"][0])
        if self.fire_reset and lives < self.lives and not (terminated or truncated):
            # The vector env presses FIRE at reset only; a game that waits for FIRE after a lost
            # life (Breakout) gets one agent step of it, as in the Python pipeline.
            self._action[0] = self.fire_index
            self.vector.send(self._action)
            batch, fire_reward, terminated, truncated, info = self._collect()
            reward += fire_reward
            lives = int(info["lives"][0])
        self.lives = lives
        info = {"lives": lives, "episode_frame_number": int(info["episode_frame_number"][0])}
        return self._observe(batch), reward, terminated, truncated, info

    def render(self) -> np.ndarray | None:
        """The last max-pooled 210x160 screen as (H, W, 3) uint8 (grey screens repeated): what the agent saw."""
        if self.render_mode != "rgb_array" or getattr(self, "raw_frame", None) is None:
            return None
        frame = self.raw_frame
        return frame if frame.ndim == 3 else np.repeat(frame[..., None], 3, axis=2)

    def close(self) -> None:
        if self._sent is not None:
            self.vector.recv()
            self._sent = None
        self.vector.close()
        super().close()


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
    raw_frames: bool = False,
) -> gym.Env:
    """The DQN Atari env: ``pong`` (ALE/Pong-v5, reduced action sets) or any ``ALE/<Game>-v5``.

    Frames come from ale-py's C++ vector env, except with a ``render_mode`` or ``env_kwargs`` it
    has no parameter for (game modes, difficulties): those take the Python pipeline.
    ``raw_frames`` keeps the 210x160 screen for the instruments (same observations).
    ``fire_reset=None`` means: on when the game has a FIRE action, except for Pong.
    ``env_kwargs`` (``--env-kwargs``, e.g. ``mode=1``) go to gym.make, except those a flag sets.
    """
    from dirtyrl.envs import gym_make, parse_env_kwargs, refuse_kwargs

    gym.register_envs(ale_py)
    pong = env_id == "pong"
    gym_id = PONG_ID if pong else env_id
    kwargs = parse_env_kwargs(env_kwargs)
    refuse_kwargs(
        kwargs,
        {"frameskip": "--frame-skip", "repeat_action_probability": "--sticky", "full_action_space": "the minimal action set"},
    )
    action_set = ACTION_SETS[actions] if pong else None
    if render_mode is None and all(key in VECTOR_KWARGS for key in kwargs):
        spec = gym.spec(gym_id)
        frames = kwargs.get("max_num_frames_per_episode", spec.kwargs.get("max_num_frames_per_episode", 108_000))
        # fire_reset None: on unless Pong. The C++ side presses FIRE only where the minimal
        # action set has it, which puts it at index 1 (after NOOP): baselines' test.
        env: gym.Env = VectorAtariFrames(
            spec.kwargs["game"],
            action_set,
            sticky,
            noop_max,
            frame_skip,
            screen,
            (not pong) if fire_reset is None else fire_reset,
            pong_field=pong,
            max_num_frames_per_episode=int(frames),
            raw_frames=raw_frames,
        )
    else:
        env = gym_make(
            gym_id,
            kwargs,
            render_mode,
            frameskip=1,
            repeat_action_probability=sticky,
            full_action_space=False,
        )
        if fire_reset is None:
            fire_reset = not pong and env.unwrapped.get_action_meanings()[1:2] == ["FIRE"]  # baselines' test
        env = AtariDQNPreprocessing(env, action_set, noop_max, frame_skip, screen, fire_reset, pong_field=pong)
    if pong:
        env.action_names = ACTION_NAMES[actions]
    return FrameHistory(env, frame_stack)
