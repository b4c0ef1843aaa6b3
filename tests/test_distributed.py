"""Tier 5: multi-process VPG on torch.distributed (gloo, CPU), launched the ways a user would.

Every multi-process test starts real processes: ``dirtyrl train vpg --workers N``, ``torchrun``
(``python -m torch.distributed.run``) on 127.0.0.1, or plain env:// ranks without an agent.
Drivers that need to look inside a rank are written to ``tmp_path`` and run under torchrun;
they call the real ``vpg.train`` / ``vpg`` functions and the real ``distributed`` helpers.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from dirtyrl import distributed
from dirtyrl.algos import vpg
from dirtyrl.config import EnvConfig, RunConfig
from dirtyrl.telemetry import ema_update


def env_vars(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "LOCAL_WORLD_SIZE")
    }
    env["OMP_NUM_THREADS"] = "1"
    env.update(extra)
    return env


TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]


def dirtyrl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dirtyrl", *args], capture_output=True, text=True, timeout=120, env=env_vars()
    )


def torchrun(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*TORCHRUN, *args], capture_output=True, text=True, timeout=120, env=env_vars())


def popen(cmd: list[str], **extra_env: str) -> subprocess.Popen:
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env_vars(**extra_env))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def checkpoint(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoints" / "latest.pt", weights_only=False)


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


# ---------------------------------------------------------------------------------------------
# Splitting the batch (pure)
# ---------------------------------------------------------------------------------------------


def test_every_episode_of_an_uneven_batch_is_played_exactly_once():
    for batch in range(1, 13):
        for world in range(1, batch + 1):
            counts = [distributed.episodes_for_rank(batch, world, r) for r in range(world)]
            offsets = [distributed.episode_offset(batch, world, r) for r in range(world)]
            assert sum(counts) == batch and max(counts) - min(counts) <= 1 and min(counts) >= 1
            assert offsets == [sum(counts[:r]) for r in range(world)]  # contiguous, in rank order


def test_helpers_are_no_ops_in_one_process():
    one = distributed.Dist()
    model = torch.nn.Linear(3, 2)
    model.weight.grad = torch.ones_like(model.weight)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    before = model.weight.detach().clone()
    distributed.broadcast_params(one, model)
    distributed.sync_grads_and_step(one, model, optimizer, "allreduce", "sum")
    assert torch.equal(model.weight.detach(), before - 1.0)
    assert distributed.global_count(one, 7) == 7 and distributed.gather_objects(one, "x") == ["x"]


# ---------------------------------------------------------------------------------------------
# Inside the ranks: identical weights, and the sum-reduced gradient equals the one-process one
# ---------------------------------------------------------------------------------------------

RANKS_DRIVER = """
import copy, gc, hashlib, json, os, sys
import numpy as np, torch
from dirtyrl import distributed
from dirtyrl.algos import vpg
from dirtyrl.config import EnvConfig, RunConfig
from dirtyrl.nets import KarpathyPolicy

out, rank = sys.argv[1], os.environ["RANK"]


def fixed_episode_gradients(dist):
    rng = np.random.default_rng(0)
    B, D, A, cpu = 5, 6, 3, torch.device("cpu")
    episodes = []
    for _ in range(B):  # fixed episodes: every rank builds the same five
        n = int(rng.integers(2, 9))
        episodes.append(vpg.Episode(list(rng.normal(size=(n, D)).astype(np.float32)),
                                    [int(a) for a in rng.integers(0, A, n)], list(rng.normal(size=n)), []))
    torch.manual_seed(0)
    policy = KarpathyPolicy(D, A, 8, zero_init_last=False, bias=True)

    # One process, all B episodes.
    one = copy.deepcopy(policy)
    adv = vpg.episode_advantages(episodes, 0.9, False, True, distributed.Dist())
    vpg.batched_backward(one, episodes, adv, sum(len(e.actions) for e in episodes), False, cpu)
    expected = torch.cat([p.grad.reshape(-1) for p in one.parameters()])

    # N ranks x their share of the B episodes, sum reduction, both sync modes.
    first = distributed.episode_offset(B, dist.world_size, dist.rank)
    mine = episodes[first : first + distributed.episodes_for_rank(B, dist.world_size, dist.rank)]
    for sync in ("allreduce", "reduce-broadcast"):
        model = copy.deepcopy(policy)
        adv = vpg.episode_advantages(mine, 0.9, False, True, dist)
        n = distributed.global_count(dist, sum(len(e.actions) for e in mine))
        vpg.batched_backward(model, mine, adv, n, False, cpu)
        distributed.sync_grads_and_step(dist, model, torch.optim.SGD(model.parameters(), lr=0.1), sync, "sum")
        if sync == "allreduce" or dist.is_main:  # reduce-broadcast leaves the summed gradient on rank 0
            got = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
            err = float((got - expected).abs().max())
            assert err < 1e-6, (sync, dist.rank, err)
            print(f"OK {sync} rank {dist.rank} max|diff| {err:.1e}", flush=True)


def train_recording_weights(sync, num_envs=1):
    digests, real = [], distributed.sync_grads_and_step

    def recording(dist, model, optimizer, sync, reduce):
        real(dist, model, optimizer, sync, reduce)
        flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
        digests.append(hashlib.sha256(flat.numpy().tobytes()).hexdigest())

    distributed.sync_grads_and_step = recording  # vpg.train looks it up at every update
    try:
        name = sync if num_envs == 1 else f"{sync}-envs{num_envs}"
        vpg.train(vpg.Config(env=EnvConfig(env="CartPole-v1"), batch_episodes=3 * num_envs, hidden=16, sync=sync,
                             optimizer="rmsprop", num_envs=num_envs,
                             run=RunConfig(total_episodes=15 * num_envs, run_dir=f"{out}/{name}", progress="off")))
    finally:
        distributed.sync_grads_and_step = real
    with open(f"{out}/{name}-rank{rank}.json", "w") as f:
        json.dump(digests, f)


torch.distributed.init_process_group("gloo")  # our own group: vpg.train uses it and leaves it open
fixed_episode_gradients(distributed.init())
for sync in ("allreduce", "reduce-broadcast"):
    train_recording_weights(sync)
    train_recording_weights(sync, num_envs=2)  # each rank plays its share side by side
torch.distributed.destroy_process_group()
gc.collect()  # join gloo's threads before the interpreter shuts down (see distributed._destroy)
"""


@pytest.fixture(scope="module")
def ranks_run(tmp_path_factory):
    """One torchrun launch of 2 ranks running RANKS_DRIVER: the gradient check, then two training runs."""
    out = tmp_path_factory.mktemp("ranks")
    (out / "driver.py").write_text(RANKS_DRIVER)
    result = torchrun("--standalone", "--nproc-per-node", "2", str(out / "driver.py"), str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result


@pytest.mark.parametrize("sync", ["allreduce", "reduce-broadcast"])
def test_parameters_stay_bit_identical_across_ranks(ranks_run, sync):
    """5 updates of 3 episodes over 2 ranks (an uneven 2 + 1 split), RMSprop, the real vpg.train."""
    out, _ = ranks_run
    rank0 = json.loads((out / f"{sync}-rank0.json").read_text())
    rank1 = json.loads((out / f"{sync}-rank1.json").read_text())
    assert len(rank0) == 5 and rank0 == rank1  # the same bytes on both ranks after every update
    assert len(set(rank0)) == 5  # and every update changed them
    assert summary(out / sync)["workers"] == 2 and summary(out / sync)["episodes"] == 15


@pytest.mark.parametrize("sync", ["allreduce", "reduce-broadcast"])
def test_ranks_playing_side_by_side_stay_bit_identical(ranks_run, sync):
    """--num-envs 2 on each of 2 ranks: 5 updates of 6 episodes (3 per rank, in 2 envs each)."""
    out, _ = ranks_run
    rank0 = json.loads((out / f"{sync}-envs2-rank0.json").read_text())
    rank1 = json.loads((out / f"{sync}-envs2-rank1.json").read_text())
    assert len(rank0) == 5 and rank0 == rank1 and len(set(rank0)) == 5
    assert summary(out / f"{sync}-envs2")["episodes"] == 30


def test_sum_of_rank_gradients_is_the_one_process_gradient(ranks_run):
    """2 ranks x (3, 2) of 5 fixed episodes == one process with all 5 (global baseline and normaliser)."""
    _, result = ranks_run
    assert result.stdout.count("OK allreduce") == 2 and result.stdout.count("OK reduce-broadcast") == 1


# ---------------------------------------------------------------------------------------------
# The CLI: --workers N, global statistics, resume with another worker count, bad worker count
# ---------------------------------------------------------------------------------------------


def test_two_workers_log_what_one_process_logs_and_resume_with_one(tmp_path):
    """Probe 4 (one-step episodes): 2 workers produce the one-process episode sequence and EMA;
    their checkpoint then resumes in 1 process and ends where an uninterrupted run ends."""
    probe = EnvConfig(env="dirtyrl/Probe4-v0")
    vpg.train(
        vpg.Config(
            env=probe, run=RunConfig(total_episodes=16, run_dir=str(tmp_path / "one"), progress="off"), batch_episodes=4
        )
    )
    reference = checkpoint(tmp_path / "one")["stats"]["returns"]

    flags = ["--env", "dirtyrl/Probe4-v0", "--batch-episodes", "4", "--progress", "off"]
    two = tmp_path / "two"
    result = dirtyrl("train", "vpg", *flags, "--workers", "2", "--total-episodes", "8", "--run-dir", str(two))
    assert result.returncode == 0, result.stderr
    ema = None
    for r in reference[:8]:
        ema = ema_update(ema, r, 0.99)
    assert checkpoint(two)["stats"]["returns"] == reference[:8]
    assert summary(two)["return_ema"] == ema and summary(two)["workers"] == 2 and summary(two)["episodes"] == 8
    assert result.stdout.count("run dir:") == 1  # only rank 0 reports (and writes)

    resume = ["--resume", str(two / "checkpoints" / "latest.pt")]
    result = dirtyrl("train", "vpg", *resume, *"--workers 1 --total-episodes 16 --progress off".split())
    assert result.returncode == 0, result.stderr
    assert "resuming from" in result.stdout and "update 2, 8 episodes" in result.stdout
    assert checkpoint(two)["stats"]["returns"] == reference
    assert summary(two)["workers"] == 1 and summary(two)["episodes"] == 16


def test_more_workers_than_episodes_is_one_line_error(tmp_path):
    result = dirtyrl("train", "vpg", "--workers", "5", "--batch-episodes", "4", "--run-dir", str(tmp_path / "r"))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "dirtyrl: error: --workers 5 is more than --batch-episodes 4: every worker must play at least one episode per update"
    )
    assert not (tmp_path / "r").exists()  # refused before any process started


# ---------------------------------------------------------------------------------------------
# torchrun across "nodes" on 127.0.0.1
# ---------------------------------------------------------------------------------------------


def test_two_node_torchrun_rendezvous_trains(tmp_path):
    """Two torchrun agents (node ranks 0 and 1, one worker each) meet on 127.0.0.1."""
    port, run_dir = free_port(), tmp_path / "run"
    train = f"-m dirtyrl train vpg --env CartPole-v1 --batch-episodes 4 --total-episodes 12 --run-dir {run_dir}".split()
    rendezvous = ["--master-addr", "127.0.0.1", "--master-port", str(port)]
    nodes = [
        popen([*TORCHRUN, "--nnodes", "2", "--node-rank", str(node), "--nproc-per-node", "1", *rendezvous, *train])
        for node in (0, 1)
    ]
    outputs = [node.communicate(timeout=120) for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], outputs
    assert summary(run_dir)["workers"] == 2 and summary(run_dir)["episodes"] == 12
    assert checkpoint(run_dir)["update"] == 3


# ---------------------------------------------------------------------------------------------
# Faults
# ---------------------------------------------------------------------------------------------


def wait_for(path: Path, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.1)


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def test_killed_worker_under_torchrun_max_restarts_resumes_from_checkpoint(tmp_path):
    """SIGKILL one of two workers mid-run: torchrun restarts the group, which continues from
    the last checkpoint (not from scratch) and finishes the run."""
    run_dir = tmp_path / "run"
    cmd = TORCHRUN + "--standalone --nproc-per-node 2 --max-restarts 1 -m dirtyrl train vpg --env CartPole-v1".split()
    cmd += f"--batch-episodes 4 --total-episodes 300 --checkpoint-every 1 --run-dir {run_dir} --progress on".split()
    # pytorch#135712: torch 2.13's agent keeps its store across restarts and a restarted gloo
    # group can read the dead group's addresses; a fresh store per restart avoids that.
    agent = popen(cmd, TORCH_DISABLE_SHARE_RDZV_TCP_STORE="1")
    try:
        wait_for(run_dir / "checkpoints" / "latest.pt", 60)
        workers = children(agent.pid)
        assert len(workers) == 2
        os.kill(max(workers), signal.SIGKILL)
        out, err = agent.communicate(timeout=120)
    finally:
        agent.kill()
    assert agent.returncode == 0, err[-3000:]
    assert "exitcode: -9" in err  # the agent saw the kill...
    resumed = out[out.index("resuming from") :]  # ...and the new group resumed from the checkpoint
    first_progress = next(line for line in resumed.splitlines() if line.startswith("steps"))
    assert int(first_progress.split()[3]) > 4  # "ep N": the first update after the restart is not update 1
    assert summary(run_dir)["episodes"] == 300 and summary(run_dir)["workers"] == 2


def test_killed_worker_under_workers_ends_the_run_with_one_line(tmp_path):
    """--workers N has no restarts: the launcher stops the others and names the dead worker."""
    run_dir = tmp_path / "run"
    cmd = [sys.executable, *"-m dirtyrl train vpg --env CartPole-v1 --workers 2 --total-episodes 100000".split()]
    launcher = popen([*cmd, *f"--checkpoint-every 1 --progress off --run-dir {run_dir}".split()])
    try:
        wait_for(run_dir / "checkpoints" / "latest.pt", 60)
        workers = children(launcher.pid)
        os.kill(max(workers), signal.SIGKILL)
        _, err = launcher.communicate(timeout=60)
    finally:
        launcher.kill()
    assert launcher.returncode == 1
    assert f"was killed by SIGKILL; the other workers were stopped. Continue the run with --resume {run_dir}" in err


@pytest.mark.parametrize("fault", ["dies", pytest.param("hangs", marks=pytest.mark.slow)])
def test_surviving_rank_exits_with_a_clear_message(tmp_path, fault):
    """Two env:// ranks without an agent: when rank 1 dies (or hangs past --dist-timeout), rank 0
    stops with one line and status 1 instead of waiting forever."""
    run_dir, port = tmp_path / "run", free_port()
    cmd = [sys.executable, *"-m dirtyrl train vpg --env CartPole-v1 --batch-episodes 4 --total-episodes 100000".split()]
    cmd += f"--checkpoint-every 1 --run-dir {run_dir} --progress off --dist-timeout 12".split()
    common = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2"}
    ranks = [popen(cmd, **common, RANK=str(r), LOCAL_RANK=str(r)) for r in (0, 1)]
    try:
        wait_for(run_dir / "checkpoints" / "latest.pt", 60)
        os.kill(ranks[1].pid, signal.SIGKILL if fault == "dies" else signal.SIGSTOP)
        start = time.monotonic()
        _, err = ranks[0].communicate(timeout=90)
        elapsed = time.monotonic() - start
    finally:
        for rank in ranks:
            rank.kill()
    assert ranks[0].returncode == 1
    assert err.strip().startswith("dirtyrl: error: rank 0 of 2:") and "Traceback" not in err, err
    # A dead peer is noticed long before --dist-timeout (its sockets close); a hung one at the
    # timeout. The margins leave room for a loaded machine.
    assert elapsed < (10 if fault == "dies" else 30)
