"""The env witness: every env that outside code makes through Gymnasium is recorded as it plays.

``EnvWitness`` replaces ``gymnasium.make`` (which ``SyncVectorEnv``-from-thunks and a sync
``make_vec`` reach through) while it is installed, and wraps each env it makes in a
``Recorder``: a plain ``gym.Wrapper`` that passes every call through unchanged and notes the
action, the reward, the episode ends and, on request, each observation. It replaces
``gymnasium.make_vec`` too: a vector env whose envs were made some other way (CartPole's own
vector env, ``AsyncVectorEnv``'s workers) is wrapped in a ``VectorRecorder``, which records
each of its envs from the batched steps. The agent's code is not touched and cannot tell; what
it reports about itself is never read.

What the record serves:

- ``doctor --agent``: the training episodes the agent really played on a probe (returns, and
  which observation its actions follow: witness/acting.py);
- ``watch``: episode returns and lengths, the action histogram, observation statistics (an
  observation that never varies, NaN/Inf, values far outside the space), an agent that plays
  one action almost always from the start.

An ``AsyncVectorEnv`` built by hand from thunks (not through ``make_vec``) steps its envs in
worker processes, out of this record; its forked workers record nothing.
"""

from __future__ import annotations

import math
import os
import sys
import weakref
from collections import Counter
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np

from dirtyrl.witness.acting import Episode
from dirtyrl.witness.findings import Finding, WitnessTripped

ONE_ACTION_STEPS = 500  # steps before "one action almost always" can be judged
ONE_ACTION_SHARE = 0.98
CONSTANT_OBS_STEPS = 200  # identical observations for this many steps (several episodes) is a bug
OBS_CHECK_EVERY = 16  # observation statistics on every 16th step of large observations
FAR_OUTSIDE = 10.0  # "far outside" a finite Box: beyond its bounds by 10x their width


class EnvRecord:
    """What is noted of one env: its episode so far and the checks on its observations. Mixed
    into ``Recorder`` (an env made by ``gymnasium.make``) and ``SubEnvRecord`` (one env of a
    vector env that made its envs some other way)."""

    renders = True  # an env of its own, which ``on_env_step`` (watch --render) can draw

    def _start_record(self, witness: EnvWitness, env_id: str, index: int) -> None:
        self.witness = witness
        self.env_id = env_id
        self.index = index
        self.episode: Episode | None = None
        self.obs: Any = None
        self.steps = 0
        self.first_obs: Any = None
        self.obs_varied = False
        self.obs_seen = 0
        self.large = False
        self.limits: tuple[np.ndarray, np.ndarray] | bool | None = False  # far-outside bounds, made once

    def _begin(self, obs: Any) -> None:
        """A reset: the episode so far (abandoned, but played) ends, a new one starts at ``obs``."""
        if self.episode is not None and self.episode.actions:
            self.witness.end_episode(self, self.episode)
        self.episode = Episode()
        self._see(obs)

    def _record(self, action: Any, reward: Any, terminated: Any, truncated: Any, obs: Any) -> None:
        if self.episode is None:
            self.episode = Episode()
        a = _as_action(action)
        ep = self.episode
        if self.witness.keep_observations:
            ep.observations.append(self.obs)
        ep.actions.append(a)
        ep.rewards.append(float(reward))
        self.steps += 1
        self.witness.on_step(self, a)
        if self.witness.on_env_step is not None and self.renders:
            self.witness.on_env_step(self, self.witness.env_steps)  # before the episode's end: its last frame
        if terminated or truncated:
            ep.terminated, ep.truncated = bool(terminated), bool(truncated)
            self.episode = None
            self.witness.end_episode(self, ep)
        self._see(obs)

    def _see(self, obs: Any) -> None:
        """Keep the observation the next action will be chosen on; check it now and then."""
        if self.witness.keep_observations:
            self.obs = np.array(obs, copy=True) if isinstance(obs, np.ndarray) else obs
        self.obs_seen += 1
        if self.obs_seen == 1:
            self.large = isinstance(obs, np.ndarray) and obs.size > 1024
        if self.obs_seen % (OBS_CHECK_EVERY if self.large else self.witness.obs_check_every):
            return
        self.witness.check_observation(self, obs)


class Recorder(gym.Wrapper, EnvRecord):
    """Passes everything through; notes what the env saw. One per env made while witnessed."""

    def __init__(self, env: gym.Env, witness: EnvWitness, env_id: str, index: int) -> None:
        super().__init__(env)
        self._start_record(witness, env_id, index)

    def reset(self, **kwargs: Any) -> Any:
        obs, info = self.env.reset(**kwargs)
        if self.witness.recording:
            try:
                self._begin(obs)
            except WitnessTripped:
                raise
            except Exception as exc:
                self.witness.stand_down(exc)
        return obs, info

    def step(self, action: Any) -> Any:
        obs, reward, terminated, truncated, info = self.env.step(action)
        if self.witness.recording:
            try:  # costs nothing per step in Python 3.11, unlike a context manager
                self._record(action, reward, terminated, truncated, obs)
            except WitnessTripped:
                raise
            except Exception as exc:
                self.witness.stand_down(exc)
        return obs, reward, terminated, truncated, info


class SubEnvRecord(EnvRecord):
    """One env of a ``VectorRecorder``: the spaces are the vector env's single-env ones."""

    renders = False  # drawn, if at all, by its vector env

    def __init__(self, vector_env: gym.vector.VectorEnv, witness: EnvWitness, env_id: str, index: int) -> None:
        self._start_record(witness, env_id, index)
        self.spec = vector_env.spec
        self.action_space = vector_env.single_action_space
        self.observation_space = vector_env.single_observation_space


class VectorRecorder(gym.vector.VectorWrapper):
    """A vector env from ``gymnasium.make_vec`` whose envs were not made by ``gymnasium.make``
    (a vector entry point such as CartPole's, or ``AsyncVectorEnv``'s worker processes): each of
    its envs is recorded here, in this process, from the batched steps."""

    def __init__(self, env: gym.vector.VectorEnv, witness: EnvWitness, env_id: str, first_index: int) -> None:
        super().__init__(env)
        self.witness = witness
        self.subs = [SubEnvRecord(env, witness, env_id, first_index + i) for i in range(env.num_envs)]
        mode = env.metadata.get("autoreset_mode", gym.vector.AutoresetMode.NEXT_STEP)
        # NEXT_STEP (the default): the step after an episode's end resets that env and ignores its
        # action; SAME_STEP returns the next episode's first observation with the end itself.
        self.next_step_reset = mode in (gym.vector.AutoresetMode.NEXT_STEP, "NextStep")
        self.resetting = np.zeros(env.num_envs, bool)

    def reset(self, **kwargs: Any) -> Any:
        obs, info = self.env.reset(**kwargs)
        if self.witness.recording:
            try:
                mask = (kwargs.get("options") or {}).get("reset_mask")
                for i, sub in enumerate(self.subs):
                    if mask is None or mask[i]:
                        sub._begin(_item(obs, i))
                        self.resetting[i] = False
            except WitnessTripped:
                raise
            except Exception as exc:
                self.witness.stand_down(exc)
        return obs, info

    def step(self, actions: Any) -> Any:
        obs, rewards, terminated, truncated, info = self.env.step(actions)
        if self.witness.recording:
            try:
                for i, sub in enumerate(self.subs):
                    if self.resetting[i]:  # this step reset env i: its action was not played
                        sub._begin(_item(obs, i))
                    else:
                        sub._record(_item(actions, i), rewards[i], terminated[i], truncated[i], _item(obs, i))
                if self.next_step_reset:
                    self.resetting = np.logical_or(terminated, truncated)
            except WitnessTripped:
                raise
            except Exception as exc:
                self.witness.stand_down(exc)
        return obs, rewards, terminated, truncated, info


def _item(batch: Any, i: int) -> Any:
    """Env ``i``'s part of a batched observation or action (arrays, and dicts and tuples of them)."""
    if isinstance(batch, dict):
        return {k: _item(v, i) for k, v in batch.items()}
    if isinstance(batch, tuple):
        return tuple(_item(v, i) for v in batch)
    return batch[i]


def far_limits(space: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """Bounds beyond which an observation is "far outside" a Box (FAR_OUTSIDE widths past its
    finite bounds; no limit where a bound is infinite), or None when nothing can be judged.
    Made once per env: the check on every step is then two comparisons.

    >>> lo, hi = far_limits(gym.spaces.Box(np.array([0.0, -np.inf]), np.array([1.0, np.inf])))
    >>> lo.tolist(), hi.tolist()
    ([-10.0, -inf], [11.0, inf])
    """
    if not isinstance(space, gym.spaces.Box):
        return None
    low, high = np.asarray(space.low, np.float64), np.asarray(space.high, np.float64)
    finite = np.isfinite(low) & np.isfinite(high)
    if not finite.any():
        return None
    width = np.maximum(np.where(finite, high - low, 0.0), 1e-12)
    lo = np.where(finite, low - FAR_OUTSIDE * width, -np.inf)
    hi = np.where(finite, high + FAR_OUTSIDE * width, np.inf)
    return lo, hi


def _as_action(action: Any) -> int:
    if isinstance(action, (int, np.integer)):  # the common case, without building an array
        return int(action)
    try:
        return int(np.asarray(action).reshape(-1)[0])
    except (TypeError, ValueError, IndexError):
        return -1


class EnvWitness:
    """Record every env made through ``gymnasium.make`` while installed (``with EnvWitness():``).

    ``keep_observations`` keeps each step's observation (the doctor's probes: tiny and short);
    ``on_episode(recorder, episode, env_step)`` and ``on_finding(finding)`` are called as they
    happen (``watch`` logs and traps with them). ``watch`` also takes, every ``window`` env steps,
    ``on_window(action_counts_of_the_window, env_step)`` (the action histogram over time), and
    ``on_env_step(recorder, env_step)`` after every step (rendering; left None, it costs nothing).
    Observations of more than 1024 entries are checked every ``OBS_CHECK_EVERY`` steps, smaller
    ones every ``obs_check_every`` (1: all of them).
    """

    def __init__(
        self,
        keep_observations: bool = False,
        on_episode: Callable[[Recorder, Episode, int], None] | None = None,
        on_finding: Callable[[Finding], None] | None = None,
        *,
        window: int = 0,
        on_window: Callable[[Counter, int], None] | None = None,
        on_env_step: Callable[[Recorder, int], None] | None = None,
        obs_check_every: int = 1,
    ) -> None:
        self.keep_observations = keep_observations
        self.on_episode = on_episode
        self.on_finding = on_finding
        self.window = window
        self.on_window = on_window
        self.on_env_step = on_env_step
        self.obs_check_every = max(1, obs_check_every)  # small observations: checked every step by default
        self.window_counts: Counter = Counter()  # actions since the last on_window call
        self.recorders: list[EnvRecord] = []
        self.episodes: list[Episode] = []
        self.episode_env: list[int] = []  # recorder index of each episode
        self.env_steps = 0
        self.action_counts: Counter = Counter()
        self.findings: list[Finding] = []
        self.failed: str | None = None  # the witness's own error, if one happened (the run went on)
        self.recording = True  # off after the witness's own error, and in a forked vector-env worker
        self.made: list[tuple[str, dict[str, Any]]] = []  # (env id, kwargs) as the script made them
        self._reported: set[tuple[str, str]] = set()
        self._saved: list[tuple[Any, str, Any]] = []

    # -- installing -----------------------------------------------------------------------------
    def install(self) -> EnvWitness:
        import gymnasium.envs.registration as registration

        # A forked worker (AsyncVectorEnv) records nothing: its copy of the record never reaches
        # this process. A flag set at fork costs nothing per step, unlike comparing os.getpid().
        witness = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: setattr(witness(), "recording", False) if witness() else None)

        original = registration.make

        def make(env_id: Any, *args: Any, **kwargs: Any) -> gym.Env:
            env = original(env_id, *args, **kwargs)
            name = env_id if isinstance(env_id, str) else getattr(env_id, "id", str(env_id))
            self.made.append((name, dict(kwargs)))
            recorder = Recorder(env, self, name, len(self.recorders))
            self.recorders.append(recorder)
            return recorder

        original_vec = registration.make_vec

        def make_vec(
            env_id: Any,
            num_envs: int = 1,
            vectorization_mode: Any = None,
            vector_kwargs: dict[str, Any] | None = None,
            wrappers: Any = None,
            **kwargs: Any,
        ) -> gym.vector.VectorEnv:
            made = len(self.made)
            env = original_vec(env_id, num_envs, vectorization_mode, vector_kwargs, wrappers, **kwargs)
            if isinstance(env, gym.vector.SyncVectorEnv) and all(isinstance(e, Recorder) for e in env.envs):
                return env  # its envs came from gymnasium.make: recorded already
            name = env_id if isinstance(env_id, str) else getattr(env_id, "id", str(env_id))
            if len(self.made) == made:  # (AsyncVectorEnv makes one env here, for its spaces)
                self.made.append((name, dict(kwargs)))
            vector = VectorRecorder(env, self, name, len(self.recorders))
            self.recorders.extend(vector.subs)
            return vector

        make.__doc__ = original.__doc__
        make_vec.__doc__ = original_vec.__doc__
        for owner in (registration, gym):
            for name, value in (("make", make), ("make_vec", make_vec)):
                self._saved.append((owner, name, getattr(owner, name)))
                setattr(owner, name, value)
        return self

    def remove(self) -> None:
        for owner, name, value in reversed(self._saved):
            setattr(owner, name, value)
        self._saved.clear()

    def __enter__(self) -> EnvWitness:
        return self.install()

    def __exit__(self, *exc: Any) -> None:
        self.remove()

    def stand_down(self, exc: Exception) -> None:
        """An error of the witness's own never ends the watched run: one line, then it stands down."""
        self.failed = f"{type(exc).__name__}: {exc}"
        self.recording = False
        print(
            f"dirtyrl: witness: internal error while recording an env ({self.failed}); the env witness is off "
            "for the rest of the run, which goes on",
            file=sys.stderr,
            flush=True,
        )

    # -- what the recorders report --------------------------------------------------------------
    def on_step(self, recorder: Recorder, action: int) -> None:
        self.env_steps += 1
        self.action_counts[action] += 1
        if self.env_steps == ONE_ACTION_STEPS:
            self._check_one_action(recorder)
        if self.on_window is not None:
            self.window_counts[action] += 1
            if self.window and self.env_steps % self.window == 0:
                counts, self.window_counts = self.window_counts, Counter()
                self.on_window(counts, self.env_steps)

    def end_episode(self, recorder: Recorder, episode: Episode) -> None:
        self.episodes.append(episode)
        self.episode_env.append(recorder.index)
        if self.on_episode is not None:
            self.on_episode(recorder, episode, self.env_steps)

    def _check_one_action(self, recorder: Recorder) -> None:
        space = recorder.action_space
        n = int(space.n) if isinstance(space, gym.spaces.Discrete) else 0
        total = sum(self.action_counts.values())
        action, count = self.action_counts.most_common(1)[0]
        if n >= 2 and count / total >= ONE_ACTION_SHARE:
            self.report(
                Finding(
                    "one_action",
                    recorder.env_id,
                    f"action {action} in {count / total:.1%} of the first {total} steps ({n} actions)",
                    "no exploration: acting greedily on an untrained net, an argmax instead of a sample, "
                    "or an epsilon schedule that starts at 0 ('always moving up')",
                    env_step=self.env_steps,
                )
            )

    def check_observation(self, recorder: Recorder, obs: Any) -> None:
        if not isinstance(obs, np.ndarray) or obs.dtype == object:
            return
        if recorder.first_obs is None:
            recorder.first_obs = obs.copy()
        elif not recorder.obs_varied:
            if obs.shape != recorder.first_obs.shape or not np.array_equal(obs, recorder.first_obs):
                recorder.obs_varied = True
            elif recorder.obs_seen >= CONSTANT_OBS_STEPS and len(self.episodes) >= 2:
                self.report(
                    Finding(
                        "constant_obs",
                        recorder.env_id,
                        f"the env's observation was identical for all of the first {recorder.obs_seen} observations",
                        "the observation never changes: the env ignores its state, or reset/step return a cached array",
                        env_step=self.env_steps,
                    )
                )
                recorder.obs_varied = True  # reported once
        if recorder.limits is False:
            limits = far_limits(recorder.observation_space)
            big = np.finfo(np.float64).max  # an infinite bound still fails an Inf or a NaN entry
            recorder.limits = None if limits is None else (np.maximum(limits[0], -big), np.minimum(limits[1], big))
        limits = recorder.limits
        judged = limits is not None and obs.dtype.kind in "fiu" and obs.shape == limits[0].shape
        if judged and ((obs >= limits[0]) & (obs <= limits[1])).all():
            return  # the common case in two comparisons: finite and within range (NaN fails both)
        if obs.dtype.kind == "f" and not np.isfinite(obs).all():
            bad = int((~np.isfinite(obs)).sum())
            self.report(
                Finding(
                    "nan_obs",
                    recorder.env_id,
                    f"{bad} of {obs.size} observation entries are NaN/Inf",
                    "the env's state computation (a division by zero, an overflow) or an unclipped preprocessing step",
                    env_step=self.env_steps,
                )
            )
        if judged:
            outside = np.isfinite(obs) & ((obs < limits[0]) | (obs > limits[1]))
            if outside.any():
                space = recorder.observation_space
                i = int(np.flatnonzero(outside.ravel())[0])
                low, high = np.asarray(space.low, np.float64).ravel(), np.asarray(space.high, np.float64).ravel()
                self.report(
                    Finding(
                        "obs_range",
                        recorder.env_id,
                        f"observation entry {i} = {float(obs.ravel()[i]):.4g}, far outside its space's "
                        f"[{low[i]:.4g}, {high[i]:.4g}]",
                        "the observation space does not describe the observations (wrong scale or units)",
                        env_step=self.env_steps,
                    )
                )

    def report(self, finding: Finding) -> None:
        """Keep one finding per (check, where) and pass it on (``watch`` may stop the script here)."""
        key = (finding.check, finding.where)
        if key in self._reported:
            return
        self._reported.add(key)
        self.findings.append(finding)
        if self.on_finding is not None:
            self.on_finding(finding)

    # -- summaries -------------------------------------------------------------------------------
    def returns(self) -> list[float]:
        return [e.ret for e in self.episodes]

    def action_entropy(self) -> float:
        total = sum(self.action_counts.values())
        if not total:
            return 0.0
        return -sum(c / total * math.log(c / total) for c in self.action_counts.values())
