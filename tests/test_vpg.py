"""VPG: probes, initial entropy, the two gradient paths, determinism and exact resume."""

import json
import math

import numpy as np
import pytest
import torch

from dirtyrl.algos import vpg
from dirtyrl.config import EnvConfig, RunConfig
from dirtyrl.distributed import Dist
from dirtyrl.envs import make_env
from dirtyrl.nets import KarpathyPolicy


def config(tmp_path, env="CartPole-v1", name="run", **kw) -> vpg.Config:
    run_kw = {k: kw.pop(k) for k in list(kw) if k in RunConfig.__dataclass_fields__}
    run = RunConfig(run_dir=str(tmp_path / name), progress="off", **run_kw)
    return vpg.Config(env=EnvConfig(env=env), run=run, **kw)


def final_params(run_dir) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "latest.pt", weights_only=False)["model"]


@pytest.mark.parametrize("probe", ["dirtyrl/Probe4-v0", "dirtyrl/Probe5-v0"])
def test_vpg_solves_the_policy_probes(tmp_path, probe):
    run_dir = vpg.train(config(tmp_path, probe, stop_when_solved=True, total_episodes=2000))
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["solved_at_env_step"] is not None, summary
    assert summary["mean_return_last_20"] >= 0.9
    assert summary["wall_seconds"] < 20


@pytest.mark.parametrize("zero_init, expect_max", [(True, True), (False, False)])
def test_initial_entropy_is_log_of_action_count_with_zero_init(zero_init, expect_max):
    torch.manual_seed(0)
    policy = KarpathyPolicy(6400, 3, 200, zero_init_last=zero_init)
    x = torch.randint(-1, 2, (64, 6400)).float()
    entropy = vpg.categorical_entropy(policy(x).detach())
    if expect_max:
        torch.testing.assert_close(entropy, torch.full((64,), math.log(3)))
    else:
        assert float(entropy.mean()) < math.log(3) - 1e-3


def play(env_id, policy, sparse, episodes=2, seed=0):
    env = make_env(env_id, sticky=0.0)
    actor = vpg.Actor(policy, sparse)
    eps = [
        vpg.play_episode(
            env, actor, np.random.default_rng(i), seed + i, policy, torch.device("cpu"), lambda: None, lambda won: None
        )
        for i in range(episodes)
    ]
    env.close()
    return eps


@pytest.mark.parametrize("env_id, sparse, pong", [("CartPole-v1", False, False), ("pong", True, True)])
def test_per_step_and_batched_paths_give_the_same_gradient(env_id, sparse, pong):
    torch.manual_seed(0)
    dim = 6400 if pong else 4
    # A non-zero last layer, so that the first layer gets a gradient too.
    policy = KarpathyPolicy(dim, 3 if pong else 2, 200 if pong else 64, zero_init_last=False)
    episodes = play(env_id, policy, sparse, episodes=1 if pong else 3)
    adv = vpg.episode_advantages(episodes, 0.99, pong, True, Dist())
    n = sum(len(ep.actions) for ep in episodes)

    policy.zero_grad()
    vpg.per_step_backward(episodes, adv, n)
    per_step = [p.grad.clone() for p in policy.parameters()]
    policy.zero_grad()
    vpg.batched_backward(policy, episodes, adv, n, sparse, torch.device("cpu"))
    batched = [p.grad.clone() for p in policy.parameters()]

    for a, b in zip(per_step, batched, strict=True):
        assert a.abs().sum() > 0
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)


def test_sparse_input_matches_dense_input():
    torch.manual_seed(0)
    policy = KarpathyPolicy(6400, 3, 200, zero_init_last=False)
    episodes = play("pong", policy, sparse=True, episodes=1)
    sparse = vpg.batch_input(episodes, True, 6400, torch.device("cpu"))
    dense = sparse.to_dense()
    assert dense.shape == (len(episodes[0].actions), 6400)
    assert set(torch.unique(dense).tolist()) <= {-1.0, 0.0, 1.0}
    torch.testing.assert_close(policy(sparse), policy(dense), rtol=1e-5, atol=1e-6)


def test_same_seed_twice_gives_identical_parameters(tmp_path):
    a = vpg.train(config(tmp_path, name="a", total_episodes=40))
    b = vpg.train(config(tmp_path, name="b", total_episodes=40))
    for key, value in final_params(a).items():
        assert torch.equal(value, final_params(b)[key]), key
    c = vpg.train(config(tmp_path, name="c", total_episodes=40, seed=2))
    assert not torch.equal(final_params(a)["fc1.weight"], final_params(c)["fc1.weight"])


@pytest.mark.parametrize("grad_path", ["batched", "per-step"])
def test_stopped_and_resumed_run_ends_identical_to_uninterrupted(tmp_path, grad_path):
    straight = vpg.train(config(tmp_path, name="straight", total_episodes=48, grad_path=grad_path))
    first = vpg.train(config(tmp_path, name="resumed", total_episodes=24, grad_path=grad_path))
    resumed = vpg.train(
        config(
            tmp_path, name="resumed", total_episodes=48, grad_path=grad_path, resume=str(first / "checkpoints" / "latest.pt")
        )
    )
    ckpt_a = torch.load(straight / "checkpoints" / "latest.pt", weights_only=False)
    ckpt_b = torch.load(resumed / "checkpoints" / "latest.pt", weights_only=False)
    for key, value in ckpt_a["model"].items():
        assert torch.equal(value, ckpt_b["model"][key]), key
    assert ckpt_a["stats"]["returns"] == ckpt_b["stats"]["returns"]
    assert ckpt_a["env_steps"] == ckpt_b["env_steps"] and ckpt_a["update"] == ckpt_b["update"] == 12
    summary_a = json.loads((straight / "summary.json").read_text())
    summary_b = json.loads((resumed / "summary.json").read_text())
    assert summary_a["return_ema"] == summary_b["return_ema"] and summary_b["episodes"] == 48


def test_run_directory_holds_every_artifact(tmp_path):
    run_dir = vpg.train(config(tmp_path, total_episodes=8))
    for name in ("config.json", "summary.json", "learning_curve.png", "checkpoints/latest.pt"):
        assert (run_dir / name).is_file(), name
    assert list((run_dir / "tb").glob("events.out.tfevents.*"))
    summary = json.loads((run_dir / "summary.json").read_text())
    assert set(summary) == {
        "algo",
        "env",
        "seed",
        "env_steps",
        "episodes",
        "wall_seconds",
        "steps_per_second",
        "mean_return_last_20",
        "return_ema",
        "solved_threshold",
        "solved_at_env_step",
        "solved_at_seconds",
        "workers",
        "best_mean_return_last_20",
        "solved_mean_return_last_20",
    }
    assert summary["episodes"] == 8 and summary["solved_threshold"] == 475.0
    config_json = json.loads((run_dir / "config.json").read_text())
    assert config_json["lr"] == 1e-2 and config_json["batch_episodes"] == 4  # resolved CartPole preset


def test_tensorboard_has_the_documented_vpg_tags(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = vpg.train(config(tmp_path, total_episodes=8))
    acc = EventAccumulator(str(run_dir / "tb"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {
        "charts/episode_return",
        "charts/return_ema",
        "charts/sps",
        "losses/policy_loss",
        "policy/entropy",
        "policy/long_term_entropy",
    } <= tags
    assert acc.Scalars("policy/entropy")[0].value == pytest.approx(math.log(2), rel=1e-5)  # zero-init
    assert len(acc.Scalars("charts/episode_return")) == 8
