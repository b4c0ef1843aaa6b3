"""The witnesses on small hand-written training loops: each check fires on its trigger, is exact
where it claims to be, stays quiet on a correct loop, and every hook goes when it is removed."""

import os

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.optim.optimizer as optim_hooks
from torch import nn

from dirtyrl.witness import EnvWitness, GradientWitness, WitnessTripped
from dirtyrl.witness.acting import Episode, acting_evidence
from dirtyrl.witness.envs import Recorder


def net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 2))


def train(model, opt, steps, *, clear=True, x=None, lr_scale=1.0):
    for i in range(steps):
        batch = x if x is not None else torch.randn(16, 3, generator=torch.Generator().manual_seed(i))
        loss = (model(batch) ** 2).mean() * lr_scale
        if clear:
            opt.zero_grad()
        loss.backward()
        opt.step()


def checks(witness):
    return {f.check for f in witness.close()}


def test_a_correct_loop_has_no_finding_and_every_hook_is_removed():
    model = net()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    with GradientWitness() as w:
        train(model, opt, 40)
    assert checks(w) == set()
    assert w.steps == 40 and all(r.optimizers for r in w.params.values())
    names = sorted(r.name for r in w.params.values())
    assert names == ["Sequential.0.bias", "Sequential.0.weight", "Sequential.2.bias", "Sequential.2.weight"]
    assert not torch.nn.modules.module._global_forward_pre_hooks
    assert not optim_hooks._global_optimizer_pre_hooks and not optim_hooks._global_optimizer_post_hooks
    assert not model[0].weight._backward_hooks


def test_gradients_carried_over_are_measured_exactly():
    model = net()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)  # lr 0: the carried gradient is known exactly
    x = torch.ones(4, 3)
    with GradientWitness() as w:
        train(model, opt, 3, clear=False, x=x)
    found = {f.where: f for f in w.close() if f.check == "stale_grad"}
    assert set(found) == {r.name for r in w.params.values()}
    assert w.carried_share() == 1.0
    g = torch.autograd.grad((model(x) ** 2).mean(), model[2].bias)[0]
    # first check after step 1: .grad holds exactly one update's gradient, the incoming one another
    assert f"{float(g.norm()):.3e} carried over" in found["Sequential.2.bias"].detail


def test_clearing_with_set_to_none_and_with_zeros_are_both_clean():
    for set_to_none in (True, False):
        model = net()
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        with GradientWitness() as w:
            for _ in range(5):
                opt.zero_grad(set_to_none=set_to_none)
                (model(torch.randn(8, 3)) ** 2).mean().backward()
                opt.step()
        assert w.carried_share() == 0.0 and "stale_grad" not in checks(w)


def test_a_layer_left_out_of_the_optimizer_and_a_layer_never_reached():
    model = net()
    unused = nn.Linear(3, 3)
    opt = torch.optim.Adam([*model[2].parameters(), *unused.parameters()], lr=1e-3)
    with GradientWitness() as w:
        train(model, opt, 12)
    found = w.close()
    assert {(f.check, f.where) for f in found if f.check == "not_in_optimizer"} == {
        ("not_in_optimizer", "Sequential.0.weight"),
        ("not_in_optimizer", "Sequential.0.bias"),
    }
    never = [f for f in found if f.check in ("never_reached", "zero_grad")]
    assert never and all(f.where.startswith("optimizer") for f in never)  # never called: named by its optimizer


def test_nan_gradients_stop_before_the_step_in_stop_mode():
    model = net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = [p.detach().clone() for p in model.parameters()]
    with GradientWitness("stop") as w, pytest.raises(WitnessTripped, match="nan_grad") as trip:
        out = model(torch.randn(8, 3))
        loss = ((out - out.mean()) / out.new_zeros(())).mean()  # a division by a zero std
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert "made in the loss or its backward" in str(trip.value)
    assert all(torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True))  # the bad step never ran
    assert w.findings[0].check == "nan_grad"


@pytest.mark.parametrize("last_layer", [True, False])
def test_a_nan_between_full_checks_is_named_at_the_update_it_appears(last_layer):
    model = net()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    w = GradientWitness("stop", check_every=50)
    with w, pytest.raises(WitnessTripped, match="nan_grad"):
        for i in range(300):  # the full checks: the first 100 updates, then every 50th
            out = model(torch.randn(8, 3, generator=torch.Generator().manual_seed(i)))
            if i == 220 and last_layer:
                out = out / out.new_zeros(())  # NaN in the loss: every gradient
            loss = (out**2).mean()
            if i == 220 and not last_layer:
                loss = loss + model[0].weight.sum() * float("nan")  # NaN in the first layer's gradient only
            opt.zero_grad()
            loss.backward()
            opt.step()
    found = w.findings[0]
    assert found.check == "nan_grad" and found.where.startswith("Sequential.0" if not last_layer else "Sequential.")
    if last_layer:  # every gradient holds it: seen at once, before the step
        assert found.optimizer_step == 221 and all(bool(torch.isfinite(p).all()) for p in model.parameters())
    else:  # one layer's gradient: seen when its turn comes, within one update per parameter
        assert 221 <= found.optimizer_step <= 221 + len(list(model.parameters()))


def test_a_learning_rate_that_explodes_is_an_update_size_finding():
    model = net()
    opt = torch.optim.Adam(model.parameters(), lr=50.0)
    with GradientWitness() as w:
        train(model, opt, 6)
    assert "update_size" in checks(w)


def test_dead_units_and_an_input_that_never_varies():
    model = net()
    with torch.no_grad():
        model[0].bias.fill_(-100.0)  # every ReLU unit dead for inputs of this size
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    with GradientWitness() as w:
        train(model, opt, 12)
    assert "dead_units" in checks(w)
    model = net()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    with GradientWitness() as w:
        train(model, opt, 210, x=torch.zeros(4, 3))
    assert "constant_input" in checks(w)


def test_a_step_that_changes_nothing_is_a_frozen_parameter():
    model = net()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    with GradientWitness() as w:
        train(model, opt, 12)
    assert "frozen_param" in checks(w)


def test_a_target_copy_that_never_moves_is_found_and_one_that_moves_is_not():
    for copy_every in (None, 10):
        online, target = net(0), net(1)
        opt = torch.optim.Adam(online.parameters(), lr=1e-3)
        with GradientWitness() as w:
            for i in range(60):
                x = torch.randn(8, 3)
                with torch.no_grad():
                    y = target(x).max(1).values
                loss = ((online(x).max(1).values - y) ** 2).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
                if copy_every and i % copy_every == 0:
                    target.load_state_dict(online.state_dict())
        w.close()
        assert w.frozen_copies() == ([] if copy_every else ["Sequential"])


class Cycle(gym.Env):
    observation_space = gym.spaces.Box(-1, 1, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.array([self.np_random.choice([-1.0, 1.0])], np.float32), {}

    def step(self, action):
        self.t += 1
        obs = np.array([self.np_random.choice([-1.0, 1.0])], np.float32)
        return obs, float(action), self.t >= 4, False, {}


def test_the_env_witness_records_episodes_and_restores_gym_make():
    gym.register("WitnessCycle-v0", entry_point=Cycle)
    original = gym.make
    try:
        with EnvWitness(keep_observations=True) as witness:
            env = gym.make("WitnessCycle-v0")
            assert gym.make is not original
            obs, _ = env.reset(seed=1)
            for _ in range(40):  # the agent acts on the current observation: action 1 when obs > 0
                obs, _, terminated, truncated, _ = env.step(int(obs[0] > 0))
                if terminated or truncated:
                    obs, _ = env.reset()
        assert gym.make is original
        assert len(witness.episodes) == 10 and all(e.length == 4 for e in witness.episodes)
        first = witness.episodes[0]
        assert [int(o[0] > 0) for o in first.observations] == first.actions  # obs[t] is what action t saw
        assert witness.made == [("WitnessCycle-v0", {})]
    finally:
        gym.registry.pop("WitnessCycle-v0")


def test_acting_evidence_names_the_observation_the_actions_follow():
    rng = np.random.default_rng(0)
    episodes = []
    for _ in range(100):
        obs = [np.array([rng.choice([-1.0, 1.0])]) for _ in range(4)]
        episodes.append(Episode(observations=obs, actions=[int(obs[max(t - 1, 0)][0] > 0) for t in range(4)]))
    ev = acting_evidence(episodes, 2)
    assert ev.stale == "previous" and ev.previous == 1.0 and ev.current < 0.7
    episodes = [Episode(observations=e.observations, actions=[int(o[0] > 0) for o in e.observations]) for e in episodes]
    assert acting_evidence(episodes, 2).stale is None


def test_sparse_gradients_are_judged_by_their_values_and_a_witness_error_never_ends_the_run(tmp_path, capsys):
    from dirtyrl.telemetry import RunLogger

    emb, lin = nn.Embedding(10, 4, sparse=True), nn.Linear(4, 2)
    opt = torch.optim.SGD([*emb.parameters(), *lin.parameters()], lr=0.1)

    def steps(n):
        for i in range(n):
            opt.zero_grad()
            lin(emb(torch.tensor([i % 10, 3]))).sum().backward()
            opt.step()

    with GradientWitness(every=5, logger=RunLogger(tmp_path)) as w:
        steps(30)
    assert w.close() == [] and w.failed is None
    broken = GradientWitness()
    broken._check_grads = None  # a bug of the witness's own
    with broken:
        steps(3)  # the run goes on
    assert broken.failed is not None and "internal error" in capsys.readouterr().err


def test_an_env_witness_error_never_ends_the_run(capsys):
    gym.register("WitnessCycle-v0", entry_point=Cycle)
    try:
        with EnvWitness() as witness:
            witness.on_step = None  # a bug of the witness's own
            env = gym.make("WitnessCycle-v0")
            env.reset(seed=1)
            for _ in range(8):  # the env goes on stepping and resetting
                _, _, terminated, _, _ = env.step(0)
                if terminated:
                    env.reset()
        assert witness.failed is not None and "internal error" in capsys.readouterr().err
    finally:
        gym.registry.pop("WitnessCycle-v0")


class Emits(gym.Env):
    """Steps emit ``bad`` at entry 1 once ``t`` reaches 3; entry 1's bound is ``bound``."""

    action_space = gym.spaces.Discrete(2)

    def __init__(self, bad=0.0, bound=1.0):
        self.bad = bad
        self.observation_space = gym.spaces.Box(np.array([-1, -bound], np.float32), np.array([1, bound], np.float32))

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(2, np.float32), {}

    def step(self, action):
        self.t += 1
        obs = np.array([self.np_random.uniform(-1, 1), self.bad if self.t >= 3 else 0.0], np.float32)
        return obs, 0.0, self.t >= 10, False, {}


@pytest.mark.parametrize(
    "bad, bound, checks",
    [
        (0.5, 1.0, set()),
        (np.nan, 1.0, {"nan_obs"}),
        (np.inf, np.inf, {"nan_obs"}),  # an unbounded entry is still not allowed Inf
        (50.0, 1.0, {"obs_range"}),
        (1e6, np.inf, set()),  # large but inside an unbounded entry
    ],
)
def test_observation_checks_find_nan_inf_and_far_outside_the_space(bad, bound, checks):
    with EnvWitness() as witness:
        env = Recorder(Emits(bad, bound), witness, "Emits", 0)
        env.reset(seed=0)
        for _ in range(10):
            env.step(0)
    assert {f.check for f in witness.findings} == checks


def test_a_forked_worker_records_nothing():
    gym.register("WitnessCycle-v0", entry_point=Cycle)
    try:
        with EnvWitness() as witness:
            env = gym.make("WitnessCycle-v0")
            env.reset(seed=1)
            pid = os.fork()
            if pid == 0:  # the child: steps the env it inherited, as an AsyncVectorEnv worker would
                for _ in range(8):
                    env.step(0)
                os._exit(0 if witness.env_steps == 0 and not witness.recording else 1)
            _, status = os.waitpid(pid, 0)
            env.step(0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert witness.recording and witness.env_steps == 1
    finally:
        gym.registry.pop("WitnessCycle-v0")


@pytest.mark.parametrize("mode", ["vector_entry_point", "async", "sync"])
def test_every_env_of_make_vec_is_recorded_whatever_made_it(mode):
    """CartPole's own vector env and AsyncVectorEnv's workers make no env through gymnasium.make
    in this process: their envs are recorded from the batched steps, autoreset steps left out."""
    n = 3
    with EnvWitness() as witness:
        envs = gym.make_vec("CartPole-v1", num_envs=n, vectorization_mode=mode)
        envs.reset(seed=0)
        rng = np.random.default_rng(0)
        truth, running, resetting, played = [[] for _ in range(n)], np.zeros(n), np.zeros(n, bool), 0
        for _ in range(300):
            _, rewards, terminated, truncated, _ = envs.step(rng.integers(0, 2, n))
            for i in np.flatnonzero(~resetting):  # an env's step after its episode's end only resets it
                played += 1
                running[i] += rewards[i]
                if terminated[i] or truncated[i]:
                    truth[i].append(running[i])
                    running[i] = 0.0
            resetting = terminated | truncated
        envs.close()
    recorded = [
        [e.ret for e, k in zip(witness.episodes, witness.episode_env, strict=True) if k == index]
        for index in sorted(set(witness.episode_env))
    ]
    assert recorded == truth and witness.env_steps == played
    assert witness.made[0] == ("CartPole-v1", {})
