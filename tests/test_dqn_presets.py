"""DQN presets and the per-CPU choices: how --preset fills defaults, and the bf16 / channels-last
decisions (pure functions) plus what a real Pong run records about them."""

from __future__ import annotations

import json

import pytest
import torch

from dirtyrl import hardware
from dirtyrl.algos import dqn
from dirtyrl.config import EnvConfig, RunConfig
from dirtyrl.errors import UserError


def cfg(env="pong", **kw) -> dqn.Config:
    run_kw = {k: kw.pop(k) for k in list(kw) if k in RunConfig.__dataclass_fields__}
    return dqn.Config(env=EnvConfig(env=env), run=RunConfig(progress="off", **run_kw), **kw)


def test_cleanrl_preset_is_the_atari_default():
    plain, named = dqn.resolve(cfg()), dqn.resolve(cfg(preset="cleanrl"))
    assert dataclasses_equal_but_preset(plain, named)
    assert (plain.net, plain.screen, plain.train_every, plain.buffer_size, plain.learning_starts) == (
        "nature",
        "gray84",
        4,
        1_000_000,
        80_000,
    )
    assert (plain.n_step, plain.dueling, plain.double, plain.loss, plain.lr) == (1, False, False, "mse", 1e-4)


def dataclasses_equal_but_preset(a: dqn.Config, b: dqn.Config) -> bool:
    import dataclasses

    return dataclasses.replace(a, preset=None) == dataclasses.replace(b, preset=None)


def test_pong_fast_preset_fills_defaults_and_explicit_flags_win():
    fast = dqn.resolve(cfg(preset="pong-fast"))
    assert (fast.net, fast.screen, fast.n_step, fast.dueling, fast.double, fast.prioritized) == (
        "mnih2013",
        "gray40",
        3,
        True,
        True,
        True,
    )
    assert (fast.buffer_size, fast.learning_starts, fast.eps_decay_steps, fast.target_update_every) == (
        100_000,
        10_000,
        100_000,
        1000,
    )
    # A field the preset leaves out comes from the env's own preset.
    assert fast.optimizer == "adam"
    overridden = dqn.resolve(cfg(preset="pong-fast", n_step=1, lr=3e-4, screen="gray84", prioritized=False))
    assert (overridden.n_step, overridden.lr, overridden.screen, overridden.net) == (1, 3e-4, "gray84", "mnih2013")
    assert overridden.prioritized is False


def test_bad_n_step_and_mlp_dueling_are_user_errors():
    with pytest.raises(UserError, match="--n-step must be > 0"):
        dqn.resolve(cfg(n_step=0))
    with pytest.raises(UserError, match="--dueling"):
        dqn.resolve(cfg(env="CartPole-v1", dueling=True))


def test_native_bf16_comes_from_the_cpu_flags(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: AMD EPYC 9R14\nflags\t\t: fpu avx2 avx512f avx512_bf16\n\n")
    model, flags = hardware.cpu_info(str(info))
    assert model == "AMD EPYC 9R14" and hardware.native_bf16(flags)
    info.write_text("model name\t: AMD EPYC 7R13\nflags\t\t: fpu avx2 fma\n")
    assert not hardware.native_bf16(hardware.cpu_info(str(info))[1])
    assert hardware.cpu_info(str(tmp_path / "missing")) == ("unknown", set())


@pytest.mark.parametrize(
    "requested, device, native, slowdown, mode, words",
    [
        ("off", "cpu", True, None, "off", "--autocast off"),
        ("bf16", "cpu", True, None, "bf16", "native bf16"),
        ("bf16", "cpu", False, 6.5, "off", "6.5x slower, running in fp32"),
        ("auto", "cpu", True, None, "bf16", "native bf16"),
        ("auto", "cpu", False, None, "off", "no native bf16"),
        ("bf16", "cuda", False, None, "bf16", "cuda"),
    ],
)
def test_autocast_decision(requested, device, native, slowdown, mode, words):
    chosen, why = hardware.decide_autocast(requested, device, native, slowdown)
    assert chosen == mode and words in why


def test_channels_last_decision():
    assert hardware.decide_channels_last("auto", True, (0.010, 0.008))[0] is True
    assert hardware.decide_channels_last("auto", True, (0.010, 0.0097))[0] is False  # within the 5% margin
    assert hardware.decide_channels_last("auto", True, (0.008, 0.010))[0] is False
    assert hardware.decide_channels_last("on", True, None) == (True, "channels-last on (--channels-last on)")
    assert hardware.decide_channels_last("on", False, None)[0] is False  # an MLP has no layout to choose
    with pytest.raises(ValueError):
        hardware.decide_channels_last("auto", True, None)


def test_measure_layouts_leaves_the_net_alone():
    from dirtyrl.qnets import make_qnet

    q = make_qnet("mnih2013", (4, 40, 40), 3)
    before = [p.detach().clone() for p in q.parameters()]
    seconds = hardware.measure_layouts(q, torch.zeros(8, 4, 40, 40, dtype=torch.uint8), repeats=1)
    assert all(s > 0 for s in seconds)
    assert not q.channels_last and all(p.grad is None for p in q.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, q.parameters(), strict=True))


def test_pong_fast_run_records_the_hardware_choices(tmp_path, capsys):
    """A short real Pong run with the preset: config.json says what was chosen and why, and a bf16
    request on a CPU without native bf16 prints one line and runs in fp32."""
    _, flags = hardware.cpu_info()
    run_dir = dqn.train(
        cfg(
            preset="pong-fast",
            autocast="bf16",
            total_steps=50,
            run_dir=str(tmp_path / "run"),
            learning_starts=300,
            train_every=16,
            noop_max=5,
        )
    )
    record = json.loads((run_dir / "config.json").read_text())
    assert record["screen"] == "gray40" and record["n_step"] == 3 and record["channels_last"] in ("on", "off")
    assert "NHWC" in record["hardware"]["channels_last"]
    warnings = [line for line in capsys.readouterr().err.splitlines() if "--autocast bf16" in line]
    if hardware.native_bf16(flags):
        assert record["autocast"] == "bf16" and not warnings
    else:
        assert record["autocast"] == "off" and record["hardware"]["native_bf16"] is False
        assert len(warnings) == 1 and "slower, running in fp32" in warnings[0]
    state = torch.load(run_dir / "checkpoints" / "latest.pt", weights_only=False)
    assert state["learner"]["updates"] > 0
