"""Run control: stop conditions within one episode, the long-episode warning and cut, the ending line."""

from __future__ import annotations

import copy
import json

import gymnasium as gym
import numpy as np
import pytest
import torch

from dirtyrl import cli
from dirtyrl.algos import random_policy, vpg
from dirtyrl.config import EnvConfig, RunConfig
from dirtyrl.runcontrol import EpisodeGuard, needs_fire
from dirtyrl.telemetry import EpisodeStats, ending_line, window_means

ENDLESS = "dirtyrl-test/Endless-v0"


class Endless(gym.Env):
    """An episode that never ends and has no time limit: the worst case for a step budget."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, render_mode=None):
        self.render_mode = render_mode

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(2, np.float32), {}

    def step(self, action):
        return np.full(2, 0.5 * action, np.float32), 0.0, False, False, {}


@pytest.fixture(scope="module", autouse=True)
def endless_env():
    if ENDLESS not in gym.registry:
        gym.register(ENDLESS, entry_point=Endless)
    yield


def summary(run_dir) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def final_lengths(run_dir) -> list[int]:
    return torch.load(run_dir / "checkpoints" / "latest.pt", weights_only=False)["stats"]["lengths"]


# ---- stop conditions ------------------------------------------------------------------------


def test_vpg_total_episodes_stops_inside_a_batch(tmp_path):
    cfg = vpg.Config(
        env=EnvConfig("CartPole-v1"),
        run=RunConfig(total_episodes=6, run_dir=str(tmp_path / "r"), progress="off"),
        batch_episodes=4,
    )
    run_dir = vpg.train(cfg)
    # Batches of 4: before, the run played 8 episodes (two whole batches).
    assert summary(run_dir)["episodes"] == 6
    assert torch.load(run_dir / "checkpoints" / "latest.pt", weights_only=False)["update"] == 2  # the partial batch learned


@pytest.mark.parametrize("algo", ["vpg", "dqn", "random"])
def test_total_steps_stops_within_one_episode(tmp_path, algo):
    flags = {"vpg": ["--batch-episodes", "10"], "dqn": ["--learning-starts", "64", "--batch-size", "32"], "random": []}[algo]
    run_dir = tmp_path / "r"
    argv = ["train", algo, "--env", "CartPole-v1", "--total-steps", "300", "--run-dir", str(run_dir), "--progress", "off"]
    assert cli.main(argv + flags) == 0
    steps, lengths = summary(run_dir)["env_steps"], final_lengths(run_dir)
    assert sum(lengths) == steps
    # The run passed the limit during its last episode, not before it (vpg: not at the end of a batch of 10).
    assert steps - lengths[-1] < 300 <= steps


@pytest.mark.parametrize("algo", ["vpg", "dqn", "random"])
def test_an_endless_episode_is_warned_once_and_cut_at_the_step_limit(capsys, tmp_path, algo):
    flags = {"vpg": [], "dqn": ["--learning-starts", "32", "--batch-size", "16"], "random": []}[algo]
    run_dir = tmp_path / "r"
    argv = ["train", algo, "--env", ENDLESS, "--total-steps", "120", "--long-episode-warning", "50"]
    assert cli.main([*argv, "--run-dir", str(run_dir), "--progress", "off", *flags]) == 0
    err = capsys.readouterr().err
    assert err.count("warning: an episode has lasted 50 steps without ending (--long-episode-warning 50)") == 1
    assert err.count("the episode in progress is cut at step 120") == 1
    assert summary(run_dir)["env_steps"] == 120 and summary(run_dir)["episodes"] == 1


def test_without_a_step_limit_a_long_episode_is_only_warned_about(capsys):
    env = EpisodeGuard(gym.make(ENDLESS), bound=10, steps_left=None)
    env.reset(seed=0)
    truncations = [env.step(1)[3] for _ in range(35)]
    env.reset()
    truncations += [env.step(1)[3] for _ in range(15)]
    assert not any(truncations)
    assert capsys.readouterr().err.count("warning: an episode has lasted 10 steps") == 1


def test_a_zero_bound_turns_warning_and_cut_off(capsys):
    env = EpisodeGuard(gym.make(ENDLESS), bound=0, steps_left=0)
    env.reset(seed=0)
    assert not any(env.step(0)[3] for _ in range(20))
    assert capsys.readouterr().err == ""


def test_the_warning_names_fire_for_games_that_wait_for_it():
    from dirtyrl.envs import check_env_id

    check_env_id("ALE/Breakout-v5")  # registers ale-py's games
    breakout, cartpole = gym.make("ALE/Breakout-v5"), gym.make("CartPole-v1")
    assert needs_fire(breakout) and not needs_fire(cartpole)
    breakout.close()
    cartpole.close()


def test_a_negative_bound_is_one_line(capsys, tmp_path):
    code = cli.main(["train", "random", "--long-episode-warning", "-1", "--run-dir", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and err.strip() == "dirtyrl: error: --long-episode-warning must be >= 0 (0 turns it off), got -1"
    assert not (tmp_path / "r").exists()


def test_a_checkpoint_cut_at_an_episode_end_resumes_exactly_under_stop_conditions(tmp_path):
    """VPG stopped by --total-episodes at a batch boundary, resumed: identical to one run."""

    def cfg(name, episodes, resume=None):
        run = RunConfig(total_episodes=episodes, run_dir=str(tmp_path / name), progress="off", resume=resume)
        return vpg.Config(env=EnvConfig("CartPole-v1"), run=run, batch_episodes=4)

    straight = vpg.train(cfg("straight", 12))
    first = vpg.train(cfg("resumed", 8))
    resumed = vpg.train(cfg("resumed", 12, str(first / "checkpoints" / "latest.pt")))
    a = torch.load(straight / "checkpoints" / "latest.pt", weights_only=False)
    b = torch.load(resumed / "checkpoints" / "latest.pt", weights_only=False)
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert a["stats"] == b["stats"]


# ---- the ending line and the best mean of 20 ---------------------------------------------------


def test_a_solved_run_says_when(capsys, tmp_path):
    cfg = random_policy.Config(
        env=EnvConfig("CartPole-v1"),
        run=RunConfig(total_episodes=30, target_return=15.0, run_dir=str(tmp_path / "r"), progress="off"),
    )
    run_dir = random_policy.train(cfg)
    out = capsys.readouterr().out
    s = summary(run_dir)
    assert s["solved_at_env_step"] is not None  # a random CartPole episode averages ~22 steps
    assert (
        f"solved at env step {s['solved_at_env_step']} after {s['solved_at_seconds']:.1f} s "
        f"(mean of the last 20 returns {s['solved_mean_return_last_20']:.2f}".rstrip("0").rstrip(".")
    ) in out
    assert ">= threshold 15)" in out and f"run dir:        {run_dir}" in out
    lengths = final_lengths(run_dir)
    first_window = next(i for i in range(20, 31) if np.mean(lengths[i - 20 : i]) >= 15.0)
    assert s["solved_at_env_step"] == sum(lengths[:first_window])
    assert s["solved_mean_return_last_20"] == pytest.approx(np.mean(lengths[first_window - 20 : first_window]))


def test_an_unsolved_run_gives_its_best_mean_of_20(capsys, tmp_path):
    cfg = random_policy.Config(
        env=EnvConfig("CartPole-v1"), run=RunConfig(total_episodes=40, run_dir=str(tmp_path / "r"), progress="off")
    )
    run_dir = random_policy.train(cfg)
    out = capsys.readouterr().out
    best = max(window_means([float(x) for x in final_lengths(run_dir)]))
    assert summary(run_dir)["best_mean_return_last_20"] == pytest.approx(best)
    assert f"not solved: best mean of 20 was {best:.2f}".rstrip("0").rstrip(".") + " (threshold 475)" in out


def test_best_mean_survives_resume_and_old_checkpoints_without_it():
    rng = np.random.default_rng(0)
    returns = rng.normal(size=45).tolist()
    threshold = window_means(returns)[10]  # first reached at the 31st episode or before
    stats = EpisodeStats(0.99, threshold=threshold)
    for i, r in enumerate(returns):
        stats.add(r, 10, env_step=10 * (i + 1), seconds=float(i))
    assert stats.best_mean == pytest.approx(max(window_means(returns)))
    state = copy.deepcopy(stats.state_dict())  # as a checkpoint holds it: no list shared with the live stats

    again = EpisodeStats(0.99, threshold=threshold)
    again.load_state_dict(state)
    assert again.state_dict() == state

    old = {k: v for k, v in state.items() if k not in ("best_mean", "solved_mean")}  # a checkpoint from before
    restored = EpisodeStats(0.99, threshold=threshold)
    restored.load_state_dict(old)
    assert restored.best_mean == pytest.approx(stats.best_mean)
    assert stats.solved and restored.solved_mean == pytest.approx(stats.solved_mean)
    assert stats.solved_mean == pytest.approx(next(m for m in window_means(returns) if m >= threshold))
    # ...and the run continues identically: a new best moves both the same way.
    for s in (stats, restored):
        s.add(50.0, 10, env_step=1000, seconds=99.0)
    assert restored.best_mean == pytest.approx(stats.best_mean)
    assert stats.best_mean == pytest.approx(np.mean([*returns[-19:], 50.0]))


def test_ending_line_cases():
    assert ending_line({"episodes": 0, "solved_threshold": 1.0, "mean_return_last_20": None}) == "no episode finished"
    one = {"episodes": 1, "solved_threshold": None, "mean_return_last_20": -3.5, "best_mean_return_last_20": None}
    assert ending_line(one) == "no solved threshold (set --target-return): only 1 episode, their mean was -3.5"
