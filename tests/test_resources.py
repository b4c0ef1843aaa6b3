"""Resources are checked before they are taken: the pure decisions, then the CLI end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dirtyrl import cli
from dirtyrl.buffers import FrameReplayBuffer
from dirtyrl.resources import (
    HEADROOM,
    PROCESS_BYTES,
    available_memory,
    format_bytes,
    memory_refusal,
    parse_meminfo,
    replay_bytes_per_slot,
    replay_refusal,
    usable_cores,
    vpg_batch_bytes,
    vpg_step_bytes,
    workers_refusal,
)

GIB = 2**30


def test_meminfo_is_read_from_the_real_machine():
    available = available_memory()
    assert available is not None and 0 < available < 2**50
    if Path("/proc/meminfo").is_file():
        assert available == parse_meminfo(Path("/proc/meminfo").read_text())


def test_missing_meminfo_falls_back_to_sysconf(tmp_path):
    fallback = available_memory(tmp_path / "no-such-meminfo")
    assert fallback is None or fallback > 0


def test_format_bytes_units():
    assert [format_bytes(n) for n in (0, 1023, 1024, 1536 * 2**20, 700 * 2**40)] == [
        "0 B",
        "1023 B",
        "1.00 KiB",
        "1.50 GiB",
        "700 TiB",
    ]


@pytest.mark.parametrize(
    ("frame_shape", "history", "dtype", "n_actions"),
    [((1, 84, 84), 4, np.uint8, 6), ((3, 80, 80), 4, np.uint8, 18), ((4,), 1, np.float32, 2), ((16,), 2, np.float32, 300)],
)
def test_replay_bytes_per_slot_is_what_the_buffer_allocates(frame_shape, history, dtype, n_actions):
    capacity = 50
    buffer = FrameReplayBuffer(capacity, frame_shape, history, dtype, n_actions)
    arrays = [v for v in vars(buffer).values() if isinstance(v, np.ndarray) and v.shape[:1] == (capacity,)]
    assert replay_bytes_per_slot(frame_shape, history, dtype, n_actions) * capacity == sum(a.nbytes for a in arrays)


def test_replay_refusal_gives_needed_available_and_the_largest_size_that_fits():
    per_slot = 7064
    message = replay_refusal(100_000_000, per_slot, (1, 84, 84), 24 * GIB)
    assert message.startswith("--buffer-size 100000000 needs 658 GiB") and "\n" not in message
    assert "21.6 GiB of memory available" in message
    fits = int(message.rsplit("at most ", 1)[1].replace(",", ""))
    usable = int(24 * GIB * (1 - HEADROOM))
    assert fits * per_slot + PROCESS_BYTES <= usable < (fits + 1) * per_slot + PROCESS_BYTES
    assert replay_refusal(fits, per_slot, (1, 84, 84), 24 * GIB) is None
    assert replay_refusal(fits + 1, per_slot, (1, 84, 84), 24 * GIB) is not None


def test_no_memory_figure_means_no_refusal():
    assert memory_refusal("x", 10**18, None, "", "") is None
    assert replay_refusal(10**12, 7064, (1, 84, 84), None) is None


def test_workers_beyond_the_cores_or_the_memory_are_refused():
    assert workers_refusal(2, 2, PROCESS_BYTES, 24 * GIB) is None
    cores = workers_refusal(3, 2, PROCESS_BYTES, 24 * GIB)
    assert cores.startswith("--workers 3 needs 3 cores") and "may use 2" in cores
    memory = workers_refusal(2, 4, 16 * GIB, 24 * GIB)
    assert memory.startswith("--workers 2 needs 32.0 GiB") and "use --workers 1 or fewer" in memory


def test_vpg_batch_worst_case():
    assert vpg_batch_bytes(4, 500, vpg_step_bytes(4, sparse=False, per_step_path=False, hidden=64)) == 4 * 500 * 32
    assert vpg_step_bytes(6400, sparse=True, per_step_path=False, hidden=200) is None
    assert vpg_step_bytes(6400, sparse=True, per_step_path=True, hidden=200) == 6400 * 4 + 4 * 200 * 4


# ---- the CLI: one line, exit 2, no run directory, earlier results intact -----------------------


def refused(capsys, argv: list[str]) -> str:
    code = cli.main(argv)
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("dirtyrl: error: "), (code, out, err)
    return lines[0]


def test_a_replay_buffer_beyond_memory_is_refused_before_the_run_dir(capsys, tmp_path):
    run_dir = tmp_path / "run"
    line = refused(capsys, ["train", "dqn", "--env", "pong", "--buffer-size", "100000000", "--run-dir", str(run_dir)])
    assert "--buffer-size 100000000 needs 658 GiB" in line and "of memory available" in line
    assert not run_dir.exists()


def test_a_refused_resume_leaves_the_earlier_run_untouched(capsys, tmp_path):
    run_dir = tmp_path / "run"
    flags = [
        "--env",
        "CartPole-v1",
        "--run-dir",
        str(run_dir),
        "--progress",
        "off",
        "--learning-starts",
        "64",
        "--batch-size",
        "32",
    ]
    assert cli.main(["train", "dqn", *flags, "--total-steps", "100"]) == 0
    capsys.readouterr()
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    latest = run_dir / "checkpoints" / "latest.pt"
    refused(capsys, ["train", "dqn", "--resume", str(latest), "--total-steps", "200", "--buffer-size", str(10**12)])
    assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == before


def test_more_workers_than_cores_is_refused_before_any_process_starts(capsys, tmp_path):
    workers = usable_cores() + 1
    line = refused(
        capsys,
        ["train", "vpg", "--workers", str(workers), "--batch-episodes", str(workers), "--run-dir", str(tmp_path / "r")],
    )
    assert f"--workers {workers} needs {workers} cores" in line
    assert not (tmp_path / "r").exists()


def test_a_vpg_batch_beyond_memory_is_refused(capsys, tmp_path):
    line = refused(
        capsys, ["train", "vpg", "--env", "CartPole-v1", "--batch-episodes", "1000000000", "--run-dir", str(tmp_path / "r")]
    )
    assert "--batch-episodes 1000000000 needs" in line and "up to 500 steps" in line and "lower --batch-episodes" in line
    assert not (tmp_path / "r").exists()
