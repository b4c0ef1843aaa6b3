"""The pure maths of DQN: exploration schedules, TD targets, n-step returns, the dueling head, target-network updates.

Small functions with worked examples; tests/test_dqn_maths.py imports these exact functions.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn


def linear_schedule(step: int, start: float, end: float, duration: int) -> float:
    """Straight line from ``start`` at step 0 to ``end`` at ``duration``, flat afterwards.

    >>> [round(linear_schedule(t, 1.0, 0.1, 100), 3) for t in (0, 50, 100, 1000)]
    [1.0, 0.55, 0.1, 0.1]
    """
    fraction = min(step / duration, 1.0) if duration > 0 else 1.0
    return start + fraction * (end - start)


def exponential_schedule(step: int, start: float, end: float, duration: int) -> float:
    """Geometric decay of the gap to ``end``: 1% of it is left at ``duration``.

    The same ``duration`` as the linear schedule then means "by here exploration is all but
    over"; the exponential one explores less early and more late.

    >>> [round(exponential_schedule(t, 1.0, 0.0, 100), 4) for t in (0, 50, 100, 200)]
    [1.0, 0.1, 0.01, 0.0001]
    """
    if duration <= 0:
        return end
    return end + (start - end) * 0.01 ** (step / duration)


def epsilon_at(step: int, kind: str, start: float, end: float, duration: int) -> float:
    """The exploration rate at agent step ``step``; a pure function of the step, so a resumed
    run continues the schedule exactly from the step counter alone.

    >>> epsilon_at(25, "linear", 1.0, 0.0, 100), round(epsilon_at(100, "exponential", 1.0, 0.0, 100), 2)
    (0.75, 0.01)
    """
    if kind == "linear":
        return linear_schedule(step, start, end, duration)
    if kind == "exponential":
        return exponential_schedule(step, start, end, duration)
    raise ValueError(f"unknown epsilon schedule {kind!r}")


def td_target(
    rewards: torch.Tensor, next_q: torch.Tensor, terminated: torch.Tensor, gamma: float | torch.Tensor
) -> torch.Tensor:
    """y = r + gamma * (1 - terminated) * max_a' Q_target(s', a').

    ``gamma`` may be a (B,) tensor: n-step returns bootstrap with gamma^m, m the window length.

    Only a *real* terminal stops the bootstrap. A time-limit truncation is not the end of the
    task, just of our patience: the state still has a future worth ``next_q``, so truncated
    transitions bootstrap like any other (the classic trap is to pass ``done = terminated or
    truncated`` here, which teaches the agent that the clock running out is a wall).

    >>> r = torch.tensor([1.0, 1.0, 0.0])
    >>> next_q = torch.tensor([10.0, 10.0, 5.0])
    >>> terminated = torch.tensor([False, True, False])  # row 0 might be truncated: still bootstraps
    >>> td_target(r, next_q, terminated, 0.9)
    tensor([10.0000,  1.0000,  4.5000])
    """
    return rewards + gamma * (~terminated).to(next_q.dtype) * next_q


def next_state_value(target_next_q: torch.Tensor, online_next_q: torch.Tensor | None = None) -> torch.Tensor:
    """max_a' Q_target(s', a') for DQN; Q_target(s', argmax_a' Q_online(s', a')) for Double DQN.

    Double DQN (van Hasselt et al. 2016) picks the action with the online net and values it
    with the target net, which removes most of the max operator's upward bias.

    >>> target = torch.tensor([[1.0, 5.0], [2.0, 0.0]])
    >>> online = torch.tensor([[3.0, 0.0], [0.0, 1.0]])  # disagrees with the target's argmax
    >>> next_state_value(target)
    tensor([5., 2.])
    >>> next_state_value(target, online)
    tensor([1., 0.])
    """
    if online_next_q is None:
        return target_next_q.max(dim=1).values
    return target_next_q.gather(1, online_next_q.argmax(dim=1, keepdim=True)).squeeze(1)


@torch.no_grad()
def polyak_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    """target <- tau * online + (1 - tau) * target, in place; tau = 1 is a hard copy.

    Buffers (batch-norm running statistics) are copied outright: averaging counters makes no
    sense and the target should normalise like the online net it trails.

    >>> a, b = nn.Linear(1, 1, bias=False), nn.Linear(1, 1, bias=False)
    >>> _ = nn.init.zeros_(a.weight), nn.init.ones_(b.weight)
    >>> polyak_update(a, b, 0.1); round(a.weight.item(), 3)
    0.1
    >>> polyak_update(a, b, 1.0); a.weight.item()
    1.0
    """
    if tau >= 1.0:
        target.load_state_dict(online.state_dict())
        return
    # One fused call over every tensor: a soft update runs every step, a per-tensor loop of
    # small ops would cost more than CartPole's env step.
    torch._foreach_lerp_(list(target.parameters()), list(online.parameters()), tau)
    for t, o in zip(target.buffers(), online.buffers(), strict=True):
        t.copy_(o)


def clip_reward(reward: float) -> float:
    """sign(r): Mnih et al. 2015 clip rewards to {-1, 0, +1} so one learning rate fits every game.

    Used for learning only; the episode return logged is always the real game score.

    >>> clip_reward(-3.0), clip_reward(0.0), clip_reward(0.2)
    (-1.0, 0.0, 1.0)
    """
    return float(math.copysign(1.0, reward)) if reward != 0 else 0.0


def nstep_window(rewards: np.ndarray, stops: np.ndarray, gamma: float) -> tuple[np.ndarray, np.ndarray]:
    """Discounted n-step rewards and window lengths, for B windows of up to n steps at once.

    ``rewards[b, i]`` is the reward of the i-th step of window b; ``stops[b, i]`` says the window
    must end after step i (the episode ended there: terminated, truncated, or the next slot is a
    new episode). The window length m is 1 + the first such i, else n, and
    R = sum_{i<m} gamma^i r_i. The caller bootstraps with gamma^m from the state after step m-1
    unless that step terminated (Sutton & Barto 7.1; Hessel et al. 2018 use n = 3).

    >>> r = np.array([[1.0, 1.0, 1.0], [1.0, 1.0, 1.0], [0.0, 0.0, -1.0]])
    >>> stop = np.array([[False, False, False], [False, True, False], [False, False, True]])
    >>> R, m = nstep_window(r, stop, 0.5)
    >>> R.tolist(), m.tolist()  # 1 + .5 + .25; the episode ends after step 1: 1 + .5; -1 * .25
    ([1.75, 1.5, -0.25], [3, 2, 3])
    """
    n = rewards.shape[1]
    # argmax of a bool row is its first True; rows with no True get n.
    m = np.where(stops.any(axis=1), stops.argmax(axis=1) + 1, n)
    inside = np.arange(n)[None, :] < m[:, None]  # (B, n)
    discounts = gamma ** np.arange(n, dtype=np.float64)
    return (rewards * inside * discounts).sum(axis=1).astype(np.float32), m.astype(np.int64)


def dueling_aggregate(value: torch.Tensor, advantages: torch.Tensor) -> torch.Tensor:
    """Q(s, a) = V(s) + A(s, a) - mean_a' A(s, a') (Wang et al. 2016, their eq. 9).

    Subtracting the mean pins down the split between V and A (otherwise any constant could
    move from one to the other) and leaves the greedy action unchanged.

    >>> dueling_aggregate(torch.tensor([[1.0]]), torch.tensor([[2.0, 0.0, -2.0]]))
    tensor([[ 3.,  1., -1.]])
    """
    return value + advantages - advantages.mean(dim=1, keepdim=True)


def priority(td_errors: np.ndarray, alpha: float, floor: float = 1e-3) -> np.ndarray:
    """Sampling priority p^alpha of transitions with TD errors ``td_errors``: p = |delta| + floor.

    Proportional prioritization (Schaul et al. 2016, sec. 3.3). alpha = 0 is uniform sampling,
    1 samples in proportion to the error; the floor keeps a transition learned perfectly
    sampleable, so its error can be seen to grow again.

    >>> priority(np.array([0.0, -0.999, 3.999]), 0.5).tolist()
    [0.03162277660168379, 1.0, 2.0]
    """
    return (np.abs(td_errors).astype(np.float64) + floor) ** alpha


def importance_weights(probs: np.ndarray, beta: float) -> np.ndarray:
    """(1 / P(i))^beta, divided by the largest in the batch, for transitions drawn with probability P(i).

    Prioritized sampling changes the distribution the TD update averages over; weighting each
    row by 1 / (N P(i)) undoes that (beta = 1), and N cancels in the division by the maximum,
    which only keeps the step size from growing (Schaul et al. 2016, sec. 3.4). Rare rows get
    weight 1, frequent rows less.

    >>> importance_weights(np.array([0.5, 0.125, 0.25]), 1.0).tolist()
    [0.25, 1.0, 0.5]
    >>> importance_weights(np.array([0.5, 0.125]), 0.0).tolist()  # beta 0: no correction
    [1.0, 1.0]
    """
    weights = probs.astype(np.float64) ** -beta
    return (weights / weights.max()).astype(np.float32)
