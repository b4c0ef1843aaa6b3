"""DQN maths against hand-computed values."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dirtyrl.dqn_maths import (
    clip_reward,
    epsilon_at,
    exponential_schedule,
    linear_schedule,
    next_state_value,
    polyak_update,
    td_target,
)


def test_linear_schedule_hand_values():
    # 1.0 -> 0.01 over 1,000,000 steps (CleanRL's Pong schedule): slope 9.9e-7 per step.
    assert linear_schedule(0, 1.0, 0.01, 1_000_000) == 1.0
    assert linear_schedule(100_000, 1.0, 0.01, 1_000_000) == pytest.approx(0.901)
    assert linear_schedule(500_000, 1.0, 0.01, 1_000_000) == pytest.approx(0.505)
    assert linear_schedule(1_000_000, 1.0, 0.01, 1_000_000) == pytest.approx(0.01)
    assert linear_schedule(5_000_000, 1.0, 0.01, 1_000_000) == pytest.approx(0.01)
    assert linear_schedule(10, 1.0, 0.05, 0) == pytest.approx(0.05)  # no decay: straight to the end value


def test_exponential_schedule_hand_values():
    # gap 0.9, shrinking to 1% of itself at duration: 0.9 * 0.01 ** (t / 1000)
    assert exponential_schedule(0, 1.0, 0.1, 1000) == pytest.approx(1.0)
    assert exponential_schedule(500, 1.0, 0.1, 1000) == pytest.approx(0.1 + 0.9 * 0.1)
    assert exponential_schedule(1000, 1.0, 0.1, 1000) == pytest.approx(0.1 + 0.009)
    assert exponential_schedule(250, 1.0, 0.1, 1000) == pytest.approx(0.1 + 0.9 * 10**-0.5)


def test_epsilon_at_dispatches_and_rejects_unknown():
    assert epsilon_at(50, "linear", 1.0, 0.0, 100) == 0.5
    assert epsilon_at(50, "exponential", 1.0, 0.0, 100) == pytest.approx(0.1)
    with pytest.raises(ValueError):
        epsilon_at(0, "cosine", 1.0, 0.0, 100)


def test_td_target_terminal_vs_truncated():
    gamma = 0.99
    rewards = torch.tensor([1.0, 1.0, -1.0, 0.0])
    next_q = torch.tensor([2.0, 2.0, 3.0, 4.0])
    terminated = torch.tensor([True, False, True, False])
    truncated = torch.tensor([False, True, False, False])  # row 1 hit the time limit
    y = td_target(rewards, next_q, terminated, gamma)
    assert y.tolist() == pytest.approx([1.0, 1.0 + 0.99 * 2.0, -1.0, 0.99 * 4.0])
    # The trap: treating truncation as terminal drops row 1's future.
    wrong = td_target(rewards, next_q, terminated | truncated, gamma)
    assert wrong[1].item() == pytest.approx(1.0)


def test_next_state_value_dqn_and_double():
    target = torch.tensor([[0.0, 1.0, 2.0], [5.0, 4.0, 3.0]])
    online = torch.tensor([[9.0, 0.0, 0.0], [0.0, 0.0, 9.0]])
    assert next_state_value(target).tolist() == [2.0, 5.0]
    assert next_state_value(target, online).tolist() == [0.0, 3.0]


def test_polyak_soft_and_hard():
    torch.manual_seed(0)
    online, target = nn.Linear(3, 2), nn.Linear(3, 2)
    before = [p.clone() for p in target.parameters()]
    polyak_update(target, online, 0.25)
    for t, b, o in zip(target.parameters(), before, online.parameters(), strict=True):
        torch.testing.assert_close(t, 0.75 * b + 0.25 * o)
    polyak_update(target, online, 1.0)
    for t, o in zip(target.parameters(), online.parameters(), strict=True):
        assert torch.equal(t, o)


def test_polyak_copies_batch_norm_statistics():
    online, target = nn.BatchNorm1d(2), nn.BatchNorm1d(2)
    online(torch.randn(8, 2) + 3.0)
    polyak_update(target, online, 0.1)
    assert torch.equal(target.running_mean, online.running_mean)


def test_clip_reward():
    assert [clip_reward(r) for r in (-21.0, -0.5, 0.0, 0.5, 7.0)] == [-1.0, -1.0, 0.0, 1.0, 1.0]
