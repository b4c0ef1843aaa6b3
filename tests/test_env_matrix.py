"""Every algorithm against every env the installed Gymnasium and ale-py register.

Each (algorithm, env) pair either trains for a few hundred steps and writes its run directory,
or exits with status 2 and one line on stderr that names the problem, and creates no run
directory. Never a traceback: ``dirtyrl.cli.main`` re-raises anything that is not a user error,
so a bug fails the test with its traceback.

The default suite covers every non-Atari env (classic control, toy text, and the ones that need
extras that may be missing: Box2D, MuJoCo, JAX, Shimmy) plus a sample of ALE games; the rest
of the ALE games run under ``-m slow``. Runs are in-process (``cli.main``), which saves the
interpreter and torch start-up of a subprocess per case.
"""

from __future__ import annotations

import importlib.util
import json

import gymnasium as gym
import pytest

from dirtyrl import cli
from dirtyrl.envs import check_env_id

STEPS = 300
ALGOS = ["vpg", "dqn", "random"]
# Games that serve only after FIRE (Breakout, SpaceInvaders, BeamRider), mazes, shooters,
# sparse rewards (MontezumaRevenge, Freeway), lives, the pong preset and a RAM observation.
ALE_SAMPLE = [
    ("pong", ()),
    ("ALE/Pong-v5", ()),
    ("ALE/Breakout-v5", ()),
    ("ALE/SpaceInvaders-v5", ()),
    ("ALE/BeamRider-v5", ()),
    ("ALE/MsPacman-v5", ()),
    ("ALE/Seaquest-v5", ()),
    ("ALE/Qbert-v5", ()),
    ("ALE/Freeway-v5", ()),
    ("ALE/Boxing-v5", ()),
    ("ALE/Asteroids-v5", ()),
    ("ALE/Enduro-v5", ()),
    ("ALE/MontezumaRevenge-v5", ()),
    ("ALE/Pong-v5", ("--env-kwargs", "obs_type=ram")),
]
# The default suite plays each sampled game with one algorithm, in turn, so every algorithm
# meets games of every kind; -m slow plays the whole product.
ALE_DEFAULT = [(algo, *case) for i, case in enumerate(ALE_SAMPLE) for algo in [ALGOS[i % len(ALGOS)]]]
ALE_SLOW = [(algo, *case) for case in ALE_SAMPLE for algo in ALGOS if (algo, *case) not in ALE_DEFAULT]
# Small replay, batch and few updates: the point is that every env runs end to end, not that it learns.
ALGO_FLAGS = {
    "vpg": ["--batch-episodes", "2"],
    "dqn": "--buffer-size 2000 --learning-starts 64 --batch-size 8 --train-every 20 --channels-last off".split(),
    "random": [],
}


def _registry() -> dict[str, gym.envs.registration.EnvSpec]:
    check_env_id("CartPole-v1")  # registers ale-py's games and the probes
    return dict(gym.registry)


def _is_ale(spec: gym.envs.registration.EnvSpec) -> bool:
    return isinstance(spec.entry_point, str) and spec.entry_point.startswith("ale_py")


def non_atari_ids() -> list[str]:
    """Every registered id outside ale-py and dirty-rl's own probes (those have their own tests)."""
    return sorted(k for k, spec in _registry().items() if not _is_ale(spec) and not k.startswith("dirtyrl/"))


def ale_v5_ids() -> list[str]:
    return sorted(k for k, spec in _registry().items() if _is_ale(spec) and k.startswith("ALE/"))


def continuous_action(env_id: str) -> bool | None:
    """Whether the env's actions are continuous (Box); None when it cannot be built here."""
    try:
        env = gym.make(env_id)
    except Exception:  # a missing extra, or an env that needs arguments: the CLI must say so in one line
        return None
    try:
        return isinstance(env.action_space, gym.spaces.Box)
    finally:
        env.close()


def run(capsys, tmp_path, algo: str, env_id: str, extra: tuple[str, ...] = ()) -> tuple[int, str, str]:
    run_dir = tmp_path / "run"
    argv = ["train", algo, "--env", env_id, "--total-steps", str(STEPS), "--long-episode-warning", str(STEPS)]
    argv += ["--progress", "off", "--run-dir", str(run_dir), *ALGO_FLAGS[algo], *extra]
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def check_outcome(code: int, out: str, err: str, tmp_path, algo: str, env_id: str) -> str:
    """Assert that the case either trained or refused cleanly; return which."""
    run_dir = tmp_path / "run"
    assert "Traceback" not in out + err
    if code == 2:
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("dirtyrl: error: "), err
        assert not run_dir.exists(), f"{algo} {env_id} refused but created {run_dir}"
        return "refused"
    assert code == 0, (code, err)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["env"] == env_id and summary["algo"] == algo
    # Within one episode of the limit: the long-episode bound cuts an episode that has not
    # ended STEPS steps past it, so no run goes beyond 2 * STEPS.
    assert STEPS <= summary["env_steps"] <= 2 * STEPS, summary["env_steps"]
    assert summary["episodes"] >= 1
    assert (run_dir / "checkpoints" / "latest.pt").is_file() and (run_dir / "config.json").is_file()
    assert ("solved at" in out) or ("not solved" in out) or ("no solved threshold" in out)
    return "trained"


MUST_TRAIN = {
    "CartPole-v0",
    "CartPole-v1",
    "MountainCar-v0",
    "Acrobot-v1",
    "FrozenLake-v1",
    "FrozenLake8x8-v1",
    "Taxi-v4",
    "CliffWalking-v1",
    "CliffWalkingSlippery-v1",
    "Blackjack-v1",
    *([] if importlib.util.find_spec("Box2D") is None else ["LunarLander-v3"]),
}


@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize("env_id", non_atari_ids())
def test_every_registered_env_trains_or_refuses_in_one_line(capsys, tmp_path, algo, env_id):
    code, out, err = run(capsys, tmp_path, algo, env_id)
    outcome = check_outcome(code, out, err, tmp_path, algo, env_id)
    if env_id in MUST_TRAIN:
        assert outcome == "trained", err
    elif continuous_action(env_id) in (True, None):
        # Continuous actions, or an env this machine cannot build (a missing extra): one line.
        assert outcome == "refused"
        assert env_id in err or "action space" in err or "extra" in err or "install" in err, err


@pytest.mark.parametrize(("algo", "env_id", "extra"), ALE_DEFAULT)
def test_atari_sample_trains(capsys, tmp_path, algo, env_id, extra):
    code, out, err = run(capsys, tmp_path, algo, env_id, extra)
    assert check_outcome(code, out, err, tmp_path, algo, env_id) == "trained", err


@pytest.mark.slow
@pytest.mark.parametrize(("algo", "env_id", "extra"), ALE_SLOW)
def test_atari_sample_trains_under_every_algorithm(capsys, tmp_path, algo, env_id, extra):
    code, out, err = run(capsys, tmp_path, algo, env_id, extra)
    assert check_outcome(code, out, err, tmp_path, algo, env_id) == "trained", err


@pytest.mark.slow
@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize("env_id", sorted(set(ale_v5_ids()) - {env for env, _ in ALE_SAMPLE}))
def test_every_other_atari_game_trains_or_refuses(capsys, tmp_path, algo, env_id):
    code, out, err = run(capsys, tmp_path, algo, env_id)
    check_outcome(code, out, err, tmp_path, algo, env_id)


def test_the_sample_is_at_least_ten_real_ale_games():
    games = {env for _, env, _ in ALE_DEFAULT if env.startswith("ALE/")}
    assert len(games) >= 10 and games <= set(ale_v5_ids())
    assert {algo for algo, _, _ in ALE_DEFAULT} == set(ALGOS)
