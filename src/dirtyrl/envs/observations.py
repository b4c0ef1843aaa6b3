"""The observation policy: what every algorithm's network sees, for any Gymnasium env.

One policy for every algorithm (VPG, DQN, the random baseline), applied by ``make_env``:

==============================================  =============================================
observation space                               what the agent gets
==============================================  =============================================
``Box`` of shape (D,)                           unchanged (CartPole, LunarLander, ALE RAM)
``Box`` of any other non-image shape            flattened to (D,)
``Discrete(n)``                                 one-hot, (n,) float32 (FrozenLake, Taxi)
``MultiBinary`` / ``MultiDiscrete``             flattened; each MultiDiscrete part one-hot
``Tuple`` / ``Dict`` of the above               flattened and concatenated (Blackjack)
Atari screens (an ``ale_py`` env)               envs/atari_vpg.py (VPG) or envs/atari_dqn.py (DQN)
``Text``, ``Graph``, ``Sequence``, ...          refused: one line, exit status 2
==============================================  =============================================

The flattening is Gymnasium's own (``spaces.flatten`` through ``FlattenObservation``), which
one-hot encodes every ``Discrete`` part: a FrozenLake cell index fed as the number 14 would
tell the network that cell 14 is "more" than cell 7, which it is not. SB3 and CleanRL do the
same. The action space must be ``Discrete`` (starting at 0): the policy and Q-networks here
output one number per action.

An env that returns an observation outside its own space (AgileRL's Dict probes emit 1 from a
``Discrete(1)``) is stopped at the flattening with one line naming the part, the value and the
space (``CheckedFlatten``), not an IndexError from inside Gymnasium.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from dirtyrl.errors import UserError

SUPPORTED_OBSERVATIONS = "Box, Discrete (one-hot), MultiBinary, MultiDiscrete, and Tuple/Dict of these (flattened)"
SUPPORTED_ACTIONS = "Discrete(n) starting at 0"
_FLAT_LEAVES = (spaces.Box, spaces.Discrete, spaces.MultiBinary, spaces.MultiDiscrete)


def describe(space: spaces.Space, role: str) -> str:
    """'a <Kind> <role> space' plus, for the simple kinds, its one-line repr, for error messages.

    >>> describe(spaces.MultiDiscrete([3, 3]), "action")
    'a MultiDiscrete action space, MultiDiscrete([3 3])'
    >>> describe(spaces.Text(5), "observation")
    'a Text observation space'
    """
    phrase = f"a {type(space).__name__} {role} space"
    if isinstance(space, (spaces.Box, spaces.Discrete, spaces.MultiBinary, spaces.MultiDiscrete)):
        phrase += ", " + " ".join(repr(space).split())
    return phrase


def flattenable(space: spaces.Space) -> bool:
    """Whether the observation policy can turn ``space`` into one fixed-size vector.

    >>> flattenable(spaces.Tuple([spaces.Discrete(32), spaces.Discrete(11), spaces.Discrete(2)]))
    True
    >>> flattenable(spaces.Dict(a=spaces.Box(0, 1, (2,)), b=spaces.Sequence(spaces.Discrete(2))))
    False
    """
    if isinstance(space, _FLAT_LEAVES):
        return True
    if isinstance(space, spaces.Tuple):
        return all(flattenable(s) for s in space.spaces)
    if isinstance(space, spaces.Dict):
        return all(flattenable(s) for s in space.spaces.values())
    return False


def check_action_space(env_id: str, space: spaces.Space) -> None:
    """One-line UserError unless the actions are ``Discrete(n)`` starting at 0."""
    if isinstance(space, spaces.Discrete) and int(space.start) == 0:
        return
    raise UserError(
        f"env '{env_id}' has {describe(space, 'action')}; dirty-rl's algorithms support {SUPPORTED_ACTIONS} "
        "(continuous or multi-part actions need another algorithm, e.g. SAC or PPO)"
    )


def is_image(space: spaces.Space) -> bool:
    """A uint8 Box of shape (H, W) or (H, W, C): a screen, as ALE returns it."""
    return isinstance(space, spaces.Box) and space.dtype == np.uint8 and len(space.shape) in (2, 3)


def _shown(value: object) -> str:
    """A short, plain repr: ``1`` rather than ``np.int64(1)``, at most 60 characters."""
    if isinstance(value, (np.ndarray, np.generic)):
        value = value.tolist()
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _where(path: tuple) -> str:
    """``('a', 0)`` -> ``"key 'a', index 0"``: how the message names a part of a Dict/Tuple."""
    return ", ".join(f"key {p!r}" if isinstance(p, str) else f"index {p}" for p in path)


def _in_space(space: spaces.Space) -> Callable[[Any], bool]:
    """A fast yes/no test of the parts ``spaces.flatten`` crashes on, built once per space.

    ``observation_problem`` says what is wrong when it answers no; this runs on every step.
    """
    if isinstance(space, spaces.Discrete):
        lo, hi = int(space.start), int(space.start + space.n)

        def discrete(obs: Any) -> bool:
            if isinstance(obs, (int, np.integer)):  # the common case, without building an array
                return lo <= obs < hi
            value = np.asarray(obs)
            return value.size == 1 and np.issubdtype(value.dtype, np.integer) and lo <= value.item() < hi

        return discrete
    if isinstance(space, spaces.MultiDiscrete):
        low, high = space.start, space.start + space.nvec

        def multi_discrete(obs: Any) -> bool:
            value = np.asarray(obs)
            if value.shape != space.shape or not np.issubdtype(value.dtype, np.integer):
                return False
            return not ((value < low) | (value >= high)).any()

        return multi_discrete
    if isinstance(space, (spaces.Box, spaces.MultiBinary)):
        size = int(np.prod(space.shape))
        return lambda obs: np.size(obs) == size
    if isinstance(space, spaces.Dict):
        parts = [(key, _in_space(part)) for key, part in space.spaces.items()]
        return lambda obs: hasattr(obs, "keys") and all(key in obs and test(obs[key]) for key, test in parts)
    if isinstance(space, spaces.Tuple):
        tests = [_in_space(part) for part in space.spaces]
        return lambda obs: (
            isinstance(obs, (tuple, list))
            and len(obs) == len(tests)
            and all(test(value) for test, value in zip(tests, obs, strict=True))
        )
    return lambda obs: True


def observation_problem(space: spaces.Space, obs: Any, path: tuple = ()) -> str | None:
    """What in ``obs`` Gymnasium's ``spaces.flatten`` would crash on or silently garble, else None.

    Only those: a Discrete value out of range (too high is an IndexError deep in Gymnasium, a
    negative one silently one-hot encodes the last value), MultiDiscrete values out of range or
    of the wrong shape, parts of the wrong size, missing Dict keys, Tuples of the wrong length.
    Box values beyond the bounds pass: many real envs exceed their declared bounds, and
    flattening them is harmless.

    >>> observation_problem(spaces.Dict(discrete=spaces.Discrete(1)), {"discrete": 1})
    "key 'discrete' = 1, space Discrete(1)"
    >>> observation_problem(spaces.Tuple([spaces.Discrete(3), spaces.MultiDiscrete([2, 2])]), (2, [1, 2]))
    'index 1 = [1, 2], space MultiDiscrete([2 2])'
    >>> observation_problem(spaces.Box(0, 1, (2,)), np.array([5.0, -3.0])) is None  # beyond the bounds: fine
    True
    """
    if isinstance(space, spaces.Dict) and hasattr(obs, "keys"):
        for key, part in space.spaces.items():
            if key not in obs:
                return f"{_where((*path, key))} is missing, space {' '.join(repr(part).split())}"
            problem = observation_problem(part, obs[key], (*path, key))
            if problem is not None:
                return problem
        return None
    if isinstance(space, spaces.Tuple) and isinstance(obs, (tuple, list)) and len(obs) == len(space.spaces):
        for i, (part, value) in enumerate(zip(space.spaces, obs, strict=True)):
            problem = observation_problem(part, value, (*path, i))
            if problem is not None:
                return problem
        return None
    if _in_space(space)(obs):
        return None
    return f"{_where(path) + ' = ' if path else ''}{_shown(obs)}, space {' '.join(repr(space).split())}"


class CheckedFlatten(gym.wrappers.FlattenObservation):
    """``FlattenObservation`` that first checks the parts it would crash on (``observation_problem``).

    An env that returns an observation outside its own space gets one line naming the part, the
    value and the space, instead of an IndexError from inside ``spaces.flatten``: e.g. AgileRL's
    Dict probes, which emit ``{"discrete": 1}`` from a ``Discrete(1)`` space.
    """

    def __init__(self, env: gym.Env, env_id: str) -> None:
        # Recorded first (Gymnasium keeps the first call's), so that env.spec can rebuild this wrapper.
        gym.utils.RecordConstructorArgs.__init__(self, env_id=env_id)
        super().__init__(env)
        self.env_id = env_id
        self.call = "reset()"
        self.in_space = _in_space(env.observation_space)

    def reset(self, **kwargs):
        self.call = "reset()"
        return super().reset(**kwargs)

    def step(self, action):
        self.call = "step()"
        return super().step(action)

    def observation(self, observation):
        if not self.in_space(observation):
            problem = observation_problem(self.env.observation_space, observation)
            raise UserError(
                f"env '{self.env_id}' returned an observation outside its observation space: {problem} (from {self.call})"
            )
        return super().observation(observation)


def apply_observation_policy(env: gym.Env, env_id: str) -> gym.Env:
    """Wrap ``env`` so that its observations are one vector (see the table above).

    Atari screens are handled before this, by the Atari wrappers; anything else that is not
    a vector of numbers is refused here with a one-line UserError.
    """
    space = env.observation_space
    if isinstance(space, spaces.Box) and len(space.shape) == 1:
        return env  # already a vector: left exactly as the env gives it
    if not flattenable(space):
        raise UserError(f"env '{env_id}' has {describe(space, 'observation')}; dirty-rl supports {SUPPORTED_OBSERVATIONS}")
    env = CheckedFlatten(env, env_id)
    if env.observation_space.dtype != np.float32:
        # One-hot parts come out as int64 (float64 when mixed with a Box); float32 is what the
        # networks compute in, and halves the replay buffer. The bounds are 0/1 or the parts' own
        # float32 bounds, so Gymnasium's "precision lowered" warning is about nothing here.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", ".*Box (low|high)'s precision lowered", UserWarning)
            env = gym.wrappers.DtypeObservation(env, np.float32)
    return env
