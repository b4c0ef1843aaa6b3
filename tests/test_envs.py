"""Tier 2: the env factory on real Pong frames (ale-py), probes and bad env ids."""

import gymnasium as gym
import numpy as np
import pytest

from dirtyrl.envs import check_env_id, episode_seed, make_env, reward_threshold
from dirtyrl.envs.pong import ACTION_SETS, FIELD_BOTTOM, FIELD_TOP, difference_frame, preprocess_pong
from dirtyrl.envs.probes import PROBE_IDS
from dirtyrl.errors import UserError


@pytest.fixture(scope="module")
def pong():
    env = make_env("pong", actions=3, sticky=0.0)
    yield env
    env.close()


def test_pong_observation_is_an_int8_difference_frame(pong):
    obs, _ = pong.reset(seed=0)
    assert obs.shape == (80, 80) and obs.dtype == np.int8
    assert not obs.any(), "the first observation of an episode is all zeros"
    for _ in range(60):
        obs, *_ = pong.step(0)
    assert set(np.unique(obs)) <= {-1, 0, 1}
    assert obs.any(), "after the serve the ball moves, so the difference frame is not empty"
    assert pong.observation_space.contains(obs)


def test_preprocessing_crop_window_is_the_playing_field(pong):
    pong.reset(seed=0)
    for _ in range(60):
        pong.step(0)
    raw = pong.raw_frame
    processed = preprocess_pong(raw)
    assert raw.shape == (210, 160, 3) and processed.shape == (80, 80) and processed.dtype == np.uint8
    # Exactly rows 34, 36, ..., 192 and columns 0, 2, ..., 158 of the raw frame, red channel.
    red = raw[FIELD_TOP:FIELD_BOTTOM:2, ::2, 0]
    np.testing.assert_array_equal(processed > 0, (red != 144) & (red != 109))
    # The score bar (rows < 34) is outside the crop: changing it changes nothing.
    doctored = raw.copy()
    doctored[:FIELD_TOP] = 255
    np.testing.assert_array_equal(preprocess_pong(doctored), processed)
    # The bottom rows of the field are inside it: a pixel at raw row 192 shows up at row 79.
    doctored = raw.copy()
    doctored[192, 0] = (236, 236, 236)
    assert preprocess_pong(doctored)[79, 0] == 255
    # Background is erased; paddles are foreground.
    assert set(np.unique(processed)) == {0, 255}
    assert wrapper_processed_matches(pong)


def wrapper_processed_matches(env) -> bool:
    return np.array_equal(env.processed_frame, preprocess_pong(env.raw_frame))


def test_difference_frame_values():
    prev = np.zeros((2, 2), np.uint8)
    cur = np.array([[255, 0], [0, 0]], np.uint8)
    np.testing.assert_array_equal(difference_frame(cur, prev), [[1, 0], [0, 0]])
    np.testing.assert_array_equal(difference_frame(prev, cur), [[-1, 0], [0, 0]])
    assert not difference_frame(cur, None).any()


def paddle_row(env) -> float:
    """Mean row of our (right, green) paddle in the processed frame."""
    column = env.processed_frame[:, 70]
    rows = np.flatnonzero(column)
    return float(rows.mean()) if len(rows) else float("nan")


@pytest.mark.parametrize("actions", [2, 3])
def test_action_mapping_moves_our_paddle(actions):
    env = make_env("pong", actions=actions, sticky=0.0)
    meanings = env.unwrapped.get_action_meanings()
    names = [meanings[a] for a in ACTION_SETS[actions]]
    assert names[-2:] == ["RIGHT", "LEFT"]  # in Pong RIGHT is up and LEFT is down
    up, down = actions - 2, actions - 1
    positions = {}
    for name, action in (("up", up), ("down", down)):
        env.reset(seed=1)
        for _ in range(25):
            env.step(action)
        positions[name] = paddle_row(env)
    env.close()
    assert positions["up"] < positions["down"] - 10


def test_probe_envs_are_registered_and_behave():
    env = make_env(PROBE_IDS[4])  # Probe5: reward +1 iff action matches the sign of the obs
    obs, _ = env.reset(seed=3)
    _, reward, terminated, *_ = env.step(1 if obs[0] > 0 else 0)
    assert reward == 1.0 and terminated
    three = make_env(PROBE_IDS[2])
    three.reset(seed=0)
    assert three.step(0)[1:3] == (0.0, False)
    assert three.step(0)[1:3] == (1.0, True)
    assert reward_threshold(PROBE_IDS[3]) == 0.9 and reward_threshold("pong") is None


def test_unknown_env_suggests_close_matches():
    with pytest.raises(UserError, match="did you mean CartPole-v1"):
        check_env_id("CartPol-v1")


def test_continuous_action_space_is_rejected():
    with pytest.raises(UserError, match="Box action space"):
        make_env("Pendulum-v1")


def test_episode_seeds_are_distinct_and_reproducible():
    seeds = {episode_seed(1, r, e) for r in range(3) for e in range(100)}
    assert len(seeds) == 300
    assert episode_seed(7, 1, 5) == episode_seed(7, 1, 5)
    assert isinstance(gym.spaces.Discrete(2).sample(), np.integer)
