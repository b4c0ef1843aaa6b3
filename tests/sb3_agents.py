"""Stable-Baselines3 agents behind the doctor's agent protocol: a trusted third-party
implementation that the doctor must pass without a false alarm (SB3 is a test-only dependency).

``make_dqn``, ``make_ppo`` and ``make_a2c`` follow ``make_agent(env_id, steps, seed)``; SB3
makes its env with ``gym.make`` itself, as it does for any user.
"""

from __future__ import annotations

import numpy as np
import torch


class SB3Agent:
    def __init__(self, model, gamma: float) -> None:
        self.model = model
        self.gamma = gamma

    def act(self, obs) -> int:
        action, _ = self.model.predict(np.asarray(obs, np.float32), deterministic=True)
        return int(action)


class SB3Policy(SB3Agent):
    def action_probs(self, obs) -> np.ndarray:
        x, _ = self.model.policy.obs_to_tensor(np.asarray(obs, np.float32))
        with torch.no_grad():
            return self.model.policy.get_distribution(x).distribution.probs[0].numpy().astype(np.float64)


class SB3Values(SB3Agent):
    def q_values(self, obs) -> np.ndarray:
        x, _ = self.model.policy.obs_to_tensor(np.asarray(obs, np.float32))
        with torch.no_grad():
            return self.model.policy.q_net(x)[0].numpy().astype(np.float64)


def make_dqn(env_id: str, steps: int, seed: int) -> SB3Values:
    from stable_baselines3 import DQN

    model = DQN(
        "MlpPolicy",
        env_id,
        learning_rate=1e-3,
        buffer_size=steps,
        learning_starts=200,
        batch_size=32,
        gamma=0.5,
        train_freq=1,
        target_update_interval=100,
        exploration_fraction=0.5,
        exploration_final_eps=0.05,
        policy_kwargs={"net_arch": [64, 64]},
        seed=seed,
    )
    model.learn(steps)
    return SB3Values(model, 0.5)


def make_ppo(env_id: str, steps: int, seed: int) -> SB3Policy:
    from stable_baselines3 import PPO

    model = PPO("MlpPolicy", env_id, n_steps=128, batch_size=64, learning_rate=3e-3, gamma=0.99, seed=seed)
    model.learn(steps)
    return SB3Policy(model, 0.99)


def make_a2c(env_id: str, steps: int, seed: int) -> SB3Policy:
    from stable_baselines3 import A2C

    model = A2C("MlpPolicy", env_id, n_steps=8, learning_rate=3e-3, gamma=0.99, seed=seed)
    model.learn(steps)
    return SB3Policy(model, 0.99)
