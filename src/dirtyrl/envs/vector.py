"""N copies of an env stepped side by side, for VPG's ``--num-envs``: one batched forward per step.

Three kinds, one interface: ``reset(seeds)``, ``use(actor)`` (the batch's fixed policy),
``groups``, ``send(k, starts, slots, steps)`` / ``recv(k)`` per group of slots (a chunk of
``play_chunk``: each playing slot acts and steps until the chunk ends), ``step(actions)`` for
all (no acting), ``view``:

- ``ProcessBatch`` (``--vector-env procs``, the default for ``pong`` and every ``ALE/<Game>-v5``
  screen): the one-env loop's own envs (``make_env``), in one worker process per core, each
  acting for its own games with the batch's actor. A slot with no episode left to play is not
  stepped. Same seeds, same games as ``--num-envs 1``.
- ``AtariBatch`` (``--vector-env ale``): ale-py's C++ vector env
  (``ale_py.vector_env.AtariVectorEnv``), whose threads run frame skip, sticky actions and
  FIRE on reset in the trainer's process, all games in lockstep. The seed's preprocessing runs
  on the whole batch of frames at once in numpy (``pong_batch``, ``sign_batch``).
- ``GymBatch``: gymnasium's ``SyncVectorEnv`` over ``make_env``, for every other env; the
  envs step in turn, and only acting is batched.

All autoreset in gymnasium's SAME_STEP mode: the step that ends an episode returns the first
observation of the slot's next one. VPG never bootstraps, so it needs no final observation.

Why processes and not Python threads: ale-py 0.12's ``ALEInterface.act`` holds the GIL, so
ALEs stepped by Python threads take turns on one core (10 Pong ALEs on a Zen 3 EPYC: 2,305 env
steps/s on one thread, 2,234 on two). The C++ vector env does run on several cores, but its lockstep
steps the slots that wait too, and an env step costs it more CPU than ``gym.make``'s env
(benchmarks/RESULTS.md).

What differs with ``--vector-env ale``, and why it is harmless: the C++ env draws sticky
actions from its own generator, so the same seed plays a different (equally distributed)
game; for games other than Pong its 80x80 average is OpenCV's area filter instead of PIL's box
filter (rounding in a few pixels); it takes no game modes, so ``--env-kwargs`` other than
``frameskip`` are refused in one line.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
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


def env_workers(requested: int | None, num_envs: int, workers: int) -> int:
    """Worker processes (or C++ threads) stepping the Atari games side by side: as asked, else this
    process's share of its cores.

    >>> env_workers(3, 8, 1), env_workers(None, 1, 1)
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


@dataclass
class Played:
    """One slot's steps in a chunk: the stored observations, actions and rewards, in order."""

    obs: list = field(default_factory=list)
    actions: list[int] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    carried: float = 0.0  # reward of a FIRE press before the chunk's first step: the step before's
    done: bool = False  # its episode ended at the last step


def play_chunk(obs: np.ndarray, slots: list[int], rngs: dict, actor, fire_next: np.ndarray, step, steps: int) -> dict:
    """Up to ``steps`` agent steps of ``slots`` (each playing an episode), acting with ``actor``.

    ``obs`` holds every slot's current observation and is updated in place; ``rngs`` maps each
    slot to its episode's generator (one uniform per action, for ``actor.act(obs, uniforms) ->
    (stored, actions)``). ``step(slots, actions)`` steps those slots and returns their (obs,
    rewards, terminated, truncated, forced); a slot in ``fire_next`` presses FIRE instead of
    acting (``forced``), and that reward belongs to its step before. The chunk ends early when an
    episode ends, so the caller can start that slot's next one at once. Returns {slot: Played}.
    """
    played = {s: Played() for s in slots}
    live = np.asarray(slots, np.int64)
    for _ in range(steps):
        acting = ~fire_next[live]
        actions = np.zeros(live.size, np.int64)
        if acting.any():
            chosen = live[acting].tolist()
            stored, actions[acting] = actor.act(obs[live[acting]], np.array([rngs[s].random() for s in chosen]))
            for s, o, a in zip(chosen, stored, actions[acting].tolist(), strict=True):
                played[s].obs.append(o)
                played[s].actions.append(a)
        obs[live], rewards, terminated, truncated, forced = step(live, actions)
        for s, r, end, fire in zip(
            live.tolist(), rewards.tolist(), (terminated | truncated).tolist(), forced.tolist(), strict=True
        ):
            p = played[s]
            if not fire:
                p.rewards.append(r)
            elif p.rewards:
                p.rewards[-1] += r
            else:
                p.carried += r
            p.done = end
        if any(played[s].done for s in live.tolist()):
            break
    return played


def _serve(conn, env_id: str, make_kwargs: dict[str, Any], slots: list[int], arrays: dict, watch: bool) -> None:
    """A ``ProcessBatch`` worker: plays its slots' envs when told, acting with the batch's actor.

    Messages: ``("reset", seeds)``, ``("actor", actor)``, ``("play", starts, slots, steps)``
    (``play_chunk`` on the slots playing; ``starts`` seeds the generators of episodes that start
    now), ``("step", slots, actions)`` (one step, no acting), ``None`` (exit). Each gets ``("ok",
    result)`` or ``("error", message)`` back.
    """
    import signal
    import traceback

    from dirtyrl.envs import frames_wrapper, make_env

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the trainer's: it closes the workers
    trainer = os.getppid()
    blocks, shown = attach(arrays)
    try:
        envs = {slot: make_env(env_id, **make_kwargs) for slot in slots}
        frames = frames_wrapper(envs[0]) if watch and 0 in envs else None
        space = envs[slots[0]].observation_space
        obs = np.zeros((max(slots) + 1, *space.shape), space.dtype)
        no_fire = np.zeros(len(obs), bool)  # FIRE after a lost life is pressed inside each env
        rngs: dict[int, np.random.Generator] = {}
        actor = None

        def step(live: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, ...]:
            rows, rewards, terminated, truncated = [], [], [], []
            for slot, action in zip(live.tolist(), actions.tolist(), strict=True):
                o, reward, term, trunc, _ = envs[slot].step(action)
                rows.append(envs[slot].reset()[0] if term or trunc else o)  # SAME_STEP autoreset
                rewards.append(float(reward))
                terminated.append(term)
                truncated.append(trunc)
            return np.stack(rows), np.array(rewards), np.array(terminated), np.array(truncated), np.zeros(len(rows), bool)

        conn.send(("ok", None))
        while (message := next_message(conn, trainer)) is not None:
            kind, *args = message
            result = None
            if kind == "reset":
                rngs.clear()
                for slot in slots:
                    obs[slot] = envs[slot].reset(seed=None if args[0] is None else int(args[0][slot]))[0]
                result = obs[slots]
            elif kind == "actor":
                actor = args[0]
            elif kind == "play":
                starts, live, steps = args
                rngs |= {slot: np.random.default_rng(seed) for slot, seed in starts.items()}
                result = play_chunk(obs, live, rngs, actor, no_fire, step, steps)
                for slot in [s for s, p in result.items() if p.done]:
                    del rngs[slot]
            else:
                result = step(np.asarray(args[0], np.int64), np.asarray(args[1], np.int64))
                obs[args[0]] = result[0]
            if frames is not None:  # slot 0's last screens, for the preprocessing inspector and renderer
                shown["raw"][...] = frames.raw_frame.reshape(shown["raw"].shape)
                shown["processed"][...] = frames.processed_frame.reshape(shown["processed"].shape)
            conn.send(("ok", result))
    except (EOFError, OSError):  # the trainer is gone (it ended, or was killed): nothing to answer
        pass
    except Exception as exc:  # the trainer raises it: one line, with the worker's last frame
        conn.send(("error", f"{type(exc).__name__}: {exc} ({traceback.extract_tb(exc.__traceback__)[-1].name})"))
    finally:
        for block in blocks:
            block.close()


def next_message(conn, trainer: int):
    """The trainer's next message; None (exit) once the trainer is gone without saying so.

    A forked worker holds copies of the pipes' other ends, so a killed trainer never shows up
    as an EOF: the worker checks every second that its parent is still the trainer.
    """
    while not conn.poll(1.0):
        if os.getppid() != trainer:
            return None
    return conn.recv()


def attach(arrays: dict) -> tuple[list, dict[str, np.ndarray]]:
    """numpy views of the shared-memory blocks named in ``arrays`` ({name: (block, shape, dtype)})."""
    from multiprocessing import shared_memory

    blocks = [shared_memory.SharedMemory(name=block) for block, _, _ in arrays.values()]
    return blocks, views(arrays, blocks)


def views(arrays: dict, blocks: list) -> dict[str, np.ndarray]:
    """{name: numpy array over its shared-memory block}, from ``arrays``' shapes and dtypes."""
    pairs = zip(arrays.items(), blocks, strict=True)
    return {k: np.ndarray(shape, dtype, buffer=b.buf) for (k, (_, shape, dtype)), b in pairs}


class ProcessBatch:
    """``num_envs`` copies of the one-env loop's env (``make_env``), in worker processes (``--vector-env procs``).

    Each worker plays its slots' games and acts for them itself, with the batch's actor
    (``use``): the trainer hands out episodes and collects their steps a chunk at a time
    (``send`` and ``recv`` per group of slots, ``play_chunk``), so no message crosses a pipe on
    every step. A worker's slots form two groups, played by turns: while the trainer settles one
    group's chunk, the worker is already playing the other. Each env is the very env
    ``--num-envs 1`` plays, wrappers and all (the seed's preprocessing, FIRE after a lost life),
    so the same seed plays the same game; a slot with no episode left to play is not stepped.
    Slot 0's screens reach the instruments through shared memory (``view``).
    """

    def __init__(self, env_id: str, num_envs: int, workers: int, probe: gym.Env, depth: int = 2, **make_kwargs: Any) -> None:
        import multiprocessing as mp
        from multiprocessing import shared_memory

        from dirtyrl.envs import frames_wrapper

        self.num_envs = num_envs
        self.action_space = probe.action_space
        self.observation_space = probe.observation_space
        workers = min(workers, num_envs)
        self.groups = [g for g in np.array_split(np.arange(num_envs), min(num_envs, depth * workers)) if g.size]
        self.owner = [k % workers for k in range(len(self.groups))]  # worker w plays groups w and w + workers
        self.slots = [[int(s) for k, g in enumerate(self.groups) if self.owner[k] == w for s in g] for w in range(workers)]
        self.waiting = [0] * workers  # replies each worker still owes, answered in the order asked
        watched = frames_wrapper(probe)
        shapes = {}
        if watched is not None:  # slot 0's screens, for the preprocessing inspector and the renderer
            raw_shape = (210, 160, 3) if type(watched).__name__ == "PongDifferenceFrames" else (210, 160)
            shapes = {"raw": (raw_shape, np.uint8), "processed": ((VPG_SIZE, VPG_SIZE), np.uint8)}
        self.blocks = [
            shared_memory.SharedMemory(create=True, size=int(np.prod(shape)) * np.dtype(dtype).itemsize)
            for shape, dtype in shapes.values()
        ]
        arrays = {k: (b.name, shape, np.dtype(d).str) for (k, (shape, d)), b in zip(shapes.items(), self.blocks, strict=True)}
        self.shown = views(arrays, self.blocks)
        self.view = SlotView() if watched is not None else probe
        # fork: a worker needs nothing of the trainer but the env's settings and numpy, and it
        # never calls torch (whose threads do not survive a fork). spawn would run the user's
        # script again.
        ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
        self.conns, self.procs = [], []
        self.closed = False
        try:
            for w in range(workers):
                here, there = ctx.Pipe()
                proc = ctx.Process(
                    target=_serve, args=(there, env_id, make_kwargs, self.slots[w], arrays, watched is not None)
                )
                proc.daemon = True
                proc.start()
                there.close()  # the worker's end lives in the worker: its exit is then an EOF here
                self.conns.append(here)
                self.procs.append(proc)
                self.waiting[w] = 1  # its envs are made
            for w in range(workers):
                self._answer(w)
        except BaseException:
            self.close()
            raise

    def _died(self, w: int) -> RuntimeError:
        self.procs[w].join(timeout=1)
        return RuntimeError(f"env worker process {w} of --vector-env procs died (exit code {self.procs[w].exitcode})")

    def _ask(self, w: int, message: tuple) -> None:
        try:
            self.conns[w].send(message)
        except OSError:
            raise self._died(w) from None
        self.waiting[w] += 1

    def _answer(self, w: int) -> Any:
        try:
            reply = self.conns[w].recv()
        except EOFError:
            raise self._died(w) from None
        self.waiting[w] -= 1
        if reply[0] == "error":
            raise RuntimeError(f"env worker process {w} of --vector-env procs: {reply[1]}")
        return reply[1]

    def _all(self, messages: list[tuple]) -> list:
        """One message to each worker, then each answer, in worker order."""
        for w, message in enumerate(messages):
            self._ask(w, message)
        return [self._answer(w) for w in range(len(self.conns))]

    def _view(self) -> None:
        if isinstance(self.view, SlotView):
            self.view.raw_frame = self.shown["raw"].copy()
            self.view.processed_frame = self.shown["processed"].copy()

    def reset(self, seeds: list[int] | None) -> np.ndarray:
        """Fresh episodes in every slot; ``seeds`` (one per slot) reload the ROMs. Returns their first observations."""
        obs = np.zeros((self.num_envs, *self.observation_space.shape), self.observation_space.dtype)
        for slots, rows in zip(self.slots, self._all([("reset", seeds)] * len(self.conns)), strict=True):
            obs[slots] = rows
        self._view()
        return obs

    def use(self, actor) -> None:
        """The batch's fixed policy (vpg.Actor): every worker acts with its own copy."""
        self._all([("actor", actor)] * len(self.conns))

    def send(self, k: int, starts: dict[int, Any], slots: list[int], steps: int) -> None:
        """Group ``k``'s playing ``slots`` play a chunk of up to ``steps`` steps (``play_chunk``);
        ``starts`` ({slot: seed}) seeds the generators of the episodes that start now."""
        self._ask(self.owner[k], ("play", starts, slots, steps))

    def recv(self, k: int) -> tuple[dict[int, Played], int]:
        """Group ``k``'s chunk: ({slot: Played}, idle slot-steps, always 0 here).

        A worker answers in the order it was asked: receive its groups in the order they were sent."""
        played = self._answer(self.owner[k])
        if self.groups[k][0] == 0:
            self._view()
        return played, 0

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, ...]:
        """One step of every slot, no acting (checks of the frames): (obs, rewards, terminated, truncated, forced)."""
        parts = self._all([("step", slots, actions[slots]) for slots in self.slots])
        out = [np.zeros((self.num_envs, *p.shape[1:]), p.dtype) for p in parts[0]]
        for slots, part in zip(self.slots, parts, strict=True):
            for whole, rows in zip(out, part, strict=True):
                whole[slots] = rows
        self._view()
        return tuple(out)

    def close(self) -> None:
        """Stop the workers and free the shared memory; a second call does nothing."""
        if self.closed:
            return
        self.closed = True
        for w, conn in enumerate(self.conns):
            try:
                for _ in range(self.waiting[w]):
                    conn.recv()
                conn.send(None)
            except (EOFError, OSError):
                pass
        for proc in self.procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()
        for block in self.blocks:
            block.close()
            block.unlink()
        self.blocks = []


class Lockstep:
    """Every slot steps at once (``step``); ``send`` and ``recv`` play a chunk of the single group
    in this process (``play_chunk``). A slot with no episode to play steps too (NOOP) and is counted."""

    num_envs: int
    fire_next: np.ndarray

    @property
    def groups(self) -> list[np.ndarray]:
        return [np.arange(self.num_envs)]

    def start_batch(self, obs: np.ndarray) -> np.ndarray:
        """After a reset: every slot's first observation; no episode is playing yet."""
        self.obs, self.rngs = obs, {}
        return obs

    def use(self, actor) -> None:
        """The batch's fixed policy (vpg.Actor), used by ``recv`` in this process."""
        self.actor = actor

    def send(self, k: int, starts: dict[int, Any], slots: list[int], steps: int) -> None:
        self.rngs |= {slot: np.random.default_rng(seed) for slot, seed in starts.items()}
        self.chunk = (slots, steps)

    def _step_live(self, live: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, ...]:
        every = np.zeros(self.num_envs, np.int64)
        every[live] = actions
        obs, *rest = self.step(every)
        self.obs[:] = obs  # the waiting slots' games went on too
        self.idle += self.num_envs - live.size
        return (obs[live], *(x[live] for x in rest))

    def recv(self, k: int) -> tuple[dict[int, Played], int]:
        self.idle = 0
        slots, steps = self.chunk
        played = play_chunk(self.obs, slots, self.rngs, self.actor, self.fire_next, self._step_live, steps)
        for slot in [s for s, p in played.items() if p.done]:
            del self.rngs[slot]
        return played, self.idle


class AtariBatch(Lockstep):
    """``num_envs`` Atari games stepped side by side, preprocessed as one batch.

    The raw screens come from ``CppFrames`` (ale-py's C++ vector env). Pong (the preset and
    ``ALE/Pong-v5``): the seed's binarised difference. Other games: the sign of the change of
    the gray 80x80 screen (envs/atari_vpg.py). Games that wait for FIRE get it on reset from
    the frame source and after a lost life from here: that slot's next step presses FIRE
    instead of the policy's action and is reported in ``forced``, so the caller folds its
    reward into the step before and records nothing (the single env's ``FireOnReset`` hides
    the same press inside one agent step).
    """

    def __init__(self, frames: CppFrames, num_envs: int, *, actions: int, action_set, pong: bool, fire):
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
        return self.start_batch(self._frames(screens, np.ones(self.num_envs, bool)))

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(obs, rewards, terminated, truncated, forced); a done slot's obs starts its next episode."""
        forced = self.fire_next.copy()
        ale_actions = self.action_map[actions]
        if forced.any():
            ale_actions[forced] = self.fire
        screens, rewards, terminated, truncated, lives = self.frames.step(ale_actions)
        done = terminated | truncated
        if self.fire is not None:  # a lost life waits for FIRE (a new episode got it on its reset)
            self.fire_next[:] = (lives < self.lives) & ~done  # in place: play_chunk holds this array
        self.lives = lives
        return self._frames(screens, done), rewards, terminated, truncated, forced

    def close(self) -> None:
        self.frames.close()


class GymBatch(Lockstep):
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
        return self.start_batch(obs)

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        obs, rewards, terminated, truncated, _ = self.venv.step(actions)
        return obs, np.asarray(rewards, np.float64), terminated, truncated, np.zeros(self.num_envs, bool)

    def close(self) -> None:
        self.venv.close()


def make_batch(
    env_id: str,
    num_envs: int,
    workers: int,
    *,
    actions: int = 3,
    sticky: float = 0.25,
    env_kwargs: list[str] | dict[str, Any] | None = None,
    probe: gym.Env,
    backend: str = "procs",
) -> AtariBatch | GymBatch | ProcessBatch:
    """The batch for ``--num-envs N``: for ALE screens ``ProcessBatch`` or ``AtariBatch``, else ``GymBatch``.

    ``probe`` is the same env made once by ``make_env`` (which checked the id, the kwargs and
    the spaces); it tells which kind to build and whether the game waits for FIRE.
    ``backend`` (``--vector-env``) picks how Atari games are stepped: ``procs`` (``workers``
    worker processes) or ``ale`` (the C++ vector env with ``workers`` threads).
    """
    from dirtyrl.envs import is_ale, is_pong, make_env, parse_env_kwargs, split_module
    from dirtyrl.envs.atari_vpg import fire_action

    pong = is_pong(env_id)
    screens = is_ale(env_id) and split_module(env_id)[1].startswith("ALE/") and len(probe.observation_space.shape) == 2
    if not (pong or screens):  # RAM observations, module:EnvId and every non-Atari env
        return GymBatch(lambda: make_env(env_id, actions=actions, sticky=sticky, env_kwargs=env_kwargs), num_envs)
    if backend == "procs":
        return ProcessBatch(env_id, num_envs, workers, probe, actions=actions, sticky=sticky, env_kwargs=env_kwargs)
    fire = fire_action(probe)
    kwargs = parse_env_kwargs(env_kwargs)
    frameskip = kwargs.pop("frameskip", 4)
    obs_type = kwargs.pop("obs_type", "rgb")
    if kwargs or not isinstance(frameskip, int):
        raise UserError(
            f"--vector-env ale runs {env_id} in ale-py's C++ vector env, which takes no --env-kwargs but an "
            f"integer frameskip; got {parse_env_kwargs(env_kwargs)} (use --vector-env procs for those)"
        )
    game_id = "ALE/Pong-v5" if pong else split_module(env_id)[1]
    ale_pong = gym.spec(game_id).kwargs["game"] == "pong" and obs_type == "rgb"  # the seed's crop needs colour
    frames = CppFrames(gym.spec(game_id).kwargs["game"], num_envs, workers, sticky, frameskip, ale_pong, fire is not None)
    n_actions = len(probe.unwrapped.get_action_meanings())
    batch = AtariBatch(
        frames, num_envs, actions=n_actions, action_set=ACTION_SETS[actions] if pong else None, pong=ale_pong, fire=fire
    )
    if pong:
        batch.action_names = ACTION_NAMES[actions]
    return batch
