"""Tier 6: hooks record what they should and are removed after the context; flags off = nothing."""

import warnings

import pytest
import torch
from torch import nn

from dirtyrl.config import DebugConfig
from dirtyrl.debug import attach
from dirtyrl.debug.hooks import HookRecorder
from dirtyrl.errors import UserError
from dirtyrl.nets import KarpathyPolicy
from dirtyrl.telemetry import RunLogger


def hook_count(model):
    modules = sum(len(m._forward_hooks) + len(m._backward_hooks) + len(m._forward_pre_hooks) for m in model.modules())
    params = sum(len(p._backward_hooks or {}) for p in model.parameters())
    return modules + params


def test_recorder_captures_activations_gradients_and_removes_every_hook():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    with torch.no_grad():
        net[0].bias[:4] = -100.0  # units 0-3 are dead: always-negative pre-activation
    assert hook_count(net) == 0
    with HookRecorder(net, ["1", "2"]) as rec:
        assert hook_count(net) > 0
        out = net(torch.randn(16, 4))
        out.pow(2).sum().backward()
        stats = rec.stats()
    out = out.detach()
    assert hook_count(net) == 0
    relu = stats["1/activation"]
    assert relu["dead_frac"] == pytest.approx(0.5) and relu["zero_frac"] >= 0.5 and relu["calls"] == 1
    assert stats["2/activation"]["mean"] == pytest.approx(float(out.mean()), rel=1e-5)
    # dL/d(out) = 2 * out for this loss: the activation-gradient hook saw exactly that.
    assert stats["2/activation_grad"]["mean"] == pytest.approx(float(2 * out.mean()), rel=1e-4)
    assert stats["2.weight/grad"]["mean"] == pytest.approx(float(net[2].weight.grad.mean()), rel=1e-4, abs=1e-9)
    # Outside the context nothing is recorded any more.
    net(torch.randn(16, 4)).sum().backward()
    assert rec.stats()["1/activation"]["calls"] == 1


def test_recorder_silences_the_first_layer_warning_only_while_attached():
    net = nn.Sequential(nn.Linear(4, 2))  # its input needs no grad: torch warns at every backward
    before = list(warnings.filters)
    with HookRecorder(net, ["0"]):
        assert len(warnings.filters) == len(before) + 1
        with warnings.catch_warnings(record=True) as caught:
            net(torch.randn(3, 4)).sum().backward()
    assert warnings.filters == before
    assert not [w for w in caught if "Full backward hook" in str(w.message)]


def test_instruments_attach_and_close_remove_every_hook():
    policy = KarpathyPolicy(4, 2, hidden=8, bias=True)
    instruments = attach(DebugConfig(hooks=["fc1", "fc2"], trap="warn"), policy, RunLogger(None), None)
    assert hook_count(policy) > 0 and instruments.active
    policy(torch.randn(5, 4)).sum().backward()
    instruments.after_backward(0, 0, torch.tensor(1.0), 0.69)
    instruments.close()
    instruments.close()  # twice is fine
    assert hook_count(policy) == 0


def test_unknown_module_name_is_a_user_error_and_leaves_no_hook():
    policy = KarpathyPolicy(4, 2, hidden=8)
    with pytest.raises(UserError, match=r"no module named 'fc3'.*fc1, fc2"):
        attach(DebugConfig(hooks=["fc1", "fc3"], trap="warn"), policy, RunLogger(None), None)
    assert hook_count(policy) == 0


def test_every_flag_off_attaches_nothing_and_every_hook_point_is_a_no_op(tmp_path):
    policy = KarpathyPolicy(4, 2, hidden=8)
    with attach(DebugConfig(), policy, RunLogger(None), tmp_path) as instruments:
        assert not instruments.active and hook_count(policy) == 0
        assert instruments.on_env_step(None, 1) is None  # env=None: not even looked at
        instruments.on_episode_end(0)
        instruments.after_backward(0, 0, torch.tensor(float("nan")))  # no trap: nothing checks it
        instruments.after_step(1, 0)
    assert list(tmp_path.iterdir()) == []
