"""``dirtyrl doctor``: probes, data-path self-tests and signature diagnoses, run against the
real algorithms, against your own agent (``--agent module:function``) or your own env (``--env``).

The doctor is a client of the algorithms, like ``dirtyrl train``: it imports algos/, never
the other way round. Modules:

- ``probes.py``: the probe environments run through each algorithm's real ``train(cfg)``;
- ``selftests.py``: the data paths (replay buffer, rewards-to-go, losses, acting, Pong frames)
  against slow references, no learning;
- ``signatures.py``: from what the checks measured, the most likely cause, named first;
- ``agents.py``: the agent protocol (docs/doctor.md) and adapters for trained runs;
- ``user.py``: ``--agent`` and ``--env``.

Exit status: 0 when every check passes, 1 when one fails, 2 for bad input. The table's columns
(algo, check, result, time, measured, expected, likely broken part) and its last line
"N passed, M failed" are read by scripts; keep them.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import tempfile
import time
from pathlib import Path

from dirtyrl.doctor.checks import PART, Result, format_table
from dirtyrl.doctor.probes import (
    CHECKS,
    DQN_PROBE,
    DQN_TARGETS,
    DQN_TOLERANCE,
    PROBES,
    VPG_PROBE,
    Trainer,
    dqn_checks,
    dqn_config,
    vpg_checks,
    vpg_config,
)
from dirtyrl.doctor.signatures import diagnose
from dirtyrl.errors import UserError

__all__ = [
    "CHECKS",
    "DQN_PROBE",
    "DQN_TARGETS",
    "DQN_TOLERANCE",
    "PART",
    "PROBES",
    "VPG_PROBE",
    "Result",
    "add_arguments",
    "dqn_checks",
    "dqn_config",
    "format_table",
    "run",
    "run_doctor",
    "vpg_checks",
    "vpg_config",
]


def default_trainer(algo: str) -> Trainer:
    from importlib import import_module

    try:
        return import_module(f"dirtyrl.algos.{algo}").train
    except ImportError as exc:
        raise UserError(f"{algo} is not available in this build ({exc})") from exc


def run_doctor(
    algos: list[str],
    workdir: Path | None = None,
    seed: int = 1,
    trainers: dict[str, Trainer] | None = None,
    probes: list[int] | None = None,
    selftests: list[str] | None = None,
) -> list[Result]:
    """Every check of every algorithm in ``algos``; runs go to ``workdir`` (a temp dir if None).

    ``probes`` runs only those probe numbers, plus the self-tests named in ``selftests``
    (e.g. ``["replay buffer"]``), for quick targeted checks.
    """
    trainers = trainers or {}
    with tempfile.TemporaryDirectory(prefix="dirtyrl-doctor-") as tmp:
        base = Path(workdir) if workdir is not None else Path(tmp)
        results = []
        for algo in algos:
            train = trainers.get(algo) or default_trainer(algo)
            results += CHECKS[algo](train, base / algo, seed, probes, selftests)
        return diagnose(results)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--algo", default="all", choices=["vpg", "dqn", "all"], help="which algorithm to examine (default: all)"
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of every probe run (default: 1)")
    parser.add_argument("--keep", default=None, help="keep the probe runs in this directory (default: a temp dir)")
    parser.add_argument(
        "--probes", type=int, nargs="+", default=None, help="run only these probes (1-10), without the self-tests"
    )
    parser.add_argument(
        "--agent",
        default=None,
        metavar="MODULE:FUNCTION",
        help="examine your own agent: FUNCTION(env_id, steps, seed) returns a trained agent with act(obs) "
        "and optionally action_probs(obs) / q_values(obs) (docs/doctor.md)",
    )
    parser.add_argument(
        "--steps", type=int, default=None, help="--agent: env steps per probe given to your function (default: 3000)"
    )
    parser.add_argument(
        "--env",
        default=None,
        metavar="ID",
        help="check your own env: Gymnasium's env_checker, determinism under a seed, a random-policy baseline",
    )
    parser.add_argument(
        "--env-kwargs",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="--env: keyword arguments for gym.make, as train takes them (e.g. --env-kwargs is_slippery=False)",
    )


def run(args: argparse.Namespace) -> int:
    start = time.monotonic()
    if args.env_kwargs and args.env is None:
        raise UserError("--env-kwargs goes with --env ID: the keyword arguments of your env")
    if args.probes is not None and any(not 1 <= n <= len(PROBES) for n in args.probes):
        raise UserError(f"--probes takes numbers 1-{len(PROBES)}, got {args.probes}")
    if args.env is not None:
        from dirtyrl.doctor.user import check_env_results

        results = check_env_results(args.env, args.seed, env_kwargs=args.env_kwargs)
    elif args.agent is not None:
        from dirtyrl.doctor.user import agent_results

        results = agent_results(args.agent, args.steps, args.seed, args.probes)
    else:
        algos = ["vpg", "dqn"] if args.algo == "all" else [args.algo]
        quiet = io.StringIO()
        with contextlib.redirect_stdout(quiet):  # the algorithms' own "run dir: ..." lines
            results = run_doctor(algos, Path(args.keep) if args.keep else None, args.seed, probes=args.probes)
    print(format_table(results))
    print(f"({time.monotonic() - start:.1f} s)")
    return 0 if all(r.passed for r in results) else 1
