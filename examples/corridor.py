"""A custom Gymnasium env in a few lines, for ``--env corridor:Corridor-v0``.

Walk right along a corridor to the exit: +1 for reaching it, -0.05 for every other step, at
most 50 steps. The observation is the cell index, a ``Discrete`` space: dirty-rl one-hot
encodes it (see docs/environments.md). Importing this module registers the id, which is all
``gym.make("corridor:Corridor-v0")`` needs::

    PYTHONPATH=examples dirtyrl train vpg --env corridor:Corridor-v0 --total-steps 5000
    PYTHONPATH=examples dirtyrl train dqn --env corridor:Corridor-v0 --env-kwargs length=4
"""

from __future__ import annotations

from typing import ClassVar

import gymnasium as gym
import numpy as np


class CorridorEnv(gym.Env):
    """Cells 0..length-1; start at 0, exit at length-1. Actions: 0 left, 1 right."""

    metadata: ClassVar[dict] = {"render_modes": ["rgb_array"], "render_fps": 8}

    def __init__(self, length: int = 6, render_mode: str | None = None) -> None:
        if length < 2:
            raise ValueError(f"length must be >= 2, got {length}")
        self.length = length
        self.render_mode = render_mode
        self.observation_space = gym.spaces.Discrete(length)
        self.action_space = gym.spaces.Discrete(2)
        self.position = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.position = 0
        return self.position, {}

    def step(self, action):
        self.position = min(max(self.position + (1 if int(action) == 1 else -1), 0), self.length - 1)
        at_exit = self.position == self.length - 1
        return self.position, 1.0 if at_exit else -0.05, at_exit, False, {}

    def render(self) -> np.ndarray:
        """(16, 16 * length, 3) uint8: the agent white, the exit green."""
        strip = np.full((1, self.length, 3), 40, np.uint8)
        strip[0, -1] = (0, 160, 0)
        strip[0, self.position] = (255, 255, 255)
        return np.kron(strip, np.ones((16, 16, 1), np.uint8))


# The best return is 1 - 0.05 * (length - 2): 0.8 for the default length 6.
gym.register("Corridor-v0", entry_point=f"{__name__}:CorridorEnv", max_episode_steps=50, reward_threshold=0.7)
