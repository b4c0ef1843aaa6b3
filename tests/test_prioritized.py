"""Prioritized replay: the running sums, which slots can be drawn, the weights, the loss.

Exact resume of a prioritized run is tested with the other resumes in test_dqn.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dirtyrl.algos import dqn
from dirtyrl.buffers import Batch, FrameReplayBuffer
from dirtyrl.dqn_maths import importance_weights, priority
from dirtyrl.errors import UserError
from dirtyrl.prioritized import PrefixSums, PrioritizedReplayBuffer


@pytest.mark.parametrize("capacity, block", [(1, 4), (37, 4), (1000, 256), (4096, 64)])
def test_prefix_sums_find_matches_a_search_of_the_running_sum(capacity, block):
    rng = np.random.default_rng(capacity)
    sums = PrefixSums(capacity, block)
    weights = rng.random(capacity) * (rng.random(capacity) < 0.7)  # ~30% empty slots
    weights[-1] = 0.0
    weights[0] = max(weights[0], 0.5)
    sums.set(np.arange(capacity), weights)
    assert sums.total == pytest.approx(weights.sum())
    values = np.concatenate([rng.random(500) * weights.sum(), [0.0, weights.sum(), weights.sum() * (1 + 1e-12)]])
    found = sums.find(values)
    brute = np.searchsorted(np.cumsum(weights), values, side="right")
    inside = values < weights.sum() * (1 - 1e-9)  # away from the top, where rounding decides
    np.testing.assert_array_equal(found[inside], brute[inside])
    assert np.all(weights[found] > 0), "an empty slot was drawn"


def test_prefix_sums_recompute_block_sums_on_update():
    sums = PrefixSums(10, block=4)
    sums.set(np.arange(10), np.ones(10))
    sums.set(np.array([5, 5, 9]), np.array([3.0, 3.0, 0.0]))  # a repeated slot, and emptying the last one
    assert sums.total == 11.0
    assert sums.sums.tolist() == [4.0, 6.0, 1.0]
    assert sums.find(np.array([10.999])).tolist() == [8]


def test_priority_and_importance_weights_by_hand():
    np.testing.assert_allclose(priority(np.array([-1.999, 0.0]), 1.0), [2.0, 0.001])
    np.testing.assert_allclose(priority(np.array([3.999]), 0.0), [1.0])  # alpha 0 is uniform
    # P = 0.5, 0.25, 0.125 with beta 0.5: (1/P)^0.5 = 1.41, 2, 2.83, over the max 2.83
    np.testing.assert_allclose(importance_weights(np.array([0.5, 0.25, 0.125]), 0.5), [0.5, 0.5**0.5, 1.0], rtol=1e-6)


def fill(buf, lengths, rng):
    """Episodes of the given lengths with random frames; the last one may be left running."""
    for length in lengths:
        buf.start_episode(rng.integers(0, 255, buf.frame_shape, dtype=np.uint8))
        for t in range(length):
            frame = rng.integers(0, 255, buf.frame_shape, dtype=np.uint8)
            buf.add(int(rng.integers(3)), float(rng.normal()), frame, t == length - 1, False)


@pytest.mark.parametrize("n_step", [1, 3])
def test_only_complete_transitions_are_drawn_even_after_the_buffer_wraps(n_step):
    rng = np.random.default_rng(n_step)
    k = 4
    buf = PrioritizedReplayBuffer(50, (1, 2, 2), history=k, alpha=0.6, n_step=n_step)
    uniform = FrameReplayBuffer(50, (1, 2, 2), history=k)
    lengths = [7, 3, 12, 5, 9, 1, 20, 6]
    fill(buf, lengths, np.random.default_rng(0))
    fill(uniform, lengths, np.random.default_rng(0))
    allowed = set(uniform.sample_indices(20_000, rng, n_step).tolist())  # what uniform sampling may draw
    seen = set()
    for _ in range(100):
        batch = buf.sample(32, rng, n_step, 0.9)
        seen |= set(batch.indices.tolist())
        buf.update_priorities(batch.indices, rng.normal(size=32))
    assert seen == allowed
    weights = buf.prefix.leaves(np.arange(50))
    assert np.all(weights[sorted(allowed)] > 0) and np.all(np.delete(weights, sorted(allowed)) == 0)


def test_draws_follow_priorities_and_new_transitions_get_the_largest():
    rng = np.random.default_rng(0)
    buf = PrioritizedReplayBuffer(100, (1,), history=1, frame_dtype=np.float32, alpha=1.0)
    fill_vector = np.zeros(1, np.float32)
    buf.start_episode(fill_vector)
    for _ in range(10):
        buf.add(0, 0.0, fill_vector, False, False)
    slots = np.arange(1, 11)
    errors = np.arange(10, dtype=np.float64)  # priorities 0.001, 1.001, ..., 9.001
    buf.update_priorities(slots, errors)
    counts = np.bincount(buf.sample(100_000, rng).indices, minlength=12)[1:11]
    np.testing.assert_allclose(counts / counts.sum(), priority(errors, 1.0) / priority(errors, 1.0).sum(), atol=2e-4)
    buf.add(0, 0.0, fill_vector, False, False)  # slot 11, never learned from yet
    buf.sample(1, rng)  # the sums catch up with new writes at the next draw
    assert buf.prefix.leaves(np.array([11]))[0] == pytest.approx(9.001)


def test_sampled_batches_carry_the_importance_weights_of_their_draw():
    rng = np.random.default_rng(1)
    buf = PrioritizedReplayBuffer(64, (1, 2, 2), history=2, alpha=0.7, n_step=3)
    fill(buf, [10, 15, 8], rng)
    buf.update_priorities(np.arange(1, 30), rng.normal(size=29))
    buf.beta = 0.5
    batch = buf.sample(16, rng, 3, 0.99)
    probs = buf.prefix.leaves(batch.indices) / buf.prefix.total
    np.testing.assert_allclose(batch.weights, probs**-0.5 / (probs**-0.5).max(), rtol=1e-6)
    assert batch.discounts is not None  # still the n-step batch
    with pytest.raises(ValueError, match="n_step=3"):
        buf.sample(16, rng, 1)


def test_td_loss_weights_rows_and_returns_td_errors():
    cfg = dqn.resolve(dqn.Config(batch_size=2, gamma=0.5, double=False, loss="mse"))
    q = torch.nn.Linear(1, 2, bias=False)
    target = torch.nn.Linear(1, 2, bias=False)
    with torch.no_grad():
        q.weight.copy_(torch.tensor([[1.0], [2.0]]))  # Q(s) = (s, 2s)
        target.weight.copy_(torch.tensor([[1.0], [0.0]]))  # max Q_target(s') = s' for s' > 0
    batch = Batch(
        obs=np.array([[1.0], [2.0]], np.float32),
        actions=np.array([1, 0]),
        rewards=np.array([1.0, 0.0], np.float32),
        next_obs=np.array([[4.0], [2.0]], np.float32),
        terminated=np.array([False, True]),
        truncated=np.array([False, False]),
        indices=np.arange(2),
        weights=np.array([0.25, 1.0], np.float32),
    )
    loss, _, td = dqn.td_loss(q, target, batch, slice(None), cfg, torch.device("cpu"))
    # y = (1 + 0.5 * 4, 0) = (3, 0); Q(s, a) = (2 * 1, 2) -> TD errors (1, -2)
    np.testing.assert_allclose(td.numpy(), [1.0, -2.0])
    assert float(loss.detach()) == pytest.approx((0.25 * 1.0 + 1.0 * 4.0) / 2)


@pytest.mark.parametrize(
    "kw, message", [({"per_alpha": 1.5}, "--per-alpha must be in"), ({"per_beta_steps": 0}, "--per-beta-steps")]
)
def test_bad_prioritized_numbers_are_user_errors(kw, message):
    with pytest.raises(UserError, match=message):
        dqn.resolve(dqn.Config(prioritized=True, **kw))
