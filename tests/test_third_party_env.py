"""Third-party envs as they are (issue 20): constructors without ``render_mode`` (AgileRL's probes,
older custom envs), observations outside their own space, exceptions raised in the user's code,
and wrappers that change rewards or episode ends.

The envs below are registered when this module is imported, as a user's env module would be,
so that ``--env test_third_party_env:ThirdPartyNoRender-v0`` finds them in a subprocess too
(PYTHONPATH=tests).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from gymnasium.envs.registration import WrapperSpec

from dirtyrl.cli import main
from dirtyrl.doctor.user import check_env_results
from dirtyrl.envs import make_env
from dirtyrl.envs.observations import observation_problem
from dirtyrl.errors import UserError, is_library_file, library_dirs, user_frame

TESTS = Path(__file__).resolve().parent
MODULE = Path(__file__).stem


class NoRenderEnv(gym.Env):
    """A corridor whose constructor has no render_mode: +1 at the exit, -0.05 for every other step."""

    def __init__(self, size: int = 5) -> None:
        self.size = size
        self.observation_space = spaces.Discrete(size)
        self.action_space = spaces.Discrete(2)
        self.position = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.position = 0
        return self.position, {}

    def step(self, action):
        self.position = min(max(self.position + (1 if int(action) == 1 else -1), 0), self.size - 1)
        at_exit = self.position == self.size - 1
        return self.position, 1.0 if at_exit else -0.05, at_exit, False, {}


class DictProbeEnv(gym.Env):
    """AgileRL's Dict probe mistake: ``{"discrete": 1}`` from a ``Discrete(1)`` space (on reset if asked)."""

    def __init__(self, bad_on_reset: bool = False) -> None:
        self.bad_on_reset = bad_on_reset
        self.observation_space = spaces.Dict({"discrete": spaces.Discrete(1), "box": spaces.Box(0, 1, (2,))})
        self.action_space = spaces.Discrete(1)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        return {"discrete": int(self.bad_on_reset), "box": np.zeros(2, np.float32)}, {}

    def step(self, action):
        return {"discrete": 1, "box": np.zeros(2, np.float32)}, 1.0, True, False, {}


class BoomEnv(NoRenderEnv):
    """A user env with a bug in ``step``."""

    def step(self, action):
        return self._move(action)

    def _move(self, action):
        raise ValueError(f"cannot move with action {action}")


class NegateReward(gym.RewardWrapper, gym.utils.RecordConstructorArgs):
    """The bug: a wrapper that negates every reward. (RecordConstructorArgs: gym.make's rule for
    a registration's additional wrappers.)"""

    def __init__(self, env: gym.Env) -> None:
        gym.utils.RecordConstructorArgs.__init__(self)
        super().__init__(env)

    def reward(self, reward):
        return -reward


class ClipReward(gym.RewardWrapper, gym.utils.RecordConstructorArgs):
    def __init__(self, env: gym.Env, bound: float = 0.5) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, bound=bound)
        super().__init__(env)
        self.bound = bound

    def reward(self, reward):
        return float(np.clip(reward, -self.bound, self.bound))


def broken_agent_factory(env_id: str, steps: int, seed: int):
    """``doctor --agent``'s protocol, with a bug in the user's own function."""
    raise RuntimeError(f"no agent for {env_id}")


def _register() -> None:
    entry = f"{__name__}:"
    gym.register("ThirdPartyNoRender-v0", entry_point=entry + "NoRenderEnv", max_episode_steps=20)
    gym.register("ThirdPartyDictProbe-v0", entry_point=entry + "DictProbeEnv", max_episode_steps=5)
    gym.register("ThirdPartyBoom-v0", entry_point=entry + "BoomEnv", max_episode_steps=20)
    for name, wrapper, kwargs in (("Negated", "NegateReward", {}), ("Clipped", "ClipReward", {"bound": 0.5})):
        gym.register(
            f"ThirdParty{name}-v0",
            entry_point=entry + "NoRenderEnv",
            max_episode_steps=20,
            additional_wrappers=(WrapperSpec(wrapper, entry + wrapper, kwargs),),
        )


_register()  # importing the module registers its envs: what gym.make("module:EnvId") relies on


def env_id(name: str) -> str:
    return f"{MODULE}:ThirdParty{name}-v0"


def dirtyrl(*argv: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(TESTS), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "dirtyrl", *argv], capture_output=True, text=True, cwd=cwd, env=env, timeout=300
    )


# --- constructors without render_mode ----------------------------------------------------------


def test_an_env_without_render_mode_trains_with_both_algorithms_and_plays(tmp_path, capsys):
    proc = dirtyrl("train", "vpg", "--env", env_id("NoRender"), "--total-steps", "300", "--run-dir", "vpg", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    dqn = ["train", "dqn", "--env", env_id("NoRender"), "--total-steps", "300", "--learning-starts", "32"]
    assert main([*dqn, "--batch-size", "32", "--run-dir", str(tmp_path / "dqn"), "--progress", "off"]) == 0
    for algo in ("vpg", "dqn"):
        capsys.readouterr()
        # No display here: play would write a GIF; the env cannot draw, so it says so and plays on.
        assert main(["play", str(tmp_path / algo / "checkpoints" / "latest.pt"), "--episodes", "1"]) == 0
        out = capsys.readouterr().out
        assert "NoRenderEnv.__init__ takes no render_mode argument); playing without pictures" in out
        assert "mean return over 1 episodes" in out


def test_play_video_of_an_env_that_cannot_draw_is_one_line(tmp_path, capsys):
    argv = ["train", "random", "--env", env_id("NoRender"), "--total-episodes", "2", "--run-dir", str(tmp_path / "r")]
    assert main([*argv, "--progress", "off"]) == 0
    capsys.readouterr()
    video = tmp_path / "x.gif"
    assert main(["play", str(tmp_path / "r" / "checkpoints" / "latest.pt"), "--video", str(video)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("dirtyrl: error: --video: env ")
    assert "cannot draw itself (NoRenderEnv.__init__ takes no render_mode argument); nothing to record" in err
    assert not video.exists()


def test_the_render_toggle_warns_once_and_training_goes_on(tmp_path, capsys):
    argv = ["train", "vpg", "--env", env_id("NoRender"), "--total-steps", "200", "--run-dir", str(tmp_path / "r")]
    assert main([*argv, "--progress", "off", "--debug.render", "--debug.video-every", "2"]) == 0
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if "cannot draw itself" in line]
    assert warnings == [
        "dirtyrl: warning: rendering: this env cannot draw itself (NoRenderEnv.__init__ takes no render_mode argument); "
        "training goes on without frames"
    ]
    assert not (tmp_path / "r" / "videos").exists() or not any((tmp_path / "r" / "videos").iterdir())


def test_asking_such_an_env_for_a_render_mode_is_one_line():
    with pytest.raises(UserError, match="cannot render: its constructor takes no render_mode argument"):
        make_env(env_id("NoRender"), render_mode="rgb_array")


def test_inspect_and_doctor_take_such_an_env(capsys):
    # inspect shows image preprocessing only: a vector env is refused in one line, not a TypeError.
    assert main(["inspect", "--env", env_id("NoRender")]) == 2
    assert "has no image preprocessing to inspect" in capsys.readouterr().err
    assert main(["doctor", "--env", env_id("NoRender")]) == 0
    table = capsys.readouterr().out
    assert "truncated at 20 steps by a time limit (expected)" in table and "4 passed, 0 failed" in table


# --- observations outside their own space ----------------------------------------------------


def test_an_out_of_space_dict_observation_is_one_line_and_exit_2(tmp_path):
    proc = dirtyrl("train", "vpg", "--env", env_id("DictProbe"), "--total-steps", "50", "--run-dir", "r", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    line = (
        f"dirtyrl: error: env '{env_id('DictProbe')}' returned an observation outside its observation space: "
        "key 'discrete' = 1, space Discrete(1) (from step())"
    )
    assert line in proc.stderr.splitlines() and "Traceback" not in proc.stderr


def test_the_check_covers_reset_too():
    env = make_env(env_id("DictProbe"), env_kwargs=["bad_on_reset=True"])
    with pytest.raises(UserError, match=r"key 'discrete' = 1, space Discrete\(1\) \(from reset\(\)\)"):
        env.reset(seed=0)


@pytest.mark.parametrize(
    "space, obs, problem",
    [
        (spaces.Discrete(3), -1, "-1, space Discrete(3)"),  # flatten would one-hot the last value
        (spaces.Discrete(3, start=1), np.int64(0), "0, space Discrete(3, start=1)"),
        (spaces.MultiDiscrete([2, 3]), [1, 3], "[1, 3], space MultiDiscrete([2 3])"),
        (spaces.MultiDiscrete([2, 3]), [1], "[1], space MultiDiscrete([2 3])"),
        (spaces.Tuple([spaces.Discrete(2), spaces.Discrete(2)]), (1,), "(1,), space Tuple(Discrete(2), Discrete(2))"),
        (spaces.Dict(a=spaces.Dict(b=spaces.Discrete(2))), {"a": {"b": 2}}, "key 'a', key 'b' = 2, space Discrete(2)"),
        (spaces.Dict(a=spaces.Discrete(2)), {"b": 0}, "key 'a' is missing, space Discrete(2)"),
        (
            spaces.Tuple([spaces.Box(0, 1, (2,))]),
            (np.zeros(3),),
            "index 0 = [0.0, 0.0, 0.0], space Box(0.0, 1.0, (2,), float32)",
        ),
    ],
)
def test_observation_problems_are_named(space, obs, problem):
    assert observation_problem(space, obs).startswith(problem)


def test_in_space_observations_and_box_values_beyond_bounds_pass():
    space = spaces.Dict(d=spaces.Discrete(2), box=spaces.Box(0, 1, (2,)), md=spaces.MultiDiscrete([2, 2]))
    assert observation_problem(space, {"d": np.int64(1), "box": np.array([7.0, -3.0]), "md": np.array([1, 0])}) is None
    env = make_env("Blackjack-v1")
    env.reset(seed=0)
    for _ in range(50):
        _, _, terminated, truncated, _ = env.step(int(env.action_space.sample()))
        if terminated or truncated:
            env.reset()


# --- exceptions raised in the user's code ----------------------------------------------------


def test_an_exception_in_the_users_env_names_the_function_and_keeps_the_traceback(tmp_path):
    proc = dirtyrl("train", "vpg", "--env", env_id("Boom"), "--total-steps", "50", "--run-dir", "r", cwd=tmp_path)
    assert proc.returncode == 1
    first, *rest = proc.stderr.splitlines()
    assert first.startswith(f"dirtyrl: error: your code raised ValueError in BoomEnv.step ({TESTS / MODULE}.py:")
    assert re.search(r"\.py:\d+\): cannot move with action [01]; its traceback follows$", first), first
    assert rest[0] == "Traceback (most recent call last):"
    assert "in _move" in proc.stderr and rest[-1].startswith("ValueError: cannot move with action")


def test_an_exception_in_the_users_agent_names_make_agent(capsys):
    assert main(["doctor", "--agent", f"{MODULE}:broken_agent_factory"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("dirtyrl: error: your code raised RuntimeError in broken_agent_factory (")
    assert "no agent for dirtyrl/Probe1-v0; its traceback follows" in err.splitlines()[0]
    assert "Traceback (most recent call last):" in err


def test_a_dirtyrl_bug_is_raised_as_before(monkeypatch):
    import functools
    import operator

    from dirtyrl.doctor import user

    # A "bug" whose every frame is library code: TypeError raised inside operator.truediv.
    monkeypatch.setattr(user, "check_env_results", functools.partial(operator.truediv, 1))
    with pytest.raises(TypeError):
        main(["doctor", "--env", "CartPole-v1"])


def test_frames_are_told_apart():
    dirs = library_dirs()
    assert is_library_file(np.__file__, dirs) and is_library_file(gym.__file__, dirs)
    assert is_library_file(os.__file__, dirs) and is_library_file(main.__code__.co_filename, dirs)
    assert not is_library_file(__file__, dirs)
    try:
        make_env("CartPole-v1").step(5)  # gymnasium's own check
    except Exception as exc:
        below_this_test = exc.with_traceback(exc.__traceback__.tb_next)  # as cli.main sees it: library frames only
        assert user_frame(below_this_test) is None
    try:
        BoomEnv().step(1)
    except ValueError as exc:
        found = user_frame(exc.with_traceback(exc.__traceback__.tb_next))
    assert found.function == "BoomEnv.step" and found.filename == __file__


# --- wrappers --------------------------------------------------------------------------------


def test_a_wrapper_that_negates_the_reward_fails_the_wrappers_row():
    rows = {r.check: r for r in check_env_results(env_id("Negated"), 1)}
    row = rows["wrappers"]
    assert not row.passed and "rewards sign flipped" in row.measured
    assert "negates the reward" in row.suspect
    assert all(r.passed for name, r in rows.items() if name != "wrappers")


def test_a_clipping_wrapper_is_named_and_passes():
    row = {r.check: r for r in check_env_results(env_id("Clipped"), 1)}["wrappers"]
    assert row.passed and "rewards clipped to [-0.5, 0.5]" in row.measured, row.measured
    assert "truncated at 20 steps by a time limit (expected)" in row.measured


def test_the_projects_own_presets_pass_the_wrappers_self_test():
    from dirtyrl.doctor.selftests import dqn_selftests

    (row,) = dqn_selftests(1, ["env wrappers"])
    assert row.passed and row.measured.startswith("4 envs: rewards unchanged"), row.measured
    assert row.seconds < 2.0
