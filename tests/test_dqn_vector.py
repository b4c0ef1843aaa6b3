"""DQN on the Atari vector env: the send / update / collect loop stays deterministic and resumes exactly.

Breakout, because its episodes are short (FIRE after each lost life serves the next ball), with
the seed's small network and small batches, so that several episodes and hundreds of updates
run in seconds.
"""

from __future__ import annotations

import pytest
import torch

from dirtyrl.algos import dqn
from dirtyrl.config import DebugConfig, EnvConfig, RunConfig
from dirtyrl.envs.atari_dqn import VectorAtariFrames

BREAKOUT = {
    "net": "seed",
    "screen": "gray40",  # the whole screen resized in C++; a small input keeps the updates cheap
    "channels_last": "off",  # "auto" times both layouts and may pick either: runs would differ
    "buffer_size": 2000,
    "batch_size": 8,
    "learning_starts": 64,
    "train_every": 2,
    "target_update_every": 50,
    "eps_decay_steps": 300,
    "noop_max": 10,
}


def config(tmp_path, name: str, debug: DebugConfig | None = None, **kw) -> dqn.Config:
    run_kw = {k: kw.pop(k) for k in list(kw) if k in RunConfig.__dataclass_fields__}
    run = RunConfig(run_dir=str(tmp_path / name), progress="off", checkpoint_every=40, **run_kw)
    return dqn.Config(env=EnvConfig(env="ALE/Breakout-v5"), run=run, debug=debug or DebugConfig(), **BREAKOUT, **kw)


def final_state(run_dir) -> dict:
    return torch.load(run_dir / "checkpoints" / "latest.pt", weights_only=False)


def assert_same_run(a: dict, b: dict) -> None:
    assert a["counters"] | {"wall_before": 0} == b["counters"] | {"wall_before": 0}
    assert a["stats"]["returns"] == b["stats"]["returns"]
    assert a["learner"]["updates"] == b["learner"]["updates"]
    for key in ("online", "target"):
        for name, tensor in a["learner"][key].items():
            assert torch.equal(tensor, b["learner"][key][name]), (key, name)
    assert a["rng"] == b["rng"]


def test_the_atari_loop_sends_to_the_vector_env(tmp_path):
    env = dqn.make_dqn_env(dqn.resolve(config(tmp_path, "probe")))
    assert isinstance(env.unwrapped, VectorAtariFrames) and callable(env.unwrapped.send)
    env.close()


def test_same_seed_same_parameters_and_exact_resume(tmp_path):
    """A resumed run equal to a straight one also says that the same seed gives the same run."""
    straight = dqn.train(config(tmp_path, "straight", total_steps=500, checkpoint_replay=True))
    first = dqn.train(config(tmp_path, "stopped", total_steps=200, checkpoint_replay=True))
    stopped_at = final_state(first)["counters"]["env_step"]
    assert stopped_at < final_state(straight)["counters"]["env_step"]
    resumed = dqn.train(
        config(tmp_path, "stopped", total_steps=500, checkpoint_replay=True, resume=str(first / "checkpoints" / "latest.pt"))
    )
    state = final_state(resumed)
    assert_same_run(final_state(straight), state)
    # Every update due was done by the end, though each one finished a step late.
    steps = state["counters"]["env_step"]
    due = sum(1 for s in range(1, steps + 1) if s >= BREAKOUT["learning_starts"] and s % BREAKOUT["train_every"] == 0)
    assert state["learner"]["updates"] == due


def test_watching_a_run_does_not_change_it(tmp_path):
    """--debug.inspect-every takes the raw-frame route, whose observations are the same."""
    plain = dqn.train(config(tmp_path, "plain", total_steps=250))
    watched = dqn.train(config(tmp_path, "watched", debug=DebugConfig(inspect_every=100), total_steps=250))
    assert any((watched / "inspect").glob("*.png"))
    assert_same_run(final_state(plain), final_state(watched))


@pytest.mark.parametrize("threads", [2])
def test_two_learner_threads_run_on_the_vector_env(tmp_path, threads):
    run_dir = dqn.train(config(tmp_path, "two", total_steps=300, learner_threads=threads))
    state = final_state(run_dir)
    assert state["learner"]["updates"] > 50 and state["counters"]["env_step"] >= 300
