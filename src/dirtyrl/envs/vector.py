"""N copies of an env stepped side by side, for VPG's ``--num-envs``: one batch, one call.

Two kinds, one interface (``reset(seeds)``, ``step(actions)``, ``view``, ``fire_next``):

- ``AtariBatch`` for ``pong`` and every ``ALE/<Game>-v5`` screen. The seed's preprocessing
  runs on the whole batch of frames at once in numpy (``pong_batch``, ``sign_batch``). Its raw
  screens come from one of two sources (``--vector-env``):
  - ``threads``: N ``gym.make`` ALE envs, stepped by a pool of Python threads. The
    ALE releases the GIL while it emulates, so the threads use separate cores; each env is the
    very env ``--num-envs 1`` plays (same sticky-action generator, same seeds, same filters).
  - ``ale`` (default): ale-py's C++ vector env (``ale_py.vector_env.AtariVectorEnv``): frame skip, sticky
    actions and FIRE on reset in its C++ threads, which never wait for the GIL. An env step
    costs it the same CPU time as ``gym.make``'s env (both ~0.5 ms on a Zen 3 EPYC core).
- ``GymBatch``: gymnasium's ``SyncVectorEnv`` over ``make_env``, for every other env; the
  envs step in turn, and only acting is batched.

Both autoreset in gymnasium's SAME_STEP mode: the step that ends an episode returns the first
observation of the slot's next one. VPG never bootstraps, so it needs no final observation.

What differs with ``--vector-env ale``, and why it is harmless: the C++ env draws sticky
actions from its own generator, so the same seed plays a different (equally distributed)
game; for games other than Pong its 80x80 average is OpenCV's area filter instead of PIL's box
filter (rounding in a few pixels); it takes no game modes, so ``--env-kwargs`` other than
``frameskip`` are refused in one line.
"""

from __future__ import annotations

import os
from typing import Any

import gymnasium as gym
import numpy as np

from dirtyrl.envs.pong import ACTION_NAMES, ACTION_SETS, BACKGROUND_RED, FIELD_BOTTOM, FIELD_TOP
from dirtyrl.errors import UserError

VPG_SIZE = 80


def pong_batch(frames: np.ndarray) -> np.ndarray:
    """(N, 210, 160, 3) uint8 RGB -> (N, 80, 80) bool: the seed's foreground, frame by frame.

    The batch form of ``envs.pong.preprocess_pong`` (red channel, field crop, every other
    pixel, both background colours erased).

    >>> frames = np.zeros((2, 210, 160, 3), np.uint8); frames[..., 0] = 144
    >>> frames[1, 100, 50, 0] = 236  # a ball pixel on the second frame, inside the field
    >>> fg = pong_batch(frames)
    >>> fg.shape, int(fg[0].sum()), np.argwhere(fg[1]).tolist()
    ((2, 80, 80), 0, [[33, 25]])
    """
    red = frames[:, FIELD_TOP:FIELD_BOTTOM:2, ::2, 0]
    return (red != BACKGROUND_RED[0]) & (red != BACKGROUND_RED[1])


def sign_batch(current: np.ndarray, previous: np.ndarray, first: np.ndarray) -> np.ndarray:
    """(N, H, W) int8 sign of the change per slot; all zeros where ``first`` (an episode's first step).

    On boolean frames this is Karpathy's difference of binarised frames.

    >>> cur = np.array([[[3, 1]], [[3, 1]]], np.uint8); prev = np.array([[[1, 1]], [[1, 3]]], np.uint8)
    >>> sign_batch(cur, prev, np.array([False, True])).tolist()
    [[[1, 0]], [[0, 0]]]
    """
    diff = np.sign(current.astype(np.int16) - previous.astype(np.int16)).astype(np.int8)
    diff[first] = 0
    return diff


def env_threads(requested: int | None, num_envs: int, workers: int) -> int:
    """Threads stepping the Atari games side by side: as asked, else this process's share of its cores.

    >>> env_threads(3, 8, 1), env_threads(None, 1, 1)
    (3, 1)
    """
    if requested is not None:
        return requested
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(num_envs, cores // max(workers, 1)))


class SlotView:
    """What the instruments watch of a batch: slot 0, dressed as one env.

    ``raw_frame`` / ``processed_frame`` feed the preprocessing inspector, ``ale.getScreenRGB()``
    the renderer (both read the attributes, as they do on the single-env wrappers).
    """

    def __init__(self) -> None:
        self.raw_frame: np.ndarray | None = None
        self.processed_frame: np.ndarray | None = None
        self.metadata: dict = {}

    @property
    def unwrapped(self) -> SlotView:
        return self

    @property
    def ale(self) -> SlotView:
        return self

    def getScreenRGB(self) -> np.ndarray:
        """The ALE's method name, which the renderer calls: slot 0's last screen as RGB."""
        frame = self.raw_frame
        return frame if frame.ndim == 3 else np.repeat(frame[..., None], 3, axis=2)


class CppFrames:
    """Raw screens of N games from ale-py's C++ vector env (``--vector-env ale``).

    Frame skip, sticky actions and FIRE on reset run in its C++ threads. Screens: (N, 210,
    160, 3) RGB for Pong, (N, 80, 80) gray from its resize (OpenCV's area filter) otherwise.
    """

    def __init__(self, game: str, num_envs: int, threads: int, sticky: float, frameskip: int, pong: bool, fire: bool):
        from ale_py.vector_env import AtariVectorEnv
        from gymnasium.vector import AutoresetMode

        self.venv = AtariVectorEnv(
            game,
            num_envs,
            num_threads=threads,
            repeat_action_probability=sticky,
            frameskip=frameskip,
            img_height=210 if pong else VPG_SIZE,
            img_width=160 if pong else VPG_SIZE,
            grayscale=not pong,
            stack_num=1,
            maxpool=False,  # one env (ALE v5) shows the last frame of the skip, not a max
            noop_max=0,  # ALE v5 starts without no-ops
            reward_clipping=False,  # VPG learns from the game's own score
            use_fire_reset=fire,
            autoreset_mode=AutoresetMode.SAME_STEP,
        )

    def reset(self, seeds: list[int] | None) -> tuple[np.ndarray, np.ndarray]:
        # The C++ env takes seeds as C ints: keep the low 31 bits of the (32-bit) episode seeds.
        raw, info = self.venv.reset(seed=None if seeds is None else np.asarray(seeds, np.int64) & 0x7FFFFFFF)
        return raw[:, 0], info["lives"].astype(np.int64)

    def step(self, ale_actions: np.ndarray) -> tuple[np.ndarray, ...]:
        raw, rewards, terminated, truncated, info = self.venv.step(ale_actions)
        return raw[:, 0], rewards.astype(np.float64), terminated, truncated, info["lives"].astype(np.int64)

    def close(self) -> None:
        self.venv.close()


class ThreadedFrames:
    """Raw screens of N games from N ``gym.make`` ALE envs stepped by a pool of Python threads
    (``--vector-env threads``): the ALE releases the GIL while it emulates, so the threads run
    on separate cores. Each env is the one ``--num-envs 1`` plays (the same sticky-action
    generator, the same seeds); non-Pong screens get envs/atari_vpg.py's 80x80 box filter in
    the worker threads. Screens are shaped as ``CppFrames``'.
    """

    def __init__(
        self,
        game_id: str,
        num_envs: int,
        threads: int,
        sticky: float,
        frameskip: int,
        pong: bool,
        fire: bool,
        env_kwargs: dict[str, Any],
    ):
        from concurrent.futures import ThreadPoolExecutor

        import ale_py

        gym.register_envs(ale_py)
        kwargs = {**env_kwargs, "frameskip": frameskip, "repeat_action_probability": sticky, "full_action_space": False}
        obs_type = "rgb" if pong else "grayscale"
        self.envs = [gym.make(game_id, obs_type=obs_type, **kwargs) for _ in range(num_envs)]
        self.pong, self.fire = pong, fire
        self.pool = ThreadPoolExecutor(threads) if threads > 1 else None
        self.chunks = [c for c in np.array_split(np.arange(num_envs), threads) if c.size]
        self.screens = np.zeros((num_envs, 210, 160, 3) if pong else (num_envs, VPG_SIZE, VPG_SIZE), np.uint8)
        self.rewards = np.zeros(num_envs, np.float64)
        self.terminated, self.truncated = np.zeros(num_envs, bool), np.zeros(num_envs, bool)
        self.lives = np.zeros(num_envs, np.int64)

    def _store(self, i: int, obs: np.ndarray) -> None:
        from dirtyrl.envs.atari_vpg import gray80

        self.screens[i] = obs if self.pong else gray80(obs)
        self.lives[i] = self.envs[i].unwrapped.ale.lives()

    def _reset_one(self, i: int, seed: int | None) -> None:
        obs, _ = self.envs[i].reset(seed=seed)
        if self.fire:  # as envs/atari_vpg.py's FireOnReset: a game over on the serve starts again
            obs, _, terminated, truncated, _ = self.envs[i].step(1)
            if terminated or truncated:
                obs, _ = self.envs[i].reset()
        self._store(i, obs)

    def _step_chunk(self, chunk: np.ndarray, actions: np.ndarray) -> None:
        for i in chunk:
            obs, reward, terminated, truncated, _ = self.envs[i].step(int(actions[i]))
            self.rewards[i], self.terminated[i], self.truncated[i] = reward, terminated, truncated
            if terminated or truncated:  # SAME_STEP autoreset: the slot shows its next episode's start
                self._reset_one(i, None)
            else:
                self._store(i, obs)

    def _run(self, work, *args) -> None:
        if self.pool is None:
            for chunk in self.chunks:
                work(chunk, *args)
        else:
            for future in [self.pool.submit(work, chunk, *args) for chunk in self.chunks]:
                future.result()  # re-raises a worker's exception here

    def reset(self, seeds: list[int] | None) -> tuple[np.ndarray, np.ndarray]:
        def reset_chunk(chunk: np.ndarray) -> None:
            for i in chunk:
                self._reset_one(i, None if seeds is None else int(seeds[i]))

        self._run(reset_chunk)
        return self.screens.copy(), self.lives.copy()

    def step(self, ale_actions: np.ndarray) -> tuple[np.ndarray, ...]:
        self._run(self._step_chunk, ale_actions)
        return self.screens.copy(), self.rewards.copy(), self.terminated.copy(), self.truncated.copy(), self.lives.copy()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()
        for env in self.envs:
            env.close()


class AtariBatch:
    """``num_envs`` Atari games stepped side by side, preprocessed as one batch.

    The raw screens come from ``CppFrames`` (ale-py's C++ vector env) or ``ThreadedFrames``
    (gym's ALE envs on a pool of threads), ``--vector-env``. Pong (the preset and
    ``ALE/Pong-v5``): the seed's binarised difference. Other games: the sign of the change of
    the gray 80x80 screen (envs/atari_vpg.py). Games that wait for FIRE get it on reset from
    the frame source and after a lost life from here: that slot's next step presses FIRE
    instead of the policy's action and is reported in ``forced``, so the caller folds its
    reward into the step before and records nothing (the single env's ``FireOnReset`` hides
    the same press inside one agent step).
    """

    def __init__(self, frames: CppFrames | ThreadedFrames, num_envs: int, *, actions: int, action_set, pong: bool, fire):
        self.frames = frames
        self.fire = fire
        self.pong = pong
        self.num_envs = num_envs
        self.action_map = np.array(action_set if action_set is not None else range(actions), np.int64)
        self.action_space = gym.spaces.Discrete(len(self.action_map))
        self.observation_space = gym.spaces.Box(-1, 1, (VPG_SIZE, VPG_SIZE), np.int8)
        self.view = SlotView()
        self.previous: np.ndarray | None = None
        self.lives = np.zeros(num_envs, np.int64)
        self.fire_next = np.zeros(num_envs, bool)

    def _frames(self, screens: np.ndarray, first: np.ndarray) -> np.ndarray:
        processed = pong_batch(screens) if self.pong else screens
        diff = sign_batch(processed, self.previous if self.previous is not None else processed, first)
        self.previous = processed
        self.view.raw_frame, self.view.processed_frame = screens[0], processed[0].astype(np.uint8) * (255 if self.pong else 1)
        return diff

    def reset(self, seeds: list[int] | None) -> np.ndarray:
        """Fresh episodes in every slot; ``seeds`` (one per slot) reload the ROMs (~0.1-0.2 s each)."""
        screens, self.lives = self.frames.reset(seeds)
        self.fire_next[:] = False
        return self._frames(screens, np.ones(self.num_envs, bool))

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(obs, rewards, terminated, truncated, forced); a done slot's obs starts its next episode."""
        forced = self.fire_next.copy()
        ale_actions = self.action_map[actions]
        if forced.any():
            ale_actions[forced] = self.fire
        screens, rewards, terminated, truncated, lives = self.frames.step(ale_actions)
        done = terminated | truncated
        if self.fire is not None:  # a lost life waits for FIRE (a new episode got it on its reset)
            self.fire_next = (lives < self.lives) & ~done
        self.lives = lives
        return self._frames(screens, done), rewards, terminated, truncated, forced

    def close(self) -> None:
        self.frames.close()


class GymBatch:
    """``num_envs`` copies of ``make_env``'s env in gymnasium's ``SyncVectorEnv`` (SAME_STEP autoreset)."""

    def __init__(self, make: Any, num_envs: int) -> None:
        from gymnasium.vector import AutoresetMode, SyncVectorEnv

        self.num_envs = num_envs
        self.venv = SyncVectorEnv([make] * num_envs, autoreset_mode=AutoresetMode.SAME_STEP)
        self.action_space = self.venv.single_action_space
        self.observation_space = self.venv.single_observation_space
        self.view = self.venv.envs[0]
        self.fire_next = np.zeros(num_envs, bool)  # the AtariBatch interface: no game here waits for FIRE

    def reset(self, seeds: np.ndarray | None) -> np.ndarray:
        obs, _ = self.venv.reset(seed=None if seeds is None else [int(s) for s in seeds])
        return obs

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        obs, rewards, terminated, truncated, _ = self.venv.step(actions)
        return obs, np.asarray(rewards, np.float64), terminated, truncated, np.zeros(self.num_envs, bool)

    def close(self) -> None:
        self.venv.close()


def make_batch(
    env_id: str,
    num_envs: int,
    threads: int,
    *,
    actions: int = 3,
    sticky: float = 0.25,
    env_kwargs: list[str] | dict[str, Any] | None = None,
    probe: gym.Env,
    backend: str = "ale",
) -> AtariBatch | GymBatch:
    """The batch for ``--num-envs N``: ``AtariBatch`` for ALE screens, ``GymBatch`` otherwise.

    ``probe`` is the same env made once by ``make_env`` (which checked the id, the kwargs and
    the spaces); it tells which kind to build and whether the game waits for FIRE.
    ``backend`` (``--vector-env``) picks the Atari frame source: ``threads`` or ``ale``.
    """
    from dirtyrl.envs import is_ale, is_pong, make_env, parse_env_kwargs, split_module
    from dirtyrl.envs.atari_vpg import fire_action

    fire = fire_action(probe) if is_ale(env_id) else None
    pong = is_pong(env_id)
    screens = is_ale(env_id) and split_module(env_id)[1].startswith("ALE/") and len(probe.observation_space.shape) == 2
    if not (pong or screens):  # RAM observations, module:EnvId and every non-Atari env
        return GymBatch(lambda: make_env(env_id, actions=actions, sticky=sticky, env_kwargs=env_kwargs), num_envs)
    kwargs = parse_env_kwargs(env_kwargs)
    frameskip = kwargs.pop("frameskip", 4)
    obs_type = kwargs.pop("obs_type", "rgb")
    if backend == "ale" and (kwargs or not isinstance(frameskip, int)):
        raise UserError(
            f"--vector-env ale runs {env_id} in ale-py's C++ vector env, which takes no --env-kwargs but an "
            f"integer frameskip; got {parse_env_kwargs(env_kwargs)} (use --vector-env threads for those)"
        )
    game_id = "ALE/Pong-v5" if pong else split_module(env_id)[1]
    ale_pong = gym.spec(game_id).kwargs["game"] == "pong" and obs_type == "rgb"  # the seed's crop needs colour
    if backend == "ale":
        frames = CppFrames(gym.spec(game_id).kwargs["game"], num_envs, threads, sticky, frameskip, ale_pong, fire is not None)
    else:
        frames = ThreadedFrames(game_id, num_envs, threads, sticky, frameskip, ale_pong, fire is not None, kwargs)
    n_actions = len(probe.unwrapped.get_action_meanings())
    batch = AtariBatch(
        frames, num_envs, actions=n_actions, action_set=ACTION_SETS[actions] if pong else None, pong=ale_pong, fire=fire
    )
    if pong:
        batch.action_names = ACTION_NAMES[actions]
    return batch
