"""REINFORCE in one short file, written outside dirty-rl, and checked by ``dirtyrl doctor --agent``.

    PYTHONPATH=examples dirtyrl doctor --agent reinforce:make_agent

``make_agent(env_id, steps, seed)`` trains a softmax policy (one hidden layer) with the
Monte-Carlo policy gradient: play whole episodes, compute each step's discounted return-to-go,
subtract the batch mean, and step on -mean(log pi(a_t|s_t) * A_t). The returned agent follows
the doctor's protocol: ``act(obs)``, ``action_probs(obs)`` and ``episode_returns``.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from torch import nn

GAMMA = 0.99
EPISODES_PER_UPDATE = 8


class Agent:
    def __init__(self, obs_dim: int, n_actions: int) -> None:
        self.net = nn.Sequential(nn.Linear(obs_dim, 32), nn.Tanh(), nn.Linear(32, n_actions))
        self.rng = np.random.default_rng(0)
        self.episode_returns: list[float] = []

    def action_probs(self, obs) -> np.ndarray:
        with torch.no_grad():
            logits = self.net(torch.as_tensor(np.asarray(obs, np.float32).reshape(1, -1)))
        return torch.softmax(logits, -1)[0].numpy().astype(np.float64)

    def act(self, obs) -> int:
        p = self.action_probs(obs)
        return int(self.rng.choice(len(p), p=p / p.sum()))


def returns_to_go(rewards: list[float], gamma: float) -> np.ndarray:
    """G_t = r_t + gamma * G_{t+1}, computed backwards from the episode's end."""
    out, running = np.zeros(len(rewards)), 0.0
    for t in reversed(range(len(rewards))):
        running = rewards[t] + gamma * running
        out[t] = running
    return out


def make_agent(env_id: str, steps: int, seed: int) -> Agent:
    env = gym.make(env_id)
    torch.manual_seed(seed)
    agent = Agent(int(np.prod(env.observation_space.shape)), int(env.action_space.n))
    agent.rng = np.random.default_rng(seed)
    optimizer = torch.optim.Adam(agent.net.parameters(), lr=0.02)
    played, episode = 0, 0
    while played < steps:
        observations, actions, returns = [], [], []
        for _ in range(EPISODES_PER_UPDATE):
            obs, _ = env.reset(seed=seed * 100_000 + episode)
            episode += 1
            rewards, done = [], False
            while not done:
                action = agent.act(obs)
                observations.append(np.asarray(obs, np.float32).reshape(-1))
                actions.append(action)
                next_obs, reward, terminated, truncated, _ = env.step(action)
                rewards.append(float(reward))
                done = terminated or truncated
                obs = next_obs
            played += len(rewards)
            agent.episode_returns.append(sum(rewards))
            returns.append(returns_to_go(rewards, GAMMA))
        g = np.concatenate(returns)
        advantages = torch.as_tensor(g - g.mean(), dtype=torch.float32)
        log_probs = torch.log_softmax(agent.net(torch.as_tensor(np.stack(observations))), -1)
        taken = log_probs.gather(1, torch.as_tensor(actions)[:, None]).squeeze(1)
        loss = -(taken * advantages).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    env.close()
    return agent
