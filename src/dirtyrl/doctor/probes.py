"""The probe environments (envs/probes.py), run through the real ``train(cfg)`` of each algorithm.

Each probe isolates one part of an agent, so the first probe that fails names the broken part:

=====  ============================================  ==========================================
probe  the task                                      a failure points at
=====  ============================================  ==========================================
1      one action, reward +1                         value fitting (loss, optimiser, lr)
2      one action, reward = observation (+-1)        the observation reaching the value
3      one action, two steps, +1 at the end          discounting / bootstrapping
4      two actions, +1 for action 0, -1 else         policy gradient / action values
5      two actions, +1 if action matches obs         observation-and-action credit
6      4 steps, fresh +-1 obs each step, match it    acting on the current observation
7      4 steps, step-0 choice paid at the last step  credit travelling back in time
8      +1 forever, cut by a 3-step time limit        truncation vs termination (DQN)
9      2 steps, act on the PREVIOUS frame (stack 2)  frame history across episode starts (DQN)
10     4 steps, a reward every step; loans and an    credit in time: rewards-to-go reversed,
       investment: only FUTURE rewards rank them     summed forward or shifted (names the step)
=====  ============================================  ==========================================

VPG (mean baseline, no value function) is judged on the policy probes 4-7 and 10 by its action
probabilities, and on a constant return (probe 1's env: every return equal) by finite
parameters and loss; DQN runs all ten, judged by its learned Q-values (1-5, 7-9) or its greedy
actions (6, 10). Probes 6-10 also judge *behaviour*: the mean return of the last training episodes
(what the training loop actually did) and of evaluation episodes the doctor plays itself with
the trained agent acting on the current observation. A gap between the two is the signature of
an acting bug (doctor/signatures.py reads it).

The algorithms run exactly as ``dirtyrl train`` runs them, through their ``train(Config)``,
with small settings so that everything takes seconds, and the verdict is read back from what
they wrote (checkpoint, summary.json, TensorBoard). ``run_doctor(..., trainers={"vpg": fn})``
substitutes the training function; that is how the tests check that a deliberately broken
algorithm is caught and the right part named.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dirtyrl.doctor.agents import DQNRun, VPGRun, evaluate, recent_training_return
from dirtyrl.doctor.checks import PART, Result
from dirtyrl.doctor.signatures import diagnose
from dirtyrl.doctor.witnessing import witness_rows

Trainer = Callable[[Any], Path]

EVAL_EPISODES = 40
POLICY_MIN = 0.9
DQN_TOLERANCE = 0.2


@dataclass(frozen=True)
class Probe:
    """One probe: its env, the answer it expects, and how to run each algorithm on it.

    ``right`` lists (observation, right action) pairs: judged by P(right) >= 0.9 for a policy
    agent and by the greedy action for a value agent without ``values``. ``values(gamma)``
    maps (observation, action) to the Q-value a value agent must learn. ``threshold`` is the
    mean return that the training episodes and the evaluation episodes must both reach.
    """

    number: int
    right: tuple[tuple[tuple[float, ...], int], ...] = ()
    values: Callable[[float], dict[tuple[tuple[float, ...], int], float]] | None = None
    threshold: float | None = None
    optimum: float | None = None  # best mean return; set where training and evaluation returns are compared
    algos: tuple[str, ...] = ("dqn",)
    vpg: dict[str, Any] = field(default_factory=dict)
    dqn: dict[str, Any] = field(default_factory=dict)

    @property
    def env_id(self) -> str:
        return f"dirtyrl/Probe{self.number}-v0"

    @property
    def timed(self) -> bool:
        return self.number >= 6


PROBES = {
    1: Probe(1, values=lambda g: {((0.0,), 0): 1.0}),
    2: Probe(2, values=lambda g: {((-1.0,), 0): -1.0, ((1.0,), 0): 1.0}),
    3: Probe(3, values=lambda g: {((0.0,), 0): g, ((1.0,), 0): 1.0}),
    4: Probe(
        4, right=(((0.0,), 0),), values=lambda g: {((0.0,), 0): 1.0, ((0.0,), 1): -1.0}, optimum=1.0, algos=("vpg", "dqn")
    ),
    5: Probe(
        5,
        right=(((-1.0,), 0), ((1.0,), 1)),
        values=lambda g: {((-1.0,), 0): 1.0, ((-1.0,), 1): -1.0, ((1.0,), 0): -1.0, ((1.0,), 1): 1.0},
        optimum=1.0,
        algos=("vpg", "dqn"),
    ),
    6: Probe(6, right=(((-1.0,), 0), ((1.0,), 1)), threshold=2.4, optimum=4.0, algos=("vpg", "dqn"), vpg={"episodes": 800}),
    7: Probe(
        7,
        right=(((-1.0, 0.0, 0.0), 0), ((1.0, 0.0, 0.0), 1)),
        values=lambda g: {
            ((-1.0, 0.0, 0.0), 0): g**3,
            ((-1.0, 0.0, 0.0), 1): -(g**3),
            ((1.0, 0.0, 0.0), 0): -(g**3),
            ((1.0, 0.0, 0.0), 1): g**3,
        },
        threshold=0.6,
        optimum=1.0,
        algos=("vpg", "dqn"),
        vpg={"episodes": 1200},
        dqn={"gamma": 0.8},  # 0.8^3 = 0.51: a reward three steps away, still far from 0
    ),
    8: Probe(8, values=lambda g: {((0.0,), 0): 1.0 / (1.0 - g)}),
    9: Probe(
        9,
        right=(((0.0, 1.0), 0), ((0.0, -1.0), 0), ((1.0, 1.0), 1), ((1.0, -1.0), 1), ((-1.0, 1.0), 0), ((-1.0, -1.0), 0)),
        values=lambda g: {
            ((0.0, 1.0), 0): 1.0 + g,
            ((0.0, 1.0), 1): -1.0 + g,
            ((1.0, -1.0), 1): 1.0,
            ((1.0, -1.0), 0): -1.0,
            ((-1.0, 1.0), 0): 1.0,
            ((-1.0, 1.0), 1): -1.0,
        },
        threshold=1.6,
        optimum=2.0,
        dqn={"history": 2},
    ),
    # One (observation, right action) per step, in step order (signatures.py reads them so): the
    # states of the episode played right. No Q targets: the loans' repayments are not observed.
    10: Probe(
        10,
        right=(
            ((1.0, 0.0, 0.0, 0.0, 0.0), 1),
            ((0.0, 1.0, 0.0, 0.0, 0.0), 0),
            ((0.0, 0.0, 1.0, 0.0, 1.0), 1),
            ((0.0, 0.0, 0.0, 1.0, 0.0), 0),
        ),
        optimum=8.0,
        algos=("vpg", "dqn"),
        vpg={"episodes": 800},
    ),
}

# ---------------------------------------------------------------------------------------------
# Settings of the probe runs
# ---------------------------------------------------------------------------------------------

# Only the final checkpoint, which the verdict is read from: a probe run is seconds long, and
# DQN's default (every 50 updates) would write 20 checkpoints per run.
NO_CHECKPOINTS = 10**9
VPG_PROBE = {"episodes": 2400, "batch_episodes": 16, "lr": 0.03, "hidden": 32}  # ~150 updates, < 1 s each

# Small settings so that each probe takes about a second: 600 steps (400 updates), a 64x64 MLP,
# lr 1e-3, the target copied every 50 steps. Every probe's values land within 0.02 of their
# target with these (benchmarks/RESULTS.md); 1200 steps at lr 5e-4 gave the same values at twice
# the cost. gamma 0.5, not 0.99, so that probe 3 can tell a discounted value (0.5) from an
# undiscounted one (1.0) with room to spare.
DQN_PROBE = {
    "steps": 600,
    "hidden": [64, 64],
    "lr": 1e-3,
    "learning_starts": 200,
    "batch_size": 32,
    "buffer_size": 5000,
    "train_every": 1,
    "target_update_every": 50,
    "tau": 1.0,  # a hard copy: pinned here, since the env presets may choose soft updates
    "eps_decay_steps": 300,
    "gamma": 0.5,
}


def vpg_config(env_id: str, run_dir: Path, seed: int, **overrides: Any) -> Any:
    from dirtyrl.algos import vpg
    from dirtyrl.config import EnvConfig, RunConfig

    knobs = {**VPG_PROBE, **overrides}
    return vpg.Config(
        env=EnvConfig(env=env_id),
        run=RunConfig(
            seed=seed, total_episodes=knobs["episodes"], run_dir=str(run_dir), progress="off", checkpoint_every=NO_CHECKPOINTS
        ),
        batch_episodes=knobs["batch_episodes"],
        lr=knobs["lr"],
        hidden=knobs["hidden"],
    )


def dqn_config(env_id: str, run_dir: Path, seed: int, **overrides: Any) -> Any:
    from dirtyrl.algos import dqn
    from dirtyrl.config import EnvConfig, RunConfig

    knobs = {**DQN_PROBE, **overrides}
    steps = knobs.pop("steps")
    return dqn.Config(
        env=EnvConfig(env=env_id),
        run=RunConfig(seed=seed, total_steps=steps, run_dir=str(run_dir), progress="off", checkpoint_every=NO_CHECKPOINTS),
        **knobs,
    )


# ---------------------------------------------------------------------------------------------
# Judging an agent on a probe
# ---------------------------------------------------------------------------------------------


def _fmt_obs(obs: tuple[float, ...]) -> str:
    return ",".join(f"{x:+.0f}" for x in obs)


def judge(
    algo: str, probe: Probe, agent: Any, gamma: float, env: Any, seed: int, seconds: float, witness: Any = None
) -> Result:
    """Every judgement the agent's interface allows: probabilities, Q-values, greedy actions,
    and for the timed probes the training and evaluation returns.

    ``witness`` (doctor/witnessing.py ``ProbeWitness``) is what the agent did while training:
    the training return is read from it (what the env saw), and its evidence goes into the
    row's data for the signatures. Without it, the agent's own ``episode_returns`` are used."""
    data: dict[str, Any] = {"probe": probe.number, "gamma": gamma}
    if witness is not None:
        data["witness"] = witness
    passed, measured, expected = True, [], []
    if probe.right and hasattr(agent, "action_probs"):
        p_right = [float(agent.action_probs(np.array(obs, np.float32))[a]) for obs, a in probe.right]
        data["p_right"] = p_right
        passed &= min(p_right) >= POLICY_MIN
        measured.append("P(right action) " + ", ".join(f"{p:.2f}" for p in p_right))
        expected.append(f">= {POLICY_MIN:.2f}")
    elif hasattr(agent, "q_values") and (probe.values or probe.right):
        if probe.values is not None:
            targets = probe.values(gamma)
            values = [float(agent.q_values(np.array(obs, np.float32))[a]) for obs, a in targets]
            data["q"], data["q_target"] = values, list(targets.values())
            passed &= max(abs(v - t) for v, t in zip(values, targets.values(), strict=True)) <= DQN_TOLERANCE
            measured.append(", ".join(f"Q({_fmt_obs(o)},{a})={v:+.2f}" for (o, a), v in zip(targets, values, strict=True)))
            expected.append(", ".join(f"{t:+.2f}" for t in targets.values()) + f" +- {DQN_TOLERANCE}")
        if probe.right:
            greedy = [int(np.argmax(agent.q_values(np.array(obs, np.float32)))) for obs, _ in probe.right]
            right = sum(g == a for g, (_, a) in zip(greedy, probe.right, strict=True))
            data["greedy_right"] = right / len(probe.right)
            if probe.values is None:
                passed &= right == len(probe.right)
                measured.append(f"greedy right in {right}/{len(probe.right)} states")
                expected.append("all")
    if probe.optimum is not None:
        trained = witness.train_return() if witness is not None and witness.episodes else recent_training_return(agent)
        evaluated = evaluate(agent, env, EVAL_EPISODES, seed)
        data.update(train_return=trained, eval_return=evaluated, optimum=probe.optimum)
        if probe.threshold is not None:
            passed &= evaluated >= probe.threshold and (trained is None or trained >= probe.threshold)
            shown = "n/a" if trained is None else f"{trained:+.2f}"
            measured.append(f"return train {shown} eval {evaluated:+.2f}")
            expected.append(f"returns >= {probe.threshold:g}")
    if not measured:
        measured, expected, passed = ["agent has neither action_probs nor q_values"], ["one of them"], False
    suspect = PART[probe.number]
    return Result(
        algo, f"probe {probe.number}", bool(passed), "; ".join(measured), "; ".join(expected), suspect, seconds, data
    )


def run_probe(algo: str, train: Trainer, probe: Probe, workdir: Path, seed: int) -> Result:
    """Train ``algo`` on the probe through ``train(cfg)`` and judge the run it wrote."""
    from dirtyrl.doctor.witnessing import ProbeWatch

    start = time.monotonic()
    run_dir = workdir / f"{algo}-probe{probe.number}"
    if algo == "vpg":
        with ProbeWatch() as watch:  # the witnesses see our own algorithms as they see outside agents
            run_dir = train(vpg_config(probe.env_id, run_dir, seed, **probe.vpg))
        from dirtyrl.envs import make_env

        agent, env, gamma = VPGRun(run_dir, seed), make_env(probe.env_id), 0.99
    else:
        cfg = dqn_config(probe.env_id, run_dir, seed, **probe.dqn)
        with ProbeWatch() as watch:
            run_dir = train(cfg)
        agent = DQNRun(run_dir)
        env, gamma = agent.env, cfg.gamma
    try:
        witness = watch.result(agent, int(env.action_space.n))
        return judge(algo, probe, agent, gamma, env, seed, time.monotonic() - start, witness)
    finally:
        env.close()


# ---------------------------------------------------------------------------------------------
# VPG
# ---------------------------------------------------------------------------------------------

VPG_PROBES = [n for n, probe in PROBES.items() if "vpg" in probe.algos]  # probe 4 also gives the initial entropy


def vpg_checks(
    train: Trainer, workdir: Path, seed: int, probes: list[int] | None = None, selftests: list[str] | None = None
) -> list[Result]:
    """Every VPG check; ``probes`` limits it to those probes plus the self-tests named in ``selftests``."""
    from dirtyrl.doctor.selftests import vpg_selftests

    results = []
    for number in VPG_PROBES:
        if probes is not None and number not in probes:
            continue
        results.append(run_probe("vpg", train, PROBES[number], workdir, seed))
        if number == 4:
            results.append(vpg_initial_entropy(workdir / "vpg-probe4", n_actions=2))
    if probes is None or 1 in probes:
        results.append(vpg_constant_return(train, workdir, seed))
    if probes is None:
        results.append(vpg_reachability(seed))
    results += witness_rows("vpg", results)
    if probes is None or selftests:
        results += vpg_selftests(seed, selftests)
    return diagnose(results)


def first_scalar(run_dir: Path, tag: str) -> float | None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    if tag not in acc.Tags()["scalars"]:
        return None
    return acc.Scalars(tag)[0].value


def vpg_initial_entropy(run_dir: Path, n_actions: int) -> Result:
    """The first ``policy/entropy`` the run logged is that of the initial policy (the update's
    forward happens before its step). Zero-initialising the last layer makes it log A."""
    entropy = first_scalar(run_dir, "policy/entropy")
    target = math.log(n_actions)
    ok = entropy is not None and entropy >= 0.98 * target
    measured = "not logged" if entropy is None else f"{entropy:.4f}"
    suspect = "initialisation of the last layer: zero-init gives every action the same probability (entropy log A)"
    return Result("vpg", "initial entropy", ok, measured, f">= 0.98 * log {n_actions} = {0.98 * target:.4f}", suspect)


# Probe 1's env (one action, +1 every one-step episode) under VPG: 4 updates of 16 episodes.
CONSTANT_RETURN = {"episodes": 64, "batch_episodes": 16}
NO_EPSILON = "advantages standardised without an epsilon"  # signatures.py: SELFTEST_CAUSES


def scalars(run_dir: Path, tag: str) -> list[float]:
    """Every value the run logged under ``tag``, in order."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    return [e.value for e in acc.Scalars(tag)] if tag in acc.Tags()["scalars"] else []


def vpg_constant_return(train: Trainer, workdir: Path, seed: int) -> Result:
    """Every return of every batch equal: G - mean is 0, and so is the batch std.

    Standardised advantages need an epsilon, (G - mean) / (std + eps): without it they are
    0 / 0 = NaN, and NaN reaches the loss, the gradients and every weight within one update. A
    solved probe gets there too (every episode scores the optimum). Judged by what the run
    wrote: the final checkpoint's parameters and every logged ``losses/policy_loss`` finite.
    """
    from dirtyrl.checkpoint import load_checkpoint

    start = time.monotonic()
    run_dir = train(vpg_config(PROBES[1].env_id, workdir / "vpg-constant-return", seed, **CONSTANT_RETURN))
    model = load_checkpoint(run_dir / "checkpoints" / "latest.pt")["model"]
    nonfinite = [name for name, t in model.items() if torch.is_tensor(t) and not bool(torch.isfinite(t).all())]
    losses = scalars(run_dir, "losses/policy_loss")
    bad_losses = sum(not math.isfinite(x) for x in losses)
    ok = not nonfinite and bool(losses) and not bad_losses
    if ok:
        measured = f"{len(model)} parameters finite; {len(losses)} losses finite"
    elif not losses:
        measured = "no losses/policy_loss logged"
    else:
        measured = f"non-finite: {', '.join(nonfinite) or 'no parameter'}; {bad_losses}/{len(losses)} logged losses"
    return Result(
        "vpg",
        "constant return",
        ok,
        measured,
        "parameters and losses/policy_loss finite",
        "the advantage maths when every return is equal: a division by the batch std, a log of 0",
        time.monotonic() - start,
        {} if ok or not losses else {"bug": NO_EPSILON},
    )


def vpg_reachability(seed: int, env_id: str = "CartPole-v1") -> Result:
    """Every policy parameter must get a gradient, on both gradient paths.

    The batched path runs ``vpg.batched_backward`` (the default training path) and looks for
    parameters left with ``grad is None``; the per-step path walks the graph of the seed's
    per-step loss (commands/graph.py).
    """
    from dirtyrl import distributed
    from dirtyrl.algos import vpg
    from dirtyrl.commands.graph import vpg_losses
    from dirtyrl.config import EnvConfig
    from dirtyrl.debug.graph import unreachable_parameters
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

DQN_PROBES = [n for n, probe in PROBES.items() if "dqn" in probe.algos]
# Per probe 1-5: (observation, action) -> the Q-value it must learn (at the doctor's gamma 0.5).
DQN_TARGETS = {n: {(obs[0], a): t for (obs, a), t in PROBES[n].values(DQN_PROBE["gamma"]).items()} for n in range(1, 6)}


def dqn_checks(
    train: Trainer, workdir: Path, seed: int, probes: list[int] | None = None, selftests: list[str] | None = None
) -> list[Result]:
    """Every DQN check; ``probes`` limits it to those probes plus the self-tests named in ``selftests``."""
    from dirtyrl.doctor.selftests import dqn_selftests

    results = []
    for number in DQN_PROBES:
        if probes is not None and number not in probes:
            continue
        results.append(run_probe("dqn", train, PROBES[number], workdir, seed))
    if probes is None:
        results.append(dqn_reachability(seed))
    results += witness_rows("dqn", results)
    if probes is None or selftests:
        results += dqn_selftests(seed, selftests)
    return diagnose(results)


def dqn_reachability(seed: int, env_id: str = "CartPole-v1") -> Result:
    """The TD loss (``dqn.td_loss``, as the learner computes it) must reach every online parameter."""
    from dirtyrl.commands.graph import dqn_losses
    from dirtyrl.debug.graph import unreachable_parameters

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


CHECKS: dict[str, Callable[..., list[Result]]] = {"vpg": vpg_checks, "dqn": dqn_checks}
