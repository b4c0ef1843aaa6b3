"""The doctor judges what an outside agent *does*: the env witness records every training episode
it plays, the gradient witness every gradient and optimizer step. Bugs are seeded one at a time
into copies of the examples (as a person would write them), and each is caught and named, whether
or not the agent reports its own ``episode_returns``; the clean examples and Stable-Baselines3
(a trusted third-party implementation) pass with no finding.
"""

import sys
from pathlib import Path

import numpy as np
import pytest

from dirtyrl import doctor
from dirtyrl.algos import dqn
from dirtyrl.doctor.user import agent_results
from seeding import seeded_agent, seeded_source

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/sb3_agents.py
NO_RETURNS = [  # the same agents, without the optional episode_returns
    ("        self.episode_returns: list[float] = []\n", ""),
    ("            agent.episode_returns.append(sum(rewards))\n", ""),
    ("            agent.episode_returns.append(episode_return)\n", ""),
]


def seeded(tmp_path, monkeypatch, example, edits, name, reports=True):
    """``seeded_agent``, and without ``reports`` also without the optional episode_returns."""
    text = seeded_source(example, [])
    edits = list(edits) + ([] if reports else [e for e in NO_RETURNS if e[0] in text])
    spec = seeded_agent(tmp_path, monkeypatch, example, edits, name)
    assert reports == ("episode_returns.append" in (tmp_path / f"{name}.py").read_text())
    return spec


def rows(results):
    return {r.check: r for r in results}


@pytest.mark.parametrize("reports", [True, False])
def test_clean_examples_pass_every_row_with_and_without_reported_returns(tmp_path, monkeypatch, reports):
    spec = seeded(tmp_path, monkeypatch, "reinforce", [], f"reinforce_clean_{reports}", reports)
    results = agent_results(spec, 3000, 1, [4, 6])
    assert all(r.passed for r in results), doctor.format_table(results)
    assert {"gradients", "acting"} <= set(rows(results))
    assert rows(results)["probe 6"].data["train_return"] == pytest.approx(4.0, abs=0.5)  # read from the env record


@pytest.mark.parametrize("reports", [True, False])
def test_reinforce_acting_on_the_first_observation_is_named_with_the_observation(tmp_path, monkeypatch, reports):
    spec = seeded(
        tmp_path, monkeypatch, "reinforce", [("                obs = next_obs\n", "")], f"r_stale_{reports}", reports
    )
    results = rows(agent_results(spec, 3000, 1, [6]))
    assert not results["probe 6"].passed
    assert results["probe 6"].suspect.startswith("acting on a stale observation")
    assert "follow the first observation" in results["acting"].suspect


def test_reinforce_gradients_never_cleared_are_measured_and_named(tmp_path, monkeypatch):
    spec = seeded(tmp_path, monkeypatch, "reinforce", [("        optimizer.zero_grad()\n", "")], "r_no_zero", False)
    results = rows(agent_results(spec, 3000, 1, [4, 6]))
    grads = results["gradients"]
    assert not grads.passed and "stale_grad" in grads.measured and "carried over in 100% of updates" in grads.measured
    assert grads.suspect.startswith("gradients carried over from the previous update")


@pytest.mark.parametrize("reports", [True, False])
def test_reinforce_argmax_acting_is_named_not_sampling(tmp_path, monkeypatch, reports):
    edit = ("        return int(self.rng.choice(len(p), p=p / p.sum()))", "        return int(np.argmax(p))")
    spec = seeded(tmp_path, monkeypatch, "reinforce", [edit], f"r_argmax_{reports}", reports)
    results = rows(agent_results(spec, 3000, 1, [4]))
    assert not results["probe 4"].passed and not results["acting"].passed
    assert results["probe 4"].suspect.startswith("acting: the actions played are not samples")


def test_cleanrl_dqn_gradients_never_cleared_are_named_as_such_not_as_wiring(tmp_path, monkeypatch):
    spec = seeded(tmp_path, monkeypatch, "dqn_cleanrl", [("            optimizer.zero_grad()\n", "")], "d_no_zero")
    results = agent_results(spec, 3000, 1, [2, 3])
    failed = [r for r in results if not r.passed]
    assert failed, doctor.format_table(results)
    for r in failed:
        assert r.suspect.startswith("gradients carried over from the previous update"), r.suspect


@pytest.mark.parametrize("reports", [True, False])
def test_cleanrl_dqn_acting_on_the_previous_observation_is_named(tmp_path, monkeypatch, reports):
    edits = [
        ("else agent.act(obs)", "else agent.act(prev_obs)"),
        ("    obs, _ = env.reset(seed=seed)\n", "    obs, _ = env.reset(seed=seed)\n    prev_obs = obs\n"),
        ("        obs = next_obs\n", "        prev_obs, obs = obs, next_obs\n"),
    ]
    spec = seeded(tmp_path, monkeypatch, "dqn_cleanrl", edits, f"d_prev_{reports}", reports)
    results = rows(agent_results(spec, 3000, 1, [6]))
    assert not results["probe 6"].passed
    assert "follow the previous observation" in results["probe 6"].suspect


def test_cleanrl_dqn_exploration_schedule_run_backwards_is_named(tmp_path, monkeypatch):
    edit = (
        "epsilon = max(0.05, 1.0 - step / (0.5 * steps))",
        "epsilon = min(1.0, 0.05 + step / (0.5 * steps))",  # the bug: from greedy to random
    )
    spec = seeded(tmp_path, monkeypatch, "dqn_cleanrl", [edit], "d_backwards")
    results = rows(agent_results(spec, 3000, 1, [6]))
    assert not results["probe 6"].passed
    assert results["probe 6"].suspect.startswith("exploration runs backwards")


def test_own_dqn_with_a_target_network_that_never_moves_is_named(tmp_path, monkeypatch):
    monkeypatch.setattr(dqn, "polyak_update", lambda target, online, tau: None)  # the bug: the copy never happens
    results = doctor.run_doctor(["dqn"], tmp_path, probes=[3, 8])
    failed = [r for r in results if not r.passed]
    assert failed, doctor.format_table(results)
    assert all(r.suspect.startswith("the target network never moves") for r in failed if r.check.startswith("probe"))


def test_own_dqn_with_exploration_that_ends_at_random_is_named(tmp_path, monkeypatch):
    real = dqn.epsilon_at
    monkeypatch.setattr(dqn, "epsilon_at", lambda step, kind, start, end, duration: real(step, kind, end, start, duration))
    results = rows(doctor.run_doctor(["dqn"], tmp_path, probes=[6]))
    assert not results["probe 6"].passed
    assert "random late in training" in results["probe 6"].suspect


def test_stable_baselines3_passes_with_no_false_alarm():
    """A trusted implementation (tests/sb3_agents.py): PPO on the policy probes, DQN on value probes."""
    pytest.importorskip("stable_baselines3")
    results = agent_results("sb3_agents:make_ppo", 3000, 1, [5, 6]) + agent_results("sb3_agents:make_dqn", 3000, 1, [3, 6])
    assert all(r.passed for r in results), doctor.format_table(results)
    assert np.mean([r.seconds for r in results]) < 60


def test_reinforce_with_a_layer_left_out_of_the_optimizer_is_named(tmp_path, monkeypatch):
    edit = ("torch.optim.Adam(agent.net.parameters(), lr=0.02)", "torch.optim.Adam(agent.net[2].parameters(), lr=0.02)")
    spec = seeded(tmp_path, monkeypatch, "reinforce", [edit], "r_half_optimizer", False)
    grads = rows(agent_results(spec, 3000, 1, [5]))["gradients"]
    assert not grads.passed and "not_in_optimizer" in grads.measured and "Sequential.0.weight" in grads.measured
    assert grads.suspect.startswith("a layer left out of the optimizer")
