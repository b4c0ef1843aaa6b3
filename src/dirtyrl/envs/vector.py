"""N copies of an env stepped side by side, for VPG's ``--num-envs``: one batch, one call.

Two kinds, one interface (``reset(seeds)``, ``step(actions)``, ``view``):

- ``AtariBatch``: ale-py's C++ vector env (``ale_py.vector_env.AtariVectorEnv``) for ``pong``
  and every ``ALE/<Game>-v5``. Frame skip, sticky actions and FIRE on reset run in its C++
  threads, which release the GIL, so one process uses several cores. The seed's preprocessing
  then runs on the whole batch of frames at once in numpy (``pong_batch``, ``sign_batch``).
- ``GymBatch``: gymnasium's ``SyncVectorEnv`` over ``make_env``, for every other env; the
  envs step in turn, and only acting is batched.

Both autoreset in gymnasium's SAME_STEP mode: the step that ends an episode returns the first
observation of the slot's next one. VPG never bootstraps, so it needs no final observation.

What differs from one env (``--num-envs 1``), and why it is harmless:

- ALE/<Game>-v5 other than Pong: the 80x80 average is the C++ env's resize (OpenCV area
  filter) instead of PIL's box filter; the two differ by rounding in a few pixels, and the
  sign of the change between agent steps is what the policy sees.
- The C++ env draws sticky actions from its own generator, so the same seed plays a different
  (equally distributed) game than ``gym.make`` does.
- ``--env-kwargs`` other than ``frameskip`` cannot reach the C++ env (it has no game modes);
  they are refused in one line.
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
    """C++ threads for the vector env: as asked, else this process's share of its cores.

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

    def __init__(self, batch: AtariBatch) -> None:
        self.batch = batch
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


class AtariBatch:
    """``num_envs`` Atari games in ale-py's C++ vector env, preprocessed as one batch.

    Pong (the preset and ``ALE/Pong-v5``): RGB screens and the seed's binarised difference.
    Other games: gray 80x80 from the C++ resize and the sign of its change (envs/atari_vpg.py).
    Games that wait for FIRE get it on reset from the C++ env and after a lost life from here:
    that slot's next step presses FIRE instead of the policy's action and is reported in
    ``forced``, so the caller folds its reward into the step before and records nothing (the
    single env's ``FireOnReset`` hides the same press inside one agent step).
    """

    def __init__(
        self,
        game: str,
        num_envs: int,
        threads: int,
        *,
        action_set: tuple[int, ...] | None,
        sticky: float,
        frameskip: int,
        pong: bool,
        fire: int | None,
    ) -> None:
        from ale_py.vector_env import AtariVectorEnv
        from gymnasium.vector import AutoresetMode

        self.fire = fire
        self.pong = pong
        self.num_envs = num_envs
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
            use_fire_reset=fire is not None,
            autoreset_mode=AutoresetMode.SAME_STEP,
        )
        minimal = range(len(self.venv.ale.get_action_set()))
        self.action_map = np.array(action_set if action_set is not None else minimal, np.int64)
        self.action_space = gym.spaces.Discrete(len(self.action_map))
        self.observation_space = gym.spaces.Box(-1, 1, (VPG_SIZE, VPG_SIZE), np.int8)
        self.view = SlotView(self)
        self.previous: np.ndarray | None = None
        self.lives = np.zeros(num_envs, np.int64)
        self.fire_next = np.zeros(num_envs, bool)

    def _frames(self, raw: np.ndarray, first: np.ndarray) -> np.ndarray:
        screens = raw[:, 0]  # stack_num 1: (N, 210, 160, 3) RGB for Pong, (N, 80, 80) gray otherwise
        processed = pong_batch(screens) if self.pong else screens
        diff = sign_batch(processed, self.previous if self.previous is not None else processed, first)
        self.previous = processed
        self.view.raw_frame, self.view.processed_frame = screens[0], processed[0].astype(np.uint8) * (255 if self.pong else 1)
        return diff

    def reset(self, seeds: np.ndarray | None) -> np.ndarray:
        """Fresh episodes in every slot; ``seeds`` (one per slot) reload the ROMs (~0.1-0.2 s each)."""
        # The C++ env takes seeds as C ints: keep the low 31 bits of the (32-bit) episode seeds.
        raw, info = self.venv.reset(seed=None if seeds is None else np.asarray(seeds, np.int64) & 0x7FFFFFFF)
        self.fire_next[:] = False
        self.lives = info["lives"].astype(np.int64)
        return self._frames(raw, np.ones(self.num_envs, bool))

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(obs, rewards, terminated, truncated, forced); a done slot's obs starts its next episode."""
        forced = self.fire_next.copy()
        ale_actions = self.action_map[actions]
        if forced.any():
            ale_actions[forced] = self.fire
        raw, rewards, terminated, truncated, info = self.venv.step(ale_actions)
        done = terminated | truncated
        lives = info["lives"].astype(np.int64)
        if self.fire is not None:  # a lost life waits for FIRE (a new episode got it on its reset)
            self.fire_next = (lives < self.lives) & ~done
        self.lives = lives
        return self._frames(raw, done), rewards.astype(np.float64), terminated, truncated, forced

    def close(self) -> None:
        self.venv.close()


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
) -> AtariBatch | GymBatch:
    """The batch for ``--num-envs N``: the C++ Atari env for ALE games, gymnasium's otherwise.

    ``probe`` is the same env made once by ``make_env`` (which checked the id, the kwargs and
    the spaces); it tells which kind to build and whether the game waits for FIRE.
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
    if kwargs or obs_type not in ("rgb", "grayscale") or not isinstance(frameskip, int):
        raise UserError(
            f"--num-envs {num_envs} runs {env_id} in ale-py's C++ vector env, which takes no --env-kwargs "
            f"but an integer frameskip; got {parse_env_kwargs(env_kwargs)} (use --num-envs 1 for those)"
        )
    game_id = "ALE/Pong-v5" if pong else split_module(env_id)[1]
    game = gym.spec(game_id).kwargs["game"]
    ale_pong = game == "pong" and obs_type == "rgb"  # the seed's crop needs colour, as in envs/atari_vpg.py
    action_set = ACTION_SETS[actions] if pong else None
    batch = AtariBatch(
        game, num_envs, threads, action_set=action_set, sticky=sticky, frameskip=frameskip, pong=ale_pong, fire=fire
    )
    if pong:
        batch.action_names = ACTION_NAMES[actions]
    return batch
