"""Vanilla policy gradient: Karpathy's "Pong from pixels", single- or multi-process.

Loop: play a batch of B episodes with one fixed policy, compute rewards-to-go (restarting at
every Pong point), subtract the batch-mean baseline (optionally divide by the std), and take
one optimizer step on the policy-gradient surrogate -mean(log pi(a|s) * A).

Two gradient paths give the same gradient (tests/test_vpg.py proves it):
- ``batched`` (default): store the observations (int8 difference frames for Pong) and actions,
  and recompute every log-probability in one batched forward at update time. Pong frames go
  in as a sparse CSR batch, so the first layer costs per non-zero pixel.
- ``per-step`` (the seed's original): run the policy with autograd at every step, keep every
  step's graph alive until the batch ends, then call backward once per episode. Memory grows
  with the batch: that is the lesson it keeps.

Acting uses a numpy snapshot of the weights taken at the start of each batch: the snapshot
*is* the fixed behaviour policy, and it keeps the per-step cost of acting far below the cost of
an ALE step.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from dirtyrl import distributed
from dirtyrl.checkpoint import load_checkpoint, load_model_state, pick_device, save_checkpoint, set_torch_threads
from dirtyrl.config import DebugConfig, EnvConfig, RunConfig, arg, check_positive, check_run_config
from dirtyrl.debug import Instruments, attach
from dirtyrl.envs import episode_seed, is_ale, is_pong, make_env, solved_threshold
from dirtyrl.envs.vector import env_workers, make_batch
from dirtyrl.errors import UserError
from dirtyrl.nets import KarpathyPolicy
from dirtyrl.resources import check_cores, check_vpg_batch, vpg_step_bytes
from dirtyrl.returns import categorical_entropy, discounted_sum, rewards_to_go
from dirtyrl.runcontrol import EpisodeGuard, LongEpisodes, batch_share, needs_fire, steps_left, vpg_share_done
from dirtyrl.telemetry import (
    announce,
    start_run,
    EpisodeStats,
    Progress,
    RunLogger,
    make_run_dir,
    plot_learning_curve,
    summary_dict,
    write_json_atomic,
)

ALGO = "vpg"
# Steps a group of slots side by side plays per message (--num-envs): ~70 ms of Pong on a
# Zen 3 core, against ~0.2 ms per message round. Instruments that watch every step get 1.
SIDE_BY_SIDE_CHUNK = 32


@dataclass
class Config:
    env: EnvConfig = field(default_factory=EnvConfig)
    run: RunConfig = field(default_factory=RunConfig)
    debug: DebugConfig = field(default_factory=DebugConfig)
    lr: float | None = arg(None, "learning rate; per-env default: 1e-3 for pong (Karpathy), 1e-2 otherwise")
    gamma: float | None = arg(None, "discount; per-env default: 0.99")
    batch_episodes: int | None = arg(
        None, "episodes per update, played with one fixed policy; per-env default: 10 for pong (Karpathy), 4 otherwise"
    )
    hidden: int | None = arg(None, "hidden units of the two-layer policy; per-env default: 200 for pong, 64 otherwise")
    optimizer: str | None = arg(
        None, "per-env default: rmsprop for pong (Karpathy), adam otherwise", choices=["rmsprop", "adam"]
    )
    rmsprop_decay: float = arg(0.99, "RMSprop smoothing constant (Karpathy's decay_rate)")
    standardize: bool = arg(True, "divide the advantages by their batch std (Karpathy standardises)")
    bias: bool | None = arg(None, "biases in both layers; per-env default: off for pong (the seed), on otherwise")
    zero_init_last: bool = arg(True, "zero-initialise the last layer for maximal initial entropy (Schulman)")
    grad_path: str = arg(
        "batched", "batched: one forward at update time; per-step: the seed's graph per step", choices=["batched", "per-step"]
    )
    num_envs: int = arg(
        1,
        "episodes of a batch played side by side, one batched forward per step (Atari: the games run in "
        "--env-workers worker processes, which use the other cores); 1: one env, the seed's loop",
    )
    vector_env: str = arg(
        "procs",
        "how --num-envs steps Atari games: procs (the very envs of --num-envs 1, in worker processes that "
        "act for their own games with the batch's policy, 32 steps per message) or ale (ale-py's C++ "
        "AtariVectorEnv in this process, all games in lockstep); speeds per CPU in benchmarks/RESULTS.md",
        choices=["procs", "ale"],
    )
    env_workers: int | None = arg(
        None,
        "worker processes (procs) or C++ threads (ale) stepping the Atari games of --num-envs; default: this "
        "process's share of the cores",
    )
    workers: int = arg(1, "processes playing episodes in parallel on torch.distributed (gloo on CPU)")
    sync: str = arg(
        "allreduce",
        "gradient sync across workers: allreduce, or reduce-broadcast (step on rank 0, broadcast weights)",
        choices=["allreduce", "reduce-broadcast"],
    )
    reduce: str = arg(
        "sum", "how all-reduce combines gradients: sum (exactly the one-process gradient) or mean", choices=["sum", "mean"]
    )
    dist_timeout: float = arg(60.0, "seconds a worker waits for the others in a collective before it exits with an error")


PRESETS = {
    "pong": {"lr": 1e-3, "gamma": 0.99, "batch_episodes": 10, "hidden": 200, "optimizer": "rmsprop", "bias": False},
    "default": {"lr": 1e-2, "gamma": 0.99, "batch_episodes": 4, "hidden": 64, "optimizer": "adam", "bias": True},
}


def resolve(cfg: Config) -> Config:
    """Fill every field left at None from the env's preset, and check the numbers."""
    # Every Atari game gets Karpathy's settings: its input is the same kind of 80x80 difference frame.
    preset = PRESETS["pong" if is_ale(cfg.env.env) else "default"]
    cfg = dataclasses.replace(cfg, **{k: v for k, v in preset.items() if getattr(cfg, k) is None})
    check_run_config(cfg.run)
    check_positive(
        lr=cfg.lr,
        batch_episodes=cfg.batch_episodes,
        hidden=cfg.hidden,
        workers=cfg.workers,
        num_envs=cfg.num_envs,
        env_workers=cfg.env_workers,
        dist_timeout=cfg.dist_timeout,
    )
    if not 0.0 <= cfg.gamma <= 1.0:
        raise UserError(f"--gamma must be in [0, 1], got {cfg.gamma}")
    if cfg.workers > cfg.batch_episodes:
        raise UserError(
            f"--workers {cfg.workers} is more than --batch-episodes {cfg.batch_episodes}: "
            "every worker must play at least one episode per update"
        )
    if cfg.num_envs > 1 and cfg.grad_path == "per-step":
        raise UserError(
            "--grad-path per-step records one graph per step of one env; use it with --num-envs 1 "
            "(a batched forward's graph is shared by all the envs, and each episode's backward would free it)"
        )
    share = -(-cfg.batch_episodes // cfg.workers)
    if cfg.num_envs > share:
        raise UserError(
            f"--num-envs {cfg.num_envs} is more than the {share} episodes each worker plays per batch "
            f"(--batch-episodes {cfg.batch_episodes}, --workers {cfg.workers}): the extra envs would only wait"
        )
    if not distributed.launched():  # under a launcher, --workers was checked before it started
        check_cores(cfg.workers)
    return cfg


# ---------------------------------------------------------------------------------------------
# Acting with a frozen snapshot of the policy
# ---------------------------------------------------------------------------------------------


class Actor:
    """Numpy copy of the policy weights, taken once per batch: the fixed behaviour policy.

    Sparse observations (int8 difference frames) are stored as their non-zero pixels, ~80 of
    6,400 on a typical Pong frame (lossless, ~6% of the bytes), and acting gathers only those
    rows of W1^T.
    """

    def __init__(self, policy: KarpathyPolicy, sparse: bool) -> None:
        self.w1t = policy.fc1.weight.detach().cpu().numpy().T.copy()  # (D, H), rows contiguous
        self.w2 = policy.fc2.weight.detach().cpu().numpy().copy()  # (A, H)
        self.b1 = policy.fc1.bias.detach().cpu().numpy().copy() if policy.fc1.bias is not None else 0.0
        self.b2 = policy.fc2.bias.detach().cpu().numpy().copy() if policy.fc2.bias is not None else 0.0
        self.sparse = sparse

    def encode(self, obs: np.ndarray) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """The stored form of an observation: (indices, int8 values) if sparse, else float32."""
        x = obs.reshape(-1)
        if self.sparse:
            nz = np.flatnonzero(x != 0)  # on a bool mask: ~3x faster than on the int8 frame itself
            return nz, x[nz]
        return x.astype(np.float32)

    def probs(self, stored: np.ndarray | tuple[np.ndarray, np.ndarray]) -> list[float]:
        """pi(.|s) of one stored observation."""
        if self.sparse:
            nz, values = stored
            hidden = values.astype(np.float32) @ self.w1t[nz]
        else:
            hidden = stored @ self.w1t
        hidden = np.maximum(hidden + self.b1, 0.0)
        return softmax((self.w2 @ hidden + self.b2).tolist())

    def batch(self, obs: np.ndarray) -> tuple[list, list[list[float]]]:
        """Stored forms and action probabilities of k observations (one list per observation).

        Sparse frames: each frame gathers the rows of W1^T at its non-zero pixels (``encode``,
        as one observation would) into one (k, H) hidden layer; the bias, ReLU and output layer
        then run once for all k. The softmax of a few logits per row runs on Python floats.
        """
        x = obs.reshape(len(obs), -1)
        if self.sparse:
            stored = [self.encode(row) for row in x]
            hidden = np.empty((len(x), self.w1t.shape[1]), np.float32)
            for row, (nz, values) in zip(hidden, stored, strict=True):
                np.matmul(values.astype(np.float32), self.w1t[nz], out=row)
        else:
            dense = x.astype(np.float32)
            stored, hidden = list(dense), dense @ self.w1t
        logits = np.maximum(hidden + self.b1, 0.0) @ self.w2.T + self.b2
        return stored, [softmax(row) for row in logits.tolist()]

    def act(self, obs: np.ndarray, uniforms: np.ndarray) -> tuple[list, np.ndarray]:
        """Stored forms and sampled actions of k observations, one uniform each (``inverse_cdf``)."""
        stored, probs = self.batch(obs)
        return stored, np.array([inverse_cdf(p, u) for p, u in zip(probs, uniforms.tolist(), strict=True)], np.int64)


def softmax(logits: list[float]) -> list[float]:
    """Softmax of a few logits on Python floats: every numpy call costs about a microsecond, more
    than the arithmetic it would do.

    >>> [round(p, 3) for p in softmax([0.0, math.log(3.0)])]
    [0.25, 0.75]
    """
    top = max(logits)
    weights = [math.exp(z - top) for z in logits]
    total = sum(weights)
    return [w / total for w in weights]


def inverse_cdf(p: list[float], u: float) -> int:
    """The first action whose cumulative probability exceeds the uniform ``u``.

    >>> inverse_cdf([0.0, 1.0, 0.0], 0.3), inverse_cdf([0.5, 0.5, 0.0], 0.7), inverse_cdf([0.2, 0.3, 0.5], 0.99)
    (1, 1, 2)
    """
    cumulative = 0.0
    for action, prob in enumerate(p):
        cumulative += prob
        if u < cumulative:
            return action
    return len(p) - 1  # u landed in the float round-off above the last cumulative sum


def sample(p: list[float], rng: np.random.Generator) -> int:
    """Inverse-CDF sample of a categorical distribution (a few µs cheaper than rng.choice).

    >>> sample([0.0, 1.0, 0.0], np.random.default_rng(0))
    1
    """
    return inverse_cdf(p, rng.random())


@dataclass
class Episode:
    obs: list[np.ndarray]
    actions: list[int]
    rewards: list[float]
    step_log_probs: list[torch.Tensor]  # per-step path only: each keeps its graph alive


def play_episode(
    env,
    actor: Actor,
    rng: np.random.Generator,
    seed: int | None,
    policy: KarpathyPolicy | None,
    device: torch.device,
    on_step,
    on_point,
) -> Episode:
    """One episode with the fixed snapshot; ``policy`` given means the per-step path records graphs."""
    ep = Episode([], [], [], [])
    obs, _ = env.reset(seed=seed)
    while True:
        stored = actor.encode(obs)
        action = sample(actor.probs(stored), rng)
        if policy is not None:
            x = torch.as_tensor(obs.reshape(1, -1), dtype=torch.float32, device=device)
            ep.step_log_probs.append(torch.log_softmax(policy(x), dim=-1)[0, action])
        ep.obs.append(stored)
        ep.actions.append(action)
        obs, reward, terminated, truncated, _ = env.step(action)  # obs = next_obs: the trap is forgetting it
        ep.rewards.append(float(reward))
        on_step()
        if reward != 0:
            on_point(reward > 0)
        # Truncation (time limit) ends the episode exactly like termination here: rewards-to-go
        # have no value function to bootstrap from.
        if terminated or truncated:
            return ep


def play_one_by_one(
    env, actor: Actor, share, cfg: Config, policy: KarpathyPolicy, device, on_step, on_point, on_episode
) -> list[Episode]:
    """This rank's share of a batch in one env, one episode after another (``--num-envs 1``).

    ``share(played)`` yields the episode indices while the run's limits allow another; with
    ``--grad-path per-step`` the policy records every step's graph.
    """
    recorder = policy if cfg.grad_path == "per-step" else None
    run_seed = cfg.run.seed
    episodes: list[Episode] = []
    first = None
    for index in share(episodes):
        first = index if first is None else first
        # Seeds come from counters alone, so a checkpoint at a batch boundary needs no env or
        # sampler state. The env is reseeded once per batch, not per episode: reseeding ALE
        # reloads the ROM (~70 ms, a quarter of a Pong episode's time).
        rng = np.random.default_rng([run_seed, index])
        env_seed = episode_seed(run_seed, 0, index) if index == first else None
        episodes.append(play_episode(env, actor, rng, env_seed, recorder, device, on_step, on_point))
        on_episode(index, episodes[-1])
    return episodes


def side_by_side_fields(envs, idle_steps: int) -> dict:
    """summary.json's field for ``--num-envs`` > 1: env steps that waited for a batch's last episodes."""
    return {} if envs is None else {"idle_env_steps": idle_steps}


def close_all(*envs) -> None:
    """Close the one env and, with ``--num-envs`` > 1, the envs side by side (else None)."""
    for env in envs:
        if env is not None:
            env.close()


def slot_seeds(seed: int, first: int, num_envs: int, reseed: bool) -> list[int] | None:
    """Env seeds of the slots side by side: each that of the episode it starts with, from counters.

    None (no reseeding, the envs play on) unless ``reseed``.
    """
    return [episode_seed(seed, 0, first + slot) for slot in range(num_envs)] if reseed else None


def may_start_episode(
    run, env_steps: int, episodes: int, batch_start: int, world_size: int, index: int, started: int, steps: int
) -> bool:
    """Side by side: may episode ``index`` start, after ``started`` episodes and ``steps`` steps of this batch?"""
    return not vpg_share_done(
        run.total_steps, run.total_episodes, env_steps, episodes, started, steps, index - batch_start, world_size
    )


def side_by_side(cfg: Config, env, dist: distributed.Dist, budget: int | None):
    """For ``--num-envs N > 1``: the N envs (envs/vector.py) and the long-episode rules they share."""
    if cfg.num_envs == 1:
        return None, None
    e = cfg.env
    workers = env_workers(cfg.env_workers, cfg.num_envs, dist.local_world_size)
    envs = make_batch(
        e.env,
        cfg.num_envs,
        workers,
        actions=e.actions,
        sticky=e.sticky,
        env_kwargs=e.env_kwargs,
        probe=env,
        backend=cfg.vector_env,
    )
    return envs, LongEpisodes(cfg.run.long_episode_warning, budget, needs_fire(env))


def play_side_by_side(
    envs,
    actor: Actor,
    indices: list[int],
    seeds: list[int] | None,
    run_seed: int,
    may_start,
    rules: LongEpisodes,
    on_steps,
    on_point,
    on_episode,
    chunk: int = SIDE_BY_SIDE_CHUNK,
) -> tuple[list[Episode], int]:
    """Episodes ``indices`` with one fixed snapshot, in the slots of ``envs`` (envs/vector.py).

    Each slot plays one episode at a time; when it ends, the slot starts the next index if
    ``may_start(index, started, steps)`` allows (the run's limits), else it waits. The slots
    come in groups (``envs.groups``), and each group plays ``chunk`` steps at a time (fewer when
    an episode in it ends), acting for itself with ``actor`` (``ProcessBatch``: in its worker
    process, two groups per worker, one playing while the other is settled here). The chunks
    are settled in a fixed order, so which slot plays which episode never depends on timing.
    Waiting slots that are stepped anyway (lockstep envs) are counted and returned: the cost of
    the batch's last, long episodes. ``seeds`` (one per slot, or None) reseed the envs first.
    Every episode samples from its own generator, seeded from (run seed, episode index), as in
    the one-env loop. Returns the episodes in index order and the idle slot-steps.
    """
    envs.reset(seeds)
    envs.use(actor)
    play = SideBySide(envs, indices, run_seed, may_start, rules, on_point, on_episode, chunk)
    for slot in range(envs.num_envs):
        play.start(slot)
    for k in range(len(envs.groups)):
        play.send(k)
    while any(p is not None for p in play.playing):
        for k in range(len(envs.groups)):
            if not play.sent[k]:
                continue
            play.sent[k] = False
            played, idle = envs.recv(k)
            count = sum(len(p.actions) for p in played.values())
            play.steps += count
            play.idle += idle
            on_steps(count)
            for slot in sorted(played):
                play.settle(slot, played[slot])
            play.send(k)
    return [play.finished[i] for i in sorted(play.finished)], play.idle


class SideBySide:
    """The state of ``play_side_by_side``: which slot plays which episode, and what was sent."""

    def __init__(self, envs, indices: list[int], run_seed: int, may_start, rules, on_point, on_episode, chunk: int):
        self.envs, self.run_seed, self.chunk = envs, run_seed, chunk
        self.may_start, self.rules, self.on_point, self.on_episode = may_start, rules, on_point, on_episode
        self.queue = list(reversed(indices))
        self.playing: list[tuple[int, Episode] | None] = [None] * envs.num_envs
        self.starts: dict[int, list[int]] = {}  # slot -> the generator seed of the episode it starts next chunk
        self.finished: dict[int, Episode] = {}
        self.sent = [False] * len(envs.groups)
        self.steps = self.idle = 0

    def start(self, slot: int) -> None:
        """The slot's next episode, if one is left and the run's limits allow it; else it waits."""
        started = len(self.finished) + sum(p is not None for p in self.playing)
        if self.queue and self.may_start(self.queue[-1], started, self.steps):
            index = self.queue.pop()
            self.playing[slot] = (index, Episode([], [], [], []))
            self.starts[slot] = [self.run_seed, index]
        else:
            self.playing[slot] = None

    def send(self, k: int) -> None:
        """Group k's playing slots play their next chunk."""
        live = [s for s in self.envs.groups[k].tolist() if self.playing[s] is not None]
        if live:
            self.envs.send(k, {s: self.starts.pop(s) for s in live if s in self.starts}, live, self.chunk)
            self.sent[k] = True

    def settle(self, slot: int, played) -> None:
        """A slot's chunk came back: its steps join its episode; if the episode ended, the next one starts."""
        index, ep = self.playing[slot]
        if played.carried:  # FIRE after a lost life, pressed first thing in this chunk: the last step's
            ep.rewards[-1] += played.carried
        cut = False
        for j, (o, a, r) in enumerate(zip(played.obs, played.actions, played.rewards, strict=True)):
            ep.obs.append(o)
            ep.actions.append(a)
            ep.rewards.append(r)
            # A cut leaves the slot's game running mid-episode: nothing more starts there.
            if self.rules.step(len(ep.actions), played.done and j == len(played.actions) - 1):
                cut = True
                break
        if played.done or cut:
            self.finished[index] = ep
            for r in ep.rewards:  # the episode's points, told once it ends: the envs interleave
                if r != 0:
                    self.on_point(r > 0)
            self.on_episode(index, ep)
            self.playing[slot] = None
            if not cut:
                self.start(slot)


def batch_input(episodes: list[Episode], sparse: bool, dim: int, device: torch.device) -> torch.Tensor:
    """All stored observations of the batch as one (N, D) float tensor; sparse CSR for frames."""
    stored = [o for ep in episodes for o in ep.obs]
    if not sparse:
        return torch.as_tensor(np.stack(stored), device=device)
    crow = np.zeros(len(stored) + 1, np.int64)
    np.cumsum([len(nz) for nz, _ in stored], out=crow[1:])
    cols = torch.from_numpy(np.concatenate([nz for nz, _ in stored]).astype(np.int64))
    values = torch.from_numpy(np.concatenate([v for _, v in stored]).astype(np.float32))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Sparse CSR tensor support is in beta", UserWarning)
        x = torch.sparse_csr_tensor(torch.from_numpy(crow), cols, values, size=(len(stored), dim), check_invariants=False)
    return x.to(device)


def episode_advantages(
    episodes: list[Episode], gamma: float, pong: bool, standardize: bool, dist: distributed.Dist
) -> np.ndarray:
    """Rewards-to-go per episode, then the baseline over the whole (global) batch."""
    returns = np.concatenate([rewards_to_go(np.array(ep.rewards), gamma, reset_on_nonzero=pong) for ep in episodes])
    mean, std, _ = distributed.global_moments(dist, returns)
    adv = returns - mean
    if standardize:
        adv = adv / (std + 1e-8)
    return adv


def batched_backward(
    policy: KarpathyPolicy, episodes: list[Episode], adv: np.ndarray, normalizer: int, sparse: bool, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fast path: one forward over every stored step, one backward. Returns (loss, entropies)."""
    logits = policy(batch_input(episodes, sparse, policy.fc1.in_features, device))  # (N, A)
    actions = torch.as_tensor(np.concatenate([ep.actions for ep in episodes]), device=device)
    log_p = torch.log_softmax(logits, dim=-1).gather(1, actions[:, None]).squeeze(1)  # (N,)
    loss = -(log_p * torch.as_tensor(adv, dtype=torch.float32, device=device)).sum() / normalizer
    loss.backward()
    return loss.detach(), categorical_entropy(logits.detach())


def trap_batch(episodes: list[Episode], adv: np.ndarray) -> dict:
    """The update's batch for a ``--debug.trap stop`` dump; built only when a trap trips."""
    return {
        "obs": [o for ep in episodes for o in ep.obs],  # stored form: (indices, values) for Pong frames
        "actions": np.concatenate([ep.actions for ep in episodes]),
        "rewards": np.concatenate([ep.rewards for ep in episodes]),
        "advantages": adv,
    }


def per_step_backward(episodes: list[Episode], adv: np.ndarray, normalizer: int) -> torch.Tensor:
    """The seed's path: the graphs recorded while playing, one backward per episode."""
    total, start = torch.zeros(()), 0
    for ep in episodes:
        ep_adv = torch.as_tensor(adv[start : start + len(ep.actions)], dtype=torch.float32)
        ep_loss = -(torch.stack(ep.step_log_probs) * ep_adv.to(ep.step_log_probs[0].device)).sum() / normalizer
        ep_loss.backward()  # frees this episode's graphs; gradients accumulate in .grad
        total += ep_loss.detach().cpu()
        start += len(ep.actions)
    return total


@dataclass
class BatchReport:
    """What one rank tells rank 0 after an update (small: no observations)."""

    returns: list[float]
    lengths: list[int]
    long_term: list[float]  # per episode: sum_t gamma^t H(pi(.|s_t))
    entropy_sum: float  # summed over the rank's steps
    steps: int
    idle: int  # steps of envs side by side that waited for the batch's last episodes

    @classmethod
    def of(cls, episodes: list[Episode], entropies: torch.Tensor, gamma: float, idle: int = 0) -> BatchReport:
        ent = entropies.cpu().numpy()
        bounds = np.cumsum([0] + [len(ep.actions) for ep in episodes]).tolist()
        return cls(
            returns=[sum(ep.rewards) for ep in episodes],
            lengths=[len(ep.actions) for ep in episodes],
            long_term=[discounted_sum(ent[a:b], gamma) for a, b in itertools.pairwise(bounds)],
            entropy_sum=float(ent.sum()),
            steps=len(ent),
            idle=idle,
        )


def log_update(
    logger: RunLogger,
    reports: list[BatchReport],
    loss: float,
    update: int,
    env_steps: int,
    elapsed: float,
    ema: float,
    side_by_side: bool,
) -> float:
    """One update's scalars from every rank's report; returns the mean entropy per step."""
    entropy = sum(r.entropy_sum for r in reports) / sum(r.steps for r in reports)
    logger.scalar("losses/policy_loss", loss, env_steps)
    logger.scalar("policy/entropy", entropy, env_steps)
    logger.scalar("policy/long_term_entropy", np.mean([x for r in reports for x in r.long_term]), env_steps)
    logger.scalar("charts/sps", env_steps / elapsed, env_steps)
    logger.scalar("charts/update", update, env_steps)
    if side_by_side:
        idle = sum(r.idle for r in reports)
        logger.scalar("charts/idle_fraction", idle / (idle + sum(r.steps for r in reports)), env_steps)
    for ret in (ret for r in reports for ret in r.returns):
        logger.scalar("charts/episode_return", ret, env_steps)
    logger.scalar("charts/return_ema", ema, env_steps)
    return entropy


def make_optimizer(cfg: Config, policy: KarpathyPolicy) -> torch.optim.Optimizer:
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(policy.parameters(), lr=cfg.lr, alpha=cfg.rmsprop_decay, eps=1e-5)  # Karpathy eps
    return torch.optim.Adam(policy.parameters(), lr=cfg.lr)


def restore(
    ckpt: dict, cfg: Config, policy: KarpathyPolicy, optimizer: torch.optim.Optimizer, stats: EpisodeStats
) -> tuple[int, int, int, float]:
    """Load a checkpoint's state; returns (update, env_steps, episodes_started, wall_seconds)."""
    if ckpt["config"]["optimizer"] != cfg.optimizer:
        raise UserError(
            f"checkpoint {cfg.run.resume} was trained with --optimizer {ckpt['config']['optimizer']}, not {cfg.optimizer}"
        )
    load_model_state(policy, ckpt["model"], cfg.run.resume)
    optimizer.load_state_dict(ckpt["optimizer"])
    stats.load_state_dict(ckpt["stats"])
    torch.set_rng_state(ckpt["torch_rng"])
    return ckpt["update"], ckpt["env_steps"], ckpt["episodes_started"], ckpt["wall_seconds"]


def learn(
    policy: KarpathyPolicy,
    optimizer: torch.optim.Optimizer,
    episodes: list[Episode],
    cfg: Config,
    dist: distributed.Dist,
    sparse: bool,
    device: torch.device,
    instruments: Instruments,
    update: int,
    env_step: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One policy-gradient step on a batch of episodes; returns (loss, per-step entropies)."""
    adv = episode_advantages(episodes, cfg.gamma, is_pong(cfg.env.env), cfg.standardize, dist)
    # The loss is a mean over every step of the global batch, so N ranks with sum reduction
    # produce exactly the gradient of one process playing all B episodes.
    n_local = sum(len(ep.actions) for ep in episodes)
    normalizer = distributed.global_count(dist, n_local) if cfg.reduce == "sum" else n_local
    optimizer.zero_grad(set_to_none=True)
    instruments.before_backward(update, env_step)  # traps: no gradient may be left from the last update
    replay = None
    if cfg.grad_path == "per-step":
        loss = per_step_backward(episodes, adv, normalizer)
        with torch.no_grad():
            entropies = categorical_entropy(policy(batch_input(episodes, sparse, policy.fc1.in_features, device)))
    else:
        loss, entropies = batched_backward(policy, episodes, adv, normalizer, sparse, device)
        replay = functools.partial(batched_backward, policy, episodes, adv, normalizer, sparse, device)
    if instruments.checks_actions:  # traps: the actions played must be samples of this (not yet stepped) policy
        with torch.no_grad():
            logits = policy(batch_input(episodes, sparse, policy.fc1.in_features, device))
        instruments.check_actions(update, env_step, logits, np.concatenate([ep.actions for ep in episodes]))
    dump = functools.partial(trap_batch, episodes, adv)  # called only if a trap stops the run
    instruments.after_backward(update, env_step, loss, float(entropies.mean()), batch=dump, replay=replay)
    distributed.sync_grads_and_step(dist, policy, optimizer, cfg.sync, cfg.reduce)
    return loss, entropies


def check_memory(cfg: Config, env, obs_dim: int, sparse: bool, dist: distributed.Dist) -> None:
    """Refuse a batch (times the workers on this machine) that cannot fit in memory, in one line."""
    if not dist.is_main:  # rank 0 speaks for all; the launcher then stops the other workers
        return
    step_bytes = vpg_step_bytes(obs_dim, sparse, cfg.grad_path == "per-step", cfg.hidden)
    max_steps = env.spec.max_episode_steps if env.spec is not None else None
    check_vpg_batch(-(-cfg.batch_episodes // dist.world_size), max_steps, step_bytes, dist.local_world_size)


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------


def train(cfg: Config) -> Path:
    """Train VPG; returns the run directory. Raises UserError for bad input."""
    cfg = resolve(cfg)
    device = pick_device(cfg.run.device)
    dist = distributed.init(device, cfg.dist_timeout)
    set_torch_threads(cfg.run.threads)
    pong = is_pong(cfg.env.env)
    env = make_env(cfg.env.env, actions=cfg.env.actions, sticky=cfg.env.sticky, env_kwargs=cfg.env.env_kwargs)
    obs_space = env.observation_space
    sparse = obs_space.dtype == np.int8  # Pong difference frames
    threshold = solved_threshold(cfg.env.env, cfg.run.target_return)

    torch.manual_seed(cfg.run.seed)
    policy = KarpathyPolicy(
        int(np.prod(obs_space.shape)), int(env.action_space.n), cfg.hidden, cfg.zero_init_last, cfg.bias
    ).to(device)
    optimizer = make_optimizer(cfg, policy)
    stats = EpisodeStats(cfg.run.ema, threshold)
    update, env_steps, episodes_started, wall_before, idle_steps = 0, 0, 0, 0.0, 0

    ckpt = load_checkpoint(cfg.run.resume, ALGO, cfg.env.env) if cfg.run.resume else None
    if ckpt is not None:
        update, env_steps, episodes_started, wall_before = restore(ckpt, cfg, policy, optimizer, stats)
        idle_steps = ckpt.get("idle_steps", 0)
        if dist.is_main:
            print(f"resuming from {cfg.run.resume}: update {update}, {episodes_started} episodes", flush=True)
    distributed.broadcast_params(dist, policy)
    check_memory(cfg, env, policy.fc1.in_features, sparse, dist)
    budget = steps_left(cfg.run.total_steps, env_steps, dist.world_size)
    envs, rules = side_by_side(cfg, env, dist, budget)
    env = EpisodeGuard(env, cfg.run.long_episode_warning, budget)

    run_dir = make_run_dir(ALGO, cfg.env.env, cfg.run.run_dir, resuming=ckpt is not None) if dist.is_main else None
    cfg = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, run_dir=str(run_dir) if run_dir else None))
    logger = RunLogger(run_dir, enabled=dist.is_main)
    start_run(run_dir, dataclasses.asdict(cfg), logger)
    instruments = attach(cfg.debug, policy, logger, run_dir)
    progress = Progress(cfg.run.progress if dist.is_main else "off", cfg.run.total_steps, cfg.run.total_episodes, pong)
    my_episodes = distributed.episodes_for_rank(cfg.batch_episodes, dist.world_size, dist.rank)
    start = time.monotonic()

    def checkpoint_state() -> dict:
        return {
            "algo": ALGO,
            "env": cfg.env.env,
            "config": dataclasses.asdict(cfg),
            "model": policy.state_dict(),
            "optimizer": optimizer.state_dict(),
            "update": update,
            "env_steps": env_steps,
            "episodes_started": episodes_started,
            "idle_steps": idle_steps,
            "wall_seconds": wall_before + time.monotonic() - start,
            "stats": stats.state_dict(),
            "torch_rng": torch.get_rng_state(),
        }

    def write_outputs(final: bool) -> None:
        if not dist.is_main:
            return
        save_checkpoint(run_dir / "checkpoints" / "latest.pt", checkpoint_state())
        summary = summary_dict(
            ALGO, cfg.env.env, cfg.run.seed, env_steps, wall_before + time.monotonic() - start, stats, dist.world_size
        )
        summary |= side_by_side_fields(envs, idle_steps)
        write_json_atomic(run_dir / "summary.json", summary)
        if final:
            plot_learning_curve(
                run_dir / "learning_curve.png", stats.returns, cfg.run.ema, f"VPG on {cfg.env.env} (seed {cfg.run.seed})"
            )

    pending_steps = 0
    reseed = True  # side by side: the envs are reseeded from counters at the first batch and after each checkpoint

    watched = getattr(envs, "view", env)  # side by side, the instruments watch the first env

    def on_step(count: int = 1) -> None:  # after one env step, or one step of the envs side by side
        nonlocal pending_steps
        pending_steps += count
        instruments.on_env_step(watched, env_steps + pending_steps)

    def on_episode(index: int, ep: Episode) -> None:
        nonlocal ended
        ended += 1
        instruments.on_episode_end(index)
        progress.episode_end(stats.episodes + ended, sum(ep.rewards))
        elapsed = wall_before + time.monotonic() - start
        steps = env_steps + pending_steps
        progress.update(steps, stats.episodes + ended, steps / max(elapsed, 1e-9), stats.ema)

    try:
        while not cfg.run.finished(env_steps, stats.episodes, stats.solved):
            # ---- play: B episodes with one fixed policy ------------------------------------
            actor = Actor(policy, sparse)
            pending_steps = 0
            first = episodes_started + distributed.episode_offset(cfg.batch_episodes, dist.world_size, dist.rank)
            ended = 0
            if envs is None:
                # A limit reached inside the batch ends the batch early: the update learns from
                # the episodes played (docs/algorithms.md, "Run control").
                share = functools.partial(
                    batch_share,
                    first,
                    my_episodes,
                    run=cfg.run,
                    env_steps=env_steps,
                    episodes=stats.episodes,
                    batch_start=episodes_started,
                    world_size=dist.world_size,
                )
                episodes, idle = (
                    play_one_by_one(env, actor, share, cfg, policy, device, on_step, progress.point, on_episode),
                    0,
                )
            else:
                # Reseeding an ALE reloads its ROM (~0.1-0.2 s per env), too slow for every batch;
                # at the first batch and after every checkpoint it makes resume exact.
                episodes, idle = play_side_by_side(
                    envs,
                    actor,
                    list(range(first, first + my_episodes)),
                    slot_seeds(cfg.run.seed, first, cfg.num_envs, reseed),
                    cfg.run.seed,
                    functools.partial(
                        may_start_episode, cfg.run, env_steps, stats.episodes, episodes_started, dist.world_size
                    ),
                    rules,
                    on_step,
                    progress.point,
                    on_episode,
                    1 if instruments.watches_steps else SIDE_BY_SIDE_CHUNK,
                )

            # ---- learn: rewards-to-go, baseline, one gradient step ----------------------------
            loss, entropies = learn(
                policy, optimizer, episodes, cfg, dist, sparse, device, instruments, update, env_steps + pending_steps
            )
            update += 1
            reseed = update % cfg.run.checkpoint_every == 0
            instruments.after_step(update, env_steps + pending_steps)

            # ---- bookkeeping: global episode stats, logging, checkpoint ------------------------
            # Every rank's report, replayed in rank order: rank 0 sees the episodes exactly as
            # one process playing the whole batch would.
            reports = distributed.gather_objects(dist, BatchReport.of(episodes, entropies, cfg.gamma, idle))
            for report in reports:
                for ret, length in zip(report.returns, report.lengths, strict=True):
                    env_steps += length
                    stats.add(ret, length, env_steps, wall_before + time.monotonic() - start)
            episodes_started += cfg.batch_episodes
            elapsed = wall_before + time.monotonic() - start
            entropy = log_update(logger, reports, float(loss), update, env_steps, elapsed, stats.ema, envs is not None)
            idle_steps += sum(r.idle for r in reports)
            progress.update(env_steps, stats.episodes, env_steps / elapsed, stats.ema, f"H {entropy:.3f}", force=True)
            if update % cfg.run.checkpoint_every == 0:
                write_outputs(final=False)
    except KeyboardInterrupt:
        progress.close()
        write_outputs(final=True)
        announce(run_dir, interrupted=True)
        raise
    finally:
        instruments.close()
        close_all(env, envs)
    progress.close()
    write_outputs(final=True)
    logger.close()
    distributed.shutdown(dist)
    announce(run_dir)
    return run_dir
