"""Guards against realistic bugs that the other tests let through: each test pins the hand-computed
value that a specific off-by-one, swapped branch or missing clamp would change.

Found by seeding mutations into the pure maths (returns, dqn_maths, buffers, prioritized, vpg's
helpers) and keeping the ones no other test failed on."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dirtyrl.algos import vpg
from dirtyrl.buffers import FrameReplayBuffer
from dirtyrl.distributed import Dist
from dirtyrl.dqn_maths import epsilon_at, exponential_schedule
from dirtyrl.prioritized import PrefixSums, PrioritizedReplayBuffer

# ---------------------------------------------------------------------------------------------
# Exploration schedule
# ---------------------------------------------------------------------------------------------


def test_exponential_schedule_with_no_decay_is_the_end_value_like_the_linear_one():
    # duration 0 means "no decay": both schedules must agree on jumping straight to the end value,
    # or switching --eps-schedule would silently turn exploration fully on.
    assert exponential_schedule(10, 1.0, 0.05, 0) == 0.05
    assert epsilon_at(10, "exponential", 1.0, 0.05, 0) == pytest.approx(epsilon_at(10, "linear", 1.0, 0.05, 0))


# ---------------------------------------------------------------------------------------------
# Frame replay: long episodes and n-step windows through a life loss
# ---------------------------------------------------------------------------------------------


def test_episodes_longer_than_255_steps_keep_their_history():
    # ep_pos is a uint8 that must saturate at 255: if it overflowed or wrapped to 0, step 256 would
    # look like a reset frame, and its stack and the next one's would be zero-padded mid-episode.
    buf = FrameReplayBuffer(512, (1,), history=2, frame_dtype=np.float32)
    buf.start_episode(np.zeros(1, np.float32))
    for t in range(1, 301):
        buf.add(0, 0.0, np.full(1, t, np.float32), terminated=False, truncated=False)
    # Slot j holds frame j (the reset frame is slot 0), so obs of slot j is frames (j-2, j-1).
    batch = buf.gather(np.array([256, 257, 300]))
    assert batch.obs.tolist() == [[254.0, 255.0], [255.0, 256.0], [298.0, 299.0]]
    assert batch.next_obs.tolist() == [[255.0, 256.0], [256.0, 257.0], [299.0, 300.0]]
    assert buf.ep_pos[256] == buf.ep_pos[300] == 255  # saturated, never 0


def test_nstep_window_stops_at_a_life_loss_inside_the_episode():
    # With --episodic-life a lost life is stored as terminated but no reset frame follows, so only
    # the terminated flag can stop the window; otherwise it bootstraps across the lost life.
    buf = FrameReplayBuffer(16, (1,), history=1, frame_dtype=np.float32)
    buf.start_episode(np.zeros(1, np.float32))
    for t in (1, 2, 3, 4):
        buf.add(0, 1.0, np.full(1, t, np.float32), terminated=t == 2, truncated=False)
    batch = buf.gather_nstep(np.array([1, 2]), 3, 0.5)
    # Slot 1: steps 1, 2 then the life is lost: 1 + 0.5 * 1, m = 2. Slot 2 is the lost life: 1, m = 1.
    assert batch.rewards.tolist() == [1.5, 1.0]
    assert batch.discounts.tolist() == [0.25, 0.5]
    assert batch.next_obs[:, 0].tolist() == [2.0, 2.0]
    assert batch.terminated.tolist() == [True, True]


# ---------------------------------------------------------------------------------------------
# Prioritized replay: the running sums, priorities and which slots may be drawn
# ---------------------------------------------------------------------------------------------


def test_prefix_sums_never_find_an_empty_slot_on_its_boundary():
    sums = PrefixSums(4, block=4)
    sums.set(np.arange(4), np.array([0.0, 1.0, 0.0, 2.0]))
    # Slot i owns [sum before i, that + w_i): empty slots 0 and 2 own [0, 0) and [1, 1), nothing,
    # so exactly 0.0 (rng.random() can return it) and exactly 1.0 belong to slots 1 and 3.
    assert sums.find(np.array([0.0, 1.0, 3.0])).tolist() == [1, 3, 3]


def test_update_priorities_raise_the_errors_to_alpha():
    buf = PrioritizedReplayBuffer(8, (1,), history=1, frame_dtype=np.float32, alpha=0.5)
    buf.start_episode(np.zeros(1, np.float32))
    for _ in range(2):
        buf.add(0, 0.0, np.zeros(1, np.float32), terminated=False, truncated=False)
    buf.update_priorities(np.array([1, 2]), np.array([3.999, -0.999]))
    # (|delta| + 0.001)^0.5: sqrt(4) = 2 and sqrt(1) = 1; with alpha ignored they would be 4 and 1.
    np.testing.assert_allclose(buf.prefix.leaves(np.arange(3)), [0.0, 2.0, 1.0])
    assert buf.max_priority == pytest.approx(2.0)


def test_new_transitions_get_the_largest_priority_ever_seen_not_the_last_batch_max():
    buf = PrioritizedReplayBuffer(8, (1,), history=1, frame_dtype=np.float32, alpha=1.0)
    buf.start_episode(np.zeros(1, np.float32))
    buf.add(0, 0.0, np.zeros(1, np.float32), terminated=False, truncated=False)
    buf.update_priorities(np.array([1]), np.array([3.999]))  # p = 4
    buf.update_priorities(np.array([1]), np.array([-0.009]))  # p = 0.01: learned, but the max stays 4
    buf.add(0, 0.0, np.zeros(1, np.float32), terminated=False, truncated=False)
    buf.sample_indices(1, np.random.default_rng(0))  # the sums catch up with the new write
    np.testing.assert_allclose(buf.prefix.leaves(np.array([1, 2])), [0.01, 4.0])


def test_the_oldest_slots_leave_the_draw_as_the_buffer_wraps_one_write_at_a_time():
    # Capacity 8, history 2, one episode: slot j % 8 holds global write j, all with priority 1.
    # A transition at write g needs frames g-2..g, so it is drawable while g >= added - 8 + 2.
    buf = PrioritizedReplayBuffer(8, (1,), history=2, frame_dtype=np.float32, alpha=1.0)
    rng = np.random.default_rng(0)
    buf.start_episode(np.zeros(1, np.float32))
    for _ in range(8):
        buf.add(0, 0.0, np.zeros(1, np.float32), terminated=False, truncated=False)
    buf.sample_indices(1, rng)
    # added 9: drawable writes 3..8; write 8 sits in slot 0, slots 1, 2 hold writes 1, 2.
    assert buf.prefix.leaves(np.arange(8)).tolist() == [1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    buf.add(0, 0.0, np.zeros(1, np.float32), terminated=False, truncated=False)
    buf.sample_indices(1, rng)
    # added 10: write 9 overwrote write 1, a frame of write 3's stack, so slot 3 must drop out.
    assert buf.prefix.leaves(np.arange(8)).tolist() == [1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0]


def test_an_nstep_window_becomes_drawable_once_its_last_step_is_written():
    # n = 3: the transition at write g is drawable once write g + 2 exists. Writes arrive one
    # between draws, as in training, so each write must make the slot two back drawable.
    buf = PrioritizedReplayBuffer(16, (1,), history=1, frame_dtype=np.float32, alpha=1.0, n_step=3)
    rng = np.random.default_rng(0)
    buf.start_episode(np.zeros(1, np.float32))
    for _ in range(5):
        buf.add(0, 0.0, np.zeros(1, np.float32), terminated=False, truncated=False)
    buf.sample_indices(1, rng, n_step=3)
    assert buf.prefix.leaves(np.arange(8)).tolist() == [0.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    buf.add(0, 0.0, np.zeros(1, np.float32), terminated=False, truncated=False)  # write 6 completes write 4's window
    buf.sample_indices(1, rng, n_step=3)
    assert buf.prefix.leaves(np.arange(8)).tolist() == [0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0]


# ---------------------------------------------------------------------------------------------
# VPG helpers: softmax, inverse-CDF sampling, advantages
# ---------------------------------------------------------------------------------------------


def test_softmax_survives_large_logits():
    # exp(1000) overflows a float: only subtracting the largest logit keeps every exponent <= 0.
    p = vpg.softmax([-1000.0, 1000.0, 1000.0 + math.log(3.0)])
    assert p == pytest.approx([0.0, 0.25, 0.75])


def test_inverse_cdf_boundaries_belong_to_the_next_action():
    # Action i owns [c_{i-1}, c_i): u = 0.0 must skip a zero-probability first action, and u equal
    # to a cumulative sum starts the next action's interval.
    assert vpg.inverse_cdf([0.0, 1.0, 0.0], 0.0) == 1
    assert vpg.inverse_cdf([0.5, 0.5], 0.5) == 1
    assert vpg.inverse_cdf([0.25, 0.25, 0.5], 0.25) == 1


def test_inverse_cdf_round_off_above_the_last_sum_picks_the_last_action():
    # The probabilities sum to 1 - 1e-9, so u = 1 - 1e-10 lies above every cumulative sum: that
    # is round-off at the top of the last action's interval, never the first action.
    assert vpg.inverse_cdf([0.5, 0.25, 0.25 - 1e-9], 1.0 - 1e-10) == 2


def episodes(*rewards: list[float]) -> list[vpg.Episode]:
    return [vpg.Episode([], [0] * len(r), list(r), []) for r in rewards]


def test_episode_advantages_restart_rewards_to_go_at_every_pong_point():
    adv = vpg.episode_advantages(episodes([0.0, -1.0, 1.0]), 0.5, True, False, Dist())
    # With the restart the lost point at t=1 does not see the won one: returns (-0.5, -1, 1), mean
    # -1/6. Without it the returns would be (-0.25, -0.5, 1).
    np.testing.assert_allclose(adv, [-1 / 3, -5 / 6, 7 / 6])


def test_episode_advantages_are_per_episode_returns_minus_the_batch_mean_over_the_batch_std():
    eps = episodes([1.0, 0.0], [0.0, 2.0])
    # Returns per episode with gamma 0.5: (1, 0) and (1, 2); summing through the boundary would give
    # (1.25, 0.5, 1, 2). Batch mean 1 -> (0, -1, 0, 1), whose std is sqrt(0.5).
    np.testing.assert_allclose(vpg.episode_advantages(eps, 0.5, False, False, Dist()), [0.0, -1.0, 0.0, 1.0])
    np.testing.assert_allclose(
        vpg.episode_advantages(eps, 0.5, False, True, Dist()), [0.0, -math.sqrt(2), 0.0, math.sqrt(2)], rtol=1e-6
    )


def test_standardised_advantages_of_equal_returns_are_zero_not_nan():
    # A batch with no reward at all has std 0: the epsilon must turn 0 / 0 into 0.
    adv = vpg.episode_advantages(episodes([0.0, 0.0], [0.0]), 0.99, False, True, Dist())
    assert adv.tolist() == [0.0, 0.0, 0.0]
