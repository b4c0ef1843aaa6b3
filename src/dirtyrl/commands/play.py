"""``dirtyrl play CHECKPOINT --episodes K [--video FILE]``: watch a trained agent.

The checkpoint says which algorithm and env it was trained on; the agent is rebuilt from it
and plays K episodes in the same env factory training used. With a display the game shows in
a window; otherwise, or with ``--video``, the episodes go to an animated GIF (``--video``
names it; the default is ``RUN_DIR/videos/play-<time>.gif``).

VPG samples from its policy (that is the policy it was trained as; ``--greedy`` takes the most
likely action instead). DQN acts greedily, with ``--epsilon`` for the evaluation epsilon.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dirtyrl.errors import UserError

Agent = Callable[[np.ndarray, np.random.Generator], int]


def load_vpg_policy(state: dict[str, Any]) -> torch.nn.Module:
    """KarpathyPolicy rebuilt from a VPG checkpoint's state dict alone (its shapes give the sizes)."""
    from dirtyrl.nets import KarpathyPolicy

    weights = state["model"]
    hidden, dim = weights["fc1.weight"].shape
    n_actions = weights["fc2.weight"].shape[0]
    policy = KarpathyPolicy(dim, n_actions, hidden=hidden, bias="fc1.bias" in weights)
    policy.load_state_dict(weights)
    return policy.eval()


def vpg_agent(state: dict[str, Any], env: Any, greedy: bool) -> Agent:
    policy = load_vpg_policy(state)

    def act(obs: np.ndarray, rng: np.random.Generator) -> int:
        with torch.no_grad():
            p = torch.softmax(policy(torch.as_tensor(obs.reshape(1, -1), dtype=torch.float32)), -1)[0].numpy()
        return int(p.argmax()) if greedy else int(rng.choice(len(p), p=p / p.sum()))

    return act


def load_dqn(state: dict[str, Any]) -> tuple[torch.nn.Module, Any]:
    """DQN's online Q-network and its env, rebuilt with dirtyrl.algos.dqn's own factories."""
    from dirtyrl.algos import dqn
    from dirtyrl.config import config_from_dict
    from dirtyrl.qnets import make_qnet

    cfg = config_from_dict(dqn.Config, state["config"])  # the resolved config: every field filled
    env = dqn.make_dqn_env(cfg, raw_frames=True)  # Atari: the screen for the window or the video
    qnet = make_qnet(
        cfg.net,
        env.observation_space.shape,
        int(env.action_space.n),
        batch_norm=cfg.batch_norm,
        bias=cfg.bias,
        hidden=tuple(cfg.hidden),
        dueling=bool(cfg.dueling),  # None in checkpoints from before --dueling existed
    )
    qnet.load_state_dict(state["learner"]["online"])
    return qnet.eval(), env


def dqn_agent(qnet: torch.nn.Module, env: Any, epsilon: float) -> Agent:
    """Greedy on the Q-values (epsilon-greedy with ``epsilon``)."""
    n = int(env.action_space.n)

    def act(obs: np.ndarray, rng: np.random.Generator) -> int:
        if rng.random() < epsilon:
            return int(rng.integers(n))
        with torch.no_grad():
            return int(qnet(torch.as_tensor(np.asarray(obs)[None])).argmax(1)[0])

    return act


def random_agent(env: Any) -> Agent:
    n = int(env.action_space.n)
    return lambda obs, rng: int(rng.integers(n))


def make_agent(state: dict[str, Any], args: argparse.Namespace) -> tuple[Agent, Any]:
    """The agent and the env it was trained in, from the same factories training used."""
    if state["algo"] == "dqn":
        qnet, env = load_dqn(state)
        return dqn_agent(qnet, env, args.epsilon), env
    from dirtyrl.envs import make_env

    env_cfg = state.get("config", {}).get("env", {})
    env = make_env(
        state["env"],
        actions=env_cfg.get("actions", 3),
        sticky=env_cfg.get("sticky", 0.25),
        env_kwargs=env_cfg.get("env_kwargs"),  # a module:EnvId id imports its module here too, in this process
    )
    if state["algo"] == "vpg":
        return vpg_agent(state, env, args.greedy), env
    return random_agent(env), env


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="a checkpoint file, e.g. RUN_DIR/checkpoints/latest.pt")
    parser.add_argument("--episodes", type=int, default=1, help="episodes to play (default: 1)")
    parser.add_argument("--video", default=None, help="write the episodes to this .gif instead of a window")
    parser.add_argument("--seed", type=int, default=0, help="seed of the env and the agent's sampling (default: 0)")
    parser.add_argument("--greedy", action="store_true", help="VPG: take the most likely action instead of sampling")
    parser.add_argument("--epsilon", type=float, default=0.0, help="DQN: evaluation epsilon (default: 0)")


def run(args: argparse.Namespace) -> int:
    from dirtyrl.checkpoint import load_checkpoint
    from dirtyrl.debug.render import VideoWriter, Window, env_frame, has_display, no_frames_reason

    if args.episodes < 1:
        raise UserError(f"--episodes must be >= 1, got {args.episodes}")
    if not 0.0 <= args.epsilon <= 1.0:
        raise UserError(f"--epsilon must be in [0, 1], got {args.epsilon}")
    state = load_checkpoint(args.checkpoint)
    video_path = Path(args.video) if args.video else None
    use_window = video_path is None and has_display()
    if not use_window and video_path is None:
        run_dir = Path(args.checkpoint).resolve().parent.parent
        video_path = run_dir / "videos" / f"play-{time.strftime('%Y%m%d-%H%M%S')}.gif"
    if video_path is not None and video_path.suffix.lower() != ".gif":
        raise UserError(f"--video writes an animated GIF; name it *.gif, got {video_path}")
    agent, env = make_agent(state, args)
    window = Window(f"dirty-rl: {state['algo']} on {state['env']}") if use_window else None
    writer = VideoWriter(video_path.with_suffix(""), fps=env.metadata.get("render_fps", 30)) if video_path else None
    rng = np.random.default_rng(args.seed)
    returns = []
    drawn = False  # whether the env has drawn a picture yet
    try:
        for episode in range(args.episodes):
            obs, _ = env.reset(seed=args.seed + episode)
            total, done = 0.0, False
            while not done and not (window is not None and window.closed):
                frame = env_frame(env) if writer is not None or window is not None else None
                if frame is None and not drawn and (writer is not None or window is not None):
                    # An env that cannot draw itself: --video asked for exactly that, so refuse;
                    # the default window or video was only a way to watch, so play on without it.
                    reason = f"env '{state['env']}' cannot draw itself ({no_frames_reason(env)})"
                    if args.video:
                        raise UserError(f"--video: {reason}; nothing to record (play without --video)")
                    print(f"dirtyrl: {reason}; playing without pictures")
                    if window is not None:
                        window.close()
                    window, writer = None, None
                drawn = drawn or frame is not None
                if frame is not None and writer is not None:
                    writer.append(frame)
                if frame is not None and window is not None:
                    window.show(frame)
                obs, reward, terminated, truncated, _ = env.step(agent(obs, rng))
                total += float(reward)
                done = terminated or truncated
            returns.append(total)
            print(f"episode {episode + 1}/{args.episodes}: return {total:+.1f}")
    finally:
        env.close()
        if window is not None:
            window.close()
        written = writer.close() if writer is not None else []
    print(f"mean return over {len(returns)} episodes: {np.mean(returns):+.2f} ({state['algo']} on {state['env']})")
    for path in written:
        print(f"video: {path}")
    return 0
