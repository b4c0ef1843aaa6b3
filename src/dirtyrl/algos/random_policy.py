"""Random-policy baseline: uniform actions, the same metrics as the learners.

Run it first on any new task. Its curve is the line a learner must rise clearly above before
"it learns" means anything (Pong: about -20.7), and its steps/s is the env's own speed, the
ceiling of any training loop on the same env config.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dirtyrl.checkpoint import load_checkpoint, save_checkpoint
from dirtyrl.config import DebugConfig, EnvConfig, RunConfig, check_run_config
from dirtyrl.envs import episode_seed, is_pong, make_env, solved_threshold
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

ALGO = "random"


@dataclass
class Config:
    env: EnvConfig = field(default_factory=EnvConfig)
    run: RunConfig = field(default_factory=RunConfig)
    debug: DebugConfig = field(default_factory=DebugConfig)


def train(cfg: Config) -> Path:
    """Play uniform-random episodes until a stop condition; returns the run directory."""
    check_run_config(cfg.run)
    env = make_env(cfg.env.env, actions=cfg.env.actions, sticky=cfg.env.sticky, env_kwargs=cfg.env.env_kwargs)
    n_actions = int(env.action_space.n)
    threshold = solved_threshold(cfg.env.env, cfg.run.target_return)
    stats = EpisodeStats(cfg.run.ema, threshold)
    env_steps, wall_before = 0, 0.0
    if cfg.run.resume:
        ckpt = load_checkpoint(cfg.run.resume, ALGO, cfg.env.env)
        env_steps, wall_before = ckpt["env_steps"], ckpt["wall_seconds"]
        stats.load_state_dict(ckpt["stats"])
    env = EpisodeGuard(env, cfg.run.long_episode_warning, steps_left(cfg.run.total_steps, env_steps))
    run_dir = make_run_dir(ALGO, cfg.env.env, cfg.run.run_dir, resuming=bool(cfg.run.resume))
    cfg = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, run_dir=str(run_dir)))
    logger = RunLogger(run_dir)
    start_run(run_dir, dataclasses.asdict(cfg), logger)
    progress = Progress(cfg.run.progress, cfg.run.total_steps, cfg.run.total_episodes, points=is_pong(cfg.env.env))
    first = stats.episodes
    start = time.monotonic()

    def elapsed() -> float:
        return wall_before + time.monotonic() - start

    def write_outputs(final: bool) -> None:
        save_checkpoint(
            run_dir / "checkpoints" / "latest.pt",
            {
                "algo": ALGO,
                "env": cfg.env.env,
                "config": dataclasses.asdict(cfg),
                "env_steps": env_steps,
                "wall_seconds": elapsed(),
                "stats": stats.state_dict(),
            },
        )
        write_json_atomic(run_dir / "summary.json", summary_dict(ALGO, cfg.env.env, cfg.run.seed, env_steps, elapsed(), stats))
        if final:
            plot_learning_curve(run_dir / "learning_curve.png", stats.returns, cfg.run.ema, f"random policy on {cfg.env.env}")

    try:
        while not cfg.run.finished(env_steps, stats.episodes, stats.solved):
            index = stats.episodes
            rng = np.random.default_rng([cfg.run.seed, index])
            # Seeded once per (re)start: reseeding ALE reloads the ROM, which would slow the
            # baseline's steps/s, the figure learners are compared with.
            env.reset(seed=episode_seed(cfg.run.seed, 0, index) if index == first else None)
            episode_return, length, finished = 0.0, 0, False
            while not finished:
                _, reward, terminated, truncated, _ = env.step(int(rng.integers(n_actions)))
                episode_return += float(reward)
                length += 1
                if reward != 0:
                    progress.point(reward > 0)
                finished = terminated or truncated
            env_steps += length
            stats.add(episode_return, length, env_steps, elapsed())
            progress.episode_end(stats.episodes, episode_return)
            logger.scalar("charts/episode_return", episode_return, env_steps)
            logger.scalar("charts/return_ema", stats.ema, env_steps)
            logger.scalar("charts/sps", env_steps / elapsed(), env_steps)
            # Uniform actions: entropy is log(A) at every step, the ceiling of a learner's curve.
            logger.scalar("policy/entropy", math.log(n_actions), env_steps)
            progress.update(env_steps, stats.episodes, env_steps / elapsed(), stats.ema)
    except KeyboardInterrupt:
        progress.close()
        write_outputs(final=True)
        announce(run_dir, interrupted=True)
        raise
    finally:
        env.close()
    progress.close()
    write_outputs(final=True)
    logger.close()
    announce(run_dir)
    return run_dir
