"""A plain CleanRL-style DQN on CartPole-v1: a training script, not a library.

It knows nothing of dirty-rl and runs the same both ways:

    python examples/dqn_script.py --total-timesteps 20000
    dirtyrl watch examples/dqn_script.py --total-timesteps 20000

The shape of CleanRL's ``dqn.py`` (Huang et al. 2022): one env in a ``SyncVectorEnv`` of
``gym.make`` thunks, a replay buffer of (obs, next_obs, action, reward, terminated) rows,
epsilon-greedy acting on a linear schedule, a target network copied every
``--target-network-frequency`` steps, and the TD target
r + gamma * max_a' Q_target(s', a') * (1 - terminated). Settings are cut from CleanRL's 500k
steps to learn CartPole somewhat within 20k (a faster schedule, updates every 4 steps).
"""

import argparse
import random
import time

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn, optim


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env-id", default="CartPole-v1", help="Gymnasium id with a discrete action space")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--total-timesteps", type=int, default=20000)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--buffer-size", type=int, default=10000)
    parser.add_argument("--gamma", type=float, default=0.99)
    parser.add_argument("--target-network-frequency", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--exploration-fraction", type=float, default=0.3, help="share of the run epsilon decays over")
    parser.add_argument("--end-e", type=float, default=0.05)
    parser.add_argument("--learning-starts", type=int, default=500)
    parser.add_argument("--train-frequency", type=int, default=4)
    return parser.parse_args()


class QNetwork(nn.Module):
    def __init__(self, obs_dim: int, n_actions: int) -> None:
        super().__init__()
        self.network = nn.Sequential(
            nn.Linear(obs_dim, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, n_actions)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x)


def main() -> None:
    args = parse_args()
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    envs = gym.vector.SyncVectorEnv([lambda: gym.make(args.env_id)])
    envs.single_action_space.seed(args.seed)  # epsilon's random actions: reproducible too
    obs_dim, n_actions = int(np.prod(envs.single_observation_space.shape)), int(envs.single_action_space.n)

    q_network = QNetwork(obs_dim, n_actions)
    optimizer = optim.Adam(q_network.parameters(), lr=args.learning_rate)
    target_network = QNetwork(obs_dim, n_actions)
    target_network.load_state_dict(q_network.state_dict())

    size = args.buffer_size
    obs_buf, next_buf = np.zeros((size, obs_dim), np.float32), np.zeros((size, obs_dim), np.float32)
    act_buf, rew_buf, term_buf = np.zeros(size, np.int64), np.zeros(size, np.float32), np.zeros(size, np.float32)

    start, cpu_start = time.time(), time.process_time()
    returns = []
    obs, _ = envs.reset(seed=args.seed)
    episode_return = 0.0
    for step in range(args.total_timesteps):
        epsilon = max(args.end_e, 1.0 - step / (args.exploration_fraction * args.total_timesteps))
        if random.random() < epsilon:
            actions = np.array([envs.single_action_space.sample()])
        else:
            with torch.no_grad():
                actions = q_network(torch.as_tensor(obs, dtype=torch.float32)).argmax(dim=1).numpy()
        next_obs, rewards, terminations, truncations, _ = envs.step(actions)
        i = step % size
        # The vector env resets a finished env on the *next* step (Gymnasium 1.x autoreset), so
        # next_obs is the true last observation here: store it, and only `terminated` as the end
        # (a time-limit truncation still bootstraps).
        obs_buf[i], next_buf[i], act_buf[i] = obs[0], next_obs[0], actions[0]
        rew_buf[i], term_buf[i] = rewards[0], terminations[0]
        episode_return += float(rewards[0])
        if terminations[0] or truncations[0]:
            returns.append(episode_return)
            episode_return = 0.0
            # The next step() only resets this env (its action is ignored): take that step now.
            next_obs, *_ = envs.step(actions)
        obs = next_obs

        if step >= args.learning_starts and step % args.train_frequency == 0:
            idx = np.random.randint(min(step + 1, size), size=args.batch_size)
            with torch.no_grad():
                target_max = target_network(torch.as_tensor(next_buf[idx])).max(dim=1).values
                td_target = torch.as_tensor(rew_buf[idx]) + args.gamma * target_max * (1 - torch.as_tensor(term_buf[idx]))
            old_val = q_network(torch.as_tensor(obs_buf[idx])).gather(1, torch.as_tensor(act_buf[idx])[:, None]).squeeze(1)
            loss = F.mse_loss(td_target, old_val)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        if step % args.target_network_frequency == 0:
            target_network.load_state_dict(q_network.state_dict())

    envs.close()
    last = returns[-20:]
    wall, cpu = time.time() - start, time.process_time() - cpu_start
    print(f"{len(returns)} episodes, mean return of the last {len(last)}: {np.mean(last):.1f} ({wall:.2f} s, {cpu:.2f} s CPU)")


if __name__ == "__main__":
    main()
