"""Tier 1: the pure maths against hand-computed values."""

import math

import numpy as np
import pytest
import torch

from dirtyrl.returns import advantages_from_returns, categorical_entropy, discounted_sum, rewards_to_go
from dirtyrl.telemetry import EpisodeStats, ema_update


def test_rewards_to_go_plain_discounting():
    got = rewards_to_go(np.array([1.0, 0.0, 2.0]), 0.9)
    # G2 = 2; G1 = 0 + 0.9 * 2 = 1.8; G0 = 1 + 0.9 * 1.8 = 2.62
    np.testing.assert_allclose(got, [2.62, 1.8, 2.0])


def test_rewards_to_go_restarts_at_every_pong_point():
    rewards = np.array([0.0, 0.0, -1.0, 0.0, 0.0, 1.0])
    got = rewards_to_go(rewards, 0.5, reset_on_nonzero=True)
    # The lost point at t=2 must not see the won point at t=5 through the discount.
    np.testing.assert_allclose(got, [-0.25, -0.5, -1.0, 0.25, 0.5, 1.0])
    without_reset = rewards_to_go(rewards, 0.5)
    assert without_reset[2] == pytest.approx(-1.0 + 0.125)


def test_rewards_to_go_gamma_one_is_a_suffix_sum():
    np.testing.assert_allclose(rewards_to_go(np.ones(4), 1.0), [4, 3, 2, 1])


def test_advantages_have_zero_mean_and_unit_std_when_standardised():
    adv = advantages_from_returns(np.array([1.0, 5.0, 9.0, 2.0]), standardize=True)
    assert adv.mean() == pytest.approx(0.0, abs=1e-9)
    assert adv.std() == pytest.approx(1.0, rel=1e-6)


def test_entropy_of_uniform_and_of_certain_distributions():
    assert float(categorical_entropy(torch.zeros(6))) == pytest.approx(math.log(6), rel=1e-6)
    assert float(categorical_entropy(torch.tensor([100.0, 0.0, 0.0]))) == pytest.approx(0.0, abs=1e-6)
    # p = (0.5, 0.5, 0): log 2
    assert float(categorical_entropy(torch.tensor([0.0, 0.0, -1e9]))) == pytest.approx(math.log(2), rel=1e-6)


def test_discounted_sum_is_the_long_term_entropy_weighting():
    assert discounted_sum(np.array([2.0, 2.0]), 0.9) == pytest.approx(3.8)


def test_ema_and_solved_bookkeeping():
    assert ema_update(None, 5.0, 0.9) == 5.0
    assert ema_update(5.0, 15.0, 0.9) == pytest.approx(6.0)
    stats = EpisodeStats(0.99, threshold=10.0)
    for i in range(19):
        stats.add(10.0, 1, env_step=i + 1, seconds=float(i))
    assert not stats.solved  # fewer than 20 episodes never count as solved
    stats.add(10.0, 1, env_step=20, seconds=19.0)
    assert stats.solved_at_env_step == 20 and stats.solved_at_seconds == 19.0
