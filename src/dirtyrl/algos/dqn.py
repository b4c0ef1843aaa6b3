"""Deep Q-learning (Mnih et al. 2015) with a replay buffer that stores every frame once.

Loop: act epsilon-greedily (uniformly at random during the heat-up), store the step in the
replay buffer, and every ``--train-every`` steps take one gradient step on a uniformly sampled
minibatch towards the TD target r + gamma * max_a' Q_target(s', a'); every
``--target-update-every`` steps move the target network toward the online one (hard copy at
``--tau 1``, Polyak averaging below).

Two ways to run the update, chosen by ``--learner-threads``:

- 1 (default): one thread does everything in order. Deterministic; a run stopped and resumed
  from a checkpoint (with ``--checkpoint-replay``) ends bit-identical to one that never stopped.
  On Atari the emulator runs in ale-py's C++ vector env (envs/atari_dqn.py): the loop sends
  the action, finishes the update due at the last step while the emulator plays it, then
  collects the frame. So the action after an update is chosen by the weights before it, and
  on a free core the emulator's time hides behind the update (on a 2-vCPU Zen 3 VM this wins
  back about what handing steps to the C++ thread costs: benchmarks/RESULTS.md).
- 2: the two cores split each minibatch. When an update is due, a helper thread starts on its
  share of the rows while the main thread plays the next ``--train-every`` steps and then
  computes the rest; the gradients are summed and one optimizer step is taken. The actor reads
  the same weights the learner differentiates (the optimizer step only runs once both shares
  are done), so there is no weight copy and no race. The price: each update lands one
  ``--train-every`` later than in the one-thread loop, and the split adapts to balance the two
  threads, so sums are rounded differently: fast, not bit-reproducible.

Per-env defaults (fields that default to None): Atari follows CleanRL's ``dqn_atari.py``
(Huang et al. 2022), itself Mnih et al. 2015 with Adam (``--preset cleanrl``); vector envs use a
setting tuned to solve CartPole-v1 in seconds (benchmarks/RESULTS.md). ``--preset pong-fast``
trades that fidelity for wall-clock speed on a CPU: a 40x40 field, the 2013 net with a dueling
head, Double DQN and 3-step returns (``--n-step``: windows cut at episode ends, bootstrapped
with gamma^m; dqn_maths.nstep_window, FrameReplayBuffer.gather_nstep).

``--autocast`` and ``--channels-last`` are settled for the machine at the start
(``choose_hardware``, dirtyrl/hardware.py) and recorded in config.json and TensorBoard.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dirtyrl.buffers import Batch, FrameReplayBuffer
from dirtyrl.checkpoint import (
    global_rng_state,
    load_checkpoint,
    pick_device,
    save_checkpoint,
    set_torch_threads,
    set_global_rng_state,
)
from dirtyrl import hardware
from dirtyrl.debug import Instruments, attach
from dirtyrl.config import DebugConfig, EnvConfig, RunConfig, arg, check_positive, check_run_config
from dirtyrl.dqn_maths import clip_reward, epsilon_at, linear_schedule, next_state_value, polyak_update, td_target
from dirtyrl.envs import check_env_id, episode_seed, is_pong, make_env, solved_threshold
from dirtyrl.envs.atari_dqn import SCREENS, is_atari, make_atari_dqn
from dirtyrl.errors import UserError
from dirtyrl.prioritized import PrioritizedReplayBuffer
from dirtyrl.qnets import NETS, make_qnet
from dirtyrl.resources import check_replay_buffer
from dirtyrl.runcontrol import EpisodeGuard, steps_left
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

ALGO = "dqn"


@dataclass
class Config:
    env: EnvConfig = field(default_factory=EnvConfig)
    run: RunConfig = field(default_factory=RunConfig)
    debug: DebugConfig = field(default_factory=DebugConfig)
    preset: str | None = arg(
        None,
        "fill the per-env defaults from a named setting: cleanrl (CleanRL's dqn_atari.py, the Atari default) "
        "or pong-fast (beats Pong's built-in AI fast on a CPU: 40x40 field, small net, Double + dueling + 3-step + "
        "prioritized replay); "
        "flags given explicitly still win",
        choices=["cleanrl", "pong-fast"],
    )
    # ---- network
    net: str | None = arg(
        None,
        "Q-network: nature (Mnih 2015 CNN), mnih2013 (the 2013 DQN: two convs, 256 hidden), "
        "seed (two 3x3 convs, 256 hidden) or mlp; per-env default: nature for Atari, mlp otherwise",
        choices=list(NETS),
    )
    hidden: list[int] | None = arg(None, "MLP hidden widths; per-env default: 128 128", nargs="+")
    batch_norm: bool = arg(False, "batch norm after each convolution (seed and nature nets)")
    bias: bool = arg(True, "biases in every layer (the seed's nets can run without)")
    dueling: bool | None = arg(
        None, "dueling head: Q = V + A - mean(A), two streams (Wang et al. 2016; conv nets); per-env default: false"
    )
    channels_last: str = arg(
        "auto",
        "NHWC memory layout for the conv nets (same maths): auto times one training step in both layouts at "
        "start and keeps NHWC only if it is >5%% faster; the choice and the timing go to config.json",
        choices=["auto", "on", "off"],
    )
    autocast: str = arg(
        "off",
        "bf16 runs the nets in bfloat16 autocast, only where the CPU has native bf16 (AVX512_BF16 or AMX): "
        "elsewhere bf16 prints one line with the measured slowdown and runs in fp32; auto = bf16 where native",
        choices=["off", "bf16", "auto"],
    )
    # ---- learning
    lr: float | None = arg(None, "learning rate; per-env default: 1e-4 Atari (CleanRL), 5e-4 otherwise")
    gamma: float | None = arg(None, "discount; per-env default: 0.99")
    n_step: int | None = arg(
        None,
        "n-step returns: learn from sum_{i<n} gamma^i r_i + gamma^n max Q(s_n), cut at episode ends; per-env default: 1",
    )
    batch_size: int | None = arg(None, "minibatch size; per-env default: 32 Atari, 128 otherwise")
    buffer_size: int | None = arg(
        None, "replay capacity in transitions (84x84: 7 KB each); per-env default: 1000000 Atari, 50000 otherwise"
    )
    learning_starts: int | None = arg(
        None, "heat-up: random actions and no learning for this many steps; per-env default: 80000 Atari, 500 otherwise"
    )
    train_every: int | None = arg(None, "one gradient step every N agent steps; per-env default: 4 Atari, 2 otherwise")
    target_update_every: int | None = arg(
        None, "move the target net every N agent steps; per-env default: 1000 Atari, 1 otherwise"
    )
    tau: float | None = arg(
        None,
        "target <- tau * online + (1 - tau) * target; 1 is a hard copy (Mnih), "
        "0.005 with --target-update-every 1 is soft; per-env default: 1.0 Atari, 0.005 otherwise",
    )
    loss: str | None = arg(
        None,
        "TD loss: huber (Nature's error clipping) or mse; per-env default: mse Atari (CleanRL), huber otherwise",
        choices=["huber", "mse"],
    )
    clip_grad_value: float | None = arg(
        None, "clamp every gradient element to [-V, V] (the seed uses 1); 0 = off; per-env default: 0"
    )
    clip_grad_norm: float | None = arg(
        None, "rescale the gradient to global norm <= N; 0 = off; per-env default: 0 Atari, 10 otherwise"
    )
    optimizer: str | None = arg(
        None, "adam, or rmsprop (Nature: alpha 0.95, eps 0.01); per-env default: adam", choices=["adam", "rmsprop"]
    )
    double: bool | None = arg(
        None,
        "Double DQN: the online net picks a', the target net values it; "
        "per-env default: false Atari (CleanRL), true otherwise",
    )
    prioritized: bool | None = arg(
        None,
        "prioritized replay: draw transitions in proportion to (|TD error| + 0.001)^alpha and weight "
        "each row's loss by (1/P)^beta (Schaul et al. 2016); per-env default: false",
    )
    per_alpha: float = arg(0.6, "prioritized replay: how strongly priorities skew sampling (0 = uniform)")
    per_beta: float = arg(0.4, "prioritized replay: importance-weight exponent at the start, annealed linearly to 1")
    per_beta_steps: int = arg(1_000_000, "prioritized replay: agent steps over which beta reaches 1")
    eps_start: float | None = arg(None, "initial exploration rate; per-env default: 1.0")
    eps_end: float | None = arg(None, "final exploration rate; per-env default: 0.01 Atari, 0.02 otherwise")
    eps_decay_steps: int | None = arg(
        None, "agent steps from eps-start to eps-end, counted from step 0; per-env default: 1000000 Atari, 5000 otherwise"
    )
    eps_schedule: str = arg(
        "linear", "linear, or exponential (1%% of the gap left at --eps-decay-steps)", choices=["linear", "exponential"]
    )
    # ---- Atari preprocessing (envs/atari_dqn.py says why each step exists)
    noop_max: int = arg(30, "Atari: up to N no-op frames at reset, so episodes do not all start alike")
    frame_skip: int = arg(4, "Atari: repeat each action N frames, observe the max of the last two (flicker)")
    screen: str | None = arg(
        None,
        "Atari: gray84 (Nature), rgb80 (the seed's 80x80 colour field), gray80 (that field in grey) or gray40 "
        "(it max-pooled to 40x40); per-env default: gray84",
        choices=list(SCREENS),
    )
    frame_stack: int = arg(4, "Atari: frames of history per observation (motion is invisible in one frame)")
    history: int = arg(
        1,
        "vector envs: observations of the last N steps, oldest first and zero-padded at reset, "
        "replayed through the frame buffer (the doctor's frame-history probe uses 2)",
    )
    clip_rewards: bool = arg(True, "Atari: learn from sign(reward); logged returns stay the real score")
    episodic_life: bool = arg(True, "Atari: a lost life is terminal for learning only (Pong has no lives)")
    fire_reset: str = arg(
        "auto",
        "Atari: press FIRE at reset and after a lost life; auto = games that need it (not Pong)",
        choices=["auto", "on", "off"],
    )
    # ---- run control
    learner_threads: int = arg(
        1,
        "1: one thread, exact; 2: acting overlaps a helper thread that computes half "
        "of each minibatch's gradient (both cores, not bit-reproducible)",
        choices=[1, 2],
    )
    checkpoint_replay: bool = arg(
        False,
        "also save the replay buffer (incrementally) for exact resume; "
        "it is large: 7 KB per 84x84 transition, the log line says how large",
    )
    log_every: int = arg(100, "log TD loss, mean Q, epsilon, replay fill and SPS every N updates")


PRESETS = {
    # CleanRL dqn_atari.py defaults (Huang et al. 2022), Mnih et al. 2015 with Adam and MSE.
    "cleanrl": {
        "net": "nature",
        "screen": "gray84",
        "n_step": 1,
        "dueling": False,
        "hidden": [256, 256],
        "lr": 1e-4,
        "gamma": 0.99,
        "batch_size": 32,
        "buffer_size": 1_000_000,
        "learning_starts": 80_000,
        "train_every": 4,
        "target_update_every": 1000,
        "tau": 1.0,
        "loss": "mse",
        "clip_grad_value": 0.0,
        "clip_grad_norm": 0.0,
        "optimizer": "adam",
        "double": False,
        "prioritized": False,
        "eps_start": 1.0,
        "eps_end": 0.01,
        "eps_decay_steps": 1_000_000,
    },
    # Tuned on CartPole-v1 (benchmarks/dqn_cartpole.py): soft target updates and a short
    # schedule; solves it in ~30-40k steps. Hard copies every 500 steps oscillated instead.
    "default": {
        "net": "mlp",
        "screen": "gray84",
        "n_step": 1,
        "dueling": False,
        "hidden": [128, 128],
        "lr": 5e-4,
        "gamma": 0.99,
        "batch_size": 128,
        "buffer_size": 50_000,
        "learning_starts": 500,
        "train_every": 2,
        "target_update_every": 1,
        "tau": 0.005,
        "loss": "huber",
        "clip_grad_value": 0.0,
        "clip_grad_norm": 10.0,
        "optimizer": "adam",
        "double": True,
        "prioritized": False,
        "eps_start": 1.0,
        "eps_end": 0.02,
        "eps_decay_steps": 5000,
    },
    # Pong fast in wall-clock time on a CPU, where time is paid per gradient step and per FLOP:
    # the playing field at 40x40 and the 2013 net (1/20 of the Nature net's compute at 84x84),
    # 3-step returns, Double DQN, a dueling head and prioritized replay (Hessel et al. 2018 rank
    # prioritized replay and n-step as the largest single gains; on Pong, prioritized replay
    # brought the last-20 mean above -10 in 353k and 504k agent steps (two seeds) instead of
    # 653k: benchmarks/RESULTS.md), a 100k buffer, a short heat-up and exploration schedule
    # (Lapan, Deep RL Hands-On ch. 8, solves Pong in a few hundred thousand steps with these).
    # Fields it leaves out come from the env's own preset.
    "pong-fast": {
        "net": "mnih2013",
        "screen": "gray40",
        "n_step": 3,
        "dueling": True,
        "double": True,
        "prioritized": True,
        "lr": 1e-4,
        "gamma": 0.99,
        "batch_size": 32,
        "buffer_size": 100_000,
        "learning_starts": 10_000,
        # Every 2, not every step: on a 2-core AMD EPYC (Zen 3) a step costs ~12 ms training every
        # step (85 steps/s) and ~6.5 ms every other step; 16 replayed samples per step is still
        # twice CleanRL's ratio.
        "train_every": 2,
        "target_update_every": 1000,
        "tau": 1.0,
        "loss": "huber",
        "clip_grad_norm": 10.0,
        "eps_start": 1.0,
        "eps_end": 0.02,
        "eps_decay_steps": 100_000,
    },
}


def resolve(cfg: Config) -> Config:
    """Fill every field left at None from the env's preset, and check the numbers (UserError)."""
    preset = dict(PRESETS["cleanrl" if is_atari(cfg.env.env) else "default"])
    if cfg.preset is not None:
        preset.update(PRESETS[cfg.preset])
    cfg = dataclasses.replace(cfg, **{k: v for k, v in preset.items() if getattr(cfg, k) is None})
    check_run_config(cfg.run)
    check_positive(
        lr=cfg.lr,
        batch_size=cfg.batch_size,
        buffer_size=cfg.buffer_size,
        train_every=cfg.train_every,
        target_update_every=cfg.target_update_every,
        eps_decay_steps=cfg.eps_decay_steps,
        frame_skip=cfg.frame_skip,
        frame_stack=cfg.frame_stack,
        history=cfg.history,
        log_every=cfg.log_every,
        n_step=cfg.n_step,
        per_beta_steps=cfg.per_beta_steps,
    )
    if any(h <= 0 for h in cfg.hidden):
        raise UserError(f"--hidden widths must be > 0, got {cfg.hidden}")
    for name in ("gamma", "tau", "eps_start", "eps_end", "per_alpha", "per_beta"):
        if not 0.0 <= getattr(cfg, name) <= 1.0:
            raise UserError(f"--{name.replace('_', '-')} must be in [0, 1], got {getattr(cfg, name)}")
    if cfg.tau == 0:
        raise UserError("--tau 0 never updates the target network; use 1 (hard) or e.g. 0.005 (soft)")
    for name in ("learning_starts", "noop_max", "clip_grad_value", "clip_grad_norm"):
        if getattr(cfg, name) < 0:
            raise UserError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(cfg, name)}")
    if cfg.batch_size > cfg.buffer_size:
        raise UserError(f"--batch-size {cfg.batch_size} is larger than --buffer-size {cfg.buffer_size}")
    if cfg.learning_starts < cfg.batch_size:
        raise UserError(
            f"--learning-starts {cfg.learning_starts} must be at least --batch-size {cfg.batch_size}: "
            "the first minibatch needs that many transitions"
        )
    if cfg.dueling and cfg.net == "mlp":
        raise UserError("--dueling is implemented for the conv nets (--net nature, mnih2013 or seed), not --net mlp")
    if cfg.learner_threads == 2 and cfg.batch_norm:
        raise UserError(
            "--batch-norm with --learner-threads 2 would update the running statistics from two threads; use one of them"
        )
    if cfg.learner_threads == 2 and cfg.run.threads not in (None, 1):
        raise UserError("--learner-threads 2 runs one torch thread per Python thread; leave --threads at 1")
    return cfg


# ---------------------------------------------------------------------------------------------
# Env, network, optimizer
# ---------------------------------------------------------------------------------------------


def make_dqn_env(cfg: Config, raw_frames: bool = False):
    """Atari ids (``pong``, ``ALE/...``) get DQN's preprocessing; any other id goes through make_env.

    ``raw_frames`` (``play``, and the inspect and render instruments) keeps the Atari screen
    beside the observations, which stay the same.
    """
    check_env_id(cfg.env.env)
    if is_atari(cfg.env.env):
        fire = {"auto": None, "on": True, "off": False}[cfg.fire_reset]
        watched = cfg.debug.inspect_every > 0 or cfg.debug.render or cfg.debug.video_every > 0
        return make_atari_dqn(
            cfg.env.env,
            actions=cfg.env.actions,
            sticky=cfg.env.sticky,
            noop_max=cfg.noop_max,
            frame_skip=cfg.frame_skip,
            screen=cfg.screen,
            frame_stack=cfg.frame_stack,
            fire_reset=fire,
            env_kwargs=cfg.env.env_kwargs,
            raw_frames=raw_frames or watched,
        )
    env = make_env(cfg.env.env, env_kwargs=cfg.env.env_kwargs)
    if len(env.observation_space.shape) != 1:
        env.close()
        raise UserError(
            f"env '{cfg.env.env}' has observations of shape {env.observation_space.shape}; DQN takes "
            "vectors or Atari screens (pong, ALE/<Game>-v5)"
        )
    if cfg.history > 1:
        # Zero padding at reset, oldest first: exactly the stacks FrameReplayBuffer rebuilds.
        stacked = gym.wrappers.FrameStackObservation(env, cfg.history, padding_type="zero")
        env = gym.wrappers.FlattenObservation(stacked)  # (history * D,)
    return env


def make_optimizer(cfg: Config, params) -> torch.optim.Optimizer:
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=cfg.lr, alpha=0.95, eps=0.01, foreach=True)  # Nature's constants
    # fused: one kernel for every parameter instead of ~6 small ops per tensor (CPU default is the slow loop).
    return torch.optim.Adam(params, lr=cfg.lr, fused=True)


def autocast(cfg: Config, device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.autocast == "bf16")


@torch.inference_mode()
def greedy_action(q: nn.Module, obs: np.ndarray, device: torch.device, cfg: Config) -> int:
    if cfg.batch_norm:
        q.eval()  # a batch of one must be normalised with the running statistics
    x = torch.from_numpy(obs).to(device).unsqueeze(0)  # (1, 4, 84, 84) uint8, or (1, D)
    with autocast(cfg, device):
        action = int(q(x).argmax(dim=1))
    if cfg.batch_norm:
        q.train()
    return action


# ---------------------------------------------------------------------------------------------
# The loss and the update
# ---------------------------------------------------------------------------------------------


def td_loss(
    q: nn.Module, target: nn.Module, batch: Batch, rows: slice, cfg: Config, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Summed TD loss of ``batch[rows]`` divided by the full batch size, the summed Q(s, a), and
    the rows' TD errors y - Q(s, a) (detached: prioritized replay's new priorities).

    Dividing by the full batch size makes the shares of a split batch add up to the mean loss.
    With prioritized replay each row's loss is scaled by its importance weight.
    """
    obs = torch.from_numpy(batch.obs[rows]).to(device)  # (b, 4, 84, 84) uint8: the net divides by 255
    next_obs = torch.from_numpy(batch.next_obs[rows]).to(device)
    actions = torch.from_numpy(batch.actions[rows]).to(device)  # (b,) int64
    rewards = torch.from_numpy(batch.rewards[rows]).to(device)  # (b,) float32, clipped for Atari
    terminated = torch.from_numpy(batch.terminated[rows]).to(device)  # (b,) bool; truncated rows still bootstrap
    with torch.no_grad(), autocast(cfg, device):
        target_next_q = target(next_obs).float()  # (b, A)
        online_next_q = q(next_obs).float() if cfg.double else None
        # n-step rows bootstrap with gamma^m, m the length of their window (shorter at episode ends).
        gamma = cfg.gamma if batch.discounts is None else torch.from_numpy(batch.discounts[rows]).to(device)
        y = td_target(rewards, next_state_value(target_next_q, online_next_q), terminated, gamma)  # (b,)
    with autocast(cfg, device):
        # The squeeze trap: a (b, 1) prediction against a (b,) target broadcasts to (b, b) in the loss.
        q_taken = q(obs).float().gather(1, actions.unsqueeze(1)).squeeze(1)  # (b,)
    if cfg.loss == "huber":
        per_row = F.smooth_l1_loss(q_taken, y, reduction="none")
    else:
        per_row = F.mse_loss(q_taken, y, reduction="none")
    if batch.weights is not None:
        per_row = per_row * torch.from_numpy(batch.weights[rows]).to(device)
    return per_row.sum() / cfg.batch_size, q_taken.detach().sum(), (y - q_taken).detach()


class Learner:
    """Online net, target net and optimizer; ``start(batch)`` begins an update, ``finish()`` ends it.

    With one thread ``start`` only remembers the batch and ``finish`` does the whole step.
    With two, ``start`` hands the last ``helper_rows`` rows to a helper thread, and ``finish``
    (called after the main thread has played on) computes the first rows and sums the two.
    """

    def __init__(self, q: nn.Module, target: nn.Module, cfg: Config, device: torch.device) -> None:
        self.q, self.target, self.cfg, self.device = q, target, cfg, device
        self.params = list(q.parameters())
        self.optimizer = make_optimizer(cfg, self.params)
        self.pool = (
            ThreadPoolExecutor(1, initializer=torch.set_num_threads, initargs=(1,)) if cfg.learner_threads == 2 else None
        )
        self.helper_rows = cfg.batch_size // 2
        self.pending: tuple[Batch, Future | None] | None = None
        self.target_sync_due = False
        self.updates = 0
        self.instruments: Instruments | None = None  # set by train() once the run dir exists
        # Prioritized replay: called with (slots, TD errors) after each update, to reprioritize them.
        self.on_td_errors: Callable[[np.ndarray, np.ndarray], None] | None = None
        self._last = (torch.tensor(float("nan")), torch.tensor(float("nan")))  # (loss, summed Q), as tensors

    def _helper_share(
        self, batch: Batch, rows: slice
    ) -> tuple[tuple[torch.Tensor, ...], torch.Tensor, torch.Tensor, torch.Tensor]:
        loss, q_sum, td = td_loss(self.q, self.target, batch, rows, self.cfg, self.device)
        # autograd.grad, not backward(): the helper must not write .grad while the main thread does.
        return torch.autograd.grad(loss, self.params), loss.detach(), q_sum, td

    def _replay(self, batch: Batch) -> None:
        """The whole minibatch's loss and backward again: a NaN trap replays it to name the op."""
        td_loss(self.q, self.target, batch, slice(None), self.cfg, self.device)[0].backward()

    def start(self, batch: Batch) -> None:
        future = None
        if self.pool is not None:
            future = self.pool.submit(self._helper_share, batch, slice(self.cfg.batch_size - self.helper_rows, None))
        self.pending = (batch, future)

    def finish(self, env_step: int = 0) -> bool:
        """Complete the pending update, if any; returns whether there was one."""
        if self.pending is None:
            return False
        batch, future = self.pending
        self.pending = None
        own = slice(0, self.cfg.batch_size - self.helper_rows) if future is not None else slice(None)
        loss, q_sum, td = td_loss(self.q, self.target, batch, own, self.cfg, self.device)
        self.optimizer.zero_grad(set_to_none=True)
        if self.instruments is not None:
            self.instruments.before_backward(self.updates, env_step)  # traps: nothing left from the last update
        loss.backward()
        if future is not None:
            # Balance the split: if the helper was already done, it gets one more row next time.
            step = 1 if future.done() else -1
            grads, helper_loss, helper_q, helper_td = future.result()
            torch._foreach_add_([p.grad for p in self.params], grads)
            loss, q_sum, td = loss + helper_loss, q_sum + helper_q, torch.cat([td, helper_td])
            self.helper_rows = min(max(self.helper_rows + step, 1), self.cfg.batch_size - 1)
        # Gradients of the whole minibatch are in .grad here, not yet clipped or applied.
        if self.instruments is not None:
            self.instruments.after_backward(
                self.updates, env_step, loss.detach(), None, batch=batch._asdict, replay=lambda: self._replay(batch)
            )
        if self.cfg.clip_grad_value > 0:
            nn.utils.clip_grad_value_(self.params, self.cfg.clip_grad_value)
        if self.cfg.clip_grad_norm > 0:
            nn.utils.clip_grad_norm_(self.params, self.cfg.clip_grad_norm)
        self.optimizer.step()
        self.updates += 1
        if self.instruments is not None:
            self.instruments.after_step(self.updates, env_step)
        if self.target_sync_due:
            self.target_sync_due = False
            polyak_update(self.target, self.q, self.cfg.tau)
        self._last = (loss.detach(), q_sum)  # converted only when logged: .item() is a sync on a GPU
        if self.on_td_errors is not None:
            self.on_td_errors(batch.indices, td.float().cpu().numpy())
        return True

    @property
    def last_loss(self) -> float:
        return float(self._last[0])

    @property
    def last_q(self) -> float:
        """Mean Q(s, a) of the taken actions in the last minibatch."""
        return float(self._last[1]) / self.cfg.batch_size

    def sync_target(self) -> None:
        """Move the target net now, or right after the update in flight (the helper reads it)."""
        if self.pending is None:
            polyak_update(self.target, self.q, self.cfg.tau)
        else:
            self.target_sync_due = True

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True)

    def state_dict(self) -> dict:
        return {
            "online": self.q.state_dict(),
            "target": self.target.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "updates": self.updates,
            "helper_rows": self.helper_rows,
        }

    def load_state_dict(self, state: dict) -> None:
        self.q.load_state_dict(state["online"])
        self.target.load_state_dict(state["target"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.updates, self.helper_rows = state["updates"], state["helper_rows"]


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------


@dataclass
class Counters:
    """What a checkpoint must carry, besides weights and RNG states, to continue exactly."""

    env_step: int = 0
    episodes_started: int = 0  # the next episode's index, hence its seed
    learn_from: int = 0  # first step that learns; a resume without the replay buffer pushes it out
    wall_before: float = 0.0  # training seconds of earlier sessions of this run
    checkpoint_due: bool = False  # a checkpoint waits for the episode to end


def build_nets(cfg: Config, obs_shape: tuple[int, ...], n_actions: int, device: torch.device) -> tuple[nn.Module, nn.Module]:
    """Online and target networks, identical at the start; the target never gets gradients."""
    nets = []
    for _ in range(2):
        net = make_qnet(
            cfg.net,
            obs_shape,
            n_actions,
            batch_norm=cfg.batch_norm,
            bias=cfg.bias,
            hidden=tuple(cfg.hidden),
            dueling=cfg.dueling,
        )
        if cfg.channels_last == "on" and hasattr(net, "use_channels_last"):
            net.use_channels_last()
        nets.append(net.to(device))
    q, target = nets
    target.load_state_dict(q.state_dict())
    target.requires_grad_(False).eval()  # batch norm, if any, normalises with the statistics it copied
    return q, target


def choose_hardware(
    cfg: Config, q: nn.Module, target: nn.Module, obs_shape: tuple[int, ...], device: torch.device
) -> tuple[Config, dict]:
    """Settle ``--autocast`` and ``--channels-last`` for this machine (dirtyrl/hardware.py says why).

    Returns the config with both resolved to what runs (so a resume reuses the choice and stays
    exact) and a record of what was detected, measured and chosen, for config.json and TensorBoard.
    """
    model, flags = hardware.cpu_info()
    native = device.type == "cpu" and hardware.native_bf16(flags)
    slowdown = None
    if cfg.autocast == "bf16" and device.type == "cpu" and not native:
        slowdown = hardware.measure_bf16_slowdown()
    mode, autocast_why = hardware.decide_autocast(cfg.autocast, device.type, native, slowdown)
    if slowdown is not None:
        print(f"dirtyrl: warning: --autocast bf16: {autocast_why}", file=sys.stderr, flush=True)
    conv = hasattr(q, "use_channels_last")
    seconds = None
    if conv and cfg.channels_last == "auto":
        # A real-size uint8 batch from a private generator: the run's RNG streams stay untouched.
        generator = torch.Generator().manual_seed(0)
        batch = torch.randint(0, 256, (cfg.batch_size, *obs_shape), dtype=torch.uint8, generator=generator)
        seconds = hardware.measure_layouts(q, batch.to(device))
    use_cl, layout_why = hardware.decide_channels_last(cfg.channels_last, conv, seconds)
    if use_cl and not q.channels_last:
        q.use_channels_last()
        target.use_channels_last()
    cfg = dataclasses.replace(cfg, autocast=mode, channels_last="on" if use_cl else "off")
    record = {"cpu": model, "native_bf16": native, "autocast": autocast_why, "channels_last": layout_why}
    return cfg, record


def restore(
    cfg: Config, learner: Learner, buffer: FrameReplayBuffer, stats: EpisodeStats, rng: np.random.Generator
) -> tuple[Counters, dict]:
    """Load ``--resume``: weights, optimizer, counters, statistics, RNG streams and, if saved, the replay."""
    ckpt = load_checkpoint(cfg.run.resume, ALGO, cfg.env.env)
    try:
        learner.load_state_dict(ckpt["learner"])
    except (RuntimeError, ValueError, KeyError) as exc:
        raise UserError(
            f"checkpoint {cfg.run.resume} does not match this network/optimizer (--net {cfg.net}, "
            f"--optimizer {cfg.optimizer}): {str(exc).splitlines()[0]}"
        ) from exc
    counters = Counters(**ckpt["counters"])
    stats.load_state_dict(ckpt["stats"])
    rng.bit_generator.state = ckpt["rng"]
    set_global_rng_state(ckpt["global_rng"])
    print(
        f"resuming from {cfg.run.resume}: step {counters.env_step}, {learner.updates} updates, {stats.episodes} episodes",
        flush=True,
    )
    replay_dir = Path(cfg.run.resume).parent / "replay"
    if ckpt["replay"] is not None and replay_dir.is_dir():
        try:
            buffer.load(replay_dir, **ckpt["replay"])
        except ValueError as exc:
            raise UserError(
                f"the replay buffer saved in {replay_dir} does not fit this run ({exc}); "
                "resume with the same --buffer-size and --frame-stack"
            ) from exc
    else:
        counters.learn_from = counters.env_step + cfg.learning_starts
        print(
            f"resume: no saved replay buffer; learning pauses for {cfg.learning_starts} steps while it refills "
            "(run with --checkpoint-replay for exact resume)"
        )
    if ckpt["mid_episode"]:
        print("resume: the checkpoint was taken mid-episode (interrupted); a new episode starts, so this resume is not exact")
    return counters, ckpt


class Meter:
    """Steps per second over the interval since the last reading (the learning phase's own speed)."""

    def __init__(self, step: int) -> None:
        self.step, self.time = step, time.monotonic()

    def read(self, step: int) -> float:
        now = time.monotonic()
        sps = (step - self.step) / max(now - self.time, 1e-9)
        self.step, self.time = step, now
        return sps


def log_learning(
    logger: RunLogger,
    progress: Progress,
    learner: Learner,
    buffer: FrameReplayBuffer,
    eps: float,
    step: int,
    sps: float,
    stats: EpisodeStats,
) -> None:
    logger.scalar("losses/td_loss", learner.last_loss, step)
    logger.scalar("losses/q_values", learner.last_q, step)
    logger.scalar("charts/epsilon", eps, step)
    logger.scalar("charts/replay_fill", buffer.fill, step)
    logger.scalar("charts/sps", sps, step)
    logger.scalar("charts/updates", learner.updates, step)
    if isinstance(buffer, PrioritizedReplayBuffer):
        logger.scalar("charts/per_beta", buffer.beta, step)
        logger.scalar("charts/per_max_priority", buffer.max_priority, step)
    progress.update(
        step,
        stats.episodes,
        sps,
        stats.ema,
        f"eps {eps:.3f}  fill {buffer.fill:4.0%}  loss {learner.last_loss:.4f}  Q {learner.last_q:+.3f}",
    )


def play_episode(
    env,
    cfg: Config,
    c: Counters,
    learner: Learner,
    buffer: FrameReplayBuffer,
    rng: np.random.Generator,
    frame_channels: int,
    device: torch.device,
    on_update,
    on_point,
) -> tuple[float, int, float]:
    """One episode of acting, storing and learning; returns (game return, length, last epsilon)."""
    q, n_actions, atari = learner.q, int(env.action_space.n), is_atari(cfg.env.env)
    # The Atari vector env steps in its own C++ thread (module docstring). With two learner
    # threads the update already overlaps acting (Learner), and that loop stays as it is.
    send = getattr(env.unwrapped, "send", None) if cfg.learner_threads == 1 else None
    # Seeded from counters alone, so a checkpoint at an episode boundary needs no emulator state.
    obs, info = env.reset(seed=episode_seed(cfg.run.seed, 0, c.episodes_started))
    c.episodes_started += 1
    buffer.start_episode(obs[-frame_channels:])
    lives, ep_return, ep_length, eps = info.get("lives", 0), 0.0, 0, 1.0
    while True:
        # ---- act: epsilon-greedy; uniformly random during the heat-up
        eps = (
            1.0
            if c.env_step < cfg.learning_starts
            else epsilon_at(c.env_step, cfg.eps_schedule, cfg.eps_start, cfg.eps_end, cfg.eps_decay_steps)
        )
        if rng.random() < eps:
            action = int(rng.integers(n_actions))
        else:
            action = greedy_action(q, obs, device, cfg)
        if send is not None:
            send(action)
            learner.finish(c.env_step)
        next_obs, reward, terminated, truncated, info = env.step(action)  # collects what send started
        c.env_step += 1
        learner.instruments.on_env_step(env, c.env_step)
        ep_return += float(reward)
        ep_length += 1
        if reward != 0:
            on_point(reward > 0)

        # ---- store: the learner sees clipped rewards and life losses; the logs see the game's score
        life_lost = atari and cfg.episodic_life and info.get("lives", lives) < lives
        lives = info.get("lives", lives)
        buffer.add(
            action,
            clip_reward(reward) if atari and cfg.clip_rewards else float(reward),
            next_obs[-frame_channels:],
            bool(terminated or life_lost),
            bool(truncated),
        )
        obs = next_obs  # the trap: forget this and the agent keeps acting on its first frame

        # ---- learn: one gradient step every train_every steps, the target net every target_update_every
        if c.env_step >= c.learn_from and c.env_step % cfg.train_every == 0:
            # Sampled first: with two threads this overlaps the helper's share of the update
            # still in flight (started train_every steps ago), which the next line completes.
            if cfg.prioritized:
                buffer.beta = linear_schedule(c.env_step, cfg.per_beta, 1.0, cfg.per_beta_steps)
            batch = buffer.sample(cfg.batch_size, rng, cfg.n_step, cfg.gamma)
            learner.finish(c.env_step)
            learner.start(batch)
            if cfg.learner_threads == 1 and send is None:
                learner.finish(c.env_step)
            # With two threads the first call only starts an update: count from the first finished one.
            if learner.updates > 0 and learner.updates % cfg.run.checkpoint_every == 0:
                c.checkpoint_due = True
            if learner.updates > 0 and learner.updates % cfg.log_every == 0:
                on_update(eps)
        if c.env_step >= c.learn_from and c.env_step % cfg.target_update_every == 0:
            learner.sync_target()
        if terminated or truncated:
            if send is not None:
                learner.finish(c.env_step)  # episodes end with their updates done: a resume here is exact
            learner.instruments.on_episode_end(c.episodes_started - 1)
            return ep_return, ep_length, eps


def train(cfg: Config) -> Path:
    """Train DQN; returns the run directory. Raises UserError for bad input."""
    cfg = resolve(cfg)
    set_torch_threads(cfg.run.threads)
    device = pick_device(cfg.run.device)
    env = make_dqn_env(cfg)
    obs_shape = env.observation_space.shape
    history = cfg.frame_stack if is_atari(cfg.env.env) else cfg.history
    frame_shape = (obs_shape[0] // history, *obs_shape[1:])  # one frame: (1, 84, 84), (3, 80, 80) or (D,)
    threshold = solved_threshold(cfg.env.env, cfg.run.target_return)
    check_replay_buffer(cfg.buffer_size, frame_shape, history, env.observation_space.dtype, int(env.action_space.n))

    torch.manual_seed(cfg.run.seed)
    try:
        q, target = build_nets(cfg, obs_shape, int(env.action_space.n), device)
    except ValueError as exc:
        env.close()
        raise UserError(str(exc)) from exc
    cfg, hardware = choose_hardware(cfg, q, target, obs_shape, device)
    learner = Learner(q, target, cfg, device)
    if cfg.prioritized:
        buffer = PrioritizedReplayBuffer(
            cfg.buffer_size,
            frame_shape,
            history,
            env.observation_space.dtype,
            env.action_space.n,
            alpha=cfg.per_alpha,
            n_step=cfg.n_step,
        )
        learner.on_td_errors = buffer.update_priorities
    else:
        buffer = FrameReplayBuffer(cfg.buffer_size, frame_shape, history, env.observation_space.dtype, env.action_space.n)
    rng = np.random.default_rng(cfg.run.seed)  # the one stream for exploration and replay sampling
    stats = EpisodeStats(cfg.run.ema, threshold)
    c, ckpt = Counters(learn_from=cfg.learning_starts), None
    if cfg.run.resume:
        try:
            c, ckpt = restore(cfg, learner, buffer, stats, rng)
        except UserError:
            env.close()
            learner.close()
            raise
    env = EpisodeGuard(env, cfg.run.long_episode_warning, steps_left(cfg.run.total_steps, c.env_step))

    run_dir = make_run_dir(
        ALGO, cfg.env.env, cfg.run.run_dir or (ckpt["config"]["run"]["run_dir"] if ckpt else None), resuming=ckpt is not None
    )
    cfg = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, run_dir=str(run_dir)))
    logger = RunLogger(run_dir)
    start_run(run_dir, {**dataclasses.asdict(cfg), "hardware": hardware}, logger)
    logger.text("hardware", "\n\n".join(f"**{k}**: {v}" for k, v in hardware.items()))
    progress = Progress(cfg.run.progress, cfg.run.total_steps, cfg.run.total_episodes, points=is_pong(cfg.env.env))
    instruments = learner.instruments = attach(cfg.debug, q, logger, run_dir)
    start = time.monotonic()
    meter = Meter(c.env_step)

    def elapsed() -> float:
        return c.wall_before + time.monotonic() - start

    def write_outputs(final: bool, mid_episode: bool = False) -> None:
        learner.finish(c.env_step)  # never checkpoint with half an update in flight
        replay = None
        if cfg.checkpoint_replay:
            written = buffer.save(run_dir / "checkpoints" / "replay")
            print(
                f"checkpoint-replay: {buffer.size} transitions, {buffer.bytes_per_slot * buffer.size / 2**20:,.1f} MiB "
                f"in {run_dir / 'checkpoints' / 'replay'} ({written / 2**20:,.1f} MiB written now)"
            )
            replay = {"added": buffer.added, "pos": buffer.episode_position}
        counters = dataclasses.replace(c, wall_before=elapsed(), checkpoint_due=False)
        save_checkpoint(
            run_dir / "checkpoints" / "latest.pt",
            {
                "algo": ALGO,
                "env": cfg.env.env,
                "config": dataclasses.asdict(cfg),
                "learner": learner.state_dict(),
                "counters": dataclasses.asdict(counters),
                "stats": stats.state_dict(),
                "rng": rng.bit_generator.state,
                "global_rng": global_rng_state(),
                "replay": replay,
                "mid_episode": mid_episode,
            },
        )
        write_json_atomic(
            run_dir / "summary.json", summary_dict(ALGO, cfg.env.env, cfg.run.seed, c.env_step, elapsed(), stats)
        )
        if final:
            plot_learning_curve(
                run_dir / "learning_curve.png", stats.returns, cfg.run.ema, f"DQN on {cfg.env.env} (seed {cfg.run.seed})"
            )

    def on_update(eps: float) -> None:
        log_learning(logger, progress, learner, buffer, eps, c.env_step, meter.read(c.env_step), stats)

    in_episode = False
    try:
        # A run ends at an episode boundary, so that its final checkpoint resumes exactly.
        while not cfg.run.finished(c.env_step, stats.episodes, stats.solved):
            in_episode = True
            ep_return, ep_length, eps = play_episode(
                env, cfg, c, learner, buffer, rng, frame_shape[0], device, on_update, progress.point
            )
            in_episode = False
            stats.add(ep_return, ep_length, c.env_step, elapsed())
            logger.scalar("charts/episode_return", ep_return, c.env_step)
            logger.scalar("charts/episode_length", ep_length, c.env_step)
            logger.scalar("charts/return_ema", stats.ema, c.env_step)
            progress.episode_end(stats.episodes, ep_return)
            if c.env_step < c.learn_from:
                logger.scalar("charts/epsilon", eps, c.env_step)
                logger.scalar("charts/replay_fill", buffer.fill, c.env_step)
                progress.update(
                    c.env_step,
                    stats.episodes,
                    c.env_step / max(elapsed(), 1e-9),
                    stats.ema,
                    f"heat-up  fill {buffer.fill:4.0%}",
                )
            if c.checkpoint_due:
                write_outputs(final=False)
                c.checkpoint_due = False
    except KeyboardInterrupt:
        progress.close()
        write_outputs(final=True, mid_episode=in_episode)
        announce(run_dir, interrupted=True)
        raise
    finally:
        instruments.close()
        learner.close()
        env.close()
    progress.close()
    write_outputs(final=True)
    logger.close()
    announce(run_dir)
    return run_dir


def main() -> None:
    """``python -m dirtyrl.algos.dqn [flags]``: the same as ``dirtyrl train dqn [flags]``."""
    import sys

    from dirtyrl.cli import main as cli_main

    sys.exit(cli_main(["train", "dqn", *sys.argv[1:]]))


if __name__ == "__main__":
    main()
