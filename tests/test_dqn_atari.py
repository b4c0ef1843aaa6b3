"""DQN's Atari preprocessing on real Pong and Breakout frames: the C++ vector env and the Python pipeline."""

from __future__ import annotations

import ale_py
import gymnasium as gym
import numpy as np
import pytest

from dirtyrl.envs.atari_dqn import AtariDQNPreprocessing, VectorAtariFrames, area_resize, make_atari_dqn

gym.register_envs(ale_py)


@pytest.fixture(scope="module")
def pong():
    env = make_atari_dqn("pong")
    yield env
    env.close()


def python_pong(screen: str, noop_max: int = 0) -> AtariDQNPreprocessing:
    return AtariDQNPreprocessing(
        gym.make("ALE/Pong-v5", frameskip=1, repeat_action_probability=0.0), noop_max=noop_max, screen=screen, pong_field=True
    )


def test_shapes_dtypes_and_zero_filled_history(pong):
    assert isinstance(pong.unwrapped, VectorAtariFrames)  # the default path is the C++ vector env
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


def test_python_pipeline_skip_max_and_resize_match_raw_frames():
    """One agent step = 4 emulator frames; the observation is the area resize of max(frame 3, frame 4)."""
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
        np.testing.assert_array_equal(obs[0], area_resize(np.maximum(frames[2], frames[3]), 84))
        assert reward == total
    raw.close()
    ours.close()


@pytest.mark.parametrize(("screen", "steps"), [("gray84", None), ("gray40", None), ("rgb80", 200)])
def test_vector_env_matches_the_python_pipeline(screen, steps):
    """Same seed, no sticky actions, no no-ops, same actions: the same frames, rewards and ends.

    The one difference: a game that ends mid-skip. The vector env stops before grabbing the
    last frame, so the terminal observation (never bootstrapped from) is an older screen.
    ``steps=None`` plays the whole episode to see it.
    """
    py = python_pong(screen)
    vec = VectorAtariFrames("pong", None, sticky=0.0, noop_max=0, screen=screen, pong_field=True)
    a, _ = py.reset(seed=7)
    b, _ = vec.reset(seed=7)
    np.testing.assert_array_equal(a, b)
    rng = np.random.default_rng(0)
    step, points = 0, 0
    while steps is None or step < steps:
        action = int(rng.integers(6))
        a, reward_a, term_a, trunc_a, _ = py.step(action)
        b, reward_b, term_b, trunc_b, _ = vec.step(action)
        step += 1
        points += reward_a != 0
        assert (reward_a, term_a, trunc_a) == (reward_b, term_b, trunc_b), step
        if term_a or trunc_a:
            assert term_a and not np.array_equal(a, b)  # the terminal frame: an older screen
            break
        np.testing.assert_array_equal(a, b, err_msg=f"step {step}")
    assert steps is not None or points >= 21  # a whole game was compared
    py.close()
    vec.close()


@pytest.mark.parametrize(("game", "screen"), [("pong", "gray84"), ("breakout", "rgb80"), ("breakout", "gray40")])
def test_raw_frames_give_the_same_observations_as_the_cpp_resize(game, screen):
    """The instruments' path (full screen from C++, resized here) sees what training sees."""
    envs = [VectorAtariFrames(game, None, sticky=0.25, noop_max=30, screen=screen, raw_frames=raw) for raw in (False, True)]
    assert not envs[0].full_frames and envs[1].full_frames
    observations = [env.reset(seed=11)[0] for env in envs]
    rng = np.random.default_rng(1)
    for _ in range(150):
        np.testing.assert_array_equal(*observations)
        action = int(rng.integers(envs[0].action_space.n))
        observations = [env.step(action)[0] for env in envs]
    assert envs[1].raw_frame.shape[:2] == (210, 160)
    envs[1].render_mode = "rgb_array"
    assert envs[1].render().shape == (210, 160, 3)
    for env in envs:
        env.close()


def test_send_then_step_collects_the_same_step():
    envs = [VectorAtariFrames("pong", None, sticky=0.25) for _ in range(2)]
    for env in envs:
        env.reset(seed=4)
    for action in (0, 1, 2, 2, 3, 5):
        envs[1].send(action)
        plain, sent = envs[0].step(action), envs[1].step(action)
        np.testing.assert_array_equal(plain[0], sent[0])
        assert plain[1:4] == sent[1:4]
    envs[1].send(2)
    with pytest.raises(RuntimeError, match="after send"):
        envs[1].step(3)
    for env in envs:
        env.close()


def test_reduced_action_sets_map_to_up_and_down():
    env = make_atari_dqn("pong", actions=2)
    inner = env.env
    assert env.action_space.n == 2
    assert inner.ale_actions == [ale_py.Action.RIGHT, ale_py.Action.LEFT]  # RIGHT moves Pong's paddle up
    assert env.get_wrapper_attr("action_names") == ("UP", "DOWN")
    assert make_atari_dqn("pong", actions=6).action_space.n == 6


def test_noop_starts_are_random_but_seeded(pong):
    frames = [pong.reset(seed=seed)[1]["episode_frame_number"] for seed in range(6)]
    assert all(0 <= f < 30 for f in frames) and len(set(frames)) > 1
    assert pong.reset(seed=2)[1]["episode_frame_number"] == frames[2]


def test_seeds_beyond_a_c_int_are_accepted_and_reproducible(pong):
    """episode_seed draws 32-bit seeds; the vector env takes C ints."""
    first, _ = pong.reset(seed=2**32 - 5)
    pong.step(2)
    again, _ = pong.reset(seed=2**32 - 5)
    np.testing.assert_array_equal(first, again)


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


def test_breakout_gets_fire_at_reset_and_after_each_lost_life():
    """Without FIRE after a lost life, a NOOP agent would wait for the 108,000-frame limit."""
    env = make_atari_dqn("ALE/Breakout-v5", sticky=0.0)
    assert env.unwrapped.fire_reset
    _, info = env.reset(seed=0)
    lives, steps = [info["lives"]], 0
    while True:
        _, _, terminated, truncated, info = env.step(0)
        lives.append(info["lives"])
        steps += 1
        if terminated or truncated:
            break
    assert terminated and lives[0] == 5 and lives[-1] == 0 and steps < 1000
    env.close()


def test_max_frames_per_episode_is_a_truncation_on_the_vector_env():
    env = make_atari_dqn("pong", env_kwargs=["max_num_frames_per_episode=100"])
    assert isinstance(env.unwrapped, VectorAtariFrames)
    env.reset(seed=0)
    steps, truncated = 0, False
    while not truncated:
        *_, terminated, truncated, _ = env.step(0)
        steps += 1
        assert not terminated
    assert steps == 25  # 100 frames / skip 4: the agent's frames, the no-ops not counted
    env.close()


def test_game_modes_and_render_mode_take_the_python_pipeline():
    env = make_atari_dqn("ALE/Breakout-v5", env_kwargs=["mode=4"])
    assert isinstance(env.env, AtariDQNPreprocessing) and env.unwrapped.spec.kwargs["mode"] == 4
    env.close()
    env = make_atari_dqn("pong", render_mode="rgb_array")
    env.reset(seed=0)
    assert isinstance(env.env, AtariDQNPreprocessing) and env.render().shape == (210, 160, 3)
    env.close()
