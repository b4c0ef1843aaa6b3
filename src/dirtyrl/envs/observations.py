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
"""

from __future__ import annotations

import warnings

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
    env = gym.wrappers.FlattenObservation(env)
    if env.observation_space.dtype != np.float32:
        # One-hot parts come out as int64 (float64 when mixed with a Box); float32 is what the
        # networks compute in, and halves the replay buffer. The bounds are 0/1 or the parts' own
        # float32 bounds, so Gymnasium's "precision lowered" warning is about nothing here.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", ".*Box (low|high)'s precision lowered", UserWarning)
            env = gym.wrappers.DtypeObservation(env, np.float32)
    return env
