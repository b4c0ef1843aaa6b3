"""Probe 10 (envs/probes.py ``TimeCreditProbe``): credit that lands on the wrong time step.

A reward comes at every step and the right action differs by step: two loans (+3 now, -1 at
the end) and an investment (-1 now, +4 at the next step). Only rewards-to-go (r_t plus the
rewards after it) rank every step's actions right; each classic bug in ``returns_to_go`` makes
a policy choose the wrong action at a step the doctor names. First on paper (the exact expected
credit of each action under a uniform policy), then with REINFORCE (examples/reinforce.py)
copied with the bug written in, as a person would write it.
"""

import itertools
from pathlib import Path

import numpy as np
import pytest

from dirtyrl import doctor
from dirtyrl.algos import vpg
from dirtyrl.doctor.probes import PROBES
from dirtyrl.doctor.user import agent_results
from dirtyrl.envs.probes import TimeCreditProbe
from seeding import seeded_agent

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
RIGHT = (1, 0, 1, 0)


def rtg(rewards, gamma):
    out, running = np.zeros(len(rewards)), 0.0
    for t in reversed(range(len(rewards))):
        running = rewards[t] + gamma * running
        out[t] = running
    return out


CREDITS = {
    "correct": rtg,
    "summed forward": lambda r, g: np.cumsum(r),
    "accumulated from the start": lambda r, g: np.array(
        [sum(g ** (t - k) * r[k] for k in range(t + 1)) for t in range(len(r))]
    ),
    "reversed": lambda r, g: rtg(r, g)[::-1],
    "shifted": lambda r, g: np.append(rtg(r, g)[1:], 0.0),
}


def play(actions):
    env = TimeCreditProbe()
    obs, _ = env.reset(seed=0)
    observations, rewards = [], []
    for a in actions:
        observations.append(tuple(float(x) for x in obs))
        obs, reward, terminated, truncated, _ = env.step(a)
        rewards.append(reward)
    assert terminated and not truncated
    return observations, rewards


def credit_margins(credit, gamma):
    """Per step: E[credit | right action] - E[credit | wrong action], every other step uniform."""
    by_step = np.zeros((4, 2))
    for actions in itertools.product((0, 1), repeat=4):
        _, rewards = play(actions)
        credits = credit(rewards, gamma)
        for t, a in enumerate(actions):
            by_step[t, int(a == RIGHT[t])] += credits[t] / 8
    return by_step[:, 1] - by_step[:, 0]


def test_the_episode_played_right_pays_the_optimum_and_shows_the_judged_states():
    observations, rewards = play(RIGHT)
    assert rewards == [3.0, -1.0, 7.0, -1.0] and sum(rewards) == PROBES[10].optimum
    assert [(obs, a) for obs, a in zip(observations, RIGHT, strict=True)] == list(PROBES[10].right)
    best = max(sum(play(actions)[1]) for actions in itertools.product((0, 1), repeat=4))
    assert best == PROBES[10].optimum


@pytest.mark.parametrize("gamma", [0.5, 0.8, 0.99, 1.0])
def test_rewards_to_go_rank_every_step_right_at_any_discount_the_doctor_uses(gamma):
    assert (credit_margins(CREDITS["correct"], gamma) > 0).all()


@pytest.mark.parametrize(
    ("bug", "wrong", "blind"),
    [
        ("summed forward", [1], []),
        ("accumulated from the start", [1], []),
        ("reversed", [0], []),
        ("shifted", [0, 2], [3]),
    ],
)
def test_each_credit_bug_ranks_a_named_step_the_wrong_way_round(bug, wrong, blind):
    margins = credit_margins(CREDITS[bug], 0.99)
    assert [t for t in range(4) if margins[t] < -1e-9] == wrong
    assert [t for t in range(4) if abs(margins[t]) < 1e-9] == blind


# ---- REINFORCE (examples/reinforce.py) with the bug written into returns_to_go ------------------------


def probe10(results):
    (row,) = [r for r in results if r.check == "probe 10"]
    return row


def test_reinforce_passes_the_time_probe(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))
    row = probe10(agent_results("reinforce:make_agent", 3000, 1, [10]))
    assert row.passed and min(row.data["p_right"]) >= 0.9, row


def test_cleanrl_dqn_passes_the_time_probe(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))
    row = probe10(agent_results("dqn_cleanrl:make_agent", 3000, 1, [10]))
    assert row.passed and row.data["greedy_right"] == 1.0, row


CREDIT_BUGS = [
    # G accumulated from the episode's start: out[t] = r_t + gamma * out[t-1]
    ("for t in reversed(range(len(rewards))):", "for t in range(len(rewards)):", "rf_forward", [1], "summed forward"),
    ("    return out\n", "    return np.cumsum(rewards)\n", "rf_cumsum", [1], "summed forward"),
    # G_t written to step T-1-t
    ("        out[t] = running\n", "        out[len(rewards) - 1 - t] = running\n", "rf_reversed", [0], "reversed"),
    # G_{t+1} credited to step t
    ("    return out\n", "    return np.append(out[1:], 0.0)\n", "rf_shifted", [0, 2], "shifted one step"),
]


@pytest.mark.parametrize(("old", "new", "name", "wrong", "named"), CREDIT_BUGS, ids=[b[2] for b in CREDIT_BUGS])
def test_reinforce_with_credit_in_the_wrong_time_order_fails_at_the_named_step(
    tmp_path, monkeypatch, old, new, name, wrong, named
):
    spec = seeded_agent(tmp_path, monkeypatch, "reinforce", [(old, new)], name)
    row = probe10(agent_results(spec, 1500, 1, [10]))
    assert not row.passed
    assert [t for t, p in enumerate(row.data["p_right"][:3]) if p < 0.5] == wrong, row.measured
    cause = row.suspect.split(";")[0]
    assert cause.startswith("credit assigned to the wrong time step") and named in cause, row.suspect


# ---- the project's own VPG ------------------------------------------------------------------------------------


def test_vpg_with_rewards_to_go_reversed_fails_probe_10_only_at_step_0(tmp_path, monkeypatch, capsys):
    real = vpg.rewards_to_go
    monkeypatch.setattr(vpg, "rewards_to_go", lambda r, g, reset_on_nonzero=False: real(r, g, reset_on_nonzero)[::-1])
    row = probe10(doctor.run_doctor(["vpg"], tmp_path, probes=[10]))
    capsys.readouterr()
    assert not row.passed and [t for t, p in enumerate(row.data["p_right"]) if p < 0.5] == [0], row.measured
    assert "rewards-to-go reversed" in row.suspect.split(";")[0], row.suspect
