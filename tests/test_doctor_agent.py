"""``dirtyrl doctor --agent`` and ``--env``: agents and envs written outside the package.

The worked examples in examples/ pass; a bug seeded into each (the file copied with one line
changed, as a person would break it) is caught and the broken part named.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dirtyrl import doctor
from dirtyrl.doctor.user import agent_results, check_env_results
from dirtyrl.errors import UserError
from seeding import seeded_agent

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def only_failure(results):
    """The one failed probe row (the witnesses' rows, 'gradients' and 'acting', are checked apart)."""
    bad = [r for r in results if not r.passed and r.check.startswith("probe")]
    assert len(bad) == 1, doctor.format_table(results)
    return bad[0]


@pytest.mark.slow  # two subprocesses training the examples (~40 s on a busy machine)
def test_the_examples_pass_from_the_command_line_as_the_docs_write_it(tmp_path):
    env = {**os.environ, "PYTHONPATH": "examples", "OMP_NUM_THREADS": "1"}
    for spec, probes in (("reinforce:make_agent", ["4"]), ("dqn_cleanrl:make_agent", ["8"])):
        out = subprocess.run(
            [sys.executable, "-m", "dirtyrl", "doctor", "--agent", spec, "--probes", *probes, "--steps", "1500"],
            cwd=EXAMPLES.parent,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert out.returncode == 0, out.stdout + out.stderr
        assert "3 passed, 0 failed" in out.stdout  # the probe, and the witnesses' gradients and acting rows


def test_reinforce_acting_on_a_stale_observation_is_caught_and_named(tmp_path, monkeypatch):
    spec = seeded_agent(tmp_path, monkeypatch, "reinforce", [("                obs = next_obs\n", "")], "reinforce_stale")
    row = only_failure(agent_results(spec, 1500, 1, [5, 6]))
    assert row.check == "probe 6" and row.suspect.startswith("acting on a stale observation")


def test_cleanrl_dqn_bootstrapping_through_terminal_is_caught_and_named(tmp_path, monkeypatch):
    edit = (" * (1 - torch.as_tensor(term_buf[idx]))", "")
    spec = seeded_agent(tmp_path, monkeypatch, "dqn_cleanrl", [edit], "dqn_no_done")
    row = only_failure(agent_results(spec, 1500, 1, [1]))
    assert row.suspect.startswith("done masking / bootstrapping through terminal")


def test_cleanrl_dqn_truncation_stored_as_terminal_is_caught_and_named(tmp_path, monkeypatch):
    stored = "rew_buf[step], term_buf[step] = action, reward, terminated"
    spec = seeded_agent(tmp_path, monkeypatch, "dqn_cleanrl", [(stored, stored + " or truncated")], "dqn_truncation")
    row = only_failure(agent_results(spec, 1500, 1, [8]))
    assert row.suspect.startswith("time-limit truncation treated as terminal")


def test_bad_agent_specs_are_one_line_user_errors(tmp_path, monkeypatch):
    with pytest.raises(UserError, match="module:function"):
        agent_results("no_colon", 10, 1)
    with pytest.raises(UserError, match="cannot import module 'no_such_module_xyz'"):
        agent_results("no_such_module_xyz:make_agent", 10, 1)
    (tmp_path / "half_agent.py").write_text("def make_agent(env_id, steps, seed):\n    return object()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(UserError, match="no act"):
        agent_results("half_agent:make_agent", 10, 1)


def test_env_check_passes_a_good_env_and_flags_nondeterminism(tmp_path, monkeypatch):
    assert all(r.passed for r in check_env_results("CartPole-v1", 1))
    (tmp_path / "noisy_env.py").write_text(
        "import gymnasium as gym, numpy as np\n"
        "class Noisy(gym.Env):\n"
        "    observation_space = gym.spaces.Box(-1, 1, (1,), np.float32)\n"
        "    action_space = gym.spaces.Discrete(2)\n"
        "    def __init__(self, render_mode=None):\n"
        "        self.render_mode = render_mode\n"
        "    def reset(self, *, seed=None, options=None):\n"
        "        super().reset(seed=seed)\n"
        "        return np.zeros(1, np.float32), {}\n"
        "    def step(self, action):\n"
        "        x = np.random.uniform(-1, 1, 1).astype(np.float32)  # the bug: the global RNG, not self.np_random\n"
        "        return x, float(x[0]), bool(x[0] > 0.9), False, {}\n"
        "gym.register('Noisy-v0', entry_point=Noisy, max_episode_steps=50)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    results = {r.check: r for r in check_env_results("noisy_env:Noisy-v0", 1)}
    assert not results["determinism"].passed and "self.np_random" in results["determinism"].suspect
    assert results["random baseline"].passed


def test_env_check_makes_the_env_with_its_keyword_arguments():
    """--env-kwargs reach every env the check makes: Sutton and Barto's CartPole pays -1 at the end only."""
    results = {r.check: r for r in check_env_results("CartPole-v1", 1, env_kwargs=["sutton_barto_reward=True"])}
    assert all(r.passed for r in results.values())
    assert results["random baseline"].measured.startswith("return -1 +- 0")
    default = {r.check: r for r in check_env_results("CartPole-v1", 1)}
    assert not default["random baseline"].measured.startswith("return -1")
    bad = subprocess.run(
        [sys.executable, "-m", "dirtyrl", "doctor", "--env", "CartPole-v1", "--env-kwargs", "bogus=1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "does not accept the keyword bogus" in bad.stderr and "Traceback" not in bad.stderr
