"""Plain REINFORCE on CartPole-v1: a training script, not a library.

It knows nothing of dirty-rl and runs the same both ways:

    python examples/reinforce_script.py --episodes 300
    dirtyrl watch examples/reinforce_script.py --episodes 300

One episode per update: actions are *sampled* from the policy (a ``Categorical`` over the
logits), the loss is -sum_t log pi(a_t | s_t) * A_t with A_t the rewards-to-go normalised over
the episode (a baseline that keeps the gradient's scale steady), and Adam steps once per
episode.
"""

import argparse

import gymnasium as gym
import numpy as np
import torch
from torch import nn, optim
from torch.distributions import Categorical


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env-id", default="CartPole-v1", help="Gymnasium id with a discrete action space")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--episodes", type=int, default=300)
    parser.add_argument("--learning-rate", type=float, default=1e-2)
    parser.add_argument("--gamma", type=float, default=0.99)
    parser.add_argument("--hidden", type=int, default=64)
    return parser.parse_args()


def rewards_to_go(rewards: torch.Tensor, gamma: float) -> torch.Tensor:
    """G_t = r_t + gamma * G_{t+1}, computed backwards over one episode."""
    out = torch.zeros_like(rewards)
    running = 0.0
    for t in reversed(range(len(rewards))):
        running = float(rewards[t]) + gamma * running
        out[t] = running
    return out


def main() -> None:
    args = parse_args()
    torch.manual_seed(args.seed)
    env = gym.make(args.env_id)
    obs_dim, n_actions = int(np.prod(env.observation_space.shape)), int(env.action_space.n)
    policy = nn.Sequential(nn.Linear(obs_dim, args.hidden), nn.Tanh(), nn.Linear(args.hidden, n_actions))
    optimizer = optim.Adam(policy.parameters(), lr=args.learning_rate)

    returns_seen = []
    for episode in range(args.episodes):
        obs, _ = env.reset(seed=args.seed + episode)
        log_probs, rewards, done = [], [], False
        while not done:
            obs_t = torch.as_tensor(obs, dtype=torch.float32)
            logits = policy(obs_t)
            dist = Categorical(logits=logits)
            action = dist.sample()
            log_probs.append(dist.log_prob(action))
            obs, reward, terminated, truncated, _ = env.step(int(action))
            rewards.append(float(reward))
            done = terminated or truncated

        rewards_t = torch.as_tensor(rewards, dtype=torch.float32)
        returns = rewards_to_go(rewards_t, args.gamma)
        adv = (returns - returns.mean()) / (returns.std() + 1e-8)
        loss = -(torch.stack(log_probs) * adv).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        returns_seen.append(sum(rewards))

    env.close()
    last = returns_seen[-20:]
    print(f"{len(returns_seen)} episodes, mean return of the last {len(last)}: {np.mean(last):.1f}")


if __name__ == "__main__":
    main()
