"""The agent protocol the probes judge, and adapters that give trained runs that shape.

The protocol (``dirtyrl doctor --agent module:function``, docs/doctor.md)::

    def make_agent(env_id: str, steps: int, seed: int) -> agent
        # train on env_id (a Gymnasium id, e.g. "dirtyrl/Probe6-v0") for about `steps` env
        # steps, seeded with `seed`, and return the trained agent

    agent.act(obs) -> int                   # required: the action for this observation
    agent.action_probs(obs) -> sequence     # optional (policy agents): pi(.|obs)
    agent.q_values(obs) -> sequence         # optional (value agents): Q(obs, .)
    agent.reset() -> None                   # optional: called before each evaluation episode
    agent.episode_returns -> list[float]    # optional, rarely needed: returns of the training episodes

``obs`` is one observation exactly as the env returns it. The doctor plays evaluation
episodes itself, calling ``act`` on the current observation only, and compares them with the
returns the agent got while training, read from the env witness's record of the training
episodes (doctor/witnessing.py; ``episode_returns`` only where the agent made no env through
``gym.make``): a large gap means the training loop acts on something other than what the agent
would choose (a stale observation, an argmax instead of a sample).
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dirtyrl.errors import UserError


class VPGRun:
    """A trained VPG run as a protocol agent: samples from its policy (the policy it trained as)."""

    def __init__(self, run_dir: Path, seed: int = 0) -> None:
        from dirtyrl.checkpoint import load_checkpoint
        from dirtyrl.commands.play import load_vpg_policy

        self.policy = load_vpg_policy(load_checkpoint(Path(run_dir) / "checkpoints" / "latest.pt"))
        self.rng = np.random.default_rng(seed)
        self.episode_returns = training_returns(run_dir)

    def action_probs(self, obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            x = torch.as_tensor(np.asarray(obs, np.float32).reshape(1, -1))
            return torch.softmax(self.policy(x), -1)[0].numpy().astype(np.float64)

    def act(self, obs: np.ndarray) -> int:
        p = self.action_probs(obs)
        if not np.isfinite(p).all():  # NaN weights: the probes fail on P(right) and the constant-return row names why
            return 0
        return int(self.rng.choice(len(p), p=p / p.sum()))


class DQNRun:
    """A trained DQN run as a protocol agent: greedy on its online Q-network.

    ``env`` is the env rebuilt from the run's own config (with its frame history, if any), so
    evaluation sees the observations training saw.
    """

    def __init__(self, run_dir: Path) -> None:
        from dirtyrl.checkpoint import load_checkpoint
        from dirtyrl.commands.play import load_dqn

        self.qnet, self.env = load_dqn(load_checkpoint(Path(run_dir) / "checkpoints" / "latest.pt"))
        self.episode_returns = training_returns(run_dir)

    def q_values(self, obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self.qnet(torch.as_tensor(np.asarray(obs, np.float32))[None])[0].numpy().astype(np.float64)

    def act(self, obs: np.ndarray) -> int:
        return int(np.argmax(self.q_values(obs)))


def training_returns(run_dir: Path) -> list[float] | None:
    """The last training episodes' mean return (summary.json's mean_return_last_20), as a list."""
    path = Path(run_dir) / "summary.json"
    if not path.is_file():
        return None
    value = json.loads(path.read_text()).get("mean_return_last_20")
    return None if value is None else [float(value)]


def recent_training_return(agent: Any, last: int = 20) -> float | None:
    returns = getattr(agent, "episode_returns", None)
    if not returns:
        return None
    return float(np.mean(list(returns)[-last:]))


def evaluate(agent: Any, env: Any, episodes: int, seed: int) -> float:
    """Mean return of ``agent.act`` on the current observation over ``episodes`` seeded episodes."""
    total = 0.0
    for i in range(episodes):
        if hasattr(agent, "reset"):
            agent.reset()
        obs, _ = env.reset(seed=seed * 1000 + i)
        done = False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(int(agent.act(obs)))
            total += float(reward)
            done = terminated or truncated
    return total / episodes


AgentFactory = Callable[[str, int, int], Any]


def load_agent_factory(spec: str) -> AgentFactory:
    """``module:function`` -> the function; a one-line UserError if it cannot be found."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise UserError(f"--agent takes module:function (e.g. reinforce:make_agent with PYTHONPATH=examples), got '{spec}'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UserError(f"--agent: cannot import module '{module_name}' ({exc}); is its folder on PYTHONPATH?") from exc
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise UserError(f"--agent: module '{module_name}' has no function '{attr}'")
    return factory
