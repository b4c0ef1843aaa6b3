"""Tier 7: the CLI end to end in a subprocess, including bad input and Ctrl-C."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch


def dirtyrl(*args, cwd=None, timeout=120):
    return subprocess.run([sys.executable, "-m", "dirtyrl", *args], capture_output=True, text=True, timeout=timeout, cwd=cwd)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("cli") / "cartpole"
    result = dirtyrl(
        "train", "vpg", "--env", "CartPole-v1", "--total-episodes", "12", "--run-dir", str(run_dir), "--progress", "off"
    )
    assert result.returncode == 0, result.stderr
    return run_dir, result


def test_train_writes_the_run_directory_and_says_where(finished_run):
    run_dir, result = finished_run
    assert f"tensorboard --logdir {run_dir / 'tb'}" in result.stdout
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["algo"] == "vpg" and summary["episodes"] == 12 and summary["workers"] == 1
    assert (run_dir / "learning_curve.png").stat().st_size > 10_000


def test_random_baseline_logs_the_same_summary(tmp_path):
    result = dirtyrl(
        "train",
        "random",
        "--env",
        "CartPole-v1",
        "--total-episodes",
        "5",
        "--run-dir",
        str(tmp_path / "r"),
        "--progress",
        "off",
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["algo"] == "random" and summary["episodes"] == 5 and summary["return_ema"] is not None


def test_help_names_every_knob():
    out = dirtyrl("train", "vpg", "--help").stdout
    for flag in (
        "--env",
        "--actions",
        "--seed",
        "--total-steps",
        "--total-episodes",
        "--stop-when-solved",
        "--target-return",
        "--resume",
        "--device",
        "--threads",
        "--checkpoint-every",
        "--ema",
        "--lr",
        "--gamma",
        "--batch-episodes",
        "--hidden",
        "--optimizer",
        "--standardize",
        "--zero-init-last",
        "--grad-path",
        "--workers",
        "--debug.trap",
    ):
        assert flag in out, flag


BAD_INPUTS = {
    "unknown env": (["--env", "NoSuchEnv-v0"], "unknown env"),
    "misspelt env": (["--env", "CartPol-v1"], "did you mean CartPole-v1"),
    "continuous actions": (["--env", "Pendulum-v1"], "Box action space"),
    "negative learning rate": (["--lr", "-0.1"], "--lr must be > 0"),
    "not a number": (["--seed", "abc"], "expected an integer"),
    "zero batch": (["--batch-episodes", "0"], "--batch-episodes must be > 0"),
    "gamma above one": (["--gamma", "1.5"], "--gamma must be in [0, 1]"),
    "bad choice": (["--env", "pong", "--actions", "4"], "invalid choice"),
    "more workers than episodes": (["--workers", "5", "--batch-episodes", "4"], "more than --batch-episodes"),
    "missing checkpoint": (["--resume", "/no/such/latest.pt"], "does not exist"),
    "cuda without a gpu": (["--device", "cuda"], "no CUDA device"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_line_and_exit_status_2(tmp_path, case):
    if case == "cuda without a gpu" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    args, expected = BAD_INPUTS[case]
    result = dirtyrl("train", "vpg", "--total-episodes", "4", "--run-dir", str(tmp_path / "run"), *args)
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_bad_checkpoints_leave_the_earlier_run_intact(finished_run, tmp_path):
    run_dir, _ = finished_run
    latest = run_dir / "checkpoints" / "latest.pt"
    before = latest.read_bytes(), (run_dir / "summary.json").read_text()
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint")
    cases = [
        (["train", "vpg", "--resume", str(corrupt)], "corrupt"),
        (["train", "random", "--resume", str(latest)], "is from 'vpg'"),
        (["train", "vpg", "--resume", str(latest), "--hidden", "32"], "does not match this network"),
        (["train", "vpg", "--resume", str(latest), "--optimizer", "rmsprop"], "--optimizer adam"),
        (["train", "vpg", "--env", "CartPole-v1", "--run-dir", str(run_dir)], "already holds a run"),
    ]
    for args, expected in cases:
        result = dirtyrl(*args)
        assert result.returncode == 2 and expected in result.stderr, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1
    assert (latest.read_bytes(), (run_dir / "summary.json").read_text()) == before


def test_resume_through_the_cli_continues_the_run(finished_run, tmp_path):
    run_dir, _ = finished_run
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-r", str(run_dir), str(copy)], check=True)
    result = dirtyrl(
        "train",
        "vpg",
        "--resume",
        str(copy / "checkpoints" / "latest.pt"),
        "--total-episodes",
        "20",
        "--run-dir",
        str(copy),
        "--progress",
        "off",
    )
    assert result.returncode == 0, result.stderr
    assert json.loads((copy / "summary.json").read_text())["episodes"] == 20


def test_ctrl_c_writes_checkpoint_and_summary(tmp_path):
    run_dir = tmp_path / "interrupted"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dirtyrl",
            "train",
            "vpg",
            "--env",
            "CartPole-v1",
            "--total-steps",
            "100000000",
            "--run-dir",
            str(run_dir),
            "--progress",
            "off",
            "--checkpoint-every",
            "100000",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not list((run_dir / "tb").glob("events.*")) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(2.0)  # let a few updates happen
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted: checkpoint at" in out
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["episodes"] > 0
    ckpt = torch.load(run_dir / "checkpoints" / "latest.pt", weights_only=False)
    assert ckpt["update"] > 0 and len(ckpt["stats"]["returns"]) == summary["episodes"]
    assert not os.path.exists(run_dir / "checkpoints" / "latest.pt.tmp")
