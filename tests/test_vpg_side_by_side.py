"""VPG with --num-envs N: episodes side by side in one vector env, acting batched.

The batched pieces are checked against the one-env pieces they replace (preprocessing, the
actor's probabilities, sampling), on real Pong frames from ale-py's C++ vector env; the loop
against its contract (each episode once, in index order, the waiting counted, the run's
limits); the run against determinism and exact resume (both sync modes of multi-process VPG side by
side: tests/test_distributed.py).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
import torch

from dirtyrl.algos import vpg
from dirtyrl.config import EnvConfig, RunConfig
from dirtyrl.envs import make_env
from dirtyrl.envs.pong import difference_frame, preprocess_pong
from dirtyrl.envs.vector import AtariBatch, GymBatch, ProcessBatch, make_batch, play_chunk, pong_batch
from dirtyrl.nets import KarpathyPolicy
from dirtyrl.runcontrol import LongEpisodes


def config(tmp_path, env="CartPole-v1", name="run", **kw) -> vpg.Config:
    run_kw = {k: kw.pop(k) for k in list(kw) if k in RunConfig.__dataclass_fields__}
    run = RunConfig(run_dir=str(tmp_path / name), progress="off", **run_kw)
    return vpg.Config(env=EnvConfig(env=env), run=run, **kw)


def final(run_dir) -> dict:
    return torch.load(run_dir / "checkpoints" / "latest.pt", weights_only=False)


def pong_batch_env(num_envs: int, backend: str, sticky: float) -> AtariBatch:
    probe = make_env("pong", sticky=sticky)
    batch = make_batch("pong", num_envs, 2, sticky=sticky, probe=probe, backend=backend)
    probe.close()
    return batch


# ---------------------------------------------------------------------------------------------
# The batched pieces equal the one-env pieces
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend, sticky", [("procs", 0.25), ("ale", 0.0)])
def test_batched_pong_frames_equal_the_one_env_wrapper_on_the_same_game(backend, sticky):
    """procs: the very env of --num-envs 1, sticky actions and all. The C++ env draws its
    sticky actions from its own generator: with them off it plays the same game, frame for frame.
    The instruments' view of slot 0 shows the one env's screens."""
    from dirtyrl.envs import frames_wrapper

    batch = pong_batch_env(3, backend, sticky)
    single = make_env("pong", sticky=sticky)
    screens = frames_wrapper(single)
    obs = batch.reset([5, 6, 7])
    one, _ = single.reset(seed=5)
    assert isinstance(batch, ProcessBatch if backend == "procs" else AtariBatch)
    assert obs.shape == (3, 80, 80) and obs.dtype == np.int8
    np.testing.assert_array_equal(obs[0], one)
    rng = np.random.default_rng(0)
    moving = 0
    for _ in range(400):
        actions = rng.integers(0, 3, 3)
        obs, rewards, _, _, forced = batch.step(actions)
        one, reward, *_ = single.step(int(actions[0]))
        np.testing.assert_array_equal(obs[0], one)
        assert rewards[0] == reward and not forced.any()
        moving += int(np.count_nonzero(one) > 0)
    np.testing.assert_array_equal(batch.view.raw_frame, screens.raw_frame)
    np.testing.assert_array_equal(batch.view.processed_frame, screens.processed_frame)
    assert moving > 300  # the frames compared were not empty
    batch.close()
    single.close()


def test_pong_batch_is_the_seed_preprocessing_frame_by_frame():
    import ale_py

    gym.register_envs(ale_py)
    env = gym.make("ALE/Pong-v5")
    frames = []
    env.reset(seed=1)
    for _ in range(60):
        frames.append(env.step(env.action_space.sample())[0])
    fg = pong_batch(np.stack(frames))
    for k, frame in enumerate(frames):
        np.testing.assert_array_equal(fg[k], preprocess_pong(frame) > 0)
    diff = fg[1:].astype(np.int8) - fg[:-1].astype(np.int8)
    np.testing.assert_array_equal(diff[-1], difference_frame(preprocess_pong(frames[-1]), preprocess_pong(frames[-2])))


@pytest.mark.parametrize("sparse", [True, False])
def test_batched_actor_equals_the_one_observation_actor(sparse):
    torch.manual_seed(0)
    policy = KarpathyPolicy(6400 if sparse else 4, 3, 16, zero_init_last=False, bias=True)
    actor = vpg.Actor(policy, sparse)
    rng = np.random.default_rng(0)
    if sparse:
        obs = rng.choice(np.array([-1, 0, 1], np.int8), size=(5, 80, 80), p=[0.01, 0.98, 0.01])
        obs[2] = 0  # an empty difference frame (an episode's first) keeps its row
    else:
        obs = rng.normal(size=(5, 4)).astype(np.float32)
    stored, probs = actor.batch(obs)
    for k in range(len(obs)):
        one = actor.encode(obs[k])
        np.testing.assert_allclose(probs[k], actor.probs(one), rtol=1e-5, atol=1e-6)
        if sparse:
            np.testing.assert_array_equal(stored[k][0], one[0])
            np.testing.assert_array_equal(stored[k][1], one[1])
        else:
            np.testing.assert_array_equal(stored[k], one)


def test_batched_sampling_follows_the_one_sample_rule():
    """act(): each observation's action is the first whose cumulative probability exceeds its uniform."""
    torch.manual_seed(1)
    actor = vpg.Actor(KarpathyPolicy(4, 4, 16, zero_init_last=False, bias=True), sparse=False)
    rng = np.random.default_rng(3)
    obs, u = rng.normal(size=(200, 4)).astype(np.float32), rng.random(200)
    stored, actions = actor.act(obs, u)
    assert actions.dtype == np.int64 and len(stored) == 200 and len(set(actions.tolist())) == 4
    for one, draw, got in zip(stored, u, actions, strict=True):
        assert got == min(int(np.searchsorted(np.cumsum(actor.probs(one)), draw, side="right")), 3)


# ---------------------------------------------------------------------------------------------
# The loop: every episode once, in order; the waiting counted; the run's limits
# ---------------------------------------------------------------------------------------------


def play(envs, indices, may_start=lambda index, started, steps: True, rules=None, chunk=vpg.SIDE_BY_SIDE_CHUNK):
    policy = KarpathyPolicy(int(np.prod(envs.observation_space.shape)), int(envs.action_space.n), 8, True, True)
    ended = []
    episodes, idle = vpg.play_side_by_side(
        envs,
        vpg.Actor(policy, envs.observation_space.dtype == np.int8),
        indices,
        list(range(1, envs.num_envs + 1)),
        1,
        may_start,
        rules or LongEpisodes(0, None, False),
        lambda count=1: None,
        lambda won: None,
        lambda index, ep: ended.append(index),
        chunk,
    )
    return episodes, idle, ended


def test_every_episode_is_played_once_in_index_order_and_the_waiting_is_counted():
    envs = GymBatch(lambda: make_env("CartPole-v1"), 3)
    episodes, idle, ended = play(envs, list(range(10, 18)))
    assert sorted(ended) == list(range(10, 18)) and len(episodes) == 8
    lengths = [len(ep.actions) for ep in episodes]
    assert all(len(ep.obs) == len(ep.rewards) == n for ep, n in zip(episodes, lengths, strict=True))
    # Each episode's actions come from its own generator: the same index replays the same way.
    again, _, _ = play(GymBatch(lambda: make_env("CartPole-v1"), 3), list(range(10, 18)))
    assert [ep.actions for ep in again] == [ep.actions for ep in episodes]
    # 3 envs, 8 episodes: the envs that ran out of episodes waited while the last ones ended.
    assert 0 < idle < 3 * max(lengths)


def test_no_episode_starts_once_the_limit_is_reached():
    envs = GymBatch(lambda: make_env("CartPole-v1"), 2)
    episodes, _, ended = play(envs, list(range(6)), may_start=lambda index, started, steps: index < 3)
    assert sorted(ended) == [0, 1, 2] and len(episodes) == 3


def test_procs_plays_the_episodes_of_the_lockstep_loop_and_never_steps_a_waiting_slot():
    """Sticky actions off, ale-py's C++ env and the one-env loop's env play the same Pong games.
    The per-group loop over worker processes (3 groups, 2 workers) then gives the very episodes
    of the lockstep loop, a step at a time; and where the lockstep env steps its waiting slots,
    procs does not."""
    probe = make_env("pong", sticky=0.0)
    procs = make_batch("pong", 3, 2, sticky=0.0, probe=probe, backend="procs")
    ale = make_batch("pong", 3, 2, sticky=0.0, probe=probe, backend="ale")
    assert len(procs.groups) == 3 and procs.owner == [0, 1, 0]
    a, idle_a, ended_a = play(procs, [0, 1, 2, 3], chunk=1)
    b, idle_b, ended_b = play(ale, [0, 1, 2, 3], chunk=1)
    procs.close()
    ale.close()
    assert ended_a == ended_b and len(a) == 4
    for x, y in zip(a, b, strict=True):
        assert x.actions == y.actions and x.rewards == y.rewards and len(x.actions) > 500
        for (nz_x, v_x), (nz_y, v_y) in zip(x.obs, y.obs, strict=True):
            np.testing.assert_array_equal(nz_x, nz_y)
            np.testing.assert_array_equal(v_x, v_y)
    assert idle_a == 0 < idle_b


@pytest.mark.parametrize("backend", ["procs", "gym"])
def test_chunks_play_the_episodes_of_single_steps(backend):
    """One episode per slot, so no slot waits: a chunk of 32 steps (acting in the worker
    processes for procs) plays exactly the episodes of one step at a time, each from its own
    generator, across chunk boundaries."""

    def envs():
        if backend == "gym":
            return GymBatch(lambda: make_env("CartPole-v1"), 3)
        return make_batch("pong", 3, 2, sticky=0.0, probe=make_env("pong", sticky=0.0), backend="procs")

    runs = []
    for chunk in (1, 32):
        batch = envs()
        runs.append(play(batch, [4, 5, 6], chunk=chunk))
        batch.close()
    (a, idle_a, ended_a), (b, idle_b, ended_b) = runs
    assert sorted(ended_a) == sorted(ended_b) == [4, 5, 6]
    for x, y in zip(a, b, strict=True):
        assert x.actions == y.actions and x.rewards == y.rewards and len(x.actions) > 8
        np.testing.assert_equal(x.obs, y.obs)  # frames as (indices, values), CartPole as vectors
    assert (idle_a > 0) == (idle_b > 0) == (backend == "gym")  # the lockstep envs step a slot that is done


class FirstAction:
    """An actor that always plays action 1 and stores the observation's first number."""

    def act(self, obs, uniforms):
        return [float(o[0]) for o in obs], np.ones(len(obs), np.int64)


def test_a_chunk_gives_a_fire_press_reward_to_the_step_before_and_stops_when_an_episode_ends():
    """Slot 0 presses FIRE (forced) at the chunk's first step, whose reward belongs to the last
    chunk, and again at the third, whose reward joins the second's; slot 2's episode ends at
    the fourth step, which ends the chunk for both. Slot 1 plays no part."""
    obs = np.arange(3, dtype=np.float64)[:, None]
    fire_next = np.array([True, False, False])
    forced_at, rewards_0, sent = [True, False, True, False], [5.0, 1.0, 2.0, 1.0], []

    def step(live, actions):
        t = len(sent)
        sent.append(actions.tolist())
        fire_next[0] = t + 1 < 4 and forced_at[t + 1]
        done = np.array([False, t == 3])
        return obs[live] + 10, np.array([rewards_0[t], 10.0]), done, np.zeros(2, bool), np.array([forced_at[t], False])

    rngs = {0: np.random.default_rng(0), 2: np.random.default_rng(1)}
    played = play_chunk(obs, [0, 2], rngs, FirstAction(), fire_next, step, 32)
    assert sent == [[0, 1], [1, 1], [0, 1], [1, 1]]  # a forced step sends no action of the actor's
    assert played[0].carried == 5.0 and played[0].rewards == [3.0, 1.0] and played[0].obs == [10.0, 30.0]
    assert played[0].actions == [1, 1] and not played[0].done
    assert played[2].obs == [2.0, 12.0, 22.0, 32.0] and played[2].rewards == [10.0] * 4 and played[2].done
    assert obs[:, 0].tolist() == [40.0, 1.0, 42.0]


def test_a_worker_error_or_death_is_one_clear_error_and_close_frees_everything():
    import signal
    from multiprocessing import shared_memory

    probe = make_env("pong")
    envs = make_batch("pong", 2, 2, probe=probe, backend="procs")
    envs.reset(None)
    with pytest.raises(RuntimeError, match=r"worker process 1 .*IndexError"):
        envs.step(np.array([0, 7]))  # Pong has 3 actions here: the worker's env refuses action 7
    os.kill(envs.procs[0].pid, signal.SIGKILL)
    envs.procs[0].join()
    with pytest.raises(RuntimeError, match="worker process 0 of --vector-env procs died"):
        envs.step(np.array([0, 0]))
    names = [block.name for block in envs.blocks]
    envs.close()
    envs.close()  # a second close does nothing
    assert not any(proc.is_alive() for proc in envs.procs)
    for name in names:
        with pytest.raises(FileNotFoundError):
            shared_memory.SharedMemory(name=name)


def test_the_workers_exit_when_the_trainer_is_killed():
    """SIGKILL gives the trainer no chance to close its workers: they notice and exit on their own."""
    import signal
    import time

    script = (
        "from dirtyrl.envs import make_env\n"
        "from dirtyrl.envs.vector import make_batch\n"
        "envs = make_batch('pong', 2, 2, probe=make_env('pong'), backend='procs')\n"
        "print(*[p.pid for p in envs.procs], flush=True)\n"
        "import time; time.sleep(60)\n"
    )
    trainer = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    pids = [int(pid) for pid in trainer.stdout.readline().split()]
    assert len(pids) == 2
    trainer.send_signal(signal.SIGKILL)
    trainer.wait()

    def alive(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True

    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(alive(pid) for pid in pids)


class Endless(gym.Env):
    """An episode that never ends and has no time limit."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(2, np.float32), {}

    def step(self, action):
        return np.full(2, 0.5 * action, np.float32), 0.0, False, False, {}


@pytest.mark.parametrize("chunk, lengths", [(1, [61, 60]), (32, [65, 56])])
def test_endless_episodes_side_by_side_are_warned_once_and_cut_once_the_budget_is_spent(capsys, chunk, lengths):
    """The budget's 120 steps are spent in the order the chunks are settled. A step at a time:
    the second env's episode is cut at its 60th step, the first's at its 61st. 32 at a time:
    steps 1-32 of each, 33-64 of the first, 33-56 of the second (cut), 65 of the first (cut)."""
    envs = GymBatch(Endless, 2)
    episodes, _, ended = play(envs, [0, 1, 2, 3], rules=LongEpisodes(bound=50, steps_left=120, fire=False), chunk=chunk)
    err = capsys.readouterr().err
    assert err.count("warning: an episode has lasted 50 steps") == 1
    assert [len(ep.actions) for ep in episodes] == lengths and sorted(ended) == [0, 1]
    assert all(f"cut at step {n}" in err for n in lengths)
    assert all(len(ep.obs) == len(ep.rewards) == n for ep, n in zip(episodes, lengths, strict=True))


# ---------------------------------------------------------------------------------------------
# Runs: learning, determinism, exact resume, FIRE games, bad input
# ---------------------------------------------------------------------------------------------


def test_side_by_side_cartpole_learns_and_reports_the_waiting(tmp_path):
    run_dir = vpg.train(config(tmp_path, num_envs=4, total_steps=30_000))
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["best_mean_return_last_20"] > 150  # a random policy averages ~22
    assert 0 < summary["idle_env_steps"] < summary["env_steps"] * 3


def test_same_seed_twice_side_by_side_gives_identical_parameters(tmp_path):
    a = vpg.train(config(tmp_path, name="a", num_envs=3, total_episodes=24))
    b = vpg.train(config(tmp_path, name="b", num_envs=3, total_episodes=24))
    for key, value in final(a)["model"].items():
        assert torch.equal(value, final(b)["model"][key]), key


def test_resumed_from_a_checkpoint_ends_identical_to_uninterrupted(tmp_path):
    """The envs are reseeded from counters after every checkpoint, so a resume there is exact."""
    kw = {"num_envs": 3, "checkpoint_every": 3}
    straight = vpg.train(config(tmp_path, name="straight", total_episodes=48, **kw))
    first = vpg.train(config(tmp_path, name="resumed", total_episodes=24, **kw))
    resumed = vpg.train(
        config(tmp_path, name="resumed", total_episodes=48, resume=str(first / "checkpoints" / "latest.pt"), **kw)
    )
    a, b = final(straight), final(resumed)
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    assert a["stats"]["returns"] == b["stats"]["returns"] and a["update"] == b["update"] == 12


@pytest.mark.parametrize("backend", ["procs", "ale"])
def test_pong_side_by_side_trains_a_batch(tmp_path, backend):
    run_dir = vpg.train(
        config(tmp_path, env="pong", num_envs=2, batch_episodes=2, total_episodes=2, env_workers=2, vector_env=backend)
    )
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["episodes"] == 2 and summary["env_steps"] > 1000 and summary["mean_return_last_20"] < 0


def test_the_inspector_watches_the_first_env_side_by_side(tmp_path):
    from dirtyrl.config import DebugConfig

    cfg = config(tmp_path, env="pong", num_envs=2, batch_episodes=2, total_episodes=2)
    run_dir = vpg.train(dataclasses.replace(cfg, debug=DebugConfig(inspect_every=200)))
    pictures = sorted((run_dir / "inspect").glob("step-*.png"))
    assert len(pictures) >= 3  # ~1,700 steps of the first env, one picture every 200


@pytest.mark.parametrize("backend", ["procs", "ale"])
def test_a_game_that_waits_for_fire_is_served_after_every_lost_life(tmp_path, backend):
    """Breakout never serves by itself: with NOOPs only, a game ends only if every life is served.
    procs: each env's FireOnReset presses FIRE. ale: on reset the C++ env, after a lost life AtariBatch."""
    probe = make_env("ALE/Breakout-v5", sticky=0.0)  # sticky actions could swallow a FIRE now and then
    envs = make_batch("ALE/Breakout-v5", 2, 1, sticky=0.0, probe=probe, backend=backend)
    envs.reset([1, 2])
    ended, forced_seen = np.zeros(2, bool), 0
    for _ in range(3000):
        *_, terminated, _, forced = envs.step(np.zeros(2, np.int64))  # NOOP: the ball is always missed
        forced_seen += int(forced.sum())
        ended |= terminated
        if ended.all():
            break
    assert ended.all()
    if backend == "ale":
        assert envs.fire == 1 and forced_seen >= 2 * 4  # four lives lost per game, each served by FIRE
    envs.close()
    run_dir = vpg.train(
        config(tmp_path, env="ALE/Breakout-v5", num_envs=2, batch_episodes=2, total_episodes=2, vector_env=backend)
    )
    assert json.loads((run_dir / "summary.json").read_text())["episodes"] == 2


def cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "dirtyrl", *args], capture_output=True, text=True, timeout=120, env=env)


@pytest.mark.parametrize(
    "args, says",
    [
        (["--num-envs", "0"], "--num-envs must be > 0"),
        (["--num-envs", "5", "--batch-episodes", "4"], "the extra envs would only wait"),
        (["--num-envs", "2", "--grad-path", "per-step"], "--grad-path per-step"),
        (["--num-envs", "2", "--env-workers", "0"], "--env-workers must be > 0"),
        (["--num-envs", "2", "--vector-env", "ale", "--env", "ALE/Breakout-v5", "--env-kwargs", "mode=4"], "C++ vector env"),
    ],
)
def test_bad_side_by_side_settings_are_one_line(tmp_path, args, says):
    result = cli("train", "vpg", "--total-steps", "100", "--run-dir", str(tmp_path / "r"), *args)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if not line.startswith(("A.L.E:", "[Powered by Stella]"))]
    assert says in result.stderr and "Traceback" not in result.stderr and len(lines) == 1
