"""Tier 6: the one-page report, with the random baseline of the same env."""

import argparse
import json

import numpy as np
import pytest
from PIL import Image

from dirtyrl.algos import dqn, vpg
from dirtyrl.commands import report
from dirtyrl.config import DebugConfig, EnvConfig, RunConfig
from dirtyrl.errors import UserError
from dirtyrl.telemetry import window_means


def run_report(*argv):
    parser = argparse.ArgumentParser()
    report.add_arguments(parser)
    return report.run(parser.parse_args([str(a) for a in argv]))


def test_vpg_report_with_a_baseline_it_plays_once(tmp_path, capsys):
    run_dir = tmp_path / "vpg"
    vpg.train(
        vpg.Config(
            env=EnvConfig(env="CartPole-v1"),
            run=RunConfig(total_episodes=24, run_dir=str(run_dir), progress="off"),
            debug=DebugConfig(grad_stats_every=2),
        )
    )
    assert run_report(run_dir, "--baseline-episodes", "5") == 0
    panels = ["policy/entropy", "policy/long_term_entropy", "losses/policy_loss", "debug/global_grad_norm"]
    assert report.panel_tags(report.read_scalars(run_dir)) == panels
    assert Image.open(run_dir / "report.png").size == report.page_size(len(panels)) == (1000, 900)  # 2 rows of 2
    baseline = run_dir / "baseline-random"
    assert (baseline / "summary.json").exists()
    made = (baseline / "summary.json").stat().st_mtime_ns
    assert run_report(run_dir, "--out", tmp_path / "again.png") == 0
    assert (baseline / "summary.json").stat().st_mtime_ns == made  # reused, not played again
    assert "report: " in capsys.readouterr().out


def test_dqn_report_shows_losses_and_epsilon(tmp_path):
    run_dir = tmp_path / "dqn"
    dqn.train(
        dqn.Config(
            env=EnvConfig(env="CartPole-v1"),
            run=RunConfig(total_steps=300, run_dir=str(run_dir), progress="off"),
            learning_starts=100,
            batch_size=32,
            log_every=20,
            hidden=[32],
        )
    )
    assert run_report(run_dir, "--no-baseline") == 0
    panels = ["losses/q_values", "losses/td_loss", "charts/epsilon"]
    assert report.panel_tags(report.read_scalars(run_dir)) == panels
    assert Image.open(run_dir / "report.png").size == report.page_size(len(panels)) == (1000, 900)


def test_bad_input_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        run_report(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no tb/ directory"):
        run_report(tmp_path / "empty", "--no-baseline")


@pytest.fixture(autouse=True)
def close_figures():
    """draw_report hands its figure to the caller: close every one a test left open."""
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


def write_scalars(run_dir, series):
    """A run directory holding only TensorBoard scalars: ``{tag: [(step, value), ...]}``."""
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(run_dir / "tb"))
    for tag, points in series.items():
        for step, value in points:
            writer.add_scalar(tag, value, step)
    writer.close()


def test_returns_panel_draws_the_mean_of_the_last_20_beside_the_ema(tmp_path):
    # A run that learned late: the 0.99 EMA still remembers the bad start, the last 20 do not.
    returns = [-21.0] * 200 + [15.0] * 30
    write_scalars(tmp_path, {"charts/episode_return": [(1000 * (i + 1), r) for i, r in enumerate(returns)]})
    _, axes = report.draw_report(report.read_scalars(tmp_path), ema_factor=0.99)
    lines = {line.get_label(): line for line in axes["returns"].get_lines()}
    (mean_label,) = [label for label in lines if label.startswith("mean of last 20")]
    assert mean_label == "mean of last 20: final 15"
    mean_line = lines[mean_label]
    assert np.allclose(mean_line.get_ydata(), window_means(returns))
    assert mean_line.get_xdata()[0] == 20_000  # the first window ends at the 20th episode
    (ema_label,) = [label for label in lines if label.startswith("EMA 0.99")]
    assert float(ema_label.rsplit(" ", 1)[1]) < 0  # the EMA the Pong run was misread by
    legend = [t.get_text() for t in axes["returns"].get_legend().get_texts()]
    assert mean_label in legend and ema_label in legend


def test_fewer_than_20_episodes_says_so_in_the_legend(tmp_path):
    write_scalars(tmp_path, {"charts/episode_return": [(10, 1.0), (20, 3.0)]})
    _, axes = report.draw_report(report.read_scalars(tmp_path))
    legend = [t.get_text() for t in axes["returns"].get_legend().get_texts()]
    assert "mean of last 20: only 2 episodes, mean 2" in legend


def test_every_loss_gets_its_own_axis_and_the_grid_grows(tmp_path):
    # DQN's pair: a TD loss near 0.001 drawn on the Q-values' axis (+-1.5) was a flat line.
    steps = range(100, 2100, 100)
    series = {
        "losses/td_loss": [(s, 0.001 + 0.0001 * (i % 3)) for i, s in enumerate(steps)],
        "losses/q_values": [(s, -1.5 + 0.15 * i) for i, s in enumerate(steps)],
    }
    write_scalars(tmp_path / "two", series)
    fig, axes = report.draw_report(report.read_scalars(tmp_path / "two"))
    td, q = axes["losses/td_loss"], axes["losses/q_values"]
    assert td is not q and td.get_position().bounds != q.get_position().bounds
    assert len(td.get_lines()) == 1 and len(q.get_lines()) == 1
    low, high = td.get_ylim()
    assert high - low < 0.01  # scaled to the TD loss itself, not to the Q-values
    assert q.get_ylim()[1] - q.get_ylim()[0] > 1
    assert fig.get_size_inches()[1] * fig.dpi == report.page_size(2)[1]

    more = {**series, **{f"losses/extra_{k}": [(100, float(k))] for k in range(4)}, "charts/epsilon": [(100, 1.0)]}
    write_scalars(tmp_path / "seven", more)
    _, axes = report.draw_report(report.read_scalars(tmp_path / "seven"))
    panels = [a for name, a in axes.items() if name != "returns"]
    assert len(panels) == 7 and len({a.get_position().bounds for a in panels}) == 7
    assert report.grid_shape(7) == (3, 3)


def test_write_report_on_a_scalars_only_run_dir_with_a_baseline_beside_it(tmp_path):
    # What `dirtyrl watch` leaves: tb/ under train's tags, a summary.json with extra fields,
    # no config.json, and a random run in RUN_DIR/baseline-random/ that write_report finds.
    returns = [float(i % 7) for i in range(25)]
    write_scalars(tmp_path, {"charts/episode_return": [(10 * (i + 1), r) for i, r in enumerate(returns)]})
    write_scalars(tmp_path / "baseline-random", {"charts/episode_return": [(5, 1.0), (9, 3.0)]})
    summary = {"algo": "watch", "env": "CartPole-v1", "episodes": 25, "env_steps": 250, "script": "x.py"}
    (tmp_path / "summary.json").write_text(json.dumps({**summary, "mean_return_last_20": window_means(returns)[-1]}))
    out = report.write_report(tmp_path)
    assert out == tmp_path / "report.png" and Image.open(out).size == report.page_size(0)
    other = report.write_report(tmp_path, tmp_path / "no-baseline.png", baseline=False)
    (tmp_path / "baseline-random" / "summary.json").write_text("{}")
    assert run_report(tmp_path, "--out", tmp_path / "cli.png") == 0  # no config.json: the baseline made earlier
    assert other == tmp_path / "no-baseline.png" and other.exists()

    _, axes = report.draw_report(report.read_scalars(tmp_path), report.read_scalars(tmp_path / "baseline-random"))
    legend = [t.get_text() for t in axes["returns"].get_legend().get_texts()]
    assert "random policy 2 ± 1 (2 episodes)" in legend
