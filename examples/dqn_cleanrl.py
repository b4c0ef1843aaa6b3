"""A short CleanRL-style DQN, written outside dirty-rl, and checked by ``dirtyrl doctor --agent``.

    PYTHONPATH=examples dirtyrl doctor --agent dqn_cleanrl:make_agent

The shape of CleanRL's ``dqn.py`` (Huang et al. 2022), cut to what the probes need: a replay
buffer of (obs, next_obs, action, reward, terminated) rows, epsilon-greedy acting with a linear
schedule, a target network copied every ``TARGET_EVERY`` steps, and the TD target
r + gamma * max_a' Q_target(s', a') * (1 - terminated). Truncated episodes still bootstrap:
only ``terminated`` is stored as the end. The agent follows the doctor's protocol:
``act(obs)`` (greedy), ``q_values(obs)``, ``gamma`` and ``episode_returns``.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

GAMMA = 0.5  # the probes' episodes are 1-4 steps long: a short horizon keeps their values quick to learn
LEARNING_STARTS = 200
BATCH_SIZE = 32
TARGET_EVERY = 100
LR = 1e-3


class Agent:
    def __init__(self, obs_dim: int, n_actions: int) -> None:
        self.q = nn.Sequential(nn.Linear(obs_dim, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, n_actions))
        self.gamma = GAMMA
        self.episode_returns: list[float] = []

    def q_values(self, obs) -> np.ndarray:
        with torch.no_grad():
            return self.q(torch.as_tensor(np.asarray(obs, np.float32).reshape(1, -1)))[0].numpy()

    def act(self, obs) -> int:
        return int(np.argmax(self.q_values(obs)))


def make_agent(env_id: str, steps: int, seed: int) -> Agent:
    env = gym.make(env_id)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    dim, n_actions = int(np.prod(env.observation_space.shape)), int(env.action_space.n)
    agent = Agent(dim, n_actions)
    target = Agent(dim, n_actions).q
    target.load_state_dict(agent.q.state_dict())
    optimizer = torch.optim.Adam(agent.q.parameters(), lr=LR)
    obs_buf, next_buf = np.zeros((steps, dim), np.float32), np.zeros((steps, dim), np.float32)
    act_buf, rew_buf, term_buf = np.zeros(steps, np.int64), np.zeros(steps, np.float32), np.zeros(steps, np.float32)

    obs, _ = env.reset(seed=seed)
    episode_return = 0.0
    for step in range(steps):
        epsilon = max(0.05, 1.0 - step / (0.5 * steps))
        action = int(rng.integers(n_actions)) if rng.random() < epsilon else agent.act(obs)
        next_obs, reward, terminated, truncated, _ = env.step(action)
        obs_buf[step], next_buf[step] = np.asarray(obs).reshape(-1), np.asarray(next_obs).reshape(-1)
        act_buf[step], rew_buf[step], term_buf[step] = action, reward, terminated
        episode_return += float(reward)
        obs = next_obs
        if terminated or truncated:
            agent.episode_returns.append(episode_return)
            obs, _ = env.reset()
            episode_return = 0.0

        if step >= LEARNING_STARTS:
            idx = rng.integers(step + 1, size=BATCH_SIZE)
            with torch.no_grad():
                next_q = target(torch.as_tensor(next_buf[idx])).max(1).values
                y = torch.as_tensor(rew_buf[idx]) + GAMMA * next_q * (1 - torch.as_tensor(term_buf[idx]))
            q_taken = agent.q(torch.as_tensor(obs_buf[idx])).gather(1, torch.as_tensor(act_buf[idx])[:, None]).squeeze(1)
            loss = F.mse_loss(q_taken, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if step % TARGET_EVERY == 0:
                target.load_state_dict(agent.q.state_dict())
    env.close()
    return agent
