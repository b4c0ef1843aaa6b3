"""The gallery of mistakes (docs/mistakes.md): each classic bug, patched into the real code, must
make the doctor (or the traps) fail and name the broken part.

Each test runs only the probe or self-test that the gallery says catches the bug, so the whole
file stays within a couple of minutes. The doctor's tables for the unchanged code are proved
clean in tests/test_debug_doctor.py.
"""

import numpy as np
import pytest
import torch

from dirtyrl import doctor
from dirtyrl.algos import dqn, vpg
from dirtyrl.buffers import Batch, FrameReplayBuffer
from dirtyrl.config import DebugConfig, EnvConfig, RunConfig
from dirtyrl.debug import TrapTripped


@pytest.fixture(autouse=True)
def quiet(capsys):
    yield
    capsys.readouterr()  # the algorithms' own "run dir: ..." lines


def failed(results, check):
    (row,) = [r for r in results if r.check == check]
    assert not row.passed, doctor.format_table(results)
    return row.suspect


def first_cause(suspect):
    return suspect.split(";")[0]


# ---- 1. bootstrapping through a terminal state -------------------------------------------------


def test_bootstrapping_through_terminal_is_named_done_masking(tmp_path, monkeypatch):
    real = dqn.td_target
    monkeypatch.setattr(
        dqn, "td_target", lambda r, next_q, terminated, gamma: real(r, next_q, torch.zeros_like(terminated), gamma)
    )
    results = doctor.run_doctor(["dqn"], tmp_path, probes=[1], selftests=["dqn td loss"])
    assert "bootstrapping through terminal" in first_cause(failed(results, "probe 1"))
    assert "bootstrapping through terminal" in first_cause(failed(results, "dqn td loss"))


@pytest.mark.slow  # the probe alone, without the self-test that names it first (~8 s)
def test_bootstrapping_through_terminal_alone_shows_as_q_equal_r_over_one_minus_gamma(tmp_path, monkeypatch):
    real = dqn.td_target
    monkeypatch.setattr(
        dqn, "td_target", lambda r, next_q, terminated, gamma: real(r, next_q, torch.zeros_like(terminated), gamma)
    )
    results = doctor.run_doctor(["dqn"], tmp_path, probes=[1])
    cause = first_cause(failed(results, "probe 1"))
    assert cause.startswith("done masking / bootstrapping through terminal") and "r/(1-gamma)" in cause


# ---- 2. a time-limit truncation treated as terminal ------------------------------------------------


def test_truncation_stored_as_terminal_is_named(tmp_path, monkeypatch):
    real = FrameReplayBuffer.add

    def add(self, action, reward, next_frame, terminated, truncated):  # the bug: done = terminated or truncated
        real(self, action, reward, next_frame, terminated or truncated, truncated)

    monkeypatch.setattr(FrameReplayBuffer, "add", add)
    results = doctor.run_doctor(["dqn"], tmp_path, probes=[8])
    assert "truncation treated as terminal" in first_cause(failed(results, "probe 8"))


def test_truncation_masked_in_the_td_target_is_named(tmp_path, monkeypatch):
    real = dqn.td_loss

    def td_loss(q, target, batch, rows, cfg, device):
        return real(q, target, batch._replace(terminated=batch.terminated | batch.truncated), rows, cfg, device)

    monkeypatch.setattr(dqn, "td_loss", td_loss)
    results = doctor.run_doctor(["dqn"], tmp_path, probes=[8], selftests=["dqn td loss"])
    assert "truncation treated as terminal" in first_cause(failed(results, "probe 8"))
    assert "truncation treated as terminal" in first_cause(failed(results, "dqn td loss"))


# ---- 3. acting on a stale observation ---------------------------------------------------------------


def test_dqn_acting_on_the_previous_observation_is_named_stale(tmp_path, monkeypatch):
    real, last = dqn.greedy_action, {}

    def greedy_action(q, obs, device, cfg):  # the bug: acts on the observation before this one
        previous = last.get("obs", obs)
        last["obs"] = obs
        return real(q, previous, device, cfg)

    monkeypatch.setattr(dqn, "greedy_action", greedy_action)
    results = doctor.run_doctor(["dqn"], tmp_path, probes=[6])
    assert "stale observation" in first_cause(failed(results, "probe 6"))


def test_vpg_acting_on_the_previous_observation_is_named_stale(tmp_path, monkeypatch):
    real, last = vpg.Actor.encode, {}

    def encode(self, obs):  # the bug: the step's observation is the previous one (obs = next_obs one line late)
        previous = last.get("obs", obs)
        last["obs"] = obs
        return real(self, previous)

    monkeypatch.setattr(vpg.Actor, "encode", encode)
    results = doctor.run_doctor(["vpg"], tmp_path, probes=[6], selftests=["vpg acting"])
    assert "stale observation" in first_cause(failed(results, "probe 6"))
    assert "stale observation" in first_cause(failed(results, "vpg acting"))


# ---- 4. credit assigned to the wrong time step ----------------------------------------------------------


def test_rewards_to_go_shifted_one_step_is_named_credit_in_time(tmp_path, monkeypatch):
    real = vpg.rewards_to_go
    monkeypatch.setattr(
        vpg, "rewards_to_go", lambda r, g, reset_on_nonzero=False: np.append(real(r, g, reset_on_nonzero)[1:], 0.0)
    )
    results = doctor.run_doctor(["vpg"], tmp_path, probes=[4], selftests=["vpg advantages"])
    assert "wrong time step" in first_cause(failed(results, "probe 4"))  # G = 0 on a one-step episode
    assert "wrong time step" in first_cause(failed(results, "vpg advantages"))


def test_rewards_summed_forward_in_time_is_named_credit_in_time(tmp_path, monkeypatch):
    monkeypatch.setattr(vpg, "rewards_to_go", lambda r, g, reset_on_nonzero=False: np.cumsum(r))
    results = doctor.run_doctor(["vpg"], tmp_path, probes=[7])  # the probe's own signature: only probe 7 fails
    assert "wrong time step" in first_cause(failed(results, "probe 7"))
    results = doctor.run_doctor(["vpg"], tmp_path / "again", probes=[], selftests=["vpg advantages"])
    assert "summed forward" in first_cause(failed(results, "vpg advantages"))


def test_reward_stored_one_step_late_in_the_replay_buffer_is_named(tmp_path, monkeypatch):
    real, held = FrameReplayBuffer.add, {}

    def add(self, action, reward, next_frame, terminated, truncated):  # the bug: the previous step's reward
        previous = held.get(id(self), 0.0)
        held[id(self)] = reward
        real(self, action, previous, next_frame, terminated, truncated)

    monkeypatch.setattr(FrameReplayBuffer, "add", add)
    results = doctor.run_doctor(["dqn"], tmp_path, probes=[7], selftests=["replay buffer"])
    assert "wrong time step" in first_cause(failed(results, "probe 7"))
    assert "reward" in first_cause(failed(results, "replay buffer"))


# ---- 5. frame history leaking across an episode boundary ------------------------------------------------


def leaky_gather(self, idx):
    """FrameReplayBuffer.gather without the zero-fill before an episode's reset frame (the bug)."""
    k = self.history
    back = np.arange(k, -1, -1)
    frames = self.frames[(idx[:, None] - back[None, :]) % self.capacity]
    shape = (len(idx), k * self.frame_shape[0], *self.frame_shape[1:])
    return Batch(
        frames[:, :k].reshape(shape),
        self.actions[idx].astype(np.int64),
        self.rewards[idx],
        frames[:, 1:].reshape(shape),
        self.terminated[idx],
        self.truncated[idx],
        idx,
    )


def test_frame_history_leaking_across_episodes_is_named(tmp_path, monkeypatch):
    monkeypatch.setattr(FrameReplayBuffer, "gather", leaky_gather)
    results = doctor.run_doctor(["dqn"], tmp_path, probes=[9], selftests=["replay buffer"])
    assert "frame history" in first_cause(failed(results, "probe 9"))
    assert "across an episode boundary" in first_cause(failed(results, "replay buffer"))


@pytest.mark.slow  # the probe alone, without the self-test that names it first (~8 s)
def test_frame_history_leak_alone_fails_the_history_probe(tmp_path, monkeypatch):
    monkeypatch.setattr(FrameReplayBuffer, "gather", leaky_gather)
    results = doctor.run_doctor(["dqn"], tmp_path, probes=[9])
    assert "frame history" in first_cause(failed(results, "probe 9"))


# ---- 6. gradients left uncleared between updates (the traps, on a CartPole run) ---------------------------


def test_dqn_gradients_never_cleared_stop_a_cartpole_run(tmp_path, monkeypatch):
    real = dqn.make_optimizer

    def make_optimizer(cfg, params):
        optimizer = real(cfg, params)
        optimizer.zero_grad = lambda set_to_none=True: None  # the bug
        return optimizer

    monkeypatch.setattr(dqn, "make_optimizer", make_optimizer)
    cfg = dqn.Config(
        env=EnvConfig(env="CartPole-v1"),
        run=RunConfig(total_steps=700, run_dir=str(tmp_path / "run"), progress="off"),
        debug=DebugConfig(trap="stop"),
    )
    with pytest.raises(TrapTripped) as info:
        dqn.train(cfg)
    assert info.value.trips[0].check == "stale_grad" and "zero_grad" in str(info.value)


# ---- 7. a flipped sign, and 8. a wrong action index ---------------------------------------------------------


def test_vpg_flipped_advantage_sign_is_named_a_flipped_sign(tmp_path, monkeypatch):
    real = vpg.episode_advantages
    monkeypatch.setattr(vpg, "episode_advantages", lambda *a: -real(*a))
    results = doctor.run_doctor(["vpg"], tmp_path, probes=[4], selftests=["vpg advantages", "vpg loss"])
    assert "flipped sign" in first_cause(failed(results, "probe 4"))


def test_vpg_wrong_action_index_in_the_loss_is_named_action_indexing(tmp_path, monkeypatch):
    real = vpg.batched_backward

    def batched_backward(policy, episodes, adv, *rest):  # the bug: log pi of the other action
        n = policy.fc2.out_features
        shifted = [vpg.Episode(ep.obs, [(a + 1) % n for a in ep.actions], ep.rewards, []) for ep in episodes]
        return real(policy, shifted, adv, *rest)

    monkeypatch.setattr(vpg, "batched_backward", batched_backward)
    results = doctor.run_doctor(["vpg"], tmp_path, probes=[4], selftests=["vpg loss"])
    assert first_cause(failed(results, "probe 4")).startswith("action indexing")
    assert "flipped sign" not in failed(results, "probe 4").split(";")[0]


def test_dqn_wrong_action_index_is_named_action_indexing(tmp_path, monkeypatch):
    real = dqn.td_loss

    def td_loss(q, target, batch, rows, cfg, device):  # the bug: Q of the next action over
        n = int(q(torch.from_numpy(batch.obs[:1]).to(device)).shape[1])
        return real(q, target, batch._replace(actions=(batch.actions + 1) % n), rows, cfg, device)

    monkeypatch.setattr(dqn, "td_loss", td_loss)
    results = doctor.run_doctor(["dqn"], tmp_path, probes=[1, 4])
    assert first_cause(failed(results, "probe 4")).startswith("action indexing")


# ---- 9. actions never sampled from the policy -------------------------------------------------------------------


def test_vpg_greedy_acting_is_named_an_acting_bug_not_a_loss_bug(tmp_path, monkeypatch):
    monkeypatch.setattr(vpg, "sample", lambda p, rng: int(np.argmax(p)))  # the bug: argmax instead of a sample
    results = doctor.run_doctor(["vpg"], tmp_path, probes=[4])
    cause = first_cause(failed(results, "probe 4"))
    assert cause.startswith("acting") and "not samples of" in cause


# ---- 10-12. the data paths: returns, preprocessing, the ignored discount ------------------------------------------


def test_rewards_to_go_without_discount_fail_their_self_test(monkeypatch):
    from dirtyrl import returns

    real = returns.rewards_to_go
    monkeypatch.setattr(returns, "rewards_to_go", lambda r, gamma, reset_on_nonzero=False: real(r, 1.0, reset_on_nonzero))
    results = doctor.vpg_checks(vpg.train, None, 1, probes=[], selftests=["rewards-to-go"])
    assert "rewards_to_go" in failed(results, "rewards-to-go")


def test_pong_crop_off_by_one_row_fails_the_frames_self_test(monkeypatch):
    from dirtyrl.envs import pong

    monkeypatch.setattr(pong, "FIELD_TOP", pong.FIELD_TOP + 1)
    results = doctor.vpg_checks(vpg.train, None, 1, probes=[], selftests=["pong frames"])
    assert "Pong preprocessing" in failed(results, "pong frames")


def test_dqn_ignoring_the_discount_is_named(tmp_path, monkeypatch):
    real = dqn.td_target
    monkeypatch.setattr(dqn, "td_target", lambda rewards, next_q, terminated, gamma: real(rewards, next_q, terminated, 1.0))
    results = doctor.run_doctor(["dqn"], tmp_path, probes=[3], selftests=["dqn td loss"])
    assert "discount is ignored" in first_cause(failed(results, "probe 3"))


# ---- 19. advantages standardised without an epsilon -------------------------------------------------------------


def test_advantages_standardised_without_an_epsilon_are_named(tmp_path, monkeypatch):
    from dirtyrl import distributed

    def episode_advantages(episodes, gamma, pong, standardize, dist):  # vpg.episode_advantages, the epsilon removed
        returns = np.concatenate([vpg.rewards_to_go(np.array(ep.rewards), gamma, pong) for ep in episodes])
        mean, std, _ = distributed.global_moments(dist, returns)
        return (returns - mean) / std if standardize else returns - mean

    assert doctor.run_doctor(["vpg"], tmp_path / "real", probes=[1])[0].passed  # the real code: 0 / (0 + 1e-8) = 0
    monkeypatch.setattr(vpg, "episode_advantages", episode_advantages)
    with np.errstate(invalid="ignore"):  # 0 / 0, the bug
        results = doctor.run_doctor(["vpg"], tmp_path / "bug", probes=[1])
    cause = first_cause(failed(results, "constant return"))
    assert cause.startswith(
        "advantages standardised without an epsilon: (G - mean) / std is NaN when every return in a batch is equal"
    )


# ---- 20. rewards-to-go reversed in time -------------------------------------------------------------------------


def test_rewards_to_go_reversed_in_time_are_named(tmp_path, monkeypatch):
    real = vpg.rewards_to_go
    monkeypatch.setattr(vpg, "rewards_to_go", lambda r, g, reset_on_nonzero=False: real(r, g, reset_on_nonzero)[::-1])
    results = doctor.run_doctor(["vpg"], tmp_path, probes=[7, 10])
    assert next(r for r in results if r.check == "probe 7").passed  # one reward, at the end: every G_t > 0 either way
    assert failed(results, "probe 10").startswith("credit assigned to the wrong time step (probe 10 wrong at step 0)")
    assert "rewards-to-go reversed" in first_cause(failed(results, "probe 10"))
