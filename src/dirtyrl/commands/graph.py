"""Backward-graph diagrams, and the parameters no gradient can reach.

The seed: "sometimes the model's graph is not trivial ... you suspect that not all parameters
are trained or updated ... To create a visualization of the backward graph, I use the
incredible little torchviz package." Backward traverses these graphs and accumulates
gradients in the parameter leaves, the ``AccumulateGrad`` nodes, so every trainable weight
must hang off the graph of the loss. A weight that does not is never trained.

``dirtyrl graph vpg --steps 1 2 3`` draws the policy loss of the seed's per-step gradient path
after 1, 2 and 3 env steps: each step adds one more forward graph (a "string of backward
graphs"), all ending in the same parameter leaves. ``dirtyrl graph dqn`` draws DQN's TD loss
on a batch of 1, 2, 3 transitions (the target network, evaluated under no_grad, is
correctly absent). Both list every trainable parameter the loss cannot reach and exit 1 if
there is one.

Files, in ``--out`` (default ``graphs/``): ``<algo>-step<k>.png|.svg|.dot`` per step and
``<algo>-string.png``, the steps side by side.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dirtyrl.debug.graph import render_graph, string_of_graphs, unreachable_parameters
from dirtyrl.errors import UserError


# ---------------------------------------------------------------------------------------------
# The losses, built by the algorithms' own code
# ---------------------------------------------------------------------------------------------


def vpg_losses(
    env_id: str, steps: list[int], seed: int, env_kwargs: list[str] | None = None
) -> tuple[nn.Module, dict[int, torch.Tensor]]:
    """VPG's policy loss after k env steps, for each k, on the seed's per-step gradient path.

    Plays with ``vpg.play_episode`` recording one graph per step (exactly what ``--grad-path
    per-step`` does) and forms the loss of ``vpg.per_step_backward``, without its backward:
    ``-(sum_t log pi(a_t|s_t) * A_t) / k`` over the first k steps, A = rewards-to-go minus mean.
    """
    from dirtyrl.algos import vpg
    from dirtyrl.config import EnvConfig
    from dirtyrl.envs import episode_seed, is_pong, make_env
    from dirtyrl.nets import KarpathyPolicy
    from dirtyrl.returns import advantages_from_returns, rewards_to_go

    cfg = vpg.resolve(vpg.Config(env=EnvConfig(env=env_id, env_kwargs=list(env_kwargs or []))))
    env = make_env(env_id, actions=cfg.env.actions, sticky=cfg.env.sticky, env_kwargs=cfg.env.env_kwargs)
    torch.manual_seed(seed)
    dim = int(np.prod(env.observation_space.shape))
    policy = KarpathyPolicy(dim, int(env.action_space.n), hidden=cfg.hidden, zero_init_last=cfg.zero_init_last, bias=cfg.bias)
    actor = vpg.Actor(policy, sparse=env.observation_space.dtype == np.int8)
    log_probs: list[torch.Tensor] = []
    rewards: list[np.ndarray] = []
    index = 0
    try:
        while len(log_probs) < max(steps):  # short episodes (CartPole, probes): play more of them
            rng = np.random.default_rng([seed, index])
            ep = vpg.play_episode(
                env, actor, rng, episode_seed(seed, 0, index), policy, torch.device("cpu"), lambda: None, lambda won: None
            )
            log_probs += ep.step_log_probs
            rewards.append(rewards_to_go(np.array(ep.rewards), cfg.gamma, reset_on_nonzero=is_pong(env_id)))
            index += 1
    finally:
        env.close()
    adv = torch.as_tensor(advantages_from_returns(np.concatenate(rewards), cfg.standardize), dtype=torch.float32)
    return policy, {k: -(torch.stack(log_probs[:k]) * adv[:k]).sum() / k for k in steps}


def dqn_losses(
    env_id: str, steps: list[int], seed: int, env_kwargs: list[str] | None = None
) -> tuple[nn.Module, dict[int, torch.Tensor]]:
    """DQN's TD loss on a batch of the first k transitions, for each k."""
    q, td_loss_of_first = dqn_td_problem(env_id, max(steps), seed, env_kwargs)
    return q, {k: td_loss_of_first(k) for k in steps}


def dqn_td_problem(
    env_id: str, transitions: int, seed: int, env_kwargs: list[str] | None = None
) -> tuple[nn.Module, Callable[[int], torch.Tensor]]:
    """DQN's online network and ``k -> TD loss on the first k of ``transitions`` replayed transitions``.

    Built by DQN's own pieces: ``make_dqn_env``, ``make_qnet`` for the online and the target
    network (which, as in training, requires no grad), ``FrameReplayBuffer`` filled by random
    play, and ``dqn.td_loss``, the function the learner differentiates.
    """
    import dataclasses

    from dirtyrl.algos import dqn
    from dirtyrl.buffers import FrameReplayBuffer
    from dirtyrl.config import EnvConfig
    from dirtyrl.envs.atari_dqn import is_atari
    from dirtyrl.qnets import make_qnet

    cfg = dqn.resolve(
        dqn.Config(
            env=EnvConfig(env=env_id, env_kwargs=list(env_kwargs or [])),
            batch_size=transitions,
            learning_starts=transitions,
            buffer_size=transitions + 256,
        )
    )
    env = dqn.make_dqn_env(cfg)
    shape, n_actions = env.observation_space.shape, int(env.action_space.n)
    history = cfg.frame_stack if is_atari(env_id) else 1
    frame_channels = shape[0] // history
    torch.manual_seed(seed)
    q = make_qnet(cfg.net, shape, n_actions, batch_norm=cfg.batch_norm, bias=cfg.bias, hidden=tuple(cfg.hidden))
    target = make_qnet(cfg.net, shape, n_actions, batch_norm=cfg.batch_norm, bias=cfg.bias, hidden=tuple(cfg.hidden))
    target.load_state_dict(q.state_dict())
    target.requires_grad_(False).eval()
    buffer = FrameReplayBuffer(cfg.buffer_size, (frame_channels, *shape[1:]), history, env.observation_space.dtype, n_actions)
    rng = np.random.default_rng(seed)
    try:
        while int((buffer.ep_pos[: buffer.size] > 0).sum()) < transitions:
            obs, _ = env.reset(seed=int(rng.integers(2**31)))
            buffer.start_episode(obs[-frame_channels:])
            done = False
            while not done:
                action = int(rng.integers(n_actions))
                obs, reward, terminated, truncated, _ = env.step(action)
                buffer.add(action, float(reward), obs[-frame_channels:], bool(terminated), bool(truncated))
                done = terminated or truncated
    finally:
        env.close()
    slots = np.flatnonzero(buffer.ep_pos[: buffer.size] > 0)  # an episode's first slot holds no transition

    def td_loss_of_first(k: int) -> torch.Tensor:
        batch = buffer.gather(slots[:k])
        return dqn.td_loss(q, target, batch, slice(None), dataclasses.replace(cfg, batch_size=k), torch.device("cpu"))[0]

    return q, td_loss_of_first


LOSSES: dict[str, Callable[..., tuple[nn.Module, dict[int, torch.Tensor]]]] = {
    "vpg": vpg_losses,
    "dqn": dqn_losses,
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("algo", choices=sorted(LOSSES), help="whose loss to draw: vpg (policy loss) or dqn (TD loss)")
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 2, 3], help="draw the loss after each of these steps")
    parser.add_argument("--env", default="CartPole-v1", help="env to play the steps in (default: CartPole-v1)")
    parser.add_argument(
        "--env-kwargs",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="keyword arguments for gym.make, as train takes them (e.g. --env-kwargs is_slippery=False)",
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the network and the env (default: 1)")
    parser.add_argument("--out", default="graphs", help="output directory (default: graphs)")
    parser.add_argument(
        "--format",
        nargs="+",
        default=["png", "svg"],
        choices=["png", "svg", "pdf"],
        help="rendered formats (default: png svg)",
    )


def run(args: argparse.Namespace) -> int:
    if any(k < 1 for k in args.steps):
        raise UserError(f"--steps must be >= 1, got {args.steps}")
    steps = sorted(set(args.steps))
    given = {"env_kwargs": args.env_kwargs} if args.env_kwargs else {}  # a LOSSES entry may take only (env, steps, seed)
    model, losses = LOSSES[args.algo](args.env, steps, args.seed, **given)
    out = Path(args.out)
    pngs = []
    for k, loss in losses.items():
        paths = render_graph(loss, model, out / f"{args.algo}-step{k}", args.format)
        pngs += [p for p in paths if p.suffix == ".png"]
        print(f"step {k}: " + "  ".join(str(p) for p in paths))
    if len(pngs) > 1:
        print(f"string of graphs: {string_of_graphs(pngs, out / f'{args.algo}-string.png')}")
    unreachable = unreachable_parameters(model, losses[steps[-1]])
    trainable = [(n, tuple(p.shape)) for n, p in model.named_parameters() if p.requires_grad]
    if unreachable:
        shapes = dict(trainable)
        print(f"NOT reachable from the loss, never trained ({len(unreachable)} of {len(trainable)}):")
        for name in unreachable:
            print(f"  {name} {shapes[name]}")
        return 1
    print(f"all {len(trainable)} trainable parameters are reachable from the loss: " + ", ".join(n for n, _ in trainable))
    return 0
