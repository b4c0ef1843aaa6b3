"""``dirtyrl doctor``: the probe environments, run against the real algorithm code.

Each probe (envs/probes.py, after Andy Jones's "Debugging RL, Without the Agonizing Pain")
isolates one part of an agent, so the first probe that fails names the broken part:

=====  ==========================================  =========================================
probe  the task                                    a failure points at
=====  ==========================================  =========================================
1      one action, reward +1                       value fitting (loss, optimiser, lr)
2      one action, reward = observation (+-1)      the observation reaching the value
3      one action, two steps, +1 at the end        discounting / bootstrapping
4      two actions, +1 for action 0, -1 else       policy gradient / action values
5      two actions, +1 if action matches obs       observation-and-action credit
=====  ==========================================  =========================================

VPG (mean baseline, no value function) can only be judged on the policy probes 4 and 5; DQN
runs all five, judged by its learned Q-values. Besides the probes: the initial-entropy check
(VPG: a zero-initialised last layer must give the maximum entropy log A at update 0) and the
reachability check (every trainable parameter must receive a gradient from the loss).

The algorithms run exactly as ``dirtyrl train`` runs them, through their ``train(Config)``,
with small settings so that everything takes seconds, and the verdict is read back from what
they wrote (checkpoint, TensorBoard). ``run_doctor(..., trainers={"vpg": fn})`` substitutes
the training function; that is how the tests check that a deliberately broken algorithm is
caught and the right part named.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dirtyrl.errors import UserError

Trainer = Callable[[Any], Path]

PART = {
    1: "value fitting: the loss, the optimiser or the learning rate (V should reach 1)",
    2: "the observation does not reach the value: input wiring, shapes, broadcasting",
    3: "discounting / bootstrapping: gamma, next-state value, done masking",
    4: "policy gradient / action values: loss sign, log-prob or Q of the action taken, action indexing",
    5: "observation-and-action credit: obs, action and reward misaligned in the batch",
}
VPG_PROBE = {"episodes": 2400, "batch_episodes": 16, "lr": 0.03, "hidden": 32}  # ~150 updates, < 1 s each


@dataclass
class Result:
    algo: str
    check: str
    passed: bool
    measured: str
    expected: str
    suspect: str  # the likely broken part, shown when the check fails
    seconds: float = 0.0


# ---------------------------------------------------------------------------------------------
# VPG
# ---------------------------------------------------------------------------------------------


def vpg_config(env_id: str, run_dir: Path, seed: int) -> Any:
    from dirtyrl.algos import vpg
    from dirtyrl.config import EnvConfig, RunConfig

    return vpg.Config(
        env=EnvConfig(env=env_id),
        run=RunConfig(seed=seed, total_episodes=VPG_PROBE["episodes"], run_dir=str(run_dir), progress="off"),
        batch_episodes=VPG_PROBE["batch_episodes"],
        lr=VPG_PROBE["lr"],
        hidden=VPG_PROBE["hidden"],
    )


def policy_probs(run_dir: Path, observations: list[float]) -> np.ndarray:
    """Action probabilities of the trained policy (from its checkpoint) for each observation."""
    from dirtyrl.checkpoint import load_checkpoint
    from dirtyrl.debug.play import load_vpg_policy

    policy = load_vpg_policy(load_checkpoint(run_dir / "checkpoints" / "latest.pt"))
    with torch.no_grad():
        return torch.softmax(policy(torch.tensor(observations, dtype=torch.float32)[:, None]), -1).numpy()


def judge_policy(algo: str, probe: int, p_correct: list[float], seconds: float) -> Result:
    """Pass when the right action has probability >= 0.9 in every state; a probability near 0
    means the agent learned the opposite, the signature of a flipped sign."""
    worst = min(p_correct)
    suspect = PART[probe]
    if worst < 0.1:
        suspect = "it learned the OPPOSITE action: a flipped sign (loss, advantage or reward); " + suspect
    shown = ", ".join(f"{p:.2f}" for p in p_correct)
    return Result(algo, f"probe {probe}", worst >= 0.9, f"P(right action) {shown}", ">= 0.90", suspect, seconds)


def first_scalar(run_dir: Path, tag: str) -> float | None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    if tag not in acc.Tags()["scalars"]:
        return None
    return acc.Scalars(tag)[0].value


def vpg_checks(train: Trainer, workdir: Path, seed: int) -> list[Result]:
    results = []
    for probe, observations, right in ((4, [0.0], [0]), (5, [-1.0, 1.0], [0, 1])):
        start = time.monotonic()
        run_dir = train(vpg_config(f"dirtyrl/Probe{probe}-v0", workdir / f"vpg-probe{probe}", seed))
        probs = policy_probs(run_dir, observations)
        p_right = [float(probs[i, a]) for i, a in enumerate(right)]
        results.append(judge_policy("vpg", probe, p_right, time.monotonic() - start))
        if probe == 4:
            results.append(vpg_initial_entropy(run_dir, n_actions=2))
    results.append(vpg_reachability(seed))
    return results


def vpg_initial_entropy(run_dir: Path, n_actions: int) -> Result:
    """The first ``policy/entropy`` the run logged is that of the initial policy (the update's
    forward happens before its step). Zero-initialising the last layer makes it log A."""
    entropy = first_scalar(run_dir, "policy/entropy")
    target = math.log(n_actions)
    ok = entropy is not None and entropy >= 0.98 * target
    measured = "not logged" if entropy is None else f"{entropy:.4f}"
    suspect = "initialisation of the last layer: zero-init gives every action the same probability (entropy log A)"
    return Result("vpg", "initial entropy", ok, measured, f">= 0.98 * log {n_actions} = {0.98 * target:.4f}", suspect)


def vpg_reachability(seed: int, env_id: str = "CartPole-v1") -> Result:
    """Every policy parameter must get a gradient, on both gradient paths.

    The batched path runs ``vpg.batched_backward`` (the default training path) and looks for
    parameters left with ``grad is None``; the per-step path walks the graph of the seed's
    per-step loss (debug/graph.py).
    """
    from dirtyrl import distributed
    from dirtyrl.algos import vpg
    from dirtyrl.config import EnvConfig
    from dirtyrl.debug.graph import unreachable_parameters, vpg_losses
    from dirtyrl.envs import make_env
    from dirtyrl.nets import KarpathyPolicy

    start = time.monotonic()
    cfg = vpg.resolve(vpg.Config(env=EnvConfig(env=env_id)))
    env = make_env(env_id)
    torch.manual_seed(seed)
    dim, n_actions = int(np.prod(env.observation_space.shape)), int(env.action_space.n)
    policy = KarpathyPolicy(dim, n_actions, hidden=cfg.hidden, zero_init_last=cfg.zero_init_last, bias=cfg.bias)
    actor = vpg.Actor(policy, sparse=False)
    device = torch.device("cpu")
    episodes = [
        vpg.play_episode(env, actor, np.random.default_rng([seed, i]), seed + i, None, device, lambda: None, lambda w: None)
        for i in range(4)
    ]
    env.close()
    adv = vpg.episode_advantages(episodes, cfg.gamma, False, cfg.standardize, distributed.Dist())
    policy.zero_grad(set_to_none=True)
    vpg.batched_backward(policy, episodes, adv, len(adv), False, device)
    missing = [name for name, p in policy.named_parameters() if p.requires_grad and p.grad is None]
    model, losses = vpg_losses(env_id, [3], seed)
    missing += [f"{name} (per-step path)" for name in unreachable_parameters(model, losses[3])]
    return Result(
        "vpg",
        "reachability",
        not missing,
        "unreachable: " + ", ".join(missing) if missing else f"all {len(list(policy.parameters()))} reached",
        "every parameter gets a gradient",
        "a parameter the loss cannot reach: detached tensor, unused layer, numpy round trip or no_grad",
        time.monotonic() - start,
    )


# ---------------------------------------------------------------------------------------------
# DQN
# ---------------------------------------------------------------------------------------------


# Small settings so that each probe takes ~2 s: 1200 steps, a 64x64 MLP, the target copied every
# 100 steps. gamma 0.5, not 0.99, so that probe 3 can tell a discounted value (0.5) from an
# undiscounted one (1.0) with room to spare.
DQN_PROBE = {
    "steps": 1200,
    "hidden": [64, 64],
    "learning_starts": 200,
    "batch_size": 32,
    "buffer_size": 5000,
    "train_every": 1,
    "target_update_every": 100,
    "tau": 1.0,  # a hard copy: pinned here, since the env presets may choose soft updates
    "eps_decay_steps": 600,
    "gamma": 0.5,
}
DQN_TOLERANCE = 0.2
# Per probe: (observation, action) -> the Q-value it must learn.
DQN_TARGETS = {
    1: {(0.0, 0): 1.0},
    2: {(-1.0, 0): -1.0, (1.0, 0): 1.0},
    3: {(0.0, 0): DQN_PROBE["gamma"], (1.0, 0): 1.0},
    4: {(0.0, 0): 1.0, (0.0, 1): -1.0},
    5: {(-1.0, 0): 1.0, (-1.0, 1): -1.0, (1.0, 0): -1.0, (1.0, 1): 1.0},
}


def dqn_config(env_id: str, run_dir: Path, seed: int) -> Any:
    from dirtyrl.algos import dqn
    from dirtyrl.config import EnvConfig, RunConfig

    knobs = {k: v for k, v in DQN_PROBE.items() if k != "steps"}
    return dqn.Config(
        env=EnvConfig(env=env_id),
        run=RunConfig(seed=seed, total_steps=DQN_PROBE["steps"], run_dir=str(run_dir), progress="off"),
        **knobs,
    )


def q_values(run_dir: Path, queries: list[tuple[float, int]]) -> list[float]:
    """Q(obs, action) of the trained online network, rebuilt from the run's checkpoint."""
    from dirtyrl.checkpoint import load_checkpoint
    from dirtyrl.debug.play import load_dqn

    qnet, env = load_dqn(load_checkpoint(run_dir / "checkpoints" / "latest.pt"))
    env.close()
    with torch.no_grad():
        q = qnet(torch.tensor([[obs] for obs, _ in queries], dtype=torch.float32))
    return [float(q[i, a]) for i, (_, a) in enumerate(queries)]


def judge_values(probe: int, targets: dict[tuple[float, int], float], values: list[float], seconds: float) -> Result:
    errors = [abs(v - t) for v, t in zip(values, targets.values(), strict=True)]
    suspect = PART[probe]
    if probe == 3 and abs(values[0] - 1.0) < DQN_TOLERANCE and abs(values[1] - 1.0) < DQN_TOLERANCE:
        suspect = "the discount is ignored (Q(s0) = 1, as if gamma = 1); " + suspect
    elif probe >= 4 and all(v * t < 0 for v, t in zip(values, targets.values(), strict=True)):
        suspect = "every action value has the wrong sign: a flipped sign (loss, reward or target); " + suspect
    measured = ", ".join(f"Q({obs:+.0f},{a})={v:+.2f}" for (obs, a), v in zip(targets, values, strict=True))
    expected = ", ".join(f"{t:+.2f}" for t in targets.values()) + f" +- {DQN_TOLERANCE}"
    return Result("dqn", f"probe {probe}", max(errors) <= DQN_TOLERANCE, measured, expected, suspect, seconds)


def dqn_checks(train: Trainer, workdir: Path, seed: int, probes: list[int] | None = None) -> list[Result]:
    results = []
    for probe, targets in DQN_TARGETS.items():
        if probes is not None and probe not in probes:
            continue
        start = time.monotonic()
        run_dir = train(dqn_config(f"dirtyrl/Probe{probe}-v0", workdir / f"dqn-probe{probe}", seed))
        values = q_values(run_dir, list(targets))
        results.append(judge_values(probe, targets, values, time.monotonic() - start))
    if probes is None:
        results.append(dqn_reachability(seed))
    return results


def dqn_reachability(seed: int, env_id: str = "CartPole-v1") -> Result:
    """The TD loss (``dqn.td_loss``, as the learner computes it) must reach every online parameter."""
    from dirtyrl.debug.graph import dqn_losses, unreachable_parameters

    start = time.monotonic()
    model, losses = dqn_losses(env_id, [8], seed)
    missing = unreachable_parameters(model, losses[8])
    n = len([p for p in model.parameters() if p.requires_grad])
    return Result(
        "dqn",
        "reachability",
        not missing,
        "unreachable: " + ", ".join(missing) if missing else f"all {n} reached",
        "every parameter gets a gradient",
        "a parameter the TD loss cannot reach: Q(s,a) computed under no_grad, a detached head, an unused layer",
        time.monotonic() - start,
    )


# ---------------------------------------------------------------------------------------------
# Running and reporting
# ---------------------------------------------------------------------------------------------


def default_trainer(algo: str) -> Trainer:
    from importlib import import_module

    try:
        return import_module(f"dirtyrl.algos.{algo}").train
    except ImportError as exc:
        raise UserError(f"{algo} is not available in this build ({exc})") from exc


CHECKS: dict[str, Callable[[Trainer, Path, int], list[Result]]] = {"vpg": vpg_checks, "dqn": dqn_checks}


def run_doctor(
    algos: list[str], workdir: Path | None = None, seed: int = 1, trainers: dict[str, Trainer] | None = None
) -> list[Result]:
    """Every check of every algorithm in ``algos``; runs go to ``workdir`` (a temp dir if None)."""
    trainers = trainers or {}
    with tempfile.TemporaryDirectory(prefix="dirtyrl-doctor-") as tmp:
        base = Path(workdir) if workdir is not None else Path(tmp)
        results = []
        for algo in algos:
            train = trainers.get(algo) or default_trainer(algo)
            results += CHECKS[algo](train, base / algo, seed)
        return results


def format_table(results: list[Result]) -> str:
    rows = [("algo", "check", "result", "time", "measured", "expected", "likely broken part")]
    for r in results:
        verdict = "pass" if r.passed else "FAIL"
        rows.append((r.algo, r.check, verdict, f"{r.seconds:.1f}s", r.measured, r.expected, "" if r.passed else r.suspect))
    widths = [max(len(row[i]) for row in rows) for i in range(6)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row[:6], widths, strict=True)) + "  " + row[6] for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    failed = sum(not r.passed for r in results)
    lines.append(f"\n{len(results) - failed} passed, {failed} failed")
    return "\n".join(line.rstrip() for line in lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--algo", default="all", choices=["vpg", "dqn", "all"], help="which algorithm to examine (default: all)"
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of every probe run (default: 1)")
    parser.add_argument("--keep", default=None, help="keep the probe runs in this directory (default: a temp dir)")


def run(args: argparse.Namespace) -> int:
    import contextlib
    import io

    algos = ["vpg", "dqn"] if args.algo == "all" else [args.algo]
    start = time.monotonic()
    quiet = io.StringIO()
    with contextlib.redirect_stdout(quiet):  # the algorithms' own "run dir: ..." lines
        results = run_doctor(algos, Path(args.keep) if args.keep else None, args.seed)
    print(format_table(results))
    print(f"({time.monotonic() - start:.1f} s)")
    return 0 if all(r.passed for r in results) else 1
