"""DQN: probes, TD targets through the real loss, exact resume, the two-thread learner, Pong smoke."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from dirtyrl.algos import dqn
from dirtyrl.buffers import Batch
from dirtyrl.config import EnvConfig, RunConfig
from dirtyrl.errors import UserError
from dirtyrl.qnets import make_qnet

# Small, quick settings for the one-step probes: a tiny MLP, short heat-up and schedule.
PROBE = {
    "hidden": [32],
    "lr": 3e-3,
    "batch_size": 32,
    "buffer_size": 2000,
    "learning_starts": 100,
    "target_update_every": 50,
    "tau": 1.0,
    "train_every": 1,
    "eps_decay_steps": 500,
    "eps_end": 0.1,
    "double": False,
}


def config(tmp_path, env="CartPole-v1", name="run", **kw) -> dqn.Config:
    run_kw = {k: kw.pop(k) for k in list(kw) if k in RunConfig.__dataclass_fields__}
    run = RunConfig(run_dir=str(tmp_path / name), progress="off", **run_kw)
    return dqn.Config(env=EnvConfig(env=env), run=run, **kw)


def trained_q(run_dir, obs_dim: int, n_actions: int, hidden) -> nn.Module:
    state = torch.load(run_dir / "checkpoints" / "latest.pt", weights_only=False)
    q = make_qnet("mlp", (obs_dim,), n_actions, hidden=tuple(hidden))
    q.load_state_dict(state["learner"]["online"])
    return q


def q_at(q: nn.Module, *observations: float) -> np.ndarray:
    with torch.no_grad():
        return q(torch.tensor([[o] for o in observations], dtype=torch.float32)).numpy()


def test_probe1_constant_reward_value_is_one(tmp_path):
    run_dir = dqn.train(config(tmp_path, "dirtyrl/Probe1-v0", total_steps=600, **PROBE))
    assert q_at(trained_q(run_dir, 1, 1, [32]), 0.0)[0, 0] == pytest.approx(1.0, abs=0.05)


def test_probe2_value_follows_the_observation(tmp_path):
    run_dir = dqn.train(config(tmp_path, "dirtyrl/Probe2-v0", total_steps=1000, **PROBE))
    values = q_at(trained_q(run_dir, 1, 1, [32]), -1.0, 1.0)[:, 0]
    np.testing.assert_allclose(values, [-1.0, 1.0], atol=0.1)


def test_probe3_two_step_discounting_reaches_gamma(tmp_path):
    run_dir = dqn.train(config(tmp_path, "dirtyrl/Probe3-v0", total_steps=2000, gamma=0.9, **PROBE))
    q0, q1 = q_at(trained_q(run_dir, 1, 1, [32]), 0.0, 1.0)[:, 0]
    assert q1 == pytest.approx(1.0, abs=0.05)
    assert q0 == pytest.approx(0.9, abs=0.05)  # gamma * 1: the reward one step later, discounted once


@pytest.mark.parametrize("probe, obs", [("dirtyrl/Probe4-v0", [0.0]), ("dirtyrl/Probe5-v0", [-1.0, 1.0])])
def test_action_probes_pick_the_rewarded_action(tmp_path, probe, obs):
    run_dir = dqn.train(config(tmp_path, probe, total_steps=1500, **PROBE))
    values = q_at(trained_q(run_dir, 1, 2, [32]), *obs)
    if probe.endswith("4-v0"):
        np.testing.assert_allclose(values[0], [1.0, -1.0], atol=0.1)
    else:  # reward +1 for action 1 when obs > 0, for action 0 when obs < 0
        np.testing.assert_allclose(values, [[1.0, -1.0], [-1.0, 1.0]], atol=0.1)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["mean_return_last_20"] >= 0.6  # epsilon 0.1 still explores


class ConstantQ(nn.Module):
    """Q(s, .) = the given row for every state: the TD target becomes hand-computable."""

    def __init__(self, values: list[float]) -> None:
        super().__init__()
        self.values = nn.Parameter(torch.tensor(values))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.values.expand(len(x), -1)


def test_td_loss_bootstraps_through_truncation_not_termination():
    cfg = dqn.resolve(dqn.Config(batch_size=3, loss="mse", gamma=0.5, double=False, learning_starts=3))
    q, target = ConstantQ([0.0, 0.0]), ConstantQ([4.0, 2.0])  # max_a' Q_target = 4
    batch = Batch(
        obs=np.zeros((3, 1), np.float32),
        actions=np.zeros(3, np.int64),
        rewards=np.array([1.0, 1.0, 1.0], np.float32),
        next_obs=np.zeros((3, 1), np.float32),
        terminated=np.array([False, True, False]),
        truncated=np.array([True, False, False]),
        indices=np.arange(3),
    )
    loss, _, _ = dqn.td_loss(q, target, batch, slice(None), cfg, torch.device("cpu"))
    # targets: truncated 1 + 0.5 * 4 = 3; terminated 1; ordinary 3. Q = 0, so mse = (9 + 1 + 9) / 3.
    assert float(loss.detach()) == pytest.approx(19 / 3)
    half, _, _ = dqn.td_loss(q, target, batch, slice(0, 2), cfg, torch.device("cpu"))
    assert float(half.detach()) == pytest.approx(10 / 3)  # a share is divided by the full batch: shares add up


def final_state(run_dir) -> dict:
    return torch.load(run_dir / "checkpoints" / "latest.pt", weights_only=False)


CARTPOLE = {
    "hidden": [32, 32],
    "learning_starts": 200,
    "buffer_size": 600,
    "batch_size": 32,
    "eps_decay_steps": 800,
    "target_update_every": 100,
    "tau": 1.0,
    "checkpoint_every": 40,
}


@pytest.mark.parametrize(
    "extra",
    [{}, pytest.param({"n_step": 3}, marks=pytest.mark.slow), {"n_step": 3, "prioritized": True, "per_beta_steps": 1000}],
    ids=["one-step", "3-step", "prioritized"],
)
def test_exact_resume_with_checkpoint_replay(tmp_path, extra):
    straight = dqn.train(config(tmp_path, name="straight", total_steps=1500, checkpoint_replay=True, **CARTPOLE, **extra))
    first = dqn.train(config(tmp_path, name="stopped", total_steps=700, checkpoint_replay=True, **CARTPOLE, **extra))
    assert final_state(first)["counters"]["env_step"] < final_state(straight)["counters"]["env_step"]
    resumed = dqn.train(
        config(
            tmp_path,
            name="stopped",
            total_steps=1500,
            checkpoint_replay=True,
            resume=str(first / "checkpoints" / "latest.pt"),
            **CARTPOLE,
            **extra,
        )
    )
    a, b = final_state(straight), final_state(resumed)
    assert a["counters"] == b["counters"] | {"wall_before": a["counters"]["wall_before"]}
    assert a["stats"]["returns"] == b["stats"]["returns"]
    assert a["learner"]["updates"] == b["learner"]["updates"]
    for key in ("online", "target"):
        for name, tensor in a["learner"][key].items():
            assert torch.equal(tensor, b["learner"][key][name]), (key, name)
    assert a["rng"] == b["rng"]
    if extra.get("prioritized"):
        saved = [np.load(run / "checkpoints" / "replay" / "priorities.npy") for run in (straight, resumed)]
        np.testing.assert_array_equal(*saved)
        assert len(np.unique(saved[0])) > 100, "the priorities were never updated from TD errors"


def test_resume_without_replay_refills_before_learning(tmp_path, capsys):
    first = dqn.train(config(tmp_path, total_steps=300, **CARTPOLE))
    updates = final_state(first)["learner"]["updates"]
    dqn.train(config(tmp_path, total_steps=450, resume=str(first / "checkpoints" / "latest.pt"), **CARTPOLE))
    assert "learning pauses for 200 steps" in capsys.readouterr().out
    state = final_state(first)
    c = state["counters"]
    assert c["learn_from"] >= 300 + 200
    # at most one update per step after the refill since the resume
    assert state["learner"]["updates"] - updates <= max(0, c["env_step"] - c["learn_from"] + 1)


def test_same_seed_same_parameters(tmp_path):
    runs = [dqn.train(config(tmp_path, name=f"r{i}", total_steps=400, **CARTPOLE)) for i in range(2)]
    a, b = (final_state(r)["learner"]["online"] for r in runs)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_two_thread_learner_learns_the_action_probe(tmp_path):
    run_dir = dqn.train(config(tmp_path, "dirtyrl/Probe4-v0", total_steps=1500, learner_threads=2, **PROBE))
    np.testing.assert_allclose(q_at(trained_q(run_dir, 1, 2, [32]), 0.0)[0], [1.0, -1.0], atol=0.1)


def test_pong_smoke_with_the_seed_network(tmp_path):
    """The Atari path end to end: one episode of Pong with the seed's small Q-network."""
    run_dir = dqn.train(
        config(
            tmp_path,
            "pong",
            total_steps=50,
            net="seed",
            buffer_size=2000,
            learning_starts=200,
            batch_size=8,
            train_every=8,
            noop_max=5,
        )
    )
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["episodes"] == 1 and -21 <= summary["mean_return_last_20"] <= 21
    state = final_state(run_dir)
    assert state["learner"]["updates"] > 0 and state["config"]["net"] == "seed"


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"batch_size": 64, "buffer_size": 32}, "larger than --buffer-size"),
        ({"lr": -1e-3}, "--lr must be > 0"),
        ({"gamma": 1.5}, "--gamma must be in [0, 1]"),
        ({"tau": 0.0}, "--tau 0"),
        ({"learning_starts": 10, "batch_size": 32}, "--learning-starts 10"),
        ({"net": "nature"}, "image observations"),
        ({"batch_norm": True, "learner_threads": 2}, "--batch-norm"),
    ],
)
def test_bad_numbers_are_user_errors(tmp_path, kw, message):
    with pytest.raises(UserError, match=message.replace("[", r"\[").replace("]", r"\]")):
        dqn.train(config(tmp_path, total_steps=10, **kw))
