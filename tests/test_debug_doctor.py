"""Tier 6: the doctor passes the real algorithms and names the broken part of broken variants."""

import argparse

import pytest

from dirtyrl.algos import dqn, vpg
from dirtyrl import doctor


def by_check(results):
    return {(r.algo, r.check): r for r in results}


@pytest.fixture
def quiet(capsys):
    yield
    capsys.readouterr()  # the algorithms' own "run dir: ..." lines


def run_command(*argv):
    parser = argparse.ArgumentParser()
    doctor.add_arguments(parser)
    return doctor.run(parser.parse_args(list(argv)))


def test_real_vpg_passes_every_check(tmp_path, capsys):
    assert run_command("--algo", "vpg", "--keep", str(tmp_path)) == 0
    table = capsys.readouterr().out
    checks = ("probe 4", "probe 5", "probe 6", "probe 7", "probe 10", "initial entropy", "constant return")
    checks += ("reachability", "vpg loss", "vpg acting", "gradients", "acting")
    for check in checks:
        assert any(line.startswith("vpg") and check in line and " pass " in line for line in table.splitlines()), table
    assert "15 passed, 0 failed" in table


def test_vpg_with_a_flipped_loss_sign_fails_and_blames_the_policy_gradient(tmp_path, monkeypatch, quiet):
    real = vpg.batched_backward

    def flipped(policy, episodes, adv, *rest):  # gradient ascent on the loss = descent on the return
        return real(policy, episodes, -adv, *rest)

    monkeypatch.setattr(vpg, "batched_backward", flipped)
    results = by_check(doctor.run_doctor(["vpg"], tmp_path))
    probe4 = results[("vpg", "probe 4")]
    assert not probe4.passed and "policy gradient" in probe4.suspect and "flipped sign" in probe4.suspect
    assert not results[("vpg", "probe 5")].passed
    assert results[("vpg", "initial entropy")].passed and results[("vpg", "reachability")].passed
    assert "FAIL" in doctor.format_table(list(results.values()))
    assert run_command("--algo", "vpg", "--keep", str(tmp_path / "again")) == 1  # the command's exit status


def row(results, check):
    (found,) = [r for r in results if r.check == check]
    return found


def test_real_dqn_learns_the_discounted_value(tmp_path, quiet):
    probe3 = row(doctor.dqn_checks(dqn.train, tmp_path, seed=1, probes=[3]), "probe 3")
    assert probe3.passed, probe3


@pytest.mark.slow  # ~25 s: ten DQN runs
def test_real_dqn_passes_all_ten_probes_reachability_and_self_tests(tmp_path, quiet):
    results = doctor.run_doctor(["dqn"], tmp_path)
    rest = ["reachability", "gradients", "acting", "replay buffer", "dqn td loss", "env wrappers"]
    assert [r.check for r in results] == [f"probe {i}" for i in range(1, 11)] + rest
    assert all(r.passed for r in results), doctor.format_table(results)


def test_dqn_ignoring_the_discount_fails_probe_3_and_blames_discounting(tmp_path, monkeypatch, quiet):
    real = dqn.td_target
    monkeypatch.setattr(dqn, "td_target", lambda rewards, next_q, terminated, gamma: real(rewards, next_q, terminated, 1.0))
    probe3 = row(doctor.dqn_checks(dqn.train, tmp_path, seed=1, probes=[3]), "probe 3")
    assert not probe3.passed
    assert "discounting" in probe3.suspect and "discount is ignored" in probe3.suspect
