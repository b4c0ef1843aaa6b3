"""Your own env from the command line (``--env module:EnvId``), exactly as docs/environments.md
shows it: the page's commands are read from the page and run, each in its own process, so
``play`` and ``--resume`` must find the module again from what the checkpoint recorded."""

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dirtyrl.cli import main

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "environments.md"


def documented_corridor_commands() -> list[list[str]]:
    """The ``PYTHONPATH=examples dirtyrl ...`` lines of the page's first shell block."""
    block = re.search(r"^```bash\n(.*?)^```", DOC.read_text(), re.M | re.S).group(1)
    commands = [shlex.split(line) for line in block.splitlines() if line.startswith("PYTHONPATH=examples dirtyrl ")]
    return [words[2:] for words in commands]  # drop PYTHONPATH=examples and dirtyrl


def run_documented(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "examples"), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "dirtyrl", *argv], capture_output=True, text=True, cwd=cwd, env=env, timeout=300
    )


def test_the_documented_corridor_commands_train_play_and_resume(tmp_path):
    commands = documented_corridor_commands()
    kinds = [tuple(c[:2]) if c[0] == "train" else (c[0],) for c in commands]
    assert kinds == [("train", "vpg"), ("train", "dqn"), ("play",), ("play",), ("train", "vpg")]
    outputs, vpg_summary = [], tmp_path / "runs" / "corridor-vpg" / "summary.json"
    for argv in commands:
        proc = run_documented(argv, tmp_path)
        assert proc.returncode == 0, f"dirtyrl {shlex.join(argv)}: {proc.stderr[-2000:]}"
        outputs.append(proc.stdout)
        if len(outputs) == 1:
            steps_before_resume = json.loads(vpg_summary.read_text())["env_steps"]

    for algo in ("vpg", "dqn"):
        run_dir = tmp_path / "runs" / f"corridor-{algo}"
        config = json.loads((run_dir / "config.json").read_text())
        assert config["env"]["env"] == "corridor:Corridor-v0" and config["env"]["env_kwargs"] == []
        ckpt = torch.load(run_dir / "checkpoints" / "latest.pt", weights_only=False)
        assert ckpt["env"] == "corridor:Corridor-v0"
        summary = json.loads((run_dir / "summary.json").read_text())
        assert summary["solved_at_env_step"] is not None, f"{algo} did not solve the corridor: {summary}"
    # Both trained agents walk straight to the exit: 4 steps of -0.05, then +1.
    for out in outputs[2:4]:
        assert "mean return over 2 episodes: +0.80" in out
        videos = [Path(line.split(": ", 1)[1]) for line in out.splitlines() if line.startswith("video: ")]
        assert videos and all((tmp_path / v).is_file() for v in videos)
    # The resumed run kept going from the checkpoint (it had stopped when solved) to --total-steps.
    resumed = json.loads(vpg_summary.read_text())["env_steps"]
    assert steps_before_resume < 1000 <= resumed and "resuming from" in outputs[4]


def test_env_kwargs_are_recorded_and_reach_the_env(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "examples"))
    argv = ["train", "random", "--env", "corridor:Corridor-v0", "--env-kwargs", "length=3", "--total-episodes", "5"]
    assert main([*argv, "--run-dir", str(tmp_path / "r"), "--progress", "off"]) == 0
    config = json.loads((tmp_path / "r" / "config.json").read_text())
    assert config["env"]["env_kwargs"] == ["length=3"]
    ckpt = torch.load(tmp_path / "r" / "checkpoints" / "latest.pt", weights_only=False)
    assert ckpt["config"]["env"]["env_kwargs"] == ["length=3"]


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--env", "no_such_envs_module:Corridor-v0"], "cannot import module 'no_such_envs_module'"),
        (
            ["--env", "corridor:Corridor-v9"],
            "module 'corridor' registers no env 'Corridor-v9'; the ids it registers: Corridor-v0",
        ),
        (["--env", "corridor:Corridor-v0", "--env-kwargs", "width=3"], "does not accept the keyword width"),
        (["--env", "corridor:Corridor-v0", "--env-kwargs", "length"], "--env-kwargs takes key=value pairs"),
    ],
)
@pytest.mark.parametrize("algo", ["vpg", "dqn"])
def test_bad_module_or_kwargs_is_one_line_and_exit_2(algo, extra, words, tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(ROOT / "examples"))
    code = main(["train", algo, *extra, "--total-steps", "10", "--run-dir", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and words in err and err.count("\n") == 1, err
    assert not (tmp_path / "r").exists()
