"""The pure maths of the algorithms: small functions with worked examples, unit-tested directly."""

from __future__ import annotations

import numpy as np
import torch


def rewards_to_go(rewards: np.ndarray, gamma: float, reset_on_nonzero: bool = False) -> np.ndarray:
    """Discounted reward-to-go of one episode: G_t = r_t + gamma * G_{t+1}.

    With ``reset_on_nonzero`` the sum restarts after every non-zero reward (Pong: each point is
    a game of its own, so a point's credit must not leak into the rally before it).

    >>> rewards_to_go(np.array([0.0, 0.0, 1.0]), 0.5)
    array([0.25, 0.5 , 1.  ])
    >>> rewards_to_go(np.array([0.0, -1.0, 0.0, 1.0]), 0.5, reset_on_nonzero=True)
    array([-0.5, -1. ,  0.5,  1. ])
    """
    out = np.zeros(len(rewards), np.float64)
    running = 0.0
    for t in range(len(rewards) - 1, -1, -1):
        if reset_on_nonzero and rewards[t] != 0:
            running = 0.0
        running = rewards[t] + gamma * running
        out[t] = running
    return out


def advantages_from_returns(returns: np.ndarray, standardize: bool) -> np.ndarray:
    """Mean baseline over the whole batch, optionally divided by the batch's std.

    >>> advantages_from_returns(np.array([1.0, 2.0, 3.0]), standardize=False)
    array([-1.,  0.,  1.])
    >>> advantages_from_returns(np.array([1.0, 3.0]), standardize=True).round(6)
    array([-1.,  1.])
    """
    adv = returns - returns.mean()
    if standardize:
        adv = adv / (returns.std() + 1e-8)
    return adv


def categorical_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of softmax(logits) along the last dim; log(A) for all-equal logits.

    >>> round(float(categorical_entropy(torch.zeros(3))), 4)  # log 3
    1.0986
    """
    log_p = torch.log_softmax(logits, dim=-1)
    return -(log_p.exp() * log_p).sum(-1)


def discounted_sum(values: np.ndarray, gamma: float) -> float:
    """sum_t gamma^t * values[t]; applied to per-step entropies it gives the long-term entropy,
    the entropy bonus a maximum-entropy objective would add to an episode's return.

    >>> discounted_sum(np.array([1.0, 1.0, 1.0]), 0.5)
    1.75
    """
    return float(np.sum(values * gamma ** np.arange(len(values))))
