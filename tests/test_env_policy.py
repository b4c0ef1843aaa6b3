"""The observation policy of the env factory, on real envs: one-hot Discrete, flattened
Tuple/Dict, Atari difference frames with FIRE on reset, one-line refusals, --env-kwargs,
module:EnvId, and Gymnasium's own check_env on every env the factory makes."""

import warnings
from pathlib import Path
from typing import ClassVar

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from dirtyrl.algos import dqn, vpg
from dirtyrl.config import EnvConfig, RunConfig
from dirtyrl.envs import check_env_id, make_env, parse_env_kwargs
from dirtyrl.envs.atari_dqn import make_atari_dqn
from dirtyrl.envs.atari_vpg import AtariDifferenceFrames, FireOnReset
from dirtyrl.envs.pong import PongDifferenceFrames
from dirtyrl.envs.probes import PROBE_IDS, register_probes
from dirtyrl.errors import UserError

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


class TinyEnv(gym.Env):
    """One step, any observation and action space: for the policy's accept/refuse rules."""

    metadata: ClassVar[dict] = {"render_modes": []}

    def __init__(self, obs_space: gym.Space, action_space: gym.Space, render_mode: str | None = None) -> None:
        self.observation_space, self.action_space = obs_space, action_space

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        # Samples drawn from the env's own np_random: reset(seed=...) then reset() is reproducible.
        self.observation_space.seed(int(self.np_random.integers(2**31)))
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 1.0, True, False, {}


TINY = {
    "dirtyrl_test/DictObs-v0": (
        gym.spaces.Dict(pos=gym.spaces.Box(-1, 1, (2,), np.float32), cell=gym.spaces.Discrete(3)),
        gym.spaces.Discrete(2),
    ),
    "dirtyrl_test/TextObs-v0": (gym.spaces.Text(8), gym.spaces.Discrete(2)),
    "dirtyrl_test/SequenceObs-v0": (gym.spaces.Sequence(gym.spaces.Discrete(2)), gym.spaces.Discrete(2)),
    "dirtyrl_test/MultiDiscreteActions-v0": (gym.spaces.Box(-1.0, 1.0, (2,), np.float32), gym.spaces.MultiDiscrete([3, 3])),
    "dirtyrl_test/MultiBinaryActions-v0": (gym.spaces.Box(-1.0, 1.0, (2,), np.float32), gym.spaces.MultiBinary(4)),
    "dirtyrl_test/ShiftedActions-v0": (gym.spaces.Box(-1.0, 1.0, (2,), np.float32), gym.spaces.Discrete(3, start=-1)),
}


@pytest.fixture(scope="module", autouse=True)
def tiny_envs():
    for env_id, (obs, act) in TINY.items():
        if env_id not in gym.registry:
            gym.register(env_id, entry_point=TinyEnv, kwargs={"obs_space": obs, "action_space": act})


def test_discrete_observations_are_one_hot():
    env = make_env("FrozenLake-v1", env_kwargs=["is_slippery=False"])
    obs, _ = env.reset(seed=0)
    assert env.observation_space == gym.spaces.Box(0.0, 1.0, (16,), np.float32)
    assert obs.dtype == np.float32 and obs.sum() == 1.0 and obs[0] == 1.0  # start cell 0
    obs, *_ = env.step(2)  # RIGHT on a non-slippery lake: cell 1
    assert obs.argmax() == env.unwrapped.s == 1 and obs.sum() == 1.0


def test_tuple_observations_are_flattened_with_gymnasiums_flatten():
    env = make_env("Blackjack-v1")
    obs, _ = env.reset(seed=3)
    raw = env.unwrapped._get_obs()  # (player sum, dealer card, usable ace)
    expected = gym.spaces.flatten(env.unwrapped.observation_space, raw).astype(np.float32)
    assert obs.shape == (32 + 11 + 2,) and obs.dtype == np.float32
    np.testing.assert_array_equal(obs, expected)
    assert obs.sum() == 3.0  # one hot per part


def test_dict_observations_are_flattened():
    env = make_env("dirtyrl_test/DictObs-v0")
    obs, _ = env.reset(seed=0)
    raw, _ = env.unwrapped.reset(seed=0)
    assert obs.shape == (2 + 3,) and env.observation_space.contains(obs)
    np.testing.assert_array_equal(obs, gym.spaces.flatten(env.unwrapped.observation_space, raw))


def test_vector_observations_are_left_alone():
    env = make_env("CartPole-v1")
    assert isinstance(env.observation_space, gym.spaces.Box) and env.observation_space.shape == (4,)
    assert not isinstance(env, gym.wrappers.FlattenObservation)


@pytest.mark.parametrize(
    "env_id, words",
    [
        ("dirtyrl_test/TextObs-v0", "a Text observation space"),
        ("dirtyrl_test/SequenceObs-v0", "a Sequence observation space"),
        ("dirtyrl_test/MultiDiscreteActions-v0", "a MultiDiscrete action space, MultiDiscrete([3 3])"),
        ("dirtyrl_test/MultiBinaryActions-v0", "a MultiBinary action space"),
        ("dirtyrl_test/ShiftedActions-v0", "Discrete(3, start=-1)"),
        ("Pendulum-v1", "a Box action space"),
    ],
)
def test_unsupported_spaces_are_one_line_that_says_what_is_supported(env_id, words):
    with pytest.raises(UserError) as err:
        make_env(env_id)
    message = str(err.value)
    assert words in message and "\n" not in message
    assert "supports" in message or "support" in message


@pytest.mark.parametrize("env_id", ["dirtyrl_test/TextObs-v0", "dirtyrl_test/MultiDiscreteActions-v0"])
def test_vpg_and_dqn_refuse_the_same_env_with_the_same_line(env_id, tmp_path):
    messages = []
    for algo in (vpg, dqn):
        cfg = algo.Config(env=EnvConfig(env=env_id), run=RunConfig(total_steps=10, run_dir=str(tmp_path / algo.ALGO)))
        with pytest.raises(UserError) as err:
            algo.train(cfg)
        messages.append(str(err.value))
    assert messages[0] == messages[1]
    assert not (tmp_path / "vpg" / "checkpoints").exists(), "refused before the run dir is made"


@pytest.mark.parametrize("env_id", ["FrozenLake-v1", "Blackjack-v1"])
@pytest.mark.parametrize("algo", [vpg, dqn])
def test_vpg_and_dqn_both_train_on_toy_text(env_id, algo, tmp_path):
    extra = {"learning_starts": 128, "batch_size": 32} if algo is dqn else {}
    cfg = algo.Config(
        env=EnvConfig(env=env_id), run=RunConfig(total_steps=300, run_dir=str(tmp_path), progress="off"), **extra
    )
    algo.train(cfg)
    assert (tmp_path / "summary.json").exists() and (tmp_path / "checkpoints" / "latest.pt").exists()


# ---- Atari under VPG: difference frames, FIRE on reset -------------------------------------


def chain(env: gym.Env) -> list[type]:
    kinds = []
    while isinstance(env, gym.Wrapper):
        kinds.append(type(env))
        env = env.env
    return kinds


def moving_pixels_after_reset(env: gym.Env, steps: int = 40) -> int:
    """Non-zero difference pixels over ``steps`` NOOPs after a reset: 0 means nothing moves."""
    env.reset(seed=0)
    return sum(int(np.count_nonzero(env.step(0)[0])) for _ in range(steps))


def test_breakout_under_vpg_gets_difference_frames_and_fire_on_reset():
    env = make_env("ALE/Breakout-v5", sticky=0.0)
    assert env.observation_space == gym.spaces.Box(-1, 1, (80, 80), np.int8)
    assert AtariDifferenceFrames in chain(env) and FireOnReset in chain(env)
    obs, _ = env.reset(seed=0)
    assert obs.dtype == np.int8 and not obs.any()
    # With FIRE pressed on reset the ball is served and moves while the agent does nothing...
    assert moving_pixels_after_reset(env) > 0
    # ...without it, Breakout stands still: the episode could last until the frame limit.
    raw = gym.make("ALE/Breakout-v5", repeat_action_probability=0.0)
    assert moving_pixels_after_reset(AtariDifferenceFrames(raw)) == 0


def test_breakout_serves_again_after_a_lost_life():
    env = make_env("ALE/Breakout-v5", sticky=0.0)
    env.reset(seed=0)
    lives = env.unwrapped.ale.lives()
    for _ in range(2000):  # NOOP: the paddle misses the ball
        _, _, terminated, truncated, _ = env.step(0)
        if env.unwrapped.ale.lives() < lives:
            break
    assert env.unwrapped.ale.lives() == lives - 1 and not (terminated or truncated)
    assert sum(int(np.count_nonzero(env.step(0)[0])) for _ in range(40)) > 0, "the new ball was served"


def test_pong_by_its_ale_id_gets_the_seeds_crop_with_the_whole_action_set():
    env = make_env("ALE/Pong-v5")
    assert isinstance(env, PongDifferenceFrames) and env.action_space.n == 6
    assert FireOnReset not in chain(env), "Pong serves by itself"


def test_atari_ram_observations_are_a_vector_not_a_screen():
    env = make_env("ALE/Breakout-v5", env_kwargs=["obs_type='ram'"])
    assert env.observation_space.shape == (128,) and AtariDifferenceFrames not in chain(env)


def test_vpg_uses_karpathys_settings_for_every_atari_game():
    cfg = vpg.resolve(vpg.Config(env=EnvConfig(env="ALE/Breakout-v5")))
    assert (cfg.hidden, cfg.optimizer, cfg.bias) == (vpg.PRESETS["pong"]["hidden"], "rmsprop", False)


# ---- --env-kwargs -----------------------------------------------------------------------------


def test_env_kwargs_are_python_literals_or_text():
    assert parse_env_kwargs(["n=3", "x=-0.5", "flag=True", "name=8x8", "t=(1, 2)", "s='a b'"]) == {
        "n": 3,
        "x": -0.5,
        "flag": True,
        "name": "8x8",
        "t": (1, 2),
        "s": "a b",
    }
    with pytest.raises(UserError, match="key=value"):
        parse_env_kwargs(["no_equals_sign"])


def test_env_kwargs_reach_gym_make():
    env = make_env("FrozenLake-v1", env_kwargs=["map_name=8x8", "is_slippery=False"])
    assert env.observation_space.shape == (64,) and env.spec.kwargs["is_slippery"] is False


@pytest.mark.parametrize(
    "env_id, kwargs, words",
    [
        ("FrozenLake-v1", ["slippery=False"], "does not accept the keyword slippery"),
        ("ALE/Breakout-v5", ["speed=2"], "does not accept the keyword speed"),
        ("ALE/Breakout-v5", ["repeat_action_probability=0"], "set by --sticky"),
        ("pong", ["full_action_space=True"], "set by --actions"),
        ("FrozenLake-v1", ["map_name=9x9"], "could not be made"),
    ],
)
def test_bad_env_kwargs_are_one_line(env_id, kwargs, words):
    with pytest.raises(UserError) as err:
        make_env(env_id, env_kwargs=kwargs)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_dqn_atari_pipeline_takes_env_kwargs_but_not_the_ones_its_flags_set():
    env = make_atari_dqn("ALE/Breakout-v5", env_kwargs=["mode=4"])
    assert env.unwrapped.spec.kwargs["mode"] == 4
    with pytest.raises(UserError, match="set by --frame-skip"):
        make_atari_dqn("ALE/Breakout-v5", env_kwargs=["frameskip=4"])


# ---- module:EnvId -----------------------------------------------------------------------------


def test_module_env_id_imports_the_module(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))
    env = make_env("corridor:Corridor-v0", env_kwargs=["length=4"])
    assert env.observation_space.shape == (4,) and env.unwrapped.length == 4


def test_a_module_that_cannot_be_imported_is_one_line():
    with pytest.raises(UserError) as err:
        check_env_id("no_such_module_here:Corridor-v0")
    assert "cannot import module 'no_such_module_here'" in str(err.value) and "PYTHONPATH" in str(err.value)


def test_a_module_without_that_id_names_the_ids_it_registers(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))
    with pytest.raises(UserError) as err:
        check_env_id("corridor:Coridor-v0")
    assert "module 'corridor' registers no env 'Coridor-v0'" in str(err.value)
    assert "Corridor-v0" in str(err.value).split("registers:")[1]


def test_a_broken_module_is_one_line(tmp_path, monkeypatch):
    (tmp_path / "broken_envs.py").write_text("import gymnasium\nraise RuntimeError('forgot something')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(UserError, match="importing module 'broken_envs' failed: RuntimeError: forgot something"):
        check_env_id("broken_envs:Thing-v0")


# ---- Gymnasium's own checks on every env the factory makes -------------------------------------


def factory_envs() -> dict:
    register_probes()
    makers = {
        "pong": lambda: make_env("pong"),
        "ALE/Pong-v5": lambda: make_env("ALE/Pong-v5"),
        "ALE/Breakout-v5 (vpg)": lambda: make_env("ALE/Breakout-v5"),
        "pong (dqn)": lambda: make_atari_dqn("pong"),
        "ALE/Breakout-v5 (dqn)": lambda: make_atari_dqn("ALE/Breakout-v5"),
        "FrozenLake-v1": lambda: make_env("FrozenLake-v1"),
        "Blackjack-v1": lambda: make_env("Blackjack-v1"),
        "CliffWalking-v1": lambda: make_env("CliffWalking-v1"),
        "dirtyrl_test/DictObs-v0": lambda: make_env("dirtyrl_test/DictObs-v0"),
    }
    for env_id in ("CartPole-v1", "Acrobot-v1", "MountainCar-v0", *PROBE_IDS):
        makers[env_id] = lambda env_id=env_id: make_env(env_id)
    return makers


@pytest.mark.parametrize("name", list(factory_envs()))
def test_check_env_passes_and_env_spec_rebuilds_the_env(name):
    env = factory_envs()[name]()
    with warnings.catch_warnings():
        # The Box bounds of CartPole (+-inf) and the "wrapped env" notice are warnings, not failures.
        warnings.simplefilter("ignore")
        check_env(env, skip_render_check=True)
        rebuilt = gym.make(env.spec)
    assert chain(rebuilt) == chain(env)
    assert rebuilt.observation_space == env.observation_space and rebuilt.action_space == env.action_space
    a, _ = env.reset(seed=5)
    b, _ = rebuilt.reset(seed=5)
    np.testing.assert_array_equal(a, b)
