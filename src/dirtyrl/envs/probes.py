"""Probe environments from the RL-debugging literature (Andy Jones, "Debugging RL, Without
the Agonizing Pain"): tiny problems with a known answer, each isolating one part of an agent.

==========  ========  ====================================  =====================================
probe        actions   reward                                what failing it points at
==========  ========  ====================================  =====================================
Probe1       1         +1 every episode (1 step)             value fitting (V -> 1)
Probe2       1         = observation (+1 or -1)              value depends on the observation
Probe3       1         +1 at the end of 2 steps              discounting (Q(s0) -> gamma)
Probe4       2         +1 for action 0, -1 for action 1      policy gradient / action values
Probe5       2         +1 if action matches the observation  policy conditioned on observation
==========  ========  ====================================  =====================================

Registered as ``dirtyrl/Probe1-v0`` ... ``dirtyrl/Probe5-v0`` so every command can run them.
"""

from __future__ import annotations

from typing import ClassVar

import gymnasium as gym
import numpy as np


class ProbeEnv(gym.Env):
    """One env class, five behaviours; observations are float32 of shape (1,)."""

    metadata: ClassVar[dict] = {"render_modes": []}

    def __init__(self, probe: int, render_mode: str | None = None) -> None:
        self.probe = probe
        self.render_mode = render_mode
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.action_space = gym.spaces.Discrete(2 if probe >= 4 else 1)
        self.obs = np.zeros(1, np.float32)
        self.t = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.t = 0
        value = 0.0
        if self.probe in (2, 5):
            value = float(self.np_random.choice([-1.0, 1.0]))
        self.obs = np.array([value], np.float32)
        return self.obs.copy(), {}

    def step(self, action):
        action = int(action)
        if self.probe == 3 and self.t == 0:
            self.t = 1
            self.obs = np.array([1.0], np.float32)
            return self.obs.copy(), 0.0, False, False, {}
        if self.probe in (1, 3):
            reward = 1.0
        elif self.probe == 2:
            reward = float(self.obs[0])
        elif self.probe == 4:
            reward = 1.0 if action == 0 else -1.0
        else:
            reward = 1.0 if (action == 1) == (self.obs[0] > 0) else -1.0
        return self.obs.copy(), reward, True, False, {}


PROBE_IDS = [f"dirtyrl/Probe{i}-v0" for i in range(1, 6)]


def register_probes() -> None:
    for i, env_id in enumerate(PROBE_IDS, start=1):
        if env_id not in gym.registry:
            # Only the policy probes have a return to reach; the value probes are judged by V and Q.
            threshold = 0.9 if i >= 4 else None
            gym.register(env_id, entry_point=ProbeEnv, kwargs={"probe": i}, reward_threshold=threshold)
