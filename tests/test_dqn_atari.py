"""DQN's Atari preprocessing on real Pong frames."""

from __future__ import annotations

import ale_py
import gymnasium as gym
import numpy as np
import pytest

from dirtyrl.envs.atari_dqn import AtariDQNPreprocessing, gray84, make_atari_dqn


@pytest.fixture(scope="module")
def pong():
    env = make_atari_dqn("pong")
    yield env
    env.close()


def test_shapes_dtypes_and_zero_filled_history(pong):
    assert pong.observation_space.shape == (4, 84, 84)
    obs, info = pong.reset(seed=3)
    assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8
    assert (obs[:3] == 0).all() and obs[3].max() > 0  # only the reset frame is real
    assert info["lives"] == 0  # Pong has no lives: end-of-life never fires
    next_obs, *_ = pong.step(1)
    np.testing.assert_array_equal(next_obs[:3], obs[1:])  # the history shifts by one frame


def test_rgb80_variant_shape():
    env = make_atari_dqn("pong", screen="rgb80")
    obs, _ = env.reset(seed=0)
    assert obs.shape == (12, 80, 80) and obs.dtype == np.uint8
    env.close()


def test_skip_max_and_resize_match_raw_frames():
    """One agent step = 4 emulator frames; the observation is gray84(max(frame 3, frame 4))."""
    gym.register_envs(ale_py)
    raw = gym.make("ALE/Pong-v5", frameskip=1, repeat_action_probability=0.0, obs_type="grayscale")
    ours = AtariDQNPreprocessing(gym.make("ALE/Pong-v5", frameskip=1, repeat_action_probability=0.0), noop_max=0)
    raw.reset(seed=5)
    ours.reset(seed=5)
    rng = np.random.default_rng(0)
    for _ in range(120):  # long enough for the ball to be in play
        action = int(rng.integers(6))
        frames, total = [], 0.0
        for _ in range(4):
            frame, reward, *_ = raw.step(action)
            frames.append(frame)
            total += reward
        obs, reward, *_ = ours.step(action)
        np.testing.assert_array_equal(obs, gray84(np.maximum(frames[2], frames[3])))
        assert reward == total
    raw.close()
    ours.close()


def test_reduced_action_sets_map_to_up_and_down():
    env = make_atari_dqn("pong", actions=2)
    inner = env.env
    assert env.action_space.n == 2
    assert inner.ale_actions == [ale_py.Action.RIGHT, ale_py.Action.LEFT]  # RIGHT moves Pong's paddle up
    assert env.get_wrapper_attr("action_names") == ("UP", "DOWN")
    assert make_atari_dqn("pong", actions=6).action_space.n == 6


def test_noop_starts_are_random_but_seeded(pong):
    frames = []
    for seed in range(6):
        pong.reset(seed=seed)
        frames.append(pong.unwrapped.ale.getEpisodeFrameNumber())
    assert all(1 <= f <= 30 for f in frames) and len(set(frames)) > 1
    pong.reset(seed=2)
    again = pong.unwrapped.ale.getEpisodeFrameNumber()
    assert again == frames[2]


def test_episode_return_is_the_real_score():
    env = make_atari_dqn("pong", sticky=0.0)
    env.reset(seed=0)
    total, steps = 0.0, 0
    while True:
        _, reward, terminated, truncated, _ = env.step(0)  # NOOP: the opponent wins 21-0
        total += reward
        steps += 1
        if terminated or truncated:
            break
    assert terminated and total == -21.0  # unclipped rewards summed: the game's score
    env.close()
