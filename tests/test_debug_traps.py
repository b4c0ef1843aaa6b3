"""Tier 6: every trap trips on an injected fault and stays quiet on a healthy run."""

import numpy as np
import pytest
import torch
from torch import nn

from dirtyrl import cli
from dirtyrl.algos import vpg
from dirtyrl.checkpoint import load_checkpoint
from dirtyrl.config import DebugConfig, EnvConfig, RunConfig
from dirtyrl.debug import TrapTripped
from dirtyrl.debug.traps import Traps
from dirtyrl.telemetry import RunLogger


def cartpole(run_dir, episodes=40, lr=None, **debug):
    return vpg.Config(
        env=EnvConfig(env="CartPole-v1"),
        run=RunConfig(total_episodes=episodes, run_dir=str(run_dir), progress="off", checkpoint_every=1),
        debug=DebugConfig(**debug),
        lr=lr,
    )


def mlp(bias_shift=0.0):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2))
    with torch.no_grad():
        net[0].bias += bias_shift
    return net


def backward(net, traps, update, loss_fn=lambda out: out.pow(2).mean(), detach_first=False):
    net.zero_grad(set_to_none=True)
    x = torch.randn(32, 4)
    hidden = net[1](net[0](x))
    out = net[2](hidden.detach() if detach_first else hidden)
    loss = loss_fn(out)
    loss.backward()
    traps.after_backward(update, update * 10, loss, entropy=None)
    return loss


def test_healthy_vpg_run_trips_nothing(tmp_path, capsys):
    vpg.train(cartpole(tmp_path / "run", trap="warn"))
    assert "trap" not in capsys.readouterr().err


def test_nan_in_the_loss_stops_the_run_dumps_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, capsys):
    real, calls = vpg.batched_backward, []

    def poisoned(policy, episodes, adv, *rest):
        calls.append(1)
        return real(policy, episodes, adv * np.nan if len(calls) == 3 else adv, *rest)

    monkeypatch.setattr(vpg, "batched_backward", poisoned)
    run_dir = tmp_path / "run"
    # Through the real CLI entry point: one line, exit status 3.
    status = cli.main(
        [
            "train",
            "vpg",
            "--env",
            "CartPole-v1",
            "--total-episodes",
            "40",
            "--run-dir",
            str(run_dir),
            "--progress",
            "off",
            "--checkpoint-every",
            "1",
            "--debug.trap",
            "stop",
        ]
    )
    err = capsys.readouterr().err
    assert status == 3
    assert err.count("\n") == 1 and err.startswith("dirtyrl: trap: stopped at update 2") and "nan_loss on loss" in err
    report = (run_dir / "traps" / "update-000002" / "report.txt").read_text()
    assert "nan_loss on loss" in report and "fc1.weight" in report and "advantages" in report
    dump = torch.load(run_dir / "traps" / "update-000002" / "dump.pt", weights_only=False)
    assert dump["trips"][0]["check"] == "nan_loss"
    assert len(dump["batch"]["advantages"]) == len(dump["batch"]["actions"]) == len(dump["batch"]["obs"]) > 0
    assert set(dump["grads"]) == {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}
    ckpt = load_checkpoint(run_dir / "checkpoints" / "latest.pt")
    assert ckpt["update"] == 2  # written after update 2; the poisoned third update never stepped
    assert all(torch.isfinite(t).all() for t in ckpt["model"].values())


def test_a_detached_layer_trips_zero_grad_on_exactly_its_parameters():
    net = mlp()
    traps = Traps(net, RunLogger(None), mode="warn")
    backward(net, traps, 0, detach_first=True)
    assert traps.trips == []  # patience 2: one all-zero update is allowed (zero-init last layer)
    backward(net, traps, 1, detach_first=True)
    assert {(t.check, t.where) for t in traps.trips} == {("zero_grad", "0.weight"), ("zero_grad", "0.bias")}
    assert "no gradient reached it" in traps.trips[0].detail


def test_zeroed_gradients_trip_zero_grad_and_healthy_updates_do_not():
    net = mlp()
    traps = Traps(net, RunLogger(None), mode="warn")
    for update in range(3):
        backward(net, traps, update)
    assert traps.trips == []
    for update in range(3, 5):
        backward(net, traps, update, loss_fn=lambda out: (out * 0).sum())  # a loss with zero gradient
    assert {t.check for t in traps.trips} == {"zero_grad"} and "all zeros" in traps.trips[-1].detail


def test_huge_learning_rate_trips_the_entropy_trap(tmp_path):
    with pytest.raises(TrapTripped) as info:
        vpg.train(cartpole(tmp_path / "run", lr=10.0, trap="stop"))
    assert info.value.trips[0].check == "entropy_collapse"
    assert info.value.update < DebugConfig().trap_entropy_until
    assert (tmp_path / "run" / "traps").is_dir()


def test_nan_in_gradients_parameters_and_exploding_norm():
    net = mlp()
    traps = Traps(net, RunLogger(None), mode="warn", max_grad_norm=10.0)
    backward(net, traps, 0, loss_fn=lambda out: out.sum() * 1e4)
    assert [t.check for t in traps.trips] == ["grad_norm"]
    with torch.no_grad():
        net[2].weight[0, 0] = float("inf")
    traps.after_step(1, 10)
    assert traps.trips[-1].check == "nan_param" and traps.trips[-1].where == "2.weight"
    backward(net, traps, 2)
    assert {"nan_loss", "nan_grad", "nan_param"} <= {t.check for t in traps.trips}


def test_dead_relu_layer_trips_dead_units_only_when_dead():
    healthy = mlp()
    traps = Traps(healthy, RunLogger(None), mode="warn").attach()
    backward(healthy, traps, 0)
    assert traps.trips == []
    dead = mlp(bias_shift=-100.0)  # every pre-activation negative: every ReLU unit is dead
    traps = Traps(dead, RunLogger(None), mode="warn", zero_grad_patience=100).attach()
    backward(dead, traps, 0)
    assert [(t.check, t.where) for t in traps.trips] == [("dead_units", "2 input")]
    traps.remove()
    assert all(not m._forward_hooks for m in dead.modules())


def test_break_mode_opens_the_debugger_and_goes_on():
    net = mlp()
    opened = []
    traps = Traps(net, RunLogger(None), mode="break", max_grad_norm=1e-9, debugger=lambda: opened.append(1))
    backward(net, traps, 0)
    assert opened == [1]


def test_warn_mode_repeats_with_decreasing_frequency(capsys):
    net = mlp()
    traps = Traps(net, RunLogger(None), mode="warn", max_grad_norm=1e-9)
    for update in range(8):
        backward(net, traps, update)
    lines = [line for line in capsys.readouterr().err.splitlines() if "grad_norm" in line]
    assert len(traps.trips) == 8 and len(lines) == 4  # the 1st, 2nd, 4th and 8th time
    assert lines[-1].endswith("(seen 8 times)")


# ---- gradient hygiene -------------------------------------------------------------------------


def test_gradients_left_from_the_last_update_trip_stale_grad(tmp_path, monkeypatch):
    real = vpg.make_optimizer

    def never_cleared(cfg, policy):
        optimizer = real(cfg, policy)
        optimizer.zero_grad = lambda set_to_none=True: None  # the bug: gradients pile up across updates
        return optimizer

    monkeypatch.setattr(vpg, "make_optimizer", never_cleared)
    with pytest.raises(TrapTripped) as info:
        vpg.train(cartpole(tmp_path / "run", trap="stop"))
    assert info.value.trips[0].check == "stale_grad" and info.value.update == 1
    assert "zero_grad" in str(info.value)


def test_actions_not_sampled_from_the_policy_trip_off_policy_actions(tmp_path, monkeypatch):
    monkeypatch.setattr(vpg, "sample", lambda p, rng: int(np.argmax(p)))  # the bug: greedy acting in a PG agent
    with pytest.raises(TrapTripped) as info:
        vpg.train(cartpole(tmp_path / "run", episodes=200, trap="stop"))
    assert info.value.trips[0].check == "off_policy_actions" and "MORE likely" in info.value.trips[0].detail


def test_off_policy_scores_stay_small_for_real_samples_and_flag_other_actions():
    from dirtyrl.debug.traps import OFF_POLICY_Z, off_policy_scores

    torch.manual_seed(0)
    worst = 0.0
    for _ in range(200):  # skewed policies, small batches: where heavy tails would false-alarm
        logits = torch.randn(64, 3) * 4
        actions = torch.distributions.Categorical(logits=logits).sample()
        worst = max(worst, *map(abs, off_policy_scores(logits, actions)))
    assert worst < OFF_POLICY_Z
    logits = torch.randn(256, 3) * 2
    assert max(off_policy_scores(logits, torch.randint(3, (256,)))) < -OFF_POLICY_Z  # uniform, not pi
    assert min(off_policy_scores(logits, logits.argmax(1))) > OFF_POLICY_Z  # argmax, not a sample


def test_nan_trip_names_the_first_operation_that_made_it():
    net = mlp()
    traps = Traps(net, RunLogger(None), "warn")

    def loss_fn(out):
        return torch.log(out - 100.0).mean()  # log of a negative number: the NaN is born here

    def replay():
        loss_fn(net(torch.randn(8, 4))).backward()

    net.zero_grad(set_to_none=True)
    loss = loss_fn(net(torch.randn(8, 4)))
    loss.backward()
    before = [p.grad.clone() for p in net.parameters()]
    traps.after_backward(0, 0, loss, replay=replay)
    (trip,) = [t for t in traps.trips if t.check == "nan_loss"]
    assert "first NaN/Inf: forward: " in trip.detail and "log" in trip.detail and "test_debug_traps.py" in trip.detail
    assert all(torch.equal(p.grad, g) for p, g in zip(net.parameters(), before, strict=True))  # the replay left no trace
