"""``dirtyrl watch SCRIPT``: plain training scripts run unchanged under the witnesses.

The examples (examples/dqn_script.py, examples/reinforce_script.py) finish with exit 0 and no
finding; a bug seeded into a copy of one (one line replaced, as a person would break it) stops
the script with ``--trap stop``: exit 3 and the right check named. The script's own ending
(an exception, ``sys.exit``, Ctrl-C) is kept, with the findings still written; Stable-Baselines3
runs under watch without a false alarm.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from dirtyrl.commands.watch import counts_entropy, env_kwargs_items, exit_status
from seeding import seeded_source

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
DQN_ARGS = ["--total-timesteps", "1500", "--learning-starts", "200"]


def seeded(tmp_path: Path, example: str, old: str, new: str) -> Path:
    """A copy of ``examples/<example>.py`` with ``old`` replaced by ``new``, to run as a script."""
    path = tmp_path / f"{example}_seeded.py"
    path.write_text(seeded_source(example, [(old, new)]))
    return path


def watch(
    tmp_path: Path, script: Path, *script_args: str, flags: tuple[str, ...] = ()
) -> tuple[subprocess.CompletedProcess, dict]:
    """``dirtyrl watch --trap stop`` in a subprocess; its result and summary.json ({} if none)."""
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "dirtyrl", "watch", "--trap", "stop", "--run-dir", str(run_dir)]
    command += ["--baseline-episodes", "0", *flags, str(script), *script_args]
    out = subprocess.run(
        command, capture_output=True, text=True, timeout=300, cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    summary_path = run_dir / "summary.json"
    return out, json.loads(summary_path.read_text()) if summary_path.exists() else {}


def assert_trapped(out: subprocess.CompletedProcess, summary: dict, *checks: str) -> None:
    """Exit 3, one `dirtyrl: trap:` line naming one of ``checks``, and that finding first in summary.json."""
    assert out.returncode == 3, out.stdout + out.stderr
    trap = [line for line in out.stderr.splitlines() if line.startswith("dirtyrl: trap: ")]
    assert len(trap) == 1, out.stderr
    named = [c for c in checks if f": {c} on " in trap[0]]
    assert named, trap[0]
    assert summary["exit_status"] == 3 and summary["findings"][0]["check"] == named[0], summary["findings"]
    assert "Traceback" not in out.stderr


# -- clean scripts --------------------------------------------------------------------------------


def test_the_clean_dqn_script_runs_unchanged_with_no_finding_and_writes_everything(tmp_path):
    out, summary = watch(tmp_path, EXAMPLES / "dqn_script.py", *DQN_ARGS, flags=("--every", "10", "--baseline-episodes", "3"))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "no findings" in out.stdout and "dirtyrl: witness" not in out.stderr
    assert "mean return of the last 20" in out.stdout  # the script's own output
    run_dir = tmp_path / "run"
    assert summary["algo"] == "watch" and summary["env"] == "CartPole-v1" and summary["seed"] is None
    assert summary["env_steps"] == 1500 and summary["episodes"] > 10 and summary["findings"] == []
    assert summary["argv"] == DQN_ARGS and summary["exit_status"] == 0 and summary["workers"] == 1
    assert summary["solved_threshold"] == 475.0 and summary["random_baseline"] is not None
    for key in ("wall_seconds", "steps_per_second", "mean_return_last_20", "return_ema", "solved_at_env_step"):
        assert key in summary
    assert (run_dir / "report.png").is_file() and (run_dir / "baseline-random" / "tb").is_dir()
    acc = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0, "histograms": 0})
    acc.Reload()
    scalars = set(acc.Tags()["scalars"])
    for tag in ("charts/episode_return", "charts/episode_length", "charts/return_ema", "policy/action_entropy"):
        assert tag in scalars, sorted(scalars)
    assert "debug/global_grad_norm" in scalars and any(t.startswith("debug/grad_norm/QNetwork.") for t in scalars)
    assert "policy/actions" in acc.Tags()["histograms"]
    returns = acc.Scalars("charts/episode_return")
    assert len(returns) == summary["episodes"] and returns[-1].step <= 1500


def test_the_clean_reinforce_script_has_no_finding(tmp_path):
    out, summary = watch(tmp_path, EXAMPLES / "reinforce_script.py", "--episodes", "60")
    assert out.returncode == 0, out.stdout + out.stderr
    assert summary["findings"] == [] and summary["episodes"] == 60 and summary["optimizer_steps"] == 60


# -- seeded bugs: each stops the script and is named ----------------------------------------------


def test_gradients_never_cleared_are_stale_grad(tmp_path):
    script = seeded(tmp_path, "dqn_script", "            optimizer.zero_grad()\n", "")
    assert_trapped(*watch(tmp_path, script, *DQN_ARGS), "stale_grad")


def test_a_layer_left_out_of_the_optimizer_is_not_in_optimizer(tmp_path):
    script = seeded(
        tmp_path,
        "dqn_script",
        "optim.Adam(q_network.parameters(), lr=args.learning_rate)",
        "optim.Adam(q_network.network[2:].parameters(), lr=args.learning_rate)",
    )
    out, summary = watch(tmp_path, script, *DQN_ARGS)
    assert_trapped(out, summary, "not_in_optimizer")
    assert "QNetwork.network.0." in summary["findings"][0]["where"]


def test_a_large_negative_bias_kills_the_relus_dead_units(tmp_path):
    end = "nn.Linear(84, n_actions)\n        )\n"
    script = seeded(tmp_path, "dqn_script", end, end + "        nn.init.constant_(self.network[0].bias, -100.0)\n")
    assert_trapped(*watch(tmp_path, script, *DQN_ARGS), "dead_units")


def test_a_learning_rate_that_explodes_is_caught(tmp_path):
    script = seeded(
        tmp_path, "dqn_script", '"--learning-rate", type=float, default=1e-3', '"--learning-rate", type=float, default=1e3'
    )
    assert_trapped(*watch(tmp_path, script, *DQN_ARGS), "update_size", "grad_norm", "nan_grad", "nan_param")


def test_a_division_by_a_zero_std_is_nan_grad(tmp_path):
    # Normalising the per-step rewards (all 1 on CartPole) instead of the returns: 0 / 0.
    script = seeded(
        tmp_path,
        "reinforce_script",
        "adv = (returns - returns.mean()) / (returns.std() + 1e-8)",
        "adv = (rewards_t - rewards_t.mean()) / rewards_t.std()",
    )
    out, summary = watch(tmp_path, script, "--episodes", "20")
    assert_trapped(out, summary, "nan_grad")
    assert summary["findings"][0]["optimizer_step"] == 1


def test_advantages_that_are_all_zero_are_zero_grad(tmp_path):
    script = seeded(
        tmp_path,
        "reinforce_script",
        "adv = (returns - returns.mean()) / (returns.std() + 1e-8)",
        "adv = (rewards_t - rewards_t.mean()) / (rewards_t.std() + 1e-8)",
    )
    assert_trapped(*watch(tmp_path, script, "--episodes", "20"), "zero_grad")


def test_an_observation_multiplied_by_zero_is_constant_input(tmp_path):
    script = seeded(
        tmp_path,
        "reinforce_script",
        "obs_t = torch.as_tensor(obs, dtype=torch.float32)",
        "obs_t = torch.as_tensor(obs, dtype=torch.float32) * 0",
    )
    out, summary = watch(tmp_path, script, "--episodes", "80")
    assert_trapped(out, summary, "constant_input")
    assert summary["findings"][0]["where"] == "Sequential"


def test_argmax_acting_in_a_policy_gradient_loop_is_one_action(tmp_path):
    # On Acrobot (500-step episodes, one update each) an untrained net's argmax is the same action
    # in nearly every state; on CartPole the state swings so far in a 10-step episode that it flips.
    script = seeded(tmp_path, "reinforce_script", "action = dist.sample()", "action = logits.argmax()")
    out, summary = watch(tmp_path, script, "--env-id", "Acrobot-v1", "--episodes", "2")
    assert_trapped(out, summary, "one_action")
    assert summary["env_steps"] == 500 and summary["findings"][0]["where"] == "Acrobot-v1"


# -- the script's own ending ------------------------------------------------------------------------

PLAYS_THEN = """
import gymnasium as gym

def play():
    env = gym.make("CartPole-v1")
    env.reset(seed=0)
    env.action_space.seed(0)  # random actions, the same every run: episodes end within the 60 steps
    for _ in range(60):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            env.reset()

def fail():
    {ending}

play()
fail()
"""


@pytest.mark.parametrize(
    "ending, status, shown",
    [
        ("raise ValueError('boom')", 1, "ValueError: boom"),
        ("raise KeyboardInterrupt", 130, "KeyboardInterrupt"),
        ("raise SystemExit(4)", 4, None),
    ],
    ids=["raises", "ctrl-c", "sys-exit-4"],
)
def test_the_script_keeps_its_ending_and_the_findings_are_still_written(tmp_path, ending, status, shown):
    script = tmp_path / "ends.py"
    script.write_text(PLAYS_THEN.format(ending=ending))
    out, summary = watch(tmp_path, script)
    assert out.returncode == status, out.stdout + out.stderr
    assert summary["exit_status"] == status and summary["env_steps"] == 60 and summary["episodes"] >= 1
    assert "dirtyrl watch: findings" in out.stdout and (tmp_path / "run" / "report.png").is_file()
    if shown is None:
        assert "Traceback" not in out.stderr
        return
    # As `python ends.py` prints it: from the script's first frame, none of watch's or runpy's.
    traceback = out.stderr[out.stderr.index("Traceback (most recent call last):") :]
    assert traceback.splitlines()[1].startswith(f'  File "{script}", line ') and "runpy" not in traceback
    assert shown in traceback and "in fail" in traceback


def test_a_missing_script_is_one_line_and_exit_2(tmp_path):
    out, _ = watch(tmp_path, tmp_path / "nope.py")
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1 and "nope.py" in out.stderr


def test_the_script_gets_its_own_argv_and_folder(tmp_path):
    (tmp_path / "helper_module.py").write_text("VALUE = 7\n")
    script = tmp_path / "args.py"
    script.write_text("import sys\nimport helper_module\nprint('ARGV', sys.argv[1:], __name__, helper_module.VALUE)\n")
    out, summary = watch(tmp_path, script, "--every", "3", "-x")
    assert out.returncode == 0, out.stderr
    assert "ARGV ['--every', '3', '-x'] __main__ 7" in out.stdout
    assert summary["env"] is None and summary["env_steps"] == 0 and summary["random_baseline"] is None


# -- a trusted third-party agent: no false alarm --------------------------------------------------

SB3 = """
from stable_baselines3 import DQN, PPO

DQN("MlpPolicy", "CartPole-v1", learning_starts=100, train_freq=1, seed=1).learn(1500)
PPO("MlpPolicy", "CartPole-v1", n_steps=256, batch_size=64, n_epochs=2, seed=1).learn(1024)
"""


def test_stable_baselines3_runs_under_watch_with_no_false_alarm(tmp_path):
    script = tmp_path / "sb3_script.py"
    script.write_text(SB3)
    out, summary = watch(tmp_path, script, flags=("--every", "5"))
    assert out.returncode == 0, out.stdout + out.stderr
    assert summary["findings"] == [], summary["findings"]
    assert summary["env_steps"] >= 1500 + 1024 and summary["episodes"] > 20 and summary["optimizer_steps"] > 1000
    acc = EventAccumulator(str(tmp_path / "run" / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    scalars = set(acc.Tags()["scalars"])
    assert "charts/episode_return" in scalars and "debug/global_grad_norm" in scalars
    assert any(t.startswith("debug/grad_norm/QNetwork.") for t in scalars), sorted(scalars)  # SB3's DQN net
    # PPO's training calls the policy's parts directly (evaluate_actions): the outermost module called.
    assert any(t.startswith("debug/grad_norm/MlpExtractor.policy_net.") for t in scalars), sorted(scalars)


IMAGES = """
import gymnasium as gym
import numpy as np
import torch
from torch import nn


class Bar(gym.Env):
    observation_space = gym.spaces.Box(0, 255, (12, 12), np.uint8)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self.frame(), {}

    def frame(self):
        image = np.zeros((12, 12), np.uint8)
        image[:, self.t % 12] = 255  # a bright bar that moves one column a step
        return image

    def step(self, action):
        self.t += 1
        return self.frame(), 0.0, self.t >= 40, False, {}


gym.register("Bar-v0", entry_point=Bar)
env = gym.make("Bar-v0")
net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(400, 2))
obs, _ = env.reset(seed=0)
for _ in range(400):
    with torch.no_grad():
        x = torch.as_tensor(obs, dtype=torch.float32)[None, None] / 255.0  # the script's own preprocessing
        action = int(torch.distributions.Categorical(logits=net(x)).sample())
    obs, _, terminated, truncated, _ = env.step(action)
    if terminated or truncated:
        obs, _ = env.reset()
"""


def test_image_inputs_are_drawn_as_the_network_saw_them(tmp_path):
    script = tmp_path / "images.py"
    script.write_text(IMAGES)
    out, summary = watch(tmp_path, script)
    assert out.returncode == 0, out.stdout + out.stderr
    assert summary["findings"] == [], summary["findings"]
    from PIL import Image

    sheet = np.asarray(Image.open(tmp_path / "run" / "inspect" / "agent_input.png").convert("L"))
    assert sheet.shape[0] > 100 and sheet.max() >= 200 and (sheet < 40).mean() > 0.5  # a bright bar on black


def test_render_draws_the_first_env_the_script_steps(tmp_path):
    out, _ = watch(tmp_path, EXAMPLES / "dqn_script.py", *DQN_ARGS, flags=("--render",))
    assert out.returncode == 0, out.stdout + out.stderr
    assert sorted((tmp_path / "run" / "videos").glob("*.gif")), "no display here: episodes become GIFs"


MAKE_VEC = """
import gymnasium as gym
import numpy as np
import sys

envs = gym.make_vec("CartPole-v1", num_envs=4, vectorization_mode=sys.argv[1])
envs.reset(seed=0)
rng = np.random.default_rng(0)
for _ in range(250):
    envs.step(rng.integers(0, 2, 4))
envs.close()
"""


@pytest.mark.parametrize("mode", ["vector_entry_point", "async"])
def test_make_vec_envs_are_recorded_even_when_gym_make_makes_none_here(tmp_path, mode):
    script = tmp_path / "make_vec.py"
    script.write_text(MAKE_VEC)
    out, summary = watch(tmp_path, script, mode)
    assert out.returncode == 0, out.stdout + out.stderr
    assert summary["findings"] == [] and summary["episodes"] >= 30 and 900 <= summary["env_steps"] <= 1000
    assert summary["env"] == "CartPole-v1"


# -- pure helpers ---------------------------------------------------------------------------------


def test_helpers():
    assert exit_status(None) == 0 and exit_status(4) == 4 and exit_status("message") == 1
    assert counts_entropy({0: 1, 1: 1, 2: 1, 3: 1}) == pytest.approx(1.3863, abs=1e-4)
    assert env_kwargs_items({"size": (3, 4)}) == ["size=(3, 4)"]
