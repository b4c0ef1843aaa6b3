"""`dirtyrl train dqn` end to end in a subprocess: a short run, --help, and bad input."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
import torch


def dirtyrl(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "dirtyrl", *args], capture_output=True, text=True, timeout=timeout)


def test_short_run_writes_the_run_directory(tmp_path):
    run_dir = tmp_path / "probe"
    flags = "--env dirtyrl/Probe1-v0 --total-steps 300 --learning-starts 200 --hidden 16 --progress off".split()
    result = dirtyrl("train", "dqn", *flags, "--run-dir", str(run_dir))
    assert result.returncode == 0, result.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["algo"] == "dqn" and summary["env_steps"] >= 300
    config = json.loads((run_dir / "config.json").read_text())
    assert config["hidden"] == [16] and config["lr"] == 5e-4  # the flag, and a preset default filled in
    assert (run_dir / "learning_curve.png").is_file() and (run_dir / "checkpoints" / "latest.pt").is_file()


def test_help_names_the_dqn_knobs():
    out = dirtyrl("train", "dqn", "--help").stdout
    knobs = (
        "--lr --gamma --batch-size --buffer-size --learning-starts --train-every --target-update-every --tau --eps-start "
        "--eps-end --eps-decay-steps --eps-schedule --loss --clip-grad-value --clip-grad-norm --optimizer --double --net "
        "--checkpoint-replay --learner-threads --noop-max --frame-skip --screen --frame-stack --clip-rewards "
        "--episodic-life --fire-reset --actions --channels-last --autocast --preset --n-step --dueling "
        "--prioritized --per-alpha --per-beta --per-beta-steps"
    )
    for flag in knobs.split():
        assert flag in out, flag


BAD_INPUTS = {
    "continuous actions": (["--env", "Pendulum-v1"], "Box action space"),
    "batch larger than buffer": (["--batch-size", "64", "--buffer-size", "32"], "larger than --buffer-size"),
    "negative learning rate": (["--lr", "-0.001"], "--lr must be > 0"),
}


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_bad_input_is_one_line_and_exit_2(tmp_path, name):
    args, message = BAD_INPUTS[name]
    result = dirtyrl("train", "dqn", *args, "--total-steps", "10", "--run-dir", str(tmp_path / "bad"), "--progress", "off")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_ctrl_c_writes_a_checkpoint_that_resumes(tmp_path):
    run_dir = tmp_path / "interrupted"
    flags = "--env CartPole-v1 --total-steps 100000000 --progress off --checkpoint-every 100000".split()
    proc = subprocess.Popen(
        [sys.executable, "-m", "dirtyrl", "train", "dqn", *flags, "--run-dir", str(run_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not list((run_dir / "tb").glob("events.*")) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(2.0)  # past the heat-up of 500 steps: updates have happened
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted: checkpoint at" in out
    state = torch.load(run_dir / "checkpoints" / "latest.pt", weights_only=False)
    assert (
        state["learner"]["updates"] > 0
        and len(state["stats"]["returns"]) == json.loads((run_dir / "summary.json").read_text())["episodes"]
    )
    steps = state["counters"]["env_step"]
    resumed = dirtyrl("train", "dqn", "--resume", str(run_dir / "checkpoints" / "latest.pt"), "--total-steps", str(steps + 50))
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming from {run_dir / 'checkpoints' / 'latest.pt'}: step {steps}" in resumed.stdout
