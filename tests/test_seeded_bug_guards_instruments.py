"""Guards against realistic bugs in the instruments and run bookkeeping that the other tests let
through: each test pins a hand-computed value that a specific off-by-one, swapped comparison,
missing reset or wrong denominator would change.

Found by seeding mutations into telemetry (episode statistics, summary.json), the traps and
gradient monitor, the Pong/Atari screens, run control, and the pure distributed and checkpoint
helpers, and keeping the ones no other test failed on."""

from __future__ import annotations

import io
import math
import random
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from dirtyrl.checkpoint import global_rng_state, seed_everything, set_global_rng_state
from dirtyrl.debug.gradients import GradientMonitor, grad_norms
from dirtyrl.debug.hooks import unit_alive
from dirtyrl.debug.traps import Traps, off_policy_scores
from dirtyrl.distributed import Dist, global_moments, sync_grads_and_step
from dirtyrl.envs.atari_dqn import FrameHistory, screen_from_frame
from dirtyrl.envs.pong import PongDifferenceFrames
from dirtyrl.runcontrol import EpisodeGuard, batch_share, steps_left, vpg_share_done
from dirtyrl.telemetry import EpisodeStats, RunLogger, summary_dict

# ---------------------------------------------------------------------------------------------
# Episode statistics and summary.json
# ---------------------------------------------------------------------------------------------

# Returns 1, 2, ..., 23 then 0, 0. The mean of 20 first reaches 12.5 exactly at the 22nd episode
# (returns 3..22), peaks at 13.5 at the 23rd (4..23), then the zeros pull it to 13.3 and 13.05.
RETURNS = [float(r) for r in range(1, 24)] + [0.0, 0.0]


def played(threshold: float | None = 12.5, ema_factor: float = 0.5) -> EpisodeStats:
    stats = EpisodeStats(ema_factor, threshold)
    for i, r in enumerate(RETURNS):
        stats.add(r, length=10, env_step=10 * (i + 1), seconds=i + 0.5)
    return stats


def test_the_ema_follows_every_return_with_the_given_factor():
    stats = EpisodeStats(0.75, threshold=None)
    for r in (0.0, 4.0, 8.0):
        stats.add(r, 1, env_step=1, seconds=0.0)
    # Starts at the first return, then 0.75 * old + 0.25 * new: 0 -> 1 -> 2.75. Restarting from
    # each return would give 8; weighting the new return by 0.75 would give 6.75.
    assert stats.ema == pytest.approx(2.75)


def test_summary_fields_are_the_stats_they_name():
    s = summary_dict("vpg", "CartPole-v1", 3, env_steps=250, wall_seconds=20.0, stats=played())
    assert s["episodes"] == 25
    assert s["steps_per_second"] == 12.5  # env steps per second: 250 / 20, not episodes per second
    assert s["mean_return_last_20"] == pytest.approx(13.05)  # returns 6..23, 0, 0: the LAST 20, not 19
    assert s["best_mean_return_last_20"] == pytest.approx(13.5)
    # Solved at the 22nd episode (env step 220, 21.5 s), when the mean of 20 equalled the threshold.
    assert (s["solved_at_env_step"], s["solved_at_seconds"]) == (220, 21.5)
    assert s["solved_mean_return_last_20"] == pytest.approx(12.5)
    # EMA with factor 0.5 of 1..n trails n by 1 - 0.5^(n-1): ~22 after 23; two zeros halve it twice.
    assert s["return_ema"] == pytest.approx(5.5, abs=1e-6)


def test_state_dict_round_trip_keeps_when_the_run_was_solved():
    stats = played()
    restored = EpisodeStats(0.5, threshold=12.5)
    restored.load_state_dict(stats.state_dict())
    # A resumed solved run must still say when it was solved: the ending line formats the seconds.
    assert (restored.solved_at_env_step, restored.solved_at_seconds, restored.solved_mean) == (220, 21.5, 12.5)
    assert restored.ema == pytest.approx(5.5, abs=1e-6) and restored.best_mean == pytest.approx(13.5)


def test_old_checkpoints_recompute_the_solved_mean_from_the_returns():
    state = played().state_dict()
    # Solved means the mean of 20 *reached* the threshold: the first window equal to 12.5 counts,
    # not the first one above it (13.5).
    old = {k: v for k, v in state.items() if k not in ("best_mean", "solved_mean")}
    restored = EpisodeStats(0.5, threshold=12.5)
    restored.load_state_dict(old)
    assert restored.solved_mean == pytest.approx(12.5) and restored.best_mean == pytest.approx(13.5)
    # A checkpoint that has best_mean but not solved_mean still gets its solved mean back.
    partial = {k: v for k, v in state.items() if k != "solved_mean"}
    restored = EpisodeStats(0.5, threshold=12.5)
    restored.load_state_dict(partial)
    assert restored.solved_mean == pytest.approx(12.5)
    # A run unsolved under its old threshold, resumed with 12.5 (which its old windows pass), is not
    # solved until an episode says so, so it has no solved mean yet either.
    unsolved = {**old, "solved_at_env_step": None, "solved_at_seconds": None}
    restored = EpisodeStats(0.5, threshold=12.5)
    restored.load_state_dict(unsolved)
    assert restored.solved_mean is None and not restored.solved


# ---------------------------------------------------------------------------------------------
# Gradient norms and update ratios
# ---------------------------------------------------------------------------------------------


def linear_with_grads() -> nn.Linear:
    m = nn.Linear(2, 1)
    m.weight.grad = torch.tensor([[3.0, 4.0]])  # norm 5
    m.bias.grad = torch.tensor([12.0])  # norm 12
    return m


def test_the_global_gradient_norm_is_over_every_parameter():
    # sqrt(5^2 + 12^2) = 13: not the largest per-parameter norm (12), not their sum (17).
    assert grad_norms(linear_with_grads()) == ({"weight": 5.0, "bias": 12.0}, 13.0)


class Recorder:
    """A logger that keeps the scalars: (tag, value, step)."""

    def __init__(self) -> None:
        self.scalars: list[tuple[str, float, int]] = []

    def scalar(self, tag, value, step):
        self.scalars.append((tag, float(value), step))

    def histogram(self, tag, values, step):
        pass


def test_update_ratio_is_the_step_over_the_weights_before_it():
    m = nn.Linear(2, 1)
    with torch.no_grad():
        m.weight.copy_(torch.tensor([[3.0, 4.0]]))
        m.bias.fill_(2.0)
    m.weight.grad, m.bias.grad = torch.tensor([[1.0, -1.0]]), torch.tensor([0.0])
    logger = Recorder()
    monitor = GradientMonitor(m, logger, every=2)
    monitor.after_backward(update=4, env_step=100)
    assert ("debug/global_grad_norm", pytest.approx(math.sqrt(2)), 100) in logger.scalars
    with torch.no_grad():  # the "optimizer step"
        m.weight.copy_(torch.tensor([[4.0, 3.0]]))  # moved by |(1, -1)|, norm still 5
        m.bias.fill_(3.0)  # moved by 1 from 2
    monitor.after_step()
    # |dW| / |W before the step|, at the update's env step: sqrt(2) / 5 (the norms alone did not
    # change) and 1 / 2 (over the bias after the step it would be 1 / 3).
    ratios = {tag: (value, step) for tag, value, step in logger.scalars if tag.startswith("debug/update_ratio/")}
    assert ratios == {
        "debug/update_ratio/weight": (pytest.approx(math.sqrt(2) / 5), 100),
        "debug/update_ratio/bias": (pytest.approx(0.5), 100),
    }
    count = len(logger.scalars)
    monitor.after_backward(update=5, env_step=110)  # not a monitored update (every 2)
    monitor.after_step()
    assert len(logger.scalars) == count  # no second ratio from the old copy of the weights


# ---------------------------------------------------------------------------------------------
# Traps: thresholds, windows and streaks
# ---------------------------------------------------------------------------------------------


def checks(trips) -> list[tuple[str, str]]:
    return [(t.check, t.where) for t in trips]


def test_grad_norm_trips_above_the_global_norm_not_at_it():
    m = linear_with_grads()
    assert checks(Traps(m, RunLogger(None), max_grad_norm=13.0).check_backward(0, None, None)) == []
    assert checks(Traps(m, RunLogger(None), max_grad_norm=12.9).check_backward(0, None, None)) == [("grad_norm", "model")]


def test_entropy_collapse_only_below_the_minimum_and_before_the_last_update():
    traps = Traps(linear_with_grads(), RunLogger(None), min_entropy=0.5, entropy_until=10)
    assert checks(traps.check_backward(9, None, entropy=0.4)) == [("entropy_collapse", "policy")]
    assert traps.check_backward(10, None, entropy=0.4) == []  # "before update 10": 10 itself is past it
    assert traps.check_backward(0, None, entropy=0.5) == []  # at the minimum is not below it


def test_infinite_loss_and_gradient_trip_like_nans():
    m = nn.Linear(2, 1)
    m.weight.grad = torch.tensor([[float("inf"), 0.0]])
    m.bias.grad = torch.tensor([1.0])
    trips = checks(Traps(m, RunLogger(None)).check_backward(0, torch.tensor(float("inf")), None))
    assert ("nan_loss", "loss") in trips and ("nan_grad", "weight") in trips


def test_a_zero_gradient_streak_restarts_after_a_healthy_update():
    m = nn.Linear(2, 1)
    traps = Traps(m, RunLogger(None), zero_grad_patience=2)
    for update, g in enumerate((0.0, 1.0, 0.0)):
        m.weight.grad, m.bias.grad = torch.full((1, 2), g), torch.full((1,), g)
        assert traps.check_backward(update, None, None) == []  # zero, healthy, zero: never 2 in a row


def test_frozen_parameters_never_trip_zero_grad():
    net = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
    net[0].requires_grad_(False)  # a frozen feature extractor gets no gradient by design
    traps = Traps(net, RunLogger(None), zero_grad_patience=1)
    net(torch.ones(3, 2)).sum().backward()
    assert traps.check_backward(0, None, None) == []


def test_gradients_zeroed_in_place_are_not_stale():
    net = nn.Linear(2, 1)
    traps = Traps(net, RunLogger(None))
    net(torch.ones(1, 2)).sum().backward()
    assert checks(traps.check_stale_grads()) == [("stale_grad", "weight"), ("stale_grad", "bias")]
    # zero_grad(set_to_none=False) leaves zero tensors, not None: cleared all the same.
    net.zero_grad(set_to_none=False)
    assert net.weight.grad is not None and traps.check_stale_grads() == []


def hidden_net() -> nn.Sequential:
    # Hidden units 0, 1 fire for a positive input and units 2, 3 for a negative one.
    net = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, 0.0], [1.0, 0.0], [-1.0, 0.0], [-1.0, 0.0]]))
        net[0].bias.zero_()
    return net


def dead_trips(traps: Traps, net: nn.Sequential, *signs: float) -> list[tuple[str, str]]:
    for sign in signs:  # one forward per sign, all before one check, as a multi-batch update does
        # The observation's second feature is always 0, but an observation is no hidden layer.
        net(torch.tensor([[sign, 0.0]] * 3)).sum().backward()
    return checks(traps.check_backward(0, None, None))


def test_dead_units_count_every_forward_since_the_last_check_and_only_hidden_layers():
    net = hidden_net()
    half = Traps(net, RunLogger(None), dead_fraction=0.5).attach()
    assert dead_trips(half, net, 1.0) == []  # 2 of 4 units dead: not above 0.5
    half.remove()
    traps = Traps(net, RunLogger(None), dead_fraction=0.49).attach()
    assert dead_trips(traps, net, 1.0) == [("dead_units", "2 input")]
    # Units 0, 1 alive in the first forward and 2, 3 in the second: all alive since the last check.
    assert dead_trips(traps, net, 1.0, -1.0) == []
    # ...and the next check starts afresh: units 2, 3 were dead in every forward since then.
    assert dead_trips(traps, net, 1.0) == [("dead_units", "2 input")]


def test_a_conv_unit_is_a_channel_over_every_sample_and_position():
    # Only sample 0, channel 2 fires, at one position: of the 3 channels only channel 2 is alive,
    # for (B, C, L) maps (Conv1d) as for (B, C, H, W) ones (Conv2d).
    maps = torch.zeros(2, 3, 2, 2)
    maps[0, 2, 1, 1] = 1.0
    assert unit_alive(maps).tolist() == [False, False, True]
    seq = torch.zeros(2, 3, 4)
    seq[1, 2, 0] = 1.0
    assert unit_alive(seq).tolist() == [False, False, True]


def test_off_policy_needs_32_actions_and_both_statistics():
    # Binary policy (0.9, 0.1), always the rare action: both z-scores are -sqrt(n * 0.9 / 0.1).
    logits = torch.log(torch.tensor([[0.9, 0.1]] * 32, dtype=torch.float64))
    actions = torch.ones(32, dtype=torch.long)
    assert off_policy_scores(logits, actions) == pytest.approx((-math.sqrt(288), -math.sqrt(288)))
    traps = Traps(nn.Linear(1, 1), RunLogger(None))
    assert checks(traps.check_off_policy(logits, actions)) == [("off_policy_actions", "policy")]
    assert traps.check_off_policy(logits[:31], actions[:31]) == []  # fewer than 32 steps: no test
    # A batch where only the probability statistic is extreme: never the rare action in 800
    # states of (0.5, 0.49, 0.01), the unlikely ones in 40 states of (0.8, 0.1, 0.1).
    probs = [[0.5, 0.49, 0.01]] * 800 + [[0.8, 0.1, 0.1]] * 40
    logits, actions = torch.log(torch.tensor(probs)), torch.tensor([0, 1] * 400 + [1, 2] * 20)
    z_log, z_p = off_policy_scores(logits, actions)
    assert -6 < z_log < 0 and z_p < -6
    assert traps.check_off_policy(logits, actions) == []


# ---------------------------------------------------------------------------------------------
# Run control: the long-episode warning, the cut and the step budget
# ---------------------------------------------------------------------------------------------


class Counter(gym.Env):
    """Observation = steps since reset; terminates at step ``end_at`` (never when None)."""

    observation_space = gym.spaces.Box(0.0, np.inf, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, end_at: int | None = None) -> None:
        self.end_at, self.t = end_at, 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(1, np.float32), {}

    def step(self, action):
        self.t += 1
        return np.full(1, self.t, np.float32), 0.0, self.t == self.end_at, False, {}


def test_the_warning_comes_at_exactly_the_bound_counted_from_the_reset():
    stream = io.StringIO()
    env = EpisodeGuard(Counter(), bound=3, steps_left=None, stream=stream)
    env.reset()
    env.step(0)
    env.step(0)
    env.reset()  # two short episodes of 2 steps: neither has lasted 3 steps
    env.step(0)
    env.step(0)
    assert stream.getvalue() == ""
    env.step(0)  # the 3rd step of this episode: it has now lasted 3 steps
    assert "an episode has lasted 3 steps" in stream.getvalue()


def test_an_episode_ending_on_the_bound_step_is_neither_warned_nor_cut():
    stream = io.StringIO()
    env = EpisodeGuard(Counter(end_at=3), bound=3, steps_left=0, stream=stream)
    env.reset()
    outcomes = [env.step(0)[2:4] for _ in range(3)]
    assert outcomes == [(False, False), (False, False), (True, False)] and stream.getvalue() == ""


def test_the_cut_is_a_truncation_at_the_step_that_spends_the_budget():
    env = EpisodeGuard(Counter(), bound=3, steps_left=5, stream=io.StringIO())
    env.reset()
    env.step(0)
    env.step(0)  # a short episode spends 2 of the 5 steps too
    env.reset()
    outcomes = [env.step(0)[2:4] for _ in range(3)]
    # Step 5 of the budget is the 3rd of this episode (>= the bound): cut there, as a truncation,
    # so DQN still bootstraps from it.
    assert outcomes == [(False, False), (False, False), (False, True)]


def test_steps_left_rounds_the_share_up_and_never_goes_negative():
    # 7 steps left over 2 processes: 4 each (3 each would stop the run short of its limit).
    assert steps_left(10, 3, world_size=2) == 4
    assert steps_left(100, 150) == 0  # past the limit: nothing left, not -50


def test_a_rank_counts_its_steps_once_per_worker():
    # This rank played 50 steps of the batch; with 2 workers it estimates the global count as
    # 900 + 2 * 50 = 1000, the limit, so it stops (alone it would be at 950 and go on).
    kw = {"env_steps": 900, "episodes": 0, "my_episodes": 1, "my_steps": 50, "my_position": 1}
    assert vpg_share_done(1000, None, world_size=2, **kw)
    assert not vpg_share_done(1000, None, world_size=1, **kw)


def test_batch_share_positions_count_from_the_batch_start_not_the_ranks_first_episode():
    # A batch of 5 over 2 ranks: rank 1 plays batch episodes 3 and 4. With --total-episodes 4 and
    # none before the batch, episode 3 is the run's 4th and last: rank 1 plays it and stops.
    played, indices = [], []
    run = SimpleNamespace(total_steps=None, total_episodes=4)
    for index in batch_share(3, 2, played, run, env_steps=0, episodes=0, batch_start=0, world_size=2):
        indices.append(index)
        played.append(SimpleNamespace(actions=[0] * 5))
    assert indices == [3]


# ---------------------------------------------------------------------------------------------
# Screens: Pong's difference frames, the DQN field crops, the frame history
# ---------------------------------------------------------------------------------------------


class BallScreens(gym.Env):
    """210x160 RGB Pong-like screens on the background colour, a ball pixel moving one column a step."""

    observation_space = gym.spaces.Box(0, 255, (210, 160, 3), np.uint8)
    action_space = gym.spaces.Discrete(6)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self.screen(), {}

    def step(self, action):
        self.t += 1
        return self.screen(), 0.0, False, False, {}

    def screen(self) -> np.ndarray:
        frame = np.zeros((210, 160, 3), np.uint8)
        frame[..., 0] = 144  # background red
        frame[100, 2 * (10 + self.t)] = 236  # the ball: row 33, column 10 + t of the 80x80 field
        return frame


def test_every_episode_starts_with_an_empty_difference_frame():
    env = PongDifferenceFrames(BallScreens(), actions=3)
    obs, _ = env.reset()
    assert not obs.any()
    obs, *_ = env.step(0)
    assert obs[33, 11] == 1 and obs[33, 10] == -1  # the ball moved one column
    for _ in range(5):
        env.step(0)
    obs, _ = env.reset()  # the last frame of the previous episode is no "previous frame" of this one
    assert not obs.any()


def test_pong_field_screens_are_the_seeds_crop_channels_first():
    # Rows 34, 36, ..., 192 and columns 0, 2, ..., 158: raw (34, 0) is field (0, 0), raw (192, 158)
    # is (79, 79); odd rows and columns and the score bar above row 34 are dropped.
    gray = np.zeros((210, 160), np.uint8)
    gray[34, 0], gray[192, 158], gray[35, 4], gray[33, 6], gray[100, 7] = 1, 2, 3, 4, 5
    out = screen_from_frame(gray, "gray80", pong_field=True)
    assert out.shape == (1, 80, 80)
    assert sorted(zip(*np.nonzero(out[0]), strict=True)) == [(0, 0), (79, 79)]
    assert (out[0, 0, 0], out[0, 79, 79]) == (1, 2)
    rgb = np.zeros((210, 160, 3), np.uint8)
    rgb[34, 2, 1] = 9  # green, field row 0, column 1
    out = screen_from_frame(rgb, "rgb80", pong_field=True)
    assert out.shape == (3, 80, 80) and out[1, 0, 1] == 9 and out.sum() == 9  # (channel, row, column)


class Frames(gym.Env):
    """Two-channel (2, 1) frames, both channels equal to the step count since reset (10 at reset)."""

    observation_space = gym.spaces.Box(0.0, 100.0, (2, 1), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 10
        return np.full((2, 1), self.t, np.float32), {}

    def step(self, action):
        self.t += 1
        return np.full((2, 1), self.t, np.float32), 0.0, False, False, {}


def test_frame_history_shifts_whole_frames_and_zero_pads_every_episode():
    env = FrameHistory(Frames(), 3)
    obs, _ = env.reset()
    assert obs[:, 0].tolist() == [0, 0, 0, 0, 10, 10]  # k=3 frames of 2 channels, oldest first
    obs, *_ = env.step(0)
    assert obs[:, 0].tolist() == [0, 0, 10, 10, 11, 11]  # one whole frame (2 channels) shifts out
    env.step(0)
    obs, _ = env.reset()  # the new episode's history is zeros, not the last episode's frames
    assert obs[:, 0].tolist() == [0, 0, 0, 0, 10, 10]


# ---------------------------------------------------------------------------------------------
# Distributed helpers with the collectives standing in for a second rank
# ---------------------------------------------------------------------------------------------


class NoStep:
    def step(self) -> None:
        pass


@pytest.mark.parametrize("sync", ["allreduce", "reduce-broadcast"])
def test_mean_reduction_averages_the_gradients_over_the_world_size(monkeypatch, sync):
    other = torch.tensor([3.0, 6.0])  # rank 1's gradient (weight, bias)

    def add_other(tensor, *args, **kwargs):
        tensor += other  # what a SUM over two ranks leaves on rank 0

    monkeypatch.setattr(torch.distributed, "all_reduce", add_other)
    monkeypatch.setattr(torch.distributed, "reduce", add_other)
    monkeypatch.setattr(torch.distributed, "broadcast", lambda *a, **k: None)
    model = nn.Linear(1, 1)
    model.weight.grad, model.bias.grad = torch.tensor([[1.0]]), torch.tensor([2.0])
    sync_grads_and_step(Dist(rank=0, world_size=2, backend="gloo"), model, NoStep(), sync, "mean")
    # ((1, 2) + (3, 6)) / 2 ranks = (2, 4); "sum" would leave (4, 8).
    assert (model.weight.grad.item(), model.bias.grad.item()) == (2.0, 4.0)


def test_global_moments_of_two_ranks_with_the_same_values_are_the_one_rank_moments(monkeypatch):
    def double(tensor, *args, **kwargs):
        tensor *= 2  # the other rank holds the same values: every sum doubles

    monkeypatch.setattr(torch.distributed, "all_reduce", double)
    values = np.array([1.0, 2.0, 3.0, 4.0])
    # Mean 2.5, population std sqrt(1.25), over 8 values: the sample std (n - 1) or a mean over
    # ranks instead of values would differ.
    expected = (2.5, pytest.approx(math.sqrt(1.25)), 8)
    assert global_moments(Dist(rank=0, world_size=2, backend="gloo"), values) == expected
    assert global_moments(Dist(), values) == (2.5, pytest.approx(math.sqrt(1.25)), 4)


# ---------------------------------------------------------------------------------------------
# Checkpoint RNG states
# ---------------------------------------------------------------------------------------------


def draws() -> tuple[float, float, float]:
    return random.random(), float(np.random.random()), float(torch.rand(1))


def test_global_rng_state_round_trip_restores_every_generator():
    state = global_rng_state()
    first = draws()
    set_global_rng_state(state)
    assert draws() == first  # python, numpy and torch all replay the same draws


def test_seed_everything_seeds_every_generator():
    before = global_rng_state()  # put back afterwards: later tests keep their own random stream
    seed_everything(123)
    first = draws()
    draws()
    seed_everything(123)
    again = draws()
    set_global_rng_state(before)
    assert again == first  # python, numpy and torch all restarted from the seed
