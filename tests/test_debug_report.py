"""Tier 6: the one-page report, with the random baseline of the same env."""

import argparse

import pytest
from PIL import Image

from dirtyrl.algos import dqn, vpg
from dirtyrl.config import DebugConfig, EnvConfig, RunConfig
from dirtyrl.commands import report
from dirtyrl.errors import UserError

PANEL_PIXELS = 260  # 2.6 inches at 100 dpi per panel, plus 80 for the margins


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
    page = Image.open(run_dir / "report.png")
    assert page.size == (1000, 4 * PANEL_PIXELS + 80)  # returns, entropy, losses, gradient norm
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
    assert Image.open(run_dir / "report.png").size == (1000, 3 * PANEL_PIXELS + 80)  # returns, losses, epsilon


def test_bad_input_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        run_report(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no tb/ directory"):
        run_report(tmp_path / "empty", "--no-baseline")
