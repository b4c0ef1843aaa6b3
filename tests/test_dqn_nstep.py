"""n-step returns and the dueling head: the maths by hand, and n-step transitions drawn from the
real FrameReplayBuffer against a naive reference that walks each episode's transition list."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dirtyrl.buffers import FrameReplayBuffer
from dirtyrl.dqn_maths import dueling_aggregate, nstep_window, td_target
from dirtyrl.qnets import DuelingHead, make_qnet


def test_nstep_window_by_hand():
    gamma = 0.9
    rewards = np.array(
        [
            [1.0, 2.0, 3.0],  # full window: 1 + .9*2 + .81*3 = 5.23
            [1.0, 2.0, 3.0],  # episode ends after step 0: 1
            [0.0, -1.0, 5.0],  # ends after step 1: -0.9; the 5 belongs to the next episode
            [0.5, 0.5, 0.5],  # ends after the last step: same as a full window
        ]
    )
    stops = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 1], [0, 0, 1]], bool)
    returns, m = nstep_window(rewards, stops, gamma)
    np.testing.assert_allclose(returns, [5.23, 1.0, -0.9, 0.5 + 0.45 + 0.405], rtol=1e-6)
    assert m.tolist() == [3, 1, 2, 3]


def test_nstep_td_target_terminal_vs_truncated_with_gamma_per_row():
    # Row 0: a full 3-step window bootstraps with gamma^3; row 1 ended by termination after 2
    # steps: no bootstrap; row 2 ended by truncation after 2 steps: bootstraps with gamma^2.
    rewards = torch.tensor([1.0, 1.0, 1.0])
    next_q = torch.tensor([10.0, 10.0, 10.0])
    terminated = torch.tensor([False, True, False])
    discounts = torch.tensor([0.5**3, 0.5**2, 0.5**2])
    y = td_target(rewards, next_q, terminated, discounts)
    torch.testing.assert_close(y, torch.tensor([1 + 1.25, 1.0, 1 + 2.5]))


def test_dueling_aggregate_by_hand():
    value = torch.tensor([[2.0], [-1.0]])
    advantages = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 6.0]])
    q = dueling_aggregate(value, advantages)
    torch.testing.assert_close(q, torch.tensor([[1.0, 2.0, 3.0], [-3.0, -3.0, 3.0]]))
    # The mean of Q over actions is V, and the greedy action is the advantage's.
    torch.testing.assert_close(q.mean(dim=1, keepdim=True), value)
    assert q.argmax(dim=1).tolist() == advantages.argmax(dim=1).tolist()


def test_dueling_head_is_value_plus_centred_advantage():
    torch.manual_seed(0)
    head = DuelingHead(5, 4, 8)
    x = torch.randn(3, 5)
    expected = head.value(x) + head.advantage(x) - head.advantage(x).mean(dim=1, keepdim=True)
    torch.testing.assert_close(head(x), expected)
    net = make_qnet("mnih2013", (4, 40, 40), 3, dueling=True)
    assert isinstance(net.head, DuelingHead)
    with pytest.raises(ValueError, match="dueling"):
        make_qnet("mlp", (4,), 2, dueling=True)


def play(buf: FrameReplayBuffer, lengths: list[int], ends: list[str], rng: np.random.Generator):
    """Fake episodes into ``buf``; returns per global slot the naive episode list and the step index.

    ends[i]: 'terminated', 'truncated', or 'cut' (no flag: the run was interrupted mid-episode,
    and the next start_episode begins a new one).
    """
    where = {}
    slot, counter = 0, 0
    for length, end in zip(lengths, ends, strict=True):
        frames = []
        for _ in range(length + 1):
            counter += 1
            frames.append(np.full((1, 2, 2), counter % 250 + 1, np.uint8))
        buf.start_episode(frames[0])
        slot += 1
        steps = []
        for t in range(length):
            last = t == length - 1
            reward = float(rng.integers(-1, 2))
            term, trunc = last and end == "terminated", last and end == "truncated"
            buf.add(int(rng.integers(3)), reward, frames[t + 1], term, trunc)
            steps.append((frames, reward, term, trunc))
            where[slot] = (steps, t)
            slot += 1
    return where


def naive_nstep(steps, t: int, n: int, gamma: float, k: int):
    """Walk the episode's own transitions from step t: (obs, R, next_obs, terminated, truncated, gamma^m)."""
    frames = steps[0][0]

    def stack(i):
        return np.concatenate([frames[j] if j >= 0 else np.zeros_like(frames[0]) for j in range(i - k + 1, i + 1)])

    total, m = 0.0, 0
    for i in range(t, min(t + n, len(steps))):
        _, reward, term, trunc = steps[i]
        total += gamma**m * reward
        m += 1
        if term or trunc:
            break
    _, _, term, trunc = steps[t + m - 1]
    return stack(t), total, stack(t + m), term, trunc, gamma**m


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_nstep_transitions_match_a_naive_walk_and_never_cross_episodes(n):
    rng = np.random.default_rng(n)
    gamma, k = 0.9, 3
    lengths = [4, 1, 2, 7, 3, 6, 2, 5]
    ends = ["terminated", "truncated", "cut", "terminated", "truncated", "cut", "terminated", "terminated"]
    # Capacity 40 < 38 transitions + 8 reset slots: the buffer wraps, so the oldest are gone.
    buf = FrameReplayBuffer(40, (1, 2, 2), history=k)
    where = play(buf, lengths, ends, rng)
    lo, hi = max(0, buf.added - buf.capacity + k), buf.added - (n - 1)
    valid = [s for s in range(lo, hi) if s in where]
    assert len(valid) > 20
    batch = buf.gather_nstep(np.array(valid) % buf.capacity, n, gamma)
    for row, s in enumerate(valid):
        steps, t = where[s]
        obs, total, next_obs, term, trunc, discount = naive_nstep(steps, t, n, gamma, k)
        np.testing.assert_array_equal(batch.obs[row], obs)
        np.testing.assert_array_equal(batch.next_obs[row], next_obs)
        assert batch.rewards[row] == pytest.approx(total, rel=1e-6)
        assert (bool(batch.terminated[row]), bool(batch.truncated[row])) == (term, trunc)
        assert batch.discounts[row] == pytest.approx(discount, rel=1e-6)


def test_nstep_sampling_leaves_out_the_unfinished_newest_windows():
    rng = np.random.default_rng(0)
    buf = FrameReplayBuffer(100, (1, 2, 2), history=2)
    play(buf, [30], ["cut"], rng)  # one episode still running: its last slots have no full window
    idx = buf.sample_indices(2000, rng, n_step=3)
    assert idx.max() <= buf.added - 3
    batch = buf.sample(64, rng, n_step=3, gamma=0.5)
    assert np.all(batch.discounts == np.float32(0.125))
