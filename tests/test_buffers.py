"""FrameReplayBuffer against a naive reference that stores whole stacks per transition."""

from __future__ import annotations

import numpy as np
import pytest

from dirtyrl.buffers import FrameReplayBuffer


def naive_stack(episode_frames: list[np.ndarray], t: int, k: int) -> np.ndarray:
    """Stack of the k frames ending at frame t of one episode, zeros before its first frame."""
    zeros = np.zeros_like(episode_frames[0])
    frames = [episode_frames[i] if i >= 0 else zeros for i in range(t - k + 1, t + 1)]
    return np.concatenate(frames, axis=0)


def fill(buf: FrameReplayBuffer, episode_lengths: list[int], rng: np.random.Generator, frame_shape=(1, 3, 2)):
    """Play fake episodes into ``buf``; return {global slot: naive transition} for every step."""
    reference = {}
    slot = 0
    counter = 0
    for ep, length in enumerate(episode_lengths):
        frames = []
        for _ in range(length + 1):
            counter += 1
            frames.append(np.full(frame_shape, counter % 250 + 1, np.uint8))
        buf.start_episode(frames[0])
        slot += 1
        for t in range(length):
            action = int(rng.integers(6))
            reward = float(rng.normal())
            terminated = t == length - 1 and ep % 2 == 0
            truncated = t == length - 1 and ep % 2 == 1
            buf.add(action, reward, frames[t + 1], terminated, truncated)
            reference[slot] = (
                naive_stack(frames, t, buf.history),
                action,
                np.float32(reward),
                naive_stack(frames, t + 1, buf.history),
                terminated,
                truncated,
            )
            slot += 1
    return reference


def check_against_reference(buf: FrameReplayBuffer, reference: dict, indices: np.ndarray) -> None:
    batch = buf.gather(indices)
    for row, j in enumerate(indices):
        # The slot's global index: the newest write that landed in slot j.
        g = max(s for s in reference if s % buf.capacity == j and s < buf.added)
        obs, action, reward, next_obs, terminated, truncated = reference[g]
        np.testing.assert_array_equal(batch.obs[row], obs)
        np.testing.assert_array_equal(batch.next_obs[row], next_obs)
        assert batch.actions[row] == action
        assert batch.rewards[row] == reward
        assert batch.terminated[row] == terminated
        assert batch.truncated[row] == truncated


def test_history_never_crosses_an_episode_start():
    buf = FrameReplayBuffer(100, (1, 3, 2), history=4)
    reference = fill(buf, [2, 5, 1, 3], np.random.default_rng(0))
    # Slot 3 is the first step of episode 2 (slots 0..2 are episode 1 with its reset frame).
    batch = buf.gather(np.array([4]))
    assert batch.obs[0, :3].sum() == 0  # three zero frames, nothing from episode 1
    assert batch.obs[0, 3, 0, 0] == 5  # episode 2's reset frame: the 4th frame played, value 4 % 250 + 1
    check_against_reference(buf, reference, np.array(sorted(reference)))


def test_wrap_around_matches_reference():
    buf = FrameReplayBuffer(23, (1, 3, 2), history=4)
    rng = np.random.default_rng(1)
    reference = fill(buf, [int(n) for n in rng.integers(1, 9, size=12)], rng)
    assert buf.added > 2 * buf.capacity  # wrapped at least twice
    lo, hi = buf._sample_range()
    valid = [g % buf.capacity for g in range(lo, hi) if buf.ep_pos[g % buf.capacity] > 0]
    check_against_reference(buf, reference, np.array(valid))


def test_vectorised_sample_equals_slow_reference_and_skips_reset_slots():
    buf = FrameReplayBuffer(64, (1, 3, 2), history=3)
    rng = np.random.default_rng(2)
    reference = fill(buf, [int(n) for n in rng.integers(1, 12, size=20)], rng)
    batch = buf.sample(512, np.random.default_rng(3))
    assert (buf.ep_pos[batch.indices] > 0).all()
    lo, hi = buf._sample_range()
    in_range = {g % buf.capacity for g in range(lo, hi)}
    assert set(batch.indices.tolist()) <= in_range
    check_against_reference(buf, reference, batch.indices)


def test_sampling_is_uniform_over_transitions():
    buf = FrameReplayBuffer(1100, (1, 1, 1), history=2)
    fill(buf, [9] * 100, np.random.default_rng(4), frame_shape=(1, 1, 1))  # 1000 slots, not wrapped
    counts = np.bincount(buf.sample(200_000, np.random.default_rng(5)).indices, minlength=1100)[:1000]
    stored = counts[buf.ep_pos[:1000] > 0]
    assert counts[buf.ep_pos[:1000] == 0].sum() == 0
    assert np.abs(stored - stored.mean()).max() < 5 * np.sqrt(stored.mean())  # Poisson: 5 sigma


def test_dtypes_and_shapes():
    buf = FrameReplayBuffer(50, (1, 84, 84), history=4)
    fill(buf, [10, 10], np.random.default_rng(6), frame_shape=(1, 84, 84))
    batch = buf.sample(8, np.random.default_rng(7))
    assert batch.obs.shape == batch.next_obs.shape == (8, 4, 84, 84)
    assert batch.obs.dtype == batch.next_obs.dtype == np.uint8
    assert batch.actions.dtype == np.int64 and batch.rewards.dtype == np.float32
    assert batch.terminated.dtype == batch.truncated.dtype == bool


def test_rgb_frames_stack_along_channels():
    buf = FrameReplayBuffer(50, (3, 4, 4), history=4)
    reference = fill(buf, [6, 6], np.random.default_rng(8), frame_shape=(3, 4, 4))
    batch = buf.sample(16, np.random.default_rng(9))
    assert batch.obs.shape == (16, 12, 4, 4)
    check_against_reference(buf, reference, batch.indices)


def test_vector_observations_with_history_one():
    buf = FrameReplayBuffer(20, (4,), history=1, frame_dtype=np.float32)
    buf.start_episode(np.arange(4, dtype=np.float32))
    buf.add(1, 1.0, np.arange(4, dtype=np.float32) + 10, terminated=True, truncated=False)
    batch = buf.gather(np.array([1]))
    assert batch.obs.dtype == np.float32
    np.testing.assert_array_equal(batch.obs[0], [0, 1, 2, 3])
    np.testing.assert_array_equal(batch.next_obs[0], [10, 11, 12, 13])


def test_memory_is_one_frame_per_transition():
    frame = 84 * 84
    buf = FrameReplayBuffer(1_000_000, (1, 84, 84), history=4)  # np.zeros reserves lazily: no RAM used
    assert buf.bytes_per_slot == frame + 8  # action, reward, 2 flags, episode position, 3 spare bytes unused
    assert buf.bytes_per_slot <= 1.05 * frame
    assert buf.nbytes < 7 * 2**30  # a million 84x84 transitions under 7 GiB


def test_incremental_save_and_load_round_trip(tmp_path):
    buf = FrameReplayBuffer(40, (1, 3, 2), history=4)
    rng = np.random.default_rng(10)
    fill(buf, [7, 9], rng)
    first = buf.save(tmp_path / "replay")
    assert first == 18 * buf.bytes_per_slot  # everything so far
    early = FrameReplayBuffer(40, (1, 3, 2), history=4)
    early.load(tmp_path / "replay", buf.added, buf.episode_position)  # before wrap-around: only used slots are read
    np.testing.assert_array_equal(early.sample(16, np.random.default_rng(0)).obs, buf.sample(16, np.random.default_rng(0)).obs)
    fill(buf, [30, 5], rng)  # wraps
    second = buf.save(tmp_path / "replay")
    assert second == 37 * buf.bytes_per_slot  # only the slots added since
    other = FrameReplayBuffer(40, (1, 3, 2), history=4)
    other.load(tmp_path / "replay", buf.added, buf.episode_position)
    a = buf.sample(64, np.random.default_rng(11))
    b = other.sample(64, np.random.default_rng(11))
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    with pytest.raises(ValueError):
        FrameReplayBuffer(41, (1, 3, 2), history=4).load(tmp_path / "replay", buf.added, buf.episode_position)


def test_add_before_start_episode_is_an_error():
    buf = FrameReplayBuffer(10, (1,), history=1)
    with pytest.raises(RuntimeError):
        buf.add(0, 0.0, np.zeros(1, np.uint8), False, False)
