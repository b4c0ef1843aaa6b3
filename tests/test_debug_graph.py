"""Tier 6: backward-graph diagrams hold every parameter; unreachable parameters are reported."""

import argparse

import pytest
import torch
from torch import nn

from dirtyrl.commands import graph
from dirtyrl.debug.graph import render_graph, unreachable_parameters


def run_tool(*argv):
    parser = argparse.ArgumentParser()
    graph.add_arguments(parser)
    return graph.run(parser.parse_args(list(argv)))


def test_vpg_graphs_after_1_2_3_steps_contain_every_policy_parameter(tmp_path, capsys):
    assert run_tool("vpg", "--steps", "1", "2", "3", "--out", str(tmp_path)) == 0
    out = capsys.readouterr().out
    assert "all 4 trainable parameters are reachable" in out
    names = ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    for k in (1, 2, 3):
        dot = (tmp_path / f"vpg-step{k}.dot").read_text()
        svg = (tmp_path / f"vpg-step{k}.svg").read_text()
        assert all(name in dot and name in svg for name in names)
        assert (tmp_path / f"vpg-step{k}.png").stat().st_size > 5_000
        # One forward graph per step: the string grows by one log-softmax per step.
        assert dot.count("LogSoftmaxBackward") == k
    assert (tmp_path / "vpg-string.png").exists()


def test_dqn_td_loss_graph_contains_every_online_parameter(tmp_path, capsys):
    assert run_tool("dqn", "--steps", "2", "--out", str(tmp_path), "--format", "svg") == 0
    assert "all 6 trainable parameters are reachable" in capsys.readouterr().out
    svg = (tmp_path / "dqn-step2.svg").read_text()
    assert all(f"net.{i}.{kind}" in svg for i in (0, 2, 4) for kind in ("weight", "bias"))


class HalfDetached(nn.Module):
    """The 'not all parameters are trained' bug: a second head whose output is detached."""

    def __init__(self):
        super().__init__()
        self.body = nn.Linear(3, 4)
        self.head = nn.Linear(4, 2)
        self.aux = nn.Linear(4, 2)

    def forward(self, x):
        h = torch.relu(self.body(x))
        return self.head(h) + self.aux(h).detach()


def test_unreachable_parameters_are_named_and_the_command_fails(tmp_path, monkeypatch, capsys):
    torch.manual_seed(0)
    model = HalfDetached()
    loss = model(torch.randn(5, 3)).sum()
    assert unreachable_parameters(model, loss) == ["aux.weight", "aux.bias"]
    paths = render_graph(loss, model, tmp_path / "broken", ["svg"])
    assert "aux.weight" not in paths[-1].read_text() and "head.weight" in paths[-1].read_text()

    monkeypatch.setitem(graph.LOSSES, "vpg", lambda env, steps, seed: (model, {k: loss for k in steps}))
    assert run_tool("vpg", "--steps", "1", "--out", str(tmp_path), "--format", "png") == 1
    out = capsys.readouterr().out
    assert "NOT reachable from the loss, never trained (2 of 6)" in out and "aux.weight (2, 4)" in out


def test_bad_steps_is_a_user_error(tmp_path):
    from dirtyrl.errors import UserError

    with pytest.raises(UserError, match="--steps must be >= 1"):
        run_tool("vpg", "--steps", "0", "--out", str(tmp_path))


@pytest.mark.parametrize("algo", ["vpg", "dqn"])
def test_the_env_is_made_with_its_keyword_arguments(tmp_path, capsys, algo):
    """--env-kwargs reach the env the steps are played in: a good one runs, a wrong one is named."""
    from dirtyrl.errors import UserError

    out = str(tmp_path)
    assert run_tool(algo, "--env", "FrozenLake-v1", "--env-kwargs", "is_slippery=False", "--steps", "2", "--out", out) == 0
    assert "trainable parameters are reachable" in capsys.readouterr().out
    with pytest.raises(UserError, match="does not accept the keyword bogus"):
        run_tool(algo, "--env", "FrozenLake-v1", "--env-kwargs", "bogus=1", "--steps", "2", "--out", out)
