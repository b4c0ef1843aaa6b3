"""Tier 7 for the instruments: the real `dirtyrl` commands in a subprocess."""

import subprocess
import sys

from PIL import Image


def dirtyrl(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "dirtyrl", *map(str, args)], capture_output=True, text=True, timeout=120, cwd=cwd
    )


def test_trap_stop_is_one_line_and_exit_status_3(tmp_path):
    run_dir = tmp_path / "run"
    result = dirtyrl(
        "train",
        "vpg",
        "--env",
        "CartPole-v1",
        "--lr",
        "10",
        "--total-episodes",
        "200",
        "--run-dir",
        run_dir,
        "--progress",
        "off",
        "--debug.trap",
        "stop",
    )
    assert result.returncode == 3, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dirtyrl: trap: stopped at update") and "entropy_collapse" in lines[0]
    assert list((run_dir / "traps").glob("update-*/report.txt"))


def test_tools_run_and_bad_input_is_one_line_exit_2(tmp_path):
    result = dirtyrl("inspect", "--env", "pong", "--frames", "2", "--out", tmp_path / "sheet")
    assert result.returncode == 0, result.stderr
    assert Image.open(tmp_path / "sheet" / "contact_sheet.png").size == (976 * 2 + 8, 440)
    # Bad input to the instruments is a one-line error (the other tools' errors are tested in-process).
    for args, message in ((("train", "vpg", "--debug.hooks", "fc9", "--run-dir", tmp_path / "r"), "no module named 'fc9'"),):
        result = dirtyrl(*args)
        assert result.returncode == 2 and result.stderr.count("\n") == 1 and message in result.stderr, (args, result.stderr)
